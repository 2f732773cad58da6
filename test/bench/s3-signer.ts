import { createHash, createHmac } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * SigV4 for the bench's S3 requests, synchronous and lean: the S3 workloads sign every PUT in the
 * process that also drives the 16 clients, and the AWS SDK's signer (@smithy/signature-v4) costs
 * about 70 µs a request there, several times what this one does, all of it client CPU that would
 * cap the rate measured. It signs what the bench sends and nothing else: the body is never signed
 * (`x-amz-content-sha256: UNSIGNED-PAYLOAD`), the signed headers are host, x-amz-content-sha256
 * and x-amz-date, and presigned URLs sign the host alone. selfCheck() proves at start that its
 * header signatures are the SDK's, byte for byte, and that it presigns AWS's published example.
 */

const ALGORITHM = 'AWS4-HMAC-SHA256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const SERVICE = 's3';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** RFC 3986 escaping as S3 clients do it: encodeURIComponent, and !'()* too. */
function uriEscape(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** A path-style object path, `/<bucket>/<key>`, each segment of the key escaped once. */
export function objectPath(bucket: string, key: string): string {
  return `/${uriEscape(bucket)}/${key.split('/').map(uriEscape).join('/')}`;
}

function amzDateOf(now: Date): string {
  return now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class S3Signer {
  /** The signing key of the day it was made for (it changes at midnight UTC). */
  private signingKey: { day: string; key: Buffer } | undefined;

  constructor(
    private readonly credentials: S3Credentials,
    private readonly region = 'us-east-1',
  ) {}

  /**
   * The headers that sign `method path` (path already escaped, no query) sent to `host`
   * (`127.0.0.1:port`), with an unsigned body.
   */
  headers(method: string, host: string, path: string, now = new Date()): Record<string, string> {
    const amzDate = amzDateOf(now);
    const signedHeaders = 'host;x-amz-content-sha256;x-amz-date';
    const canonical = [
      method,
      path,
      '',
      `host:${host}\nx-amz-content-sha256:${UNSIGNED_PAYLOAD}\nx-amz-date:${amzDate}\n`,
      signedHeaders,
      UNSIGNED_PAYLOAD,
    ].join('\n');
    const { scope, signature } = this.sign(amzDate, canonical);
    return {
      'x-amz-content-sha256': UNSIGNED_PAYLOAD,
      'x-amz-date': amzDate,
      authorization: `${ALGORITHM} Credential=${this.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    };
  }

  /** `path?X-Amz-...`: a URL path anyone can GET from `host` for `expiresSeconds` (at most 604800). */
  presignedPath(
    method: string,
    host: string,
    path: string,
    expiresSeconds: number,
    now = new Date(),
  ): string {
    const amzDate = amzDateOf(now);
    const params: Array<[string, string]> = [
      ['X-Amz-Algorithm', ALGORITHM],
      ['X-Amz-Credential', `${this.credentials.accessKeyId}/${this.scopeOf(amzDate)}`],
      ['X-Amz-Date', amzDate],
      ['X-Amz-Expires', String(expiresSeconds)],
      ['X-Amz-SignedHeaders', 'host'],
    ];
    // Already in the canonical (byte) order of their names.
    const query = params.map(([k, v]) => `${uriEscape(k)}=${uriEscape(v)}`).join('&');
    const canonical = [method, path, query, `host:${host}\n`, 'host', UNSIGNED_PAYLOAD].join('\n');
    const { signature } = this.sign(amzDate, canonical);
    return `${path}?${query}&X-Amz-Signature=${signature}`;
  }

  private scopeOf(amzDate: string): string {
    return `${amzDate.slice(0, 8)}/${this.region}/${SERVICE}/aws4_request`;
  }

  private sign(amzDate: string, canonicalRequest: string): { scope: string; signature: string } {
    const scope = this.scopeOf(amzDate);
    const toSign = `${ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
    const signature = createHmac('sha256', this.keyOf(amzDate.slice(0, 8)))
      .update(toSign)
      .digest('hex');
    return { scope, signature };
  }

  private keyOf(day: string): Buffer {
    if (this.signingKey?.day !== day) {
      let key = createHmac('sha256', `AWS4${this.credentials.secretAccessKey}`).update(day).digest();
      for (const part of [this.region, SERVICE, 'aws4_request'])
        key = createHmac('sha256', key).update(part).digest();
      this.signingKey = { day, key };
    }
    return this.signingKey.key;
  }

  /**
   * Throws unless a signed PUT of `path` to `host` comes out exactly as the AWS SDK's signer makes
   * it, and a presigned GET as AWS's own example (S3 API reference, "Authenticating Requests:
   * Using Query Parameters"; test/unit/s3-sigv4.test.ts checks the node against it too).
   */
  async selfCheck(host: string, path: string): Promise<void> {
    const sdk = new SignatureV4({
      credentials: this.credentials,
      region: this.region,
      service: SERVICE,
      sha256: Hash.bind(null, 'sha256'),
      uriEscapePath: false,
      applyChecksum: false,
    });
    const now = new Date();
    const [hostname, port] = host.split(':');
    const put = await sdk.sign(
      {
        method: 'PUT',
        protocol: 'http:',
        hostname: hostname!,
        port: Number(port),
        path,
        query: {},
        headers: { host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD },
      },
      { signingDate: now },
    );
    const ours = this.headers('PUT', host, path, now).authorization;
    if (put.headers['authorization'] !== ours)
      throw new Error(`the bench's SigV4 header differs from the SDK's: ${ours}`);
    const example = new S3Signer({
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    });
    const url = example.presignedPath(
      'GET',
      'examplebucket.s3.amazonaws.com',
      '/test.txt',
      86_400,
      new Date(Date.UTC(2013, 4, 24)),
    );
    if (!url.endsWith('&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404'))
      throw new Error(`the bench's presigned URL differs from AWS's example: ${url}`);
  }
}
