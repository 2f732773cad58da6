import { createHash, randomBytes, randomInt } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AwsChunkedDecoder, type AwsChunkedOptions } from '../../services/storage-node/src/s3/aws-chunked';
import { S3Error } from '../../services/storage-node/src/s3/errors';
import {
  verifySignature,
  type SignedRequest,
  type SigningChain,
  type VerifiedRequest,
} from '../../services/storage-node/src/s3/sigv4';

/**
 * aws-chunked bodies: AWS's two published examples (65 KiB of 'a' in chunks of 64 KiB and 1 KiB,
 * without and with a signed CRC32C trailer), every way of tampering with them, and the unsigned
 * trailer form the AWS SDKs send by default since 2025; each fed in random pieces, since the
 * framing can be split anywhere on the wire.
 */

const KEY = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const CHUNK1 = 'a'.repeat(65536);
const CHUNK2 = 'a'.repeat(1024);

interface Example {
  contentSha256: string;
  signedHeaders: string;
  seed: string;
  chunkSigs: [string, string, string];
  trailer?: { line: string; signature: string };
}

const SIGNED: Example = {
  contentSha256: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  signedHeaders:
    'content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class',
  seed: '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
  chunkSigs: [
    'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
    '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
    'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
  ],
};

const SIGNED_TRAILER: Example = {
  contentSha256: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  signedHeaders:
    'content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer',
  seed: '106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e',
  chunkSigs: [
    'b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2',
    '1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7',
    '2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992',
  ],
  trailer: {
    line: 'x-amz-checksum-crc32c:sOO8/Q==',
    signature: 'd81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435',
  },
};

function exampleRequest(e: Example): SignedRequest {
  const headers: Record<string, string> = {
    host: 's3.amazonaws.com',
    'x-amz-date': '20130524T000000Z',
    'x-amz-storage-class': 'REDUCED_REDUNDANCY',
    'x-amz-content-sha256': e.contentSha256,
    'content-encoding': 'aws-chunked',
    'x-amz-decoded-content-length': '66560',
    'content-length': '66824',
    authorization: `AWS4-HMAC-SHA256 Credential=${KEY}/20130524/us-east-1/s3/aws4_request, SignedHeaders=${e.signedHeaders}, Signature=${e.seed}`,
  };
  if (e.trailer) headers['x-amz-trailer'] = 'x-amz-checksum-crc32c';
  return {
    method: 'PUT',
    rawPath: '/examplebucket/chunkObject.txt',
    rawQuery: '',
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
  };
}

function verified(e: Example): VerifiedRequest {
  return verifySignature(exampleRequest(e), {
    region: 'us-east-1',
    secretOf: (id) => (id === KEY ? SECRET : undefined),
    now: Date.UTC(2013, 4, 24),
  });
}

const chunk = (data: string, sig?: string) =>
  `${data.length.toString(16)}${sig ? `;chunk-signature=${sig}` : ''}\r\n${data}\r\n`;

function exampleBody(e: Example): string {
  let body =
    chunk(CHUNK1, e.chunkSigs[0]) + chunk(CHUNK2, e.chunkSigs[1]) + `0;chunk-signature=${e.chunkSigs[2]}\r\n`;
  if (e.trailer) body += `${e.trailer.line}\r\nx-amz-trailer-signature:${e.trailer.signature}\r\n`;
  return `${body}\r\n`;
}

/** Pieces of 1 byte to 100 KiB: the framing lands split across writes in every way. */
function pieces(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length;) {
    const n = randomInt(1, Math.random() < 0.3 ? 8 : 100 * 1024);
    out.push(body.subarray(at, at + n));
    at += n;
  }
  return out;
}

async function decode(
  body: string | Buffer,
  options: AwsChunkedOptions,
): Promise<{ data: Buffer; trailers: Map<string, string> } | string> {
  const decoder = new AwsChunkedDecoder(options);
  const out: Buffer[] = [];
  try {
    await pipeline(Readable.from(pieces(Buffer.from(body))), decoder, async (source) => {
      for await (const c of source) out.push(c as Buffer);
    });
  } catch (err) {
    if (err instanceof S3Error) return err.code;
    throw err;
  }
  return { data: Buffer.concat(out), trailers: decoder.trailers };
}

function optionsOf(e: Example): AwsChunkedOptions {
  const v = verified(e);
  return {
    chain: v.chain,
    trailer: e.trailer !== undefined,
    declaredTrailers: e.trailer ? ['x-amz-checksum-crc32c'] : [],
    decodedLength: 66560,
  };
}

describe("AWS's published aws-chunked examples", () => {
  it.each([
    ['STREAMING-AWS4-HMAC-SHA256-PAYLOAD', SIGNED],
    ['STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', SIGNED_TRAILER],
  ])('%s: the seed signature, every chunk and the trailer verify, and 65 KiB come out', async (_name, e) => {
    expect(verified(e).payload).toEqual({ kind: 'streaming-signed', trailer: e.trailer !== undefined });
    const result = await decode(exampleBody(e), optionsOf(e));
    if (typeof result === 'string') throw new Error(`refused: ${result}`);
    expect(result.data.toString()).toBe(CHUNK1 + CHUNK2);
    expect(Object.fromEntries(result.trailers)).toEqual(
      e.trailer ? { 'x-amz-checksum-crc32c': 'sOO8/Q==' } : {},
    );
  });

  const [s1, s2, s3] = SIGNED.chunkSigs;
  const final = `0;chunk-signature=${s3}\r\n\r\n`;
  const good = exampleBody(SIGNED);
  it.each([
    ['a data byte changed', good.replace('a\r\n400;', 'b\r\n400;'), 'SignatureDoesNotMatch'],
    ['a chunk signature changed', good.replace(s2, '0'.repeat(64)), 'SignatureDoesNotMatch'],
    ['a chunk signature missing', good.replace(`400;chunk-signature=${s2}`, '400'), 'SignatureDoesNotMatch'],
    ["the final chunk's signature changed", good.replace(s3, s2), 'SignatureDoesNotMatch'],
    ['chunks reordered', chunk(CHUNK2, s2) + chunk(CHUNK1, s1) + final, 'SignatureDoesNotMatch'],
    ['a chunk dropped', chunk(CHUNK1, s1) + final, 'SignatureDoesNotMatch'],
    ['a chunk appended', chunk(CHUNK1, s1) + chunk(CHUNK2, s2) + chunk('a', s3) + final, 'InvalidRequest'],
    ['cut short at a chunk boundary', chunk(CHUNK1, s1), 'IncompleteBody'],
    ['cut short inside a chunk', good.slice(0, 30_000), 'IncompleteBody'],
    ['a chunk longer than its size', good.replace(`a\r\n400;`, 'aa\r\n400;'), 'InvalidRequest'],
    ['bytes after the end', `${good}x`, 'InvalidRequest'],
    [
      'a trailer that nothing signs',
      good.replace(/\r\n$/, 'x-amz-checksum-crc32:NSRBwg==\r\n\r\n'),
      'InvalidRequest',
    ],
  ])('refuses the signed example with %s', async (_name, body, code) => {
    expect(await decode(body, optionsOf(SIGNED))).toBe(code);
  });

  const t = SIGNED_TRAILER.trailer!;
  const withTrailer = exampleBody(SIGNED_TRAILER);
  it.each([
    ['the checksum changed', withTrailer.replace('sOO8/Q==', 'AAAAAA=='), 'SignatureDoesNotMatch'],
    [
      'a trailer added',
      withTrailer.replace(`${t.line}\r\n`, `${t.line}\r\nx-amz-meta-extra:1\r\n`),
      'InvalidRequest',
    ],
    ['the trailer dropped', withTrailer.replace(`${t.line}\r\n`, ''), 'IncompleteBody'],
    [
      'the trailer signature changed',
      withTrailer.replace(t.signature, SIGNED_TRAILER.seed),
      'SignatureDoesNotMatch',
    ],
    [
      'the trailer signature missing',
      withTrailer.replace(`x-amz-trailer-signature:${t.signature}\r\n`, ''),
      'SignatureDoesNotMatch',
    ],
  ])('refuses the trailer example with %s', async (_name, body, code) => {
    expect(await decode(body, optionsOf(SIGNED_TRAILER))).toBe(code);
  });

  it('refuses chunks signed for another request (another seed signature)', async () => {
    const other: SigningChain = { ...verified(SIGNED).chain, seedSignature: SIGNED_TRAILER.seed };
    expect(await decode(good, { ...optionsOf(SIGNED), chain: other })).toBe('SignatureDoesNotMatch');
  });

  it('refuses a body whose size is not x-amz-decoded-content-length', async () => {
    expect(await decode(good, { ...optionsOf(SIGNED), decodedLength: 66561 })).toBe('IncompleteBody');
    expect(await decode(good, { ...optionsOf(SIGNED), decodedLength: 66559 })).toBe('InvalidRequest');
  });
});

describe('STREAMING-UNSIGNED-PAYLOAD-TRAILER, as the AWS SDKs send by default', () => {
  const options: AwsChunkedOptions = {
    chain: undefined,
    trailer: true,
    declaredTrailers: ['x-amz-checksum-crc32'],
    decodedLength: undefined,
  };
  const frame = (parts: Buffer[], trailers: string) =>
    Buffer.concat([
      ...parts.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]),
      Buffer.from(`0\r\n${trailers}\r\n`),
    ]);

  it.each([0, 1, 8192, 5 * 1024 * 1024 + 1])(
    'decodes %i bytes in chunks of any size, with the trailer',
    async (size) => {
      const data = randomBytes(size);
      const parts: Buffer[] = [];
      for (let at = 0; at < size;) {
        const n = randomInt(1, 256 * 1024);
        parts.push(data.subarray(at, at + n));
        at += n;
      }
      const result = await decode(frame(parts, 'x-amz-checksum-crc32:AAAAAA==\r\n'), {
        ...options,
        decodedLength: size,
      });
      if (typeof result === 'string') throw new Error(`refused: ${result}`);
      expect(createHash('sha256').update(result.data).digest('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
      expect(result.trailers.get('x-amz-checksum-crc32')).toBe('AAAAAA==');
    },
  );

  it('takes a body that ends after its trailers without the final empty line', async () => {
    const body = Buffer.from('3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n');
    const result = await decode(body, options);
    expect(typeof result === 'string' ? result : result.data.toString()).toBe('abc');
  });

  it('refuses a missing or unannounced trailer, a bad size line and a bare LF', async () => {
    expect(await decode(Buffer.from('3\r\nabc\r\n0\r\n\r\n'), options)).toBe('IncompleteBody');
    expect(await decode(Buffer.from('3\r\nabc\r\n0\r\nx-amz-checksum-sha1:AA==\r\n\r\n'), options)).toBe(
      'InvalidRequest',
    );
    expect(await decode(Buffer.from('xyz\r\nabc\r\n0\r\n\r\n'), options)).toBe('InvalidRequest');
    expect(await decode(Buffer.from('3\nabc\r\n0\r\n\r\n'), options)).toBe('InvalidRequest');
    expect(await decode(Buffer.from(`${'1'.repeat(5000)}\r\n`), options)).toBe('InvalidRequest');
  });
});
