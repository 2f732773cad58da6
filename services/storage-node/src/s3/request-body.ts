import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { PassThrough, Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import {
  CHECKSUM_ALGORITHMS,
  algorithmOfHeader,
  checksumAlgorithmOf,
  checksumHeader,
  createChecksum,
  type Checksum,
  type ChecksumAlgorithm,
} from '../../../../shared/checksums';
import { sha256Hex } from '../../../../shared/hashing';
import { AwsChunkedDecoder } from './aws-chunked';
import { S3Error } from './errors';
import type { VerifiedRequest } from './sigv4';

/**
 * A request body as S3 sends it: raw, or aws-chunked (the decoder checks every chunk signature as
 * the bytes pass), with what the client declared about it: Content-MD5, one x-amz-checksum-* in
 * a header or a trailer, x-amz-content-sha256, x-amz-decoded-content-length. `bytes` streams the
 * object's own bytes through an MD5 (the ETag) and the declared checksum (or CRC64/NVME, which S3
 * computes for objects that come without one); `verify` checks them once the stream has ended.
 */
export class RequestBody {
  /** The object's bytes; a body that breaks its framing or signatures fails this stream. */
  readonly bytes: Readable;
  private readonly hasher: ObjectHasher;
  private readonly decoder: AwsChunkedDecoder | undefined;
  private readonly declared: DeclaredChecksum | undefined;
  private readonly expectedLength: number | undefined;
  private failure: unknown;

  constructor(
    private readonly req: IncomingMessage,
    private readonly auth: VerifiedRequest,
    options: {
      /** The checksum to compute when the client declared none (undefined: none). */
      fallback?: ChecksumAlgorithm;
      /** Whether a body must state its length (an object's must; a bucket configuration's need not). */
      lengthRequired?: boolean;
      /**
       * The x-amz-checksum-* headers are the object's, not the body's: CompleteMultipartUpload's,
       * which its caller checks against the object it makes.
       */
      checksumsOfObject?: boolean;
    } = {},
  ) {
    const fallback = options.fallback;
    const headers = req.headers;
    const declared = options.checksumsOfObject ? undefined : declaredChecksum(req);
    this.declared = declared;
    this.hasher = new ObjectHasher(declared?.algorithm ?? fallback);
    const decodedLength = numberHeader(headers['x-amz-decoded-content-length']);
    if (options.lengthRequired && headers['content-length'] === undefined && decodedLength === undefined)
      throw new S3Error('MissingContentLength', 'You must provide the Content-Length HTTP header.');
    const payload = auth.payload;
    const chunked = payload.kind === 'streaming-signed' || payload.kind === 'streaming-unsigned-trailer';
    const onError = (err: unknown): void => {
      this.failure ??= err;
    };
    if (chunked) {
      this.decoder = new AwsChunkedDecoder({
        chain: payload.kind === 'streaming-signed' ? auth.chain : undefined,
        trailer: payload.kind === 'streaming-unsigned-trailer' || payload.trailer,
        declaredTrailers: declared?.from === 'trailer' ? [checksumHeader(declared.algorithm)] : [],
        decodedLength,
      });
      this.bytes = pipeline(req, this.decoder, this.hasher, (err) => err && onError(err));
    } else {
      this.bytes = pipeline(req, this.hasher, (err) => err && onError(err));
    }
    this.expectedLength = chunked ? decodedLength : numberHeader(headers['content-length']);
  }

  /** The error the body's own stream failed with (framing, a chunk signature), if any. */
  get error(): unknown {
    return this.failure;
  }

  /**
   * Checks the whole body against what the client declared, once it has been read to its end
   * with `sha256` (hex) computed over it. Returns the ETag (MD5, hex) and the object's checksum.
   */
  verify(
    sha256: string,
    size: number,
  ): { md5: string; checksum: { algorithm: ChecksumAlgorithm; value: string } | undefined } {
    if (this.expectedLength !== undefined && size !== this.expectedLength)
      throw new S3Error(
        'IncompleteBody',
        'You did not provide the number of bytes specified by the Content-Length HTTP header.',
      );
    const payload = this.auth.payload;
    if (payload.kind === 'sha256' && payload.sha256 !== sha256)
      throw new S3Error(
        'XAmzContentSHA256Mismatch',
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );
    const md5 = this.hasher.md5();
    const contentMd5 = this.req.headers['content-md5'];
    if (contentMd5 !== undefined) {
      const given = Buffer.from(String(contentMd5), 'base64');
      if (given.length !== 16)
        throw new S3Error('InvalidDigest', 'The Content-MD5 you specified was invalid.');
      if (given.toString('hex') !== md5)
        throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.');
    }
    const value = this.hasher.checksum();
    const algorithm = this.hasher.algorithm;
    if (this.declared && algorithm) {
      const expected =
        this.declared.from === 'header'
          ? this.declared.value
          : this.decoder?.trailers.get(checksumHeader(this.declared.algorithm));
      if (expected === undefined)
        throw new S3Error('InvalidRequest', `The ${checksumHeader(algorithm)} trailer is missing.`);
      if (expected !== value)
        throw new S3Error(
          'BadDigest',
          `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`,
        );
    }
    return { md5, checksum: algorithm && value !== undefined ? { algorithm, value } : undefined };
  }
}

interface DeclaredChecksum {
  algorithm: ChecksumAlgorithm;
  from: 'header' | 'trailer';
  /** The base64 value, when it came in a header. */
  value?: string;
}

/** The one checksum a request declares, in a header or announced as a trailer (S3 takes one). */
function declaredChecksum(req: IncomingMessage): DeclaredChecksum | undefined {
  const found: DeclaredChecksum[] = [];
  for (const algorithm of CHECKSUM_ALGORITHMS) {
    const value = req.headers[checksumHeader(algorithm)];
    if (typeof value === 'string') found.push({ algorithm, from: 'header', value });
  }
  const trailer = req.headers['x-amz-trailer'];
  if (trailer !== undefined) {
    for (const name of String(trailer).split(',')) {
      const algorithm = algorithmOfHeader(name.trim());
      if (!algorithm)
        throw new S3Error('InvalidRequest', `Shoal takes only checksum trailers, not ${name.trim()}.`);
      found.push({ algorithm, from: 'trailer' });
    }
  }
  if (found.length > 1)
    throw new S3Error(
      'InvalidRequest',
      'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.',
    );
  const named = req.headers['x-amz-sdk-checksum-algorithm'] ?? req.headers['x-amz-checksum-algorithm'];
  if (named !== undefined) {
    const algorithm = checksumAlgorithmOf(String(named));
    if (!algorithm)
      throw new S3Error('InvalidRequest', `Checksum algorithm ${String(named)} is not supported.`);
    if (found[0] && found[0].algorithm !== algorithm)
      throw new S3Error('InvalidRequest', 'The checksum algorithm named does not match the checksum sent.');
    if (!found[0]) return undefined; // named but not sent: computed and stored, nothing to check
  }
  return found[0];
}

/** Passes bytes on while computing their MD5 and one S3 checksum. */
export class ObjectHasher extends Transform {
  private readonly hash: Hash = createHash('md5');
  private readonly sum: Checksum | undefined;
  private md5Hex: string | undefined;
  private sumValue: string | undefined;

  constructor(readonly algorithm: ChecksumAlgorithm | undefined) {
    super();
    this.sum = algorithm ? createChecksum(algorithm) : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.sum?.update(chunk);
    cb(null, chunk);
  }

  md5(): string {
    this.md5Hex ??= this.hash.digest('hex');
    return this.md5Hex;
  }

  checksum(): string | undefined {
    if (this.sum && this.sumValue === undefined) this.sumValue = this.sum.digest().toString('base64');
    return this.sumValue;
  }
}

/** A short body read whole (a bucket's configuration, a DeleteObjects list), checked as its signature says. */
export async function readSmallBody(
  req: IncomingMessage,
  auth: VerifiedRequest,
  limit: number,
  options: { checksumsOfObject?: boolean } = {},
): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new S3Error('MaxMessageLengthExceeded', 'Your request was too big');
  const body = new RequestBody(req, auth, options);
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new PassThrough();
  body.bytes.pipe(sink);
  body.bytes.on('error', (err) => sink.destroy(err));
  try {
    for await (const chunk of sink as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new S3Error('MaxMessageLengthExceeded', 'Your request was too big');
      chunks.push(chunk);
    }
  } catch (err) {
    throw body.error instanceof S3Error ? body.error : err;
  }
  const bytes = Buffer.concat(chunks);
  body.verify(sha256Hex(bytes), bytes.length);
  return bytes;
}

function numberHeader(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new S3Error('InvalidArgument', 'A length header is sent twice');
  if (!/^\d{1,16}$/.test(value)) throw new S3Error('InvalidArgument', 'A length header is not a number');
  return Number(value);
}
