/**
 * Byte ranges and conditional requests as RFC 9110 defines them, for one representation.
 * Only a single range is served; a header asking for several is ignored (the full body is sent),
 * which the RFC allows. A header that does not parse is ignored too; a well-formed range that
 * does not overlap the file is unsatisfiable (416).
 */
export type RangeResult =
  { kind: 'none' } | { kind: 'unsatisfiable' } | { kind: 'range'; start: number; end: number };

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const match = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!match) return { kind: 'none' };
  const specs = match[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (specs.length !== 1) return { kind: 'none' };
  const spec = /^(\d*)-(\d*)$/.exec(specs[0]!);
  if (!spec) return { kind: 'none' };
  const [, first, last] = spec as unknown as [string, string, string];
  if (first === '' && last === '') return { kind: 'none' };
  if (first === '') {
    const suffix = Number(last);
    if (!Number.isSafeInteger(suffix)) return { kind: 'none' };
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? Number.MAX_SAFE_INTEGER : Number(last);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return { kind: 'none' };
  if (end < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'range', start, end: Math.min(end, size - 1) };
}

/** True when an If-None-Match header matches this entity tag (weak comparison, as for GET). */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const bare = (tag: string): string => tag.trim().replace(/^W\//, '');
  const wanted = bare(etag);
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || bare(tag) === wanted;
  });
}

/**
 * A Content-Disposition value that carries any file name safely: an ASCII fallback with
 * quotes, backslashes and control characters replaced, plus the exact name as RFC 8187
 * `filename*` (RFC 6266). Nothing in the name can end the header or start a new one.
 */
export function contentDisposition(name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, '_') || 'file';
  const encoded = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}
