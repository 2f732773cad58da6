import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { S3Error } from './errors';
import { constantTimeEqual, sha256Hex } from '../../../../shared/hashing';
import { EMPTY_SHA256, hmac, type SigningChain } from './sigv4';

/**
 * Decodes an `aws-chunked` body (Content-Encoding: aws-chunked) into the object's bytes, as they
 * stream: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n` ... a zero-size chunk, then for the
 * `...-TRAILER` forms the trailer lines (checksums, and `x-amz-trailer-signature` when signed)
 * and an empty line.
 *
 * A signed chunk's signature covers its data and the signature before it, from the request's own
 * signature on, so chunks cannot be changed, dropped, reordered or added without the chain
 * breaking. A chunk's bytes pass on before its signature is checked (the check needs all of
 * them, and a chunk may be many MiB); a bad signature then fails the stream, and the upload it
 * feeds is never committed. Nothing here is held beyond one framing line.
 */

/** A chunk-size or trailer line longer than this is not a line of an aws-chunked body. */
const MAX_LINE_BYTES = 4096;

const TRAILER_SIGNATURE = 'x-amz-trailer-signature';

export interface AwsChunkedOptions {
  /** What signs the chunks; undefined for STREAMING-UNSIGNED-PAYLOAD-TRAILER. */
  chain: SigningChain | undefined;
  /** Whether the body ends in trailers (the `...-TRAILER` forms). */
  trailer: boolean;
  /** The trailer names announced in `x-amz-trailer`: the only ones accepted, all of them required. */
  declaredTrailers: readonly string[];
  /** `x-amz-decoded-content-length`: the object's size, when the client said it. */
  decodedLength: number | undefined;
}

type State = 'size' | 'data' | 'data-end' | 'after-last' | 'trailers' | 'done';

export class AwsChunkedDecoder extends Transform {
  /** The trailers received (lower-case names), once the stream has ended. */
  readonly trailers = new Map<string, string>();

  private state: State = 'size';
  private line: Buffer[] = [];
  private lineBytes = 0;
  private remaining = 0;
  private chunkSignature = '';
  private chunkHash: Hash | undefined;
  private previousSignature: string;
  private decoded = 0;
  private readonly trailerLines: string[] = [];

  constructor(private readonly options: AwsChunkedOptions) {
    super();
    this.previousSignature = options.chain?.seedSignature ?? '';
  }

  /** Bytes of object data decoded so far. */
  get decodedBytes(): number {
    return this.decoded;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      // A body may end right after its last chunk line, or after its trailers, without the
      // final empty line: what matters is that nothing announced is missing.
      if (this.state === 'after-last' && this.line.length === 0) this.finishLast();
      else if (this.state === 'trailers' && this.lineBytes === 0) this.finishTrailers();
      if (this.state !== 'done') throw incomplete('the body ended before its last chunk');
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      switch (this.state) {
        case 'data': {
          const take = Math.min(this.remaining, chunk.length - at);
          const piece = chunk.subarray(at, at + take);
          this.chunkHash?.update(piece);
          this.push(piece);
          this.remaining -= take;
          at += take;
          if (this.remaining === 0) this.state = 'data-end';
          break;
        }
        case 'done':
          throw malformed('there are bytes after the end of the body');
        default: {
          const newline = chunk.indexOf(0x0a, at);
          const end = newline < 0 ? chunk.length : newline + 1;
          this.lineBytes += end - at;
          if (this.lineBytes > MAX_LINE_BYTES) throw malformed('a framing line is too long');
          this.line.push(chunk.subarray(at, end));
          at = end;
          if (newline >= 0) this.onLine(this.takeLine());
        }
      }
    }
  }

  /** The line collected so far, without its line ending (which must be CRLF). */
  private takeLine(): string {
    const text = Buffer.concat(this.line).toString('latin1');
    this.line = [];
    this.lineBytes = 0;
    if (!text.endsWith('\r\n')) throw malformed('a framing line does not end in CRLF');
    return text.slice(0, -2);
  }

  private onLine(text: string): void {
    switch (this.state) {
      case 'size':
        return this.onSizeLine(text);
      case 'data-end':
        if (text !== '') throw malformed('a chunk is longer than its size says');
        this.verifyChunk();
        this.state = 'size';
        return;
      case 'after-last':
        if (text !== '') throw malformed('bytes follow the last chunk of a body without trailers');
        return this.finishLast();
      case 'trailers':
        if (text === '') return this.finishTrailers();
        this.trailerLines.push(text);
        return;
      default:
        throw malformed(`unexpected line in state ${this.state}`);
    }
  }

  private onSizeLine(text: string): void {
    const signed = this.options.chain !== undefined;
    const m = signed
      ? /^([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})$/.exec(text)
      : /^([0-9a-fA-F]{1,16})(;.*)?$/.exec(text);
    if (!m) throw signed ? signatureMismatch() : malformed('a chunk size line does not parse');
    const size = parseInt(m[1]!, 16);
    const limit = this.options.decodedLength;
    if (limit !== undefined && this.decoded + size > limit)
      throw malformed('the chunks hold more bytes than x-amz-decoded-content-length');
    this.decoded += size;
    if (signed) {
      this.chunkSignature = m[2]!;
      this.chunkHash = createHash('sha256');
    }
    if (size > 0) {
      this.remaining = size;
      this.state = 'data';
      return;
    }
    if (signed) this.verifyChunk();
    this.state = this.options.trailer ? 'trailers' : 'after-last';
  }

  /** Checks the signature of the chunk just read; it then signs the next one. */
  private verifyChunk(): void {
    const chain = this.options.chain;
    if (!chain) return;
    const dataHash = this.chunkHash ? this.chunkHash.digest('hex') : EMPTY_SHA256;
    this.chunkHash = undefined;
    const toSign = [
      'AWS4-HMAC-SHA256-PAYLOAD',
      chain.amzDate,
      chain.scope,
      this.previousSignature,
      EMPTY_SHA256,
      dataHash,
    ].join('\n');
    const expected = hmac(chain.key, toSign).toString('hex');
    if (!constantTimeEqual(expected, this.chunkSignature)) throw signatureMismatch();
    this.previousSignature = expected;
  }

  private finishLast(): void {
    this.checkLength();
    this.state = 'done';
  }

  private finishTrailers(): void {
    const chain = this.options.chain;
    let signature: string | undefined;
    const signedPart: string[] = [];
    for (const line of this.trailerLines) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw malformed('a trailer line is not name:value');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === TRAILER_SIGNATURE) {
        if (!chain || signature !== undefined) throw malformed('an unexpected trailer signature');
        signature = value;
        continue;
      }
      if (!this.options.declaredTrailers.includes(name))
        throw new S3Error('InvalidRequest', `The trailer ${name} was not announced in x-amz-trailer`);
      if (this.trailers.has(name)) throw malformed(`the trailer ${name} is sent twice`);
      this.trailers.set(name, value);
      signedPart.push(`${name}:${value}\n`);
    }
    for (const name of this.options.declaredTrailers)
      if (!this.trailers.has(name)) throw incomplete(`the announced trailer ${name} is missing`);
    if (chain) {
      if (signature === undefined) throw signatureMismatch();
      const toSign = [
        'AWS4-HMAC-SHA256-TRAILER',
        chain.amzDate,
        chain.scope,
        this.previousSignature,
        sha256Hex(signedPart.join('')),
      ].join('\n');
      if (!constantTimeEqual(hmac(chain.key, toSign).toString('hex'), signature)) throw signatureMismatch();
    }
    this.checkLength();
    this.state = 'done';
  }

  private checkLength(): void {
    const limit = this.options.decodedLength;
    if (limit !== undefined && this.decoded !== limit)
      throw incomplete(`the chunks hold ${this.decoded} bytes, x-amz-decoded-content-length says ${limit}`);
  }
}

function malformed(why: string): S3Error {
  return new S3Error('InvalidRequest', `Malformed aws-chunked body: ${why}`);
}

function incomplete(why: string): S3Error {
  return new S3Error('IncompleteBody', `You did not provide the number of bytes specified: ${why}`);
}

function signatureMismatch(): S3Error {
  return new S3Error(
    'SignatureDoesNotMatch',
    'The chunk signatures of the body do not match the request signature chain.',
  );
}
