import { contentDisposition, etagMatches, parseRange } from '../../shared/http-range';

describe('parseRange', () => {
  it.each([
    ['bytes=0-9', 100, { kind: 'range', start: 0, end: 9 }],
    ['bytes=90-', 100, { kind: 'range', start: 90, end: 99 }],
    ['bytes=-10', 100, { kind: 'range', start: 90, end: 99 }],
    ['bytes=-500', 100, { kind: 'range', start: 0, end: 99 }],
    ['bytes=50-5000', 100, { kind: 'range', start: 50, end: 99 }],
    ['bytes=100-', 100, { kind: 'unsatisfiable' }],
    ['bytes=-0', 100, { kind: 'unsatisfiable' }],
    ['bytes=0-0', 0, { kind: 'unsatisfiable' }],
    ['bytes=abc', 100, { kind: 'none' }],
    ['items=0-1', 100, { kind: 'none' }],
    ['bytes=9-1', 100, { kind: 'none' }],
    ['bytes=0-1,5-6', 100, { kind: 'none' }],
    ['bytes=-', 100, { kind: 'none' }],
    ['bytes 0-9', 100, { kind: 'none' }],
    ['bytes=--5', 100, { kind: 'none' }],
    ['BYTES=0-9', 100, { kind: 'range', start: 0, end: 9 }],
    ['bytes=0-9,', 100, { kind: 'range', start: 0, end: 9 }],
    // Several ranges get the whole body, even adjacent ones that would merge into one...
    ['bytes=0-4,5-9', 100, { kind: 'none' }],
    // ...or ones that all lie outside the body; one bad element voids the header.
    ['bytes=200-300,400-', 100, { kind: 'none' }],
    ['bytes=0-9,abc', 100, { kind: 'none' }],
    // A suffix range of an empty body is satisfiable and selects nothing (RFC 9110 14.1.1).
    ['bytes=-5', 0, { kind: 'none' }],
    // Positions past 2^53 are still positions: the suffix covers everything, the start lies outside.
    ['bytes=-99999999999999999999', 100, { kind: 'range', start: 0, end: 99 }],
    ['bytes=0-99999999999999999999', 100, { kind: 'range', start: 0, end: 99 }],
    ['bytes=99999999999999999999-', 100, { kind: 'unsatisfiable' }],
  ] as const)('%s of %i bytes', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });

  it('treats a missing header as no range', () => {
    expect(parseRange(undefined, 10)).toEqual({ kind: 'none' });
  });
});

describe('etagMatches', () => {
  it('matches the exact tag, weak forms, lists and *', () => {
    expect(etagMatches('"abc"', '"abc"')).toBe(true);
    expect(etagMatches('W/"abc"', '"abc"')).toBe(true);
    expect(etagMatches('"x", "abc"', '"abc"')).toBe(true);
    expect(etagMatches('*', '"abc"')).toBe(true);
    expect(etagMatches('"abd"', '"abc"')).toBe(false);
    expect(etagMatches(undefined, '"abc"')).toBe(false);
  });
});

describe('contentDisposition', () => {
  it('keeps a plain name readable', () => {
    expect(contentDisposition('report.pdf')).toBe(
      `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`,
    );
  });

  it('cannot be used to inject headers or break out of the quotes', () => {
    const value = contentDisposition('evil"\r\nSet-Cookie: a=b;.txt');
    expect(value).not.toMatch(/[\r\n]/);
    expect(value.split('"').length).toBe(3);
  });

  it('carries unicode names exactly in filename*', () => {
    const value = contentDisposition('résumé 日本.txt');
    const encoded = /filename\*=UTF-8''(.+)$/.exec(value)![1]!;
    expect(decodeURIComponent(encoded)).toBe('résumé 日本.txt');
  });
});
