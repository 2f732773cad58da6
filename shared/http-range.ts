import { create as createDisposition } from 'content-disposition';
import { parse as parseRangeHeader } from 'range-parser';

/**
 * Byte ranges and conditional requests as RFC 9110 defines them, for one representation.
 * Only a single range is served; a header asking for several is ignored (the full body is sent),
 * which the RFC allows. A header that does not parse is ignored too; a well-formed range that
 * does not overlap the file is unsatisfiable (416).
 */
export type RangeResult =
  { kind: 'none' } | { kind: 'unsatisfiable' } | { kind: 'range'; start: number; end: number };

const NONE: RangeResult = { kind: 'none' };
/** range-parser's result code bits: some element did not parse; some element lies outside the body. */
const MALFORMED = 1;
const UNSATISFIABLE = 2;

/**
 * range-parser applies the RFC 9110 grammar (the unit, first-last, open and suffix ranges, empty
 * list elements) and clips ranges to the body; what to serve is decided here. An element that
 * does not parse voids the whole header, which the grammar then does not match, so it is
 * ignored. A header naming several ranges gets the whole body: its combineRanges is not used,
 * since it would merge `0-4,5-9` into one range and answer a multi-range request with one part.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return NONE;
  const parsed = parseRangeHeader(size, header);
  if (parsed.type !== 'bytes' || (parsed.code & MALFORMED) !== 0) return NONE;
  if (countRangeElements(header) !== 1) return NONE;
  const range = parsed.ranges[0];
  if (range === undefined) {
    // A suffix range of an empty body is satisfiable but selects nothing (RFC 9110 14.1.1):
    // the whole, empty body is the answer; anything else that selects nothing is a 416.
    return (parsed.code & UNSATISFIABLE) !== 0 ? { kind: 'unsatisfiable' } : NONE;
  }
  return { kind: 'range', start: range.start, end: range.end };
}

/**
 * How many ranges a header names. range-parser's result lists only the satisfiable ones, so a
 * request for several that all lie outside the body would look like a request for one.
 */
function countRangeElements(header: string): number {
  return header
    .slice(header.indexOf('=') + 1)
    .split(',')
    .filter((element) => element.trim() !== '').length;
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
 * A Content-Disposition value that carries any file name safely (RFC 6266): content-disposition
 * builds it, quoting or not as the value needs; this decides the ASCII fallback. When the name is
 * not plain printable ASCII, or holds a quote, backslash or percent sign, `filename` carries a
 * copy with those replaced by `_` (RFC 6266 appendix D: some user agents do not unescape quoted
 * pairs, some percent-decode) and `filename*` carries the exact name (RFC 8187); otherwise the
 * name alone. The value is ASCII, so nothing in the name can end the header or start a new one.
 * `type` is `form-data` for the part of a multipart upload (the caller adds its `name`).
 */
export function contentDisposition(name: string, type: 'attachment' | 'form-data' = 'attachment'): string {
  // UTF-8 cannot carry a lone surrogate and the library's encodeURIComponent throws on one; a
  // UTF-8 decoder would read the name as U+FFFD there, so that is what is sent.
  const exact = name.replace(LONE_SURROGATE, '\uFFFD');
  const fallback = exact.replace(/[^\x20-\x7e]|["\\%]/g, '_') || 'file';
  return createDisposition(exact, { type, fallback });
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
