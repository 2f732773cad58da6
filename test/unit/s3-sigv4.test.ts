import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { S3Error } from '../../services/storage-node/src/s3/errors';
import {
  EMPTY_SHA256,
  verifySignature,
  type SignedRequest,
  type VerifyOptions,
} from '../../services/storage-node/src/s3/sigv4';

/**
 * The signature check against AWS's own examples (the SigV4 pages of the S3 API reference) and
 * against requests signed by the AWS SDK's signer, the one every JavaScript S3 client uses.
 */

const EXAMPLE_KEY = 'AKIAIOSFODNN7EXAMPLE';
const EXAMPLE_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const EXAMPLE_TIME = Date.UTC(2013, 4, 24);

const example: VerifyOptions = {
  region: 'us-east-1',
  secretOf: (id) => (id === EXAMPLE_KEY ? EXAMPLE_SECRET : undefined),
  now: EXAMPLE_TIME,
};

function request(method: string, target: string, headers: Record<string, string | string[]>): SignedRequest {
  const q = target.indexOf('?');
  return {
    method,
    rawPath: q < 0 ? target : target.slice(0, q),
    rawQuery: q < 0 ? '' : target.slice(q + 1),
    headers: Object.fromEntries(
      Object.entries(headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v : [v]]),
    ),
  };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof S3Error) return err.code;
    throw err;
  }
  return 'accepted';
}

describe("AWS's published SigV4 examples", () => {
  const auth = (signedHeaders: string, signature: string) =>
    `AWS4-HMAC-SHA256 Credential=${EXAMPLE_KEY}/20130524/us-east-1/s3/aws4_request,SignedHeaders=${signedHeaders},Signature=${signature}`;

  it('GET Object with a Range header', () => {
    const get = request('GET', '/test.txt', {
      host: 'examplebucket.s3.amazonaws.com',
      range: 'bytes=0-9',
      'x-amz-content-sha256': EMPTY_SHA256,
      'x-amz-date': '20130524T000000Z',
      authorization: auth(
        'host;range;x-amz-content-sha256;x-amz-date',
        'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
      ),
    });
    expect(verifySignature(get, example)).toMatchObject({
      accessKeyId: EXAMPLE_KEY,
      payload: { kind: 'sha256', sha256: EMPTY_SHA256 },
      presigned: false,
    });
    // Another range is another request.
    expect(
      codeOf(() => verifySignature({ ...get, headers: { ...get.headers, range: ['bytes=0-10'] } }, example)),
    ).toBe('SignatureDoesNotMatch');
  });

  it('GET Bucket (list objects) with a query string', () => {
    const list = request('GET', '/?max-keys=2&prefix=J', {
      host: 'examplebucket.s3.amazonaws.com',
      'x-amz-content-sha256': EMPTY_SHA256,
      'x-amz-date': '20130524T000000Z',
      authorization: auth(
        'host;x-amz-content-sha256;x-amz-date',
        '34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7',
      ),
    });
    expect(verifySignature(list, example).accessKeyId).toBe(EXAMPLE_KEY);
    // The query's order on the wire does not matter; its values do.
    expect(verifySignature({ ...list, rawQuery: 'prefix=J&max-keys=2' }, example).accessKeyId).toBe(
      EXAMPLE_KEY,
    );
    expect(codeOf(() => verifySignature({ ...list, rawQuery: 'max-keys=3&prefix=J' }, example))).toBe(
      'SignatureDoesNotMatch',
    );
  });

  it('a presigned GET, valid for a day and no longer', () => {
    const url =
      '/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
      '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host' +
      '&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404';
    const get = request('GET', url, { host: 'examplebucket.s3.amazonaws.com' });
    expect(verifySignature(get, example)).toMatchObject({ payload: { kind: 'unsigned' }, presigned: true });
    expect(verifySignature(get, { ...example, now: EXAMPLE_TIME + 86_400_000 }).presigned).toBe(true);
    expect(codeOf(() => verifySignature(get, { ...example, now: EXAMPLE_TIME + 86_401_000 }))).toBe(
      'AccessDenied',
    );
    expect(codeOf(() => verifySignature({ ...get, method: 'PUT' }, example))).toBe('SignatureDoesNotMatch');
    expect(codeOf(() => verifySignature({ ...get, rawPath: '/test.txu' }, example))).toBe(
      'SignatureDoesNotMatch',
    );
  });
});

describe('requests signed by the AWS SDK signer', () => {
  const accessKeyId = 'SHOALTESTKEY00000001';
  const secretAccessKey = 'c2VjcmV0LWtleS1mb3ItdGhlLXRlc3RzLW9ubHk';
  const now = Date.UTC(2026, 10, 27, 12, 0, 0);
  const options: VerifyOptions = {
    region: 'us-east-1',
    secretOf: (id) => (id === accessKeyId ? secretAccessKey : undefined),
    now,
  };
  const signer = new SignatureV4({
    credentials: { accessKeyId, secretAccessKey },
    region: 'us-east-1',
    service: 's3',
    sha256: Hash.bind(null, 'sha256'),
    // S3 clients escape the key into the path themselves, once (as the S3 client does).
    uriEscapePath: false,
    applyChecksum: false,
  });
  /** The SDK's escaping of keys and query values: encodeURIComponent, and !'()* too. */
  const escape = (s: string) =>
    encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const keyPath = (bucket: string, key: string) => `/${bucket}/${key.split('/').map(escape).join('/')}`;
  const wire = (query: Record<string, string>) =>
    Object.entries(query)
      .map(([k, v]) => `${escape(k)}=${escape(v)}`)
      .join('&');

  async function signed(
    method: string,
    path: string,
    query: Record<string, string>,
    headers: Record<string, string>,
  ): Promise<SignedRequest> {
    const out = await signer.sign(
      {
        method,
        protocol: 'http:',
        hostname: '127.0.0.1',
        port: 9000,
        path,
        query,
        headers: { host: '127.0.0.1:9000', ...headers },
      },
      { signingDate: new Date(now) },
    );
    return request(method, query && Object.keys(query).length ? `${path}?${wire(query)}` : path, out.headers);
  }

  const KEYS = [
    'plain.txt',
    'with space.txt',
    'ümlaut/ñandú/日本語.bin',
    'plus+sign',
    'amp&ersand=eq;semi',
    'per%cent',
    'runs//of///slashes/',
    "quote's (parens) *star* !bang ~tilde",
    'k'.repeat(1024),
  ];

  const LABELLED = KEYS.map((k) => [k.length > 60 ? `${k.slice(0, 8)}... (${k.length} bytes)` : k, k]);

  it.each(LABELLED)('accepts a PUT of %s, and refuses it under another key name', async (_label, key) => {
    const put = await signed(
      'PUT',
      keyPath('bucket', key),
      {},
      {
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
        'content-type': 'text/plain',
        'x-amz-meta-owner': 'someone  with   spaces',
      },
    );
    expect(verifySignature(put, options)).toMatchObject({ accessKeyId, payload: { kind: 'unsigned' } });
    const other = keyPath('bucket', `${key}x`);
    expect(codeOf(() => verifySignature({ ...put, rawPath: other }, options))).toBe('SignatureDoesNotMatch');
  });

  it('accepts a key sent with more or fewer characters escaped than the signer escaped', async () => {
    const put = await signed(
      'PUT',
      keyPath('bucket', "a(b)!c'd"),
      {},
      { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    );
    expect(verifySignature({ ...put, rawPath: "/bucket/a(b)!c'd" }, options).accessKeyId).toBe(accessKeyId);
    expect(verifySignature({ ...put, rawPath: '/bucket/%61%28b%29%21c%27d' }, options).accessKeyId).toBe(
      accessKeyId,
    );
  });

  it('accepts list queries with every parameter escaped', async () => {
    const query = {
      'list-type': '2',
      prefix: 'a b/ü+&=',
      delimiter: '/',
      'continuation-token': 'x/y+z=',
      'encoding-type': 'url',
    };
    const list = await signed('GET', '/bucket', query, { 'x-amz-content-sha256': EMPTY_SHA256 });
    expect(verifySignature(list, options).payload).toEqual({ kind: 'sha256', sha256: EMPTY_SHA256 });
    expect(
      codeOf(() =>
        verifySignature(
          { ...list, rawQuery: list.rawQuery.replace('delimiter=%2F', 'delimiter=-') },
          options,
        ),
      ),
    ).toBe('SignatureDoesNotMatch');
  });

  it('reports what the body must be: a sha256, unsigned, or one of the aws-chunked forms', async () => {
    const forms: Array<[string, unknown]> = [
      ['a'.repeat(64), { kind: 'sha256', sha256: 'a'.repeat(64) }],
      ['UNSIGNED-PAYLOAD', { kind: 'unsigned' }],
      ['STREAMING-AWS4-HMAC-SHA256-PAYLOAD', { kind: 'streaming-signed', trailer: false }],
      ['STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', { kind: 'streaming-signed', trailer: true }],
      ['STREAMING-UNSIGNED-PAYLOAD-TRAILER', { kind: 'streaming-unsigned-trailer' }],
    ];
    for (const [value, payload] of forms) {
      const put = await signed('PUT', '/bucket/k', {}, { 'x-amz-content-sha256': value });
      expect(verifySignature(put, options).payload).toEqual(payload);
    }
    const odd = await signed('PUT', '/bucket/k', {}, { 'x-amz-content-sha256': 'SOMETHING-ELSE' });
    expect(codeOf(() => verifySignature(odd, options))).toBe('InvalidArgument');
  });

  it('refuses a wrong secret, an unknown key, a skewed clock, another region and a missing hash header', async () => {
    const put = await signed('PUT', '/bucket/k', {}, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
    expect(codeOf(() => verifySignature(put, { ...options, secretOf: () => 'another-secret' }))).toBe(
      'SignatureDoesNotMatch',
    );
    expect(codeOf(() => verifySignature(put, { ...options, secretOf: () => undefined }))).toBe(
      'InvalidAccessKeyId',
    );
    expect(verifySignature(put, { ...options, now: now + 14 * 60_000 }).accessKeyId).toBe(accessKeyId);
    expect(codeOf(() => verifySignature(put, { ...options, now: now + 16 * 60_000 }))).toBe(
      'RequestTimeTooSkewed',
    );
    expect(codeOf(() => verifySignature(put, { ...options, now: now - 16 * 60_000 }))).toBe(
      'RequestTimeTooSkewed',
    );
    expect(codeOf(() => verifySignature(put, { ...options, region: 'eu-west-1' }))).toBe(
      'AuthorizationHeaderMalformed',
    );
    const bare = await signed('PUT', '/bucket/k', {}, {});
    expect(codeOf(() => verifySignature(bare, options))).toBe('InvalidRequest');
    expect(codeOf(() => verifySignature(request('GET', '/bucket/k', { host: 'h' }), options))).toBe(
      'AccessDenied',
    );
    const v2 = request('GET', '/bucket/k', { host: 'h', authorization: 'AWS AKID:c2ln' });
    expect(codeOf(() => verifySignature(v2, options))).toBe('InvalidRequest');
  });

  it('refuses a signed header that was changed, dropped or sent twice', async () => {
    const put = await signed(
      'PUT',
      '/bucket/k',
      {},
      {
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
        'x-amz-meta-color': 'blue',
      },
    );
    const headers = put.headers;
    expect(
      codeOf(() =>
        verifySignature({ ...put, headers: { ...headers, 'x-amz-meta-color': ['red'] } }, options),
      ),
    ).toBe('SignatureDoesNotMatch');
    const { 'x-amz-meta-color': _dropped, ...without } = headers;
    expect(codeOf(() => verifySignature({ ...put, headers: without }, options))).toBe(
      'SignatureDoesNotMatch',
    );
    expect(
      codeOf(() =>
        verifySignature({ ...put, headers: { ...headers, 'x-amz-meta-color': ['blue', 'blue'] } }, options),
      ),
    ).toBe('SignatureDoesNotMatch');
    // Headers nobody signed may change freely.
    expect(
      verifySignature({ ...put, headers: { ...headers, 'user-agent': ['other'] } }, options).accessKeyId,
    ).toBe(accessKeyId);
  });

  it('accepts presigned URLs until they expire, and refuses them changed or for longer than 7 days', async () => {
    const presign = async (expiresIn: number, key = 'k') => {
      // As @aws-sdk/s3-request-presigner does: the body is unsigned, and the signer hoists that
      // header into the URL.
      const headers = { host: '127.0.0.1:9000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
      const path = keyPath('bucket', key);
      const out = await signer.presign(
        { method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port: 9000, path, query: {}, headers },
        { signingDate: new Date(now), expiresIn },
      );
      return request('GET', `${keyPath('bucket', key)}?${wire(out.query as Record<string, string>)}`, {
        host: '127.0.0.1:9000',
      });
    };
    const get = await presign(900, 'dir/with space+plus.txt');
    expect(verifySignature(get, options)).toMatchObject({
      accessKeyId,
      presigned: true,
      payload: { kind: 'unsigned' },
    });
    expect(verifySignature(get, { ...options, now: now + 900_000 }).presigned).toBe(true);
    expect(codeOf(() => verifySignature(get, { ...options, now: now + 901_000 }))).toBe('AccessDenied');
    expect(codeOf(() => verifySignature(get, { ...options, now: now - 16 * 60_000 }))).toBe('AccessDenied');
    expect(
      codeOf(() =>
        verifySignature(
          { ...get, rawQuery: get.rawQuery.replace('X-Amz-Expires=900', 'X-Amz-Expires=9000') },
          options,
        ),
      ),
    ).toBe('SignatureDoesNotMatch');
    expect(codeOf(() => verifySignature({ ...get, rawQuery: `${get.rawQuery}&extra=1` }, options))).toBe(
      'SignatureDoesNotMatch',
    );
    // The SDK will not make one for longer than 7 days; a URL that says so is refused before its signature.
    const long = { ...get, rawQuery: get.rawQuery.replace('X-Amz-Expires=900', 'X-Amz-Expires=604801') };
    expect(codeOf(() => verifySignature(long, options))).toBe('AuthorizationQueryParametersError');
  });
});
