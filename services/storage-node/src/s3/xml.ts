/**
 * S3 speaks XML. Its documents here are small and flat enough to write by hand: every text is
 * escaped, elements come in the order S3's own answers have them (some clients care).
 */

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** An element: text content escaped, or children already rendered (an array, joined). */
export function element(name: string, content: string | number | boolean | string[]): string {
  const inner = Array.isArray(content) ? content.join('') : escapeXml(String(content));
  return `<${name}>${inner}</${name}>`;
}

/** A whole document with S3's namespace on its root. */
export function document(root: string, children: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${children.join('')}</${root}>`;
}

/** The text of the first `<name>` element in a small XML body, unescaped; undefined if absent. */
export function textOf(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}(?:\\s[^>]*)?>([^<]*)</${name}>`).exec(xml);
  if (!m) return undefined;
  return m[1]!.replace(
    /&(amp|lt|gt|quot|apos);/g,
    (_e, n: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[n]!,
  );
}
