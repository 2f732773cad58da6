import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { constantTimeEqual, sha256Hex } from '../../../../shared/hashing';
import { S3Error } from './errors';

/**
 * AWS Signature Version 4, as S3 checks it: in the Authorization header and in presigned URLs.
 * A request is verified against the secret of the access key it names; what it says about its
 * body (`x-amz-content-sha256`) comes back so the body can be checked as it streams (a sha256,
 * or the chunk signatures of an aws-chunked body, s3/aws-chunked.ts).
 *
 * S3 differs from the other AWS services in one place that matters: the path is URI-encoded once,
 * not twice, and never normalised (`a//b/../c` is a key, not a path to resolve). The canonical
 * path and query are rebuilt from the decoded bytes, so a client that escapes a few more or fewer
 * characters on the wire than it signed still matches.
 */

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER';
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** How far a request's time may be from this node's clock (S3's own window). */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
/** The longest a presigned URL may be valid: seven days, as S3 allows. */
export const MAX_PRESIGNED_SECONDS = 7 * 24 * 60 * 60;

/** What the request's signature says about its body. */
export type Payload =
  | { kind: 'unsigned' }
  /** The body must hash to `sha256` (hex). */
  | { kind: 'sha256'; sha256: string }
  /** An aws-chunked body: every chunk signed, and a signed trailer block when `trailer`. */
  | { kind: 'streaming-signed'; trailer: boolean }
  /** An aws-chunked body without chunk signatures, ending in trailers (checksums). */
  | { kind: 'streaming-unsigned-trailer' };

/** What signs the chunks of an aws-chunked body: they chain from the request's own signature. */
export interface SigningChain {
  key: KeyObject;
  amzDate: string;
  scope: string;
  seedSignature: string;
}

export interface VerifiedRequest {
  accessKeyId: string;
  payload: Payload;
  chain: SigningChain;
  presigned: boolean;
}

/** The parts of an HTTP request a signature covers, as they came on the wire. */
export interface SignedRequest {
  method: string;
  /** The request target's path, still percent-encoded. */
  rawPath: string;
  /** The request target's query string without the `?`, still encoded ('' for none). */
  rawQuery: string;
  /** Header values by lower-case name; a header sent several times has several values. */
  headers: Record<string, string[] | undefined>;
}

export interface VerifyOptions {
  region: string;
  /** The secret of an access key, or undefined when no such key exists. */
  secretOf: (accessKeyId: string) => string | undefined;
  now?: number;
}

/** Whether the request carries a SigV4 signature at all (header or query). */
export function isSigned(request: SignedRequest): boolean {
  return (
    headerValue(request, 'authorization') !== undefined ||
    parseQuery(request.rawQuery).some(([k]) => k === 'X-Amz-Signature' || k === 'X-Amz-Algorithm')
  );
}

/**
 * Checks the request's signature and returns who signed it and what it says about the body.
 * Throws S3Error with the code S3 would answer: AccessDenied for no signature at all,
 * InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed, or a malformed-request code.
 */
export function verifySignature(request: SignedRequest, options: VerifyOptions): VerifiedRequest {
  const query = parseQuery(request.rawQuery);
  const authorization = headerValue(request, 'authorization');
  if (authorization !== undefined) return verifyHeader(request, query, authorization, options);
  if (query.some(([k]) => k === 'X-Amz-Algorithm' || k === 'X-Amz-Signature'))
    return verifyPresigned(request, query, options);
  // A Signature Version 2 URL (what aws-cli v1's `s3 presign` makes unless told s3v4).
  if (query.some(([k]) => k === 'AWSAccessKeyId') && query.some(([k]) => k === 'Signature'))
    throw new S3Error('InvalidRequest', 'Signature Version 2 is not supported; use AWS4-HMAC-SHA256.');
  throw new S3Error('AccessDenied', 'Anonymous access is not allowed; sign the request with an access key.');
}

function verifyHeader(
  request: SignedRequest,
  query: Array<[string, string]>,
  authorization: string,
  options: VerifyOptions,
): VerifiedRequest {
  const auth = parseAuthorization(authorization);
  const amzDate = headerValue(request, 'x-amz-date');
  if (amzDate === undefined)
    throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
  const time = parseAmzDate(amzDate, 'AccessDenied');
  const now = options.now ?? Date.now();
  if (Math.abs(now - time) > MAX_CLOCK_SKEW_MS)
    throw new S3Error(
      'RequestTimeTooSkewed',
      'The difference between the request time and the current time is too large.',
    );
  checkScope(auth.credential, amzDate, options.region, 'AuthorizationHeaderMalformed');
  const contentSha256 = headerValue(request, 'x-amz-content-sha256');
  if (contentSha256 === undefined)
    throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  const payload = payloadOf(contentSha256);
  if (!auth.signedHeaders.includes('host'))
    throw new S3Error('AuthorizationHeaderMalformed', 'The host header must be signed');
  const secret = secretFor(auth.credential.accessKeyId, options);
  const chain = check(
    request,
    query,
    auth.signedHeaders,
    contentSha256,
    auth.credential,
    amzDate,
    secret,
    auth.signature,
  );
  return { accessKeyId: auth.credential.accessKeyId, payload, chain, presigned: false };
}

function verifyPresigned(
  request: SignedRequest,
  query: Array<[string, string]>,
  options: VerifyOptions,
): VerifiedRequest {
  const param = (name: string): string => {
    const values = query.filter(([k]) => k === name);
    if (values.length !== 1)
      throw new S3Error(
        'AuthorizationQueryParametersError',
        `Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters (${name} ${values.length === 0 ? 'is missing' : 'is repeated'}).`,
      );
    return values[0]![1];
  };
  if (param('X-Amz-Algorithm') !== SIGV4_ALGORITHM)
    throw new S3Error(
      'AuthorizationQueryParametersError',
      `X-Amz-Algorithm only supports "${SIGV4_ALGORITHM}"`,
    );
  const credential = parseCredential(param('X-Amz-Credential'), 'AuthorizationQueryParametersError');
  const amzDate = param('X-Amz-Date');
  const time = parseAmzDate(amzDate, 'AuthorizationQueryParametersError');
  const expiresText = param('X-Amz-Expires');
  const expires = /^\d{1,7}$/.test(expiresText) ? Number(expiresText) : NaN;
  if (!(expires >= 1 && expires <= MAX_PRESIGNED_SECONDS))
    throw new S3Error(
      'AuthorizationQueryParametersError',
      `X-Amz-Expires must be a number of seconds from 1 to ${MAX_PRESIGNED_SECONDS}`,
    );
  const signedHeaders = parseSignedHeaders(param('X-Amz-SignedHeaders'), 'AuthorizationQueryParametersError');
  const signature = param('X-Amz-Signature');
  const now = options.now ?? Date.now();
  if (time - now > MAX_CLOCK_SKEW_MS) throw new S3Error('AccessDenied', 'Request is not valid yet');
  if (now > time + expires * 1000) throw new S3Error('AccessDenied', 'Request has expired');
  checkScope(credential, amzDate, options.region, 'AuthorizationQueryParametersError');
  if (!signedHeaders.includes('host'))
    throw new S3Error('AuthorizationQueryParametersError', 'The host header must be signed');
  // A presigned URL's body is unsigned unless the client also gave a hash of it, as a header or,
  // hoisted into the URL by the AWS SDK's presigner, as a query parameter.
  const hoisted = query.find(([k]) => k.toLowerCase() === 'x-amz-content-sha256')?.[1];
  const contentSha256 = headerValue(request, 'x-amz-content-sha256') ?? hoisted ?? UNSIGNED_PAYLOAD;
  const payload = payloadOf(contentSha256);
  if (payload.kind !== 'unsigned' && payload.kind !== 'sha256')
    throw new S3Error('InvalidRequest', 'A presigned request cannot carry an aws-chunked body');
  const secret = secretFor(credential.accessKeyId, options);
  const unsignedQuery = query.filter(([k]) => k !== 'X-Amz-Signature');
  const chain = check(
    request,
    unsignedQuery,
    signedHeaders,
    contentSha256,
    credential,
    amzDate,
    secret,
    signature,
  );
  return { accessKeyId: credential.accessKeyId, payload, chain, presigned: true };
}

interface Credential {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

/** `AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=hex` */
function parseAuthorization(header: string): {
  credential: Credential;
  signedHeaders: string[];
  signature: string;
} {
  const malformed = (why: string) =>
    new S3Error('AuthorizationHeaderMalformed', `The authorization header is malformed; ${why}`);
  const space = header.indexOf(' ');
  const algorithm = space < 0 ? header : header.slice(0, space);
  if (algorithm !== SIGV4_ALGORITHM) {
    if (algorithm === 'AWS')
      throw new S3Error('InvalidRequest', 'Signature Version 2 is not supported; use AWS4-HMAC-SHA256.');
    throw malformed(`the algorithm must be ${SIGV4_ALGORITHM}`);
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(space + 1).split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) throw malformed(`"${item.slice(0, 40)}" is not name=value`);
    const name = item.slice(0, eq).trim();
    if (fields.has(name)) throw malformed(`${name} is given twice`);
    fields.set(name, item.slice(eq + 1).trim());
  }
  const field = (name: string): string => {
    const value = fields.get(name);
    if (value === undefined) throw malformed(`${name} is missing`);
    return value;
  };
  return {
    credential: parseCredential(field('Credential'), 'AuthorizationHeaderMalformed'),
    signedHeaders: parseSignedHeaders(field('SignedHeaders'), 'AuthorizationHeaderMalformed'),
    signature: field('Signature'),
  };
}

function parseCredential(
  text: string,
  code: 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError',
): Credential {
  const parts = text.split('/');
  if (parts.length !== 5 || parts[4] !== 'aws4_request' || parts.some((p) => p === ''))
    throw new S3Error(code, 'The credential must be <access key>/<yyyymmdd>/<region>/s3/aws4_request');
  const [accessKeyId, date, region, service] = parts as [string, string, string, string];
  return { accessKeyId, date, region, service };
}

function parseSignedHeaders(
  text: string,
  code: 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError',
): string[] {
  const names = text.split(';');
  if (names.some((n) => n === '' || n !== n.toLowerCase()))
    throw new S3Error(code, 'SignedHeaders must be lower-case header names separated by ";"');
  return names;
}

function checkScope(
  credential: Credential,
  amzDate: string,
  region: string,
  code: 'AuthorizationHeaderMalformed' | 'AuthorizationQueryParametersError',
): void {
  if (credential.date !== amzDate.slice(0, 8))
    throw new S3Error(code, `The credential date ${credential.date} is not the date of the request`);
  if (credential.region !== region)
    throw new S3Error(code, `the region '${credential.region}' is wrong; expecting '${region}'`);
  if (credential.service !== 's3')
    throw new S3Error(code, `the service '${credential.service}' is wrong; expecting 's3'`);
}

/** `20130524T000000Z` -> milliseconds since the epoch. */
function parseAmzDate(text: string, code: 'AccessDenied' | 'AuthorizationQueryParametersError'): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  const time = m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : NaN;
  if (!Number.isFinite(time))
    throw new S3Error(code, `X-Amz-Date must be in the ISO8601 basic format yyyyMMddTHHmmssZ`);
  return time;
}

function payloadOf(contentSha256: string): Payload {
  switch (contentSha256) {
    case UNSIGNED_PAYLOAD:
      return { kind: 'unsigned' };
    case STREAMING_SIGNED:
      return { kind: 'streaming-signed', trailer: false };
    case STREAMING_SIGNED_TRAILER:
      return { kind: 'streaming-signed', trailer: true };
    case STREAMING_UNSIGNED_TRAILER:
      return { kind: 'streaming-unsigned-trailer' };
    default:
      if (/^[0-9a-f]{64}$/.test(contentSha256)) return { kind: 'sha256', sha256: contentSha256 };
      throw new S3Error(
        'InvalidArgument',
        'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or a sha256 in hex',
      );
  }
}

function secretFor(accessKeyId: string, options: VerifyOptions): string {
  const secret = options.secretOf(accessKeyId);
  if (secret === undefined)
    throw new S3Error(
      'InvalidAccessKeyId',
      'The AWS Access Key Id you provided does not exist in our records.',
    );
  return secret;
}

/** Computes the signature the request should carry and compares it with `given` in constant time. */
function check(
  request: SignedRequest,
  query: Array<[string, string]>,
  signedHeaders: string[],
  payloadHash: string,
  credential: Credential,
  amzDate: string,
  secret: string,
  given: string,
): SigningChain {
  const canonical = canonicalRequest(request, query, signedHeaders, payloadHash);
  const scope = `${credential.date}/${credential.region}/${credential.service}/aws4_request`;
  const key = signingKey(secret, credential.date, credential.region, credential.service);
  const expected = hmac(key, stringToSign(amzDate, scope, sha256Hex(canonical))).toString('hex');
  if (!constantTimeEqual(expected, given))
    throw new S3Error(
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
    );
  return { key, amzDate, scope, seedSignature: expected };
}

export function canonicalRequest(
  request: SignedRequest,
  query: Array<[string, string]>,
  signedHeaders: string[],
  payloadHash: string,
): string {
  const headers = signedHeaders.map((name) => {
    const values = request.headers[name];
    if (values === undefined)
      throw new S3Error('SignatureDoesNotMatch', `The signed header ${name} is not in the request`);
    return `${name}:${values.map((v) => v.trim().replace(/ +/g, ' ')).join(',')}\n`;
  });
  return [
    request.method,
    canonicalPath(request.rawPath),
    canonicalQuery(query),
    headers.join(''),
    signedHeaders.join(';'),
    payloadHash,
  ].join('\n');
}

/** The path, decoded and encoded again the way SigV4 signs it for S3 (once, `/` kept). */
export function canonicalPath(rawPath: string): string {
  return uriEncode(decodePercent(rawPath), false);
}

function canonicalQuery(query: Array<[string, string]>): string {
  return query
    .map(([k, v]) => [uriEncode(k, true), uriEncode(v, true)] as const)
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/** A raw query string's pairs, decoded, in order (a name without `=` has the value ''). */
export function parseQuery(rawQuery: string): Array<[string, string]> {
  if (rawQuery === '') return [];
  return rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((pair) => {
      const eq = pair.indexOf('=');
      return eq < 0
        ? [decodePercent(pair), '']
        : [decodePercent(pair.slice(0, eq)), decodePercent(pair.slice(eq + 1))];
    });
}

/** Percent-decoding of UTF-8 (a `+` stays a `+`); a malformed escape is the client's error. */
export function decodePercent(text: string): string {
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    throw new S3Error('InvalidArgument', 'The request has a malformed percent-encoded sequence');
  }
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** RFC 3986 encoding as SigV4 wants it: unreserved characters kept, every other byte %XX upper-case. */
export function uriEncode(text: string, encodeSlash: boolean): string {
  let out = '';
  for (const ch of text) {
    if (UNRESERVED.test(ch) || (ch === '/' && !encodeSlash)) out += ch;
    else
      for (const byte of Buffer.from(ch, 'utf8'))
        out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function stringToSign(amzDate: string, scope: string, canonicalHash: string): string {
  return `${SIGV4_ALGORITHM}\n${amzDate}\n${scope}\n${canonicalHash}`;
}

const keyCache = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 1024;

/** The day's signing key for a secret: four HMACs, kept since every request of the day reuses it. */
export function signingKey(secret: string, date: string, region: string, service: string): KeyObject {
  const cacheKey = `${date}\0${region}\0${service}\0${secret}`;
  const cached = keyCache.get(cacheKey);
  if (cached) return cached;
  // A KeyObject: createHmac prepares a Buffer key again on every call (secretKey in shared/hashing).
  const key = createSecretKey(hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request'));
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(cacheKey, key);
  return key;
}

export function hmac(key: string | Buffer | KeyObject, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function headerValue(request: SignedRequest, name: string): string | undefined {
  const values = request.headers[name];
  return values === undefined ? undefined : values.join(',');
}
