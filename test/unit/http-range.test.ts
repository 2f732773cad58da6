import { parse } from 'content-disposition';
import fc from 'fast-check';
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
    // A name that needs no fallback goes alone, as a token when it is one (RFC 6266 allows both).
    expect(contentDisposition('report.pdf')).toBe('attachment; filename=report.pdf');
    expect(contentDisposition('my report.pdf')).toBe('attachment; filename="my report.pdf"');
  });

  it('gives quotes, backslashes, percent signs and control characters an ASCII fallback', () => {
    expect(contentDisposition('a\\b "c" 100%.txt')).toBe(
      `attachment; filename="a_b _c_ 100_.txt"; filename*=UTF-8''a%5Cb%20%22c%22%20100%25.txt`,
    );
    expect(contentDisposition('tab\there\x7f')).toBe(
      `attachment; filename=tab_here_; filename*=UTF-8''tab%09here%7F`,
    );
    expect(contentDisposition('')).toBe(`attachment; filename=file; filename*=UTF-8''`);
  });

  it('sends a lone surrogate as U+FFFD instead of throwing', () => {
    expect(parse(contentDisposition('a\uD800b\uDC00.txt')).parameters['filename']).toBe('a\uFFFDb\uFFFD.txt');
  });

  it('makes the part header of a multipart upload the same way', () => {
    expect(contentDisposition('résumé.txt', 'form-data')).toBe(
      `form-data; filename=r_sum_.txt; filename*=UTF-8''r%C3%A9sum%C3%A9.txt`,
    );
  });

  it('carries any name exactly and cannot break the header, whatever it holds', () => {
    const anyCodeUnit = fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.constantFrom('"', '\\', '%', '\r', '\n', ';', "'", '\uD800', '\uDFFF'),
    );
    fc.assert(
      fc.property(fc.string({ unit: anyCodeUnit, maxLength: 40 }), (name) => {
        const value = contentDisposition(name);
        expect(value).toMatch(/^[\x20-\x7e]*$/);
        // Exact, but for lone surrogates, which UTF-8 reads as U+FFFD.
        expect(parse(value).parameters['filename']).toBe(Buffer.from(name).toString());
        const fallback = parse(value, { extended: false }).parameters['filename'] ?? '';
        expect(fallback).toMatch(/^[\x20-\x7e]+$/);
        expect(fallback).not.toMatch(/["\\%]/);
      }),
      { numRuns: 2000 },
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
