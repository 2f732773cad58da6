import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, Writable, finished, type TransformCallback } from 'node:stream';

/** Passes bytes through unchanged while computing their sha256 and counting them. */
export class HashingCounter extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;
  private digestHex: string | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.digestHex = this.hash.digest('hex');
    cb();
  }

  get bytes(): number {
    return this.count;
  }

  /** The sha256 of everything that passed, available once the stream has flushed. */
  get sha256(): string {
    if (this.digestHex === undefined) throw new Error('sha256 read before the stream ended');
    return this.digestHex;
  }
}

/** Fails the stream with `onExceeded()` as soon as more than `maxBytes` have passed. */
export class ByteLimiter extends Transform {
  private count = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly onExceeded: () => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.maxBytes) {
      cb(this.onExceeded());
      return;
    }
    cb(null, chunk);
  }
}

/**
 * A token bucket (holding one second of tokens) shared by every stream it throttles, so the
 * limit holds for a node's background work as a whole, however many copies run at once.
 */
export class RateLimiter {
  private tokens: number;
  private last = Date.now();

  constructor(readonly bytesPerSecond: number) {
    this.tokens = bytesPerSecond;
  }

  /** Takes `bytes` tokens and returns how long to wait before using them (0 when available now). */
  take(bytes: number): number {
    const now = Date.now();
    this.tokens = Math.min(
      this.bytesPerSecond,
      this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond,
    );
    this.last = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.bytesPerSecond) * 1000);
  }
}

/** Passes bytes through at the pace a RateLimiter allows (background work must not starve clients). */
export class Throttle extends Transform {
  private readonly limiter: RateLimiter;

  constructor(limit: RateLimiter | number) {
    super();
    this.limiter = typeof limit === 'number' ? new RateLimiter(limit) : limit;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const waitMs = this.limiter.take(chunk.length);
    if (waitMs === 0) cb(null, chunk);
    else setTimeout(() => cb(null, chunk), waitMs);
  }
}

export class CorruptCopyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptCopyError';
  }
}

/**
 * Lets go of a stream that nobody will read or write any more. Its destroy may still report an
 * error: undici turns destroying a response body that has not ended into a RequestAbortedError.
 * An 'error' event that nobody listens to ends the process, and this one is expected, so it is
 * heard here and dropped.
 */
export function discard(stream: Readable | Writable | undefined): void {
  if (!stream) return;
  stream.on('error', () => undefined);
  stream.destroy();
}

/**
 * Reads `source` whole when it ends within `limit` bytes, and answers its bytes. A longer stream
 * is put back as it was (the bytes read so far unshifted, the stream paused) and the answer is
 * undefined: whoever reads it next gets it from its first byte, as if it had not been touched.
 *
 * A small upload is then one Buffer, checksummed in one call and sent with a Content-Length,
 * instead of a chain of stream stages that cost more CPU than the bytes they carry.
 */
export function readIfSmall(source: Readable, limit: number): Promise<Buffer | undefined> {
  if (source.destroyed || source.readableEnded) {
    return Promise.reject(source.errored ?? new Error('the stream was already ended or destroyed'));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let held = 0;
    const whole = (): Buffer => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, held));
    // The 'error' listener stays for the stream's life (a no-op once settled): whoever takes the
    // stream next attaches its own only after this promise resumes it, and an error emitted in
    // between (a destroy on the next tick) with no listener at all would end the process.
    const stop = (): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      held += chunk.length;
      if (held <= limit) return;
      // Paused inside its own 'data' event, the stream emits nothing more until it is resumed.
      source.pause();
      stop();
      source.unshift(whole());
      resolve(undefined);
    };
    const onEnd = (): void => {
      stop();
      resolve(whole());
    };
    const onError = (err: Error): void => {
      stop();
      reject(err);
    };
    const onClose = (): void => {
      stop();
      reject(new Error('the stream closed before its end'));
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.on('error', onError);
    source.once('close', onClose);
  });
}

/** Bytes of a file coming from one place (a node id in `from`, for logs). */
export interface ByteSource {
  from: string;
  body: Readable;
}

/**
 * One body read from a series of sources of the same bytes, `start` to `end` (inclusive): when
 * the source in hand fails or ends before `end`, the bytes from the one reached onwards come
 * from the next source `openRest` finds, so the reader still receives one whole body. Only when
 * no source is left does the body fail (and the response is cut off). Sources hand on only bytes
 * they have verified (a copy checks each block before passing any of its bytes), so a source that
 * stops at a damaged block is replaced like any other: the splice joins verified bytes only.
 *
 * Who stops the read matters. A source that fails is replaced; a reader that goes away (this
 * stream is destroyed: the client hung up) ends the read for good: nothing more is fetched,
 * and the source in hand is released at once, even one that was never read (an open file, a
 * peer's response holding a pooled connection). Sources are released with discard().
 */
export class ResumingReadable extends Readable {
  private position: number;
  private readonly end: number;
  private source: ByteSource | undefined;

  constructor(
    first: ByteSource,
    range: { start: number; end: number },
    private readonly openRest: (from: number) => Promise<ByteSource | undefined>,
    private readonly onFailover: (failed: ByteSource, at: number, err: Error) => void,
  ) {
    super();
    this.position = range.start;
    this.end = range.end;
    this.follow(first);
  }

  override _read(): void {
    this.source?.body.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const source = this.source;
    this.source = undefined;
    discard(source?.body);
    callback(err);
  }

  private follow(source: ByteSource): void {
    this.source = source;
    const onData = (chunk: Buffer): void => {
      this.position += chunk.length;
      if (!this.push(chunk)) source.body.pause();
    };
    source.body.on('data', onData);
    finished(source.body, { writable: false }, (err) => {
      source.body.off('data', onData);
      this.sourceStopped(source, err ?? undefined);
    });
  }

  private sourceStopped(source: ByteSource, err: Error | undefined): void {
    // Released by _destroy: the reader is gone and this is the echo of that.
    if (this.source !== source) return;
    this.source = undefined;
    discard(source.body);
    // Every byte arrived: whatever the source did after its last one changes nothing.
    if (this.position > this.end) {
      this.push(null);
      return;
    }
    this.onFailover(source, this.position, err ?? new Error(`the copy ended early at byte ${this.position}`));
    const from = this.position;
    this.openRest(from).then(
      (next) => {
        if (this.destroyed) discard(next?.body);
        else if (next) this.follow(next);
        else this.destroy(new Error(`no copy could send the bytes from ${from} on`));
      },
      (error: unknown) => this.destroy(error as Error),
    );
  }
}

/** A writable that discards everything: the end of a pipeline that only hashes. */
export class Sink extends Writable {
  override _write(_chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    cb();
  }
}

export interface FanOutResult {
  /** Indexes of sinks that received every byte and ended cleanly. */
  completed: number[];
  /** Sinks that failed part-way, with the reason. */
  failed: Array<{ index: number; error: Error }>;
}

export interface FanOutOptions {
  /** A sink that takes nothing for this long while `minHealthy` others keep up is dropped (0: never). */
  stallMs?: number;
  /**
   * The error the copy fails with once fewer than `minHealthy` sinks remain, from the last sink's
   * error (by default that error itself).
   */
  tooFew?: (cause: Error) => Error;
}

/**
 * Copies one source to several sinks at once, at the pace of the slowest healthy sink
 * (backpressure: the source is paused whenever any sink's buffer is full).
 *
 * A sink that errors is dropped and the copy carries on with the others, as long as at least
 * `minHealthy` remain; below that the whole copy fails, and the source and the remaining sinks
 * are destroyed with the error it fails with. With that error, not a bare destroy (which reads as
 * "premature close" upstream), a pipeline feeding the source passes on why the copy stopped: an
 * upload's multipart stream reports it to the client. The promise resolves once every surviving
 * sink has finished.
 */
export function fanOut(
  source: Readable,
  sinks: Writable[],
  minHealthy: number,
  { stallMs = 0, tooFew = (cause) => cause }: FanOutOptions = {},
): Promise<FanOutResult> {
  return new Promise((resolve, reject) => {
    const healthy = new Set<number>(sinks.map((_s, i) => i));
    const failed: FanOutResult['failed'] = [];
    const finished = new Set<number>();
    const waitingForDrain = new Set<number>();
    let sourceEnded = false;
    let settled = false;
    let stallTimer: NodeJS.Timeout | undefined;

    /**
     * A sink that takes nothing for `stallMs` (a peer that accepted the connection and hangs)
     * while at least `minHealthy` others keep up is dropped, so one stuck replica cannot hold
     * the whole copy hostage. Stalled sinks are the ones not drained (while streaming) or not
     * finished (after the source ended).
     */
    const watchForStall = (): void => {
      if (stallMs <= 0 || stallTimer || settled) return;
      stallTimer = setTimeout(() => {
        stallTimer = undefined;
        if (settled) return;
        const stuck = [...healthy].filter((i) => (sourceEnded ? !finished.has(i) : waitingForDrain.has(i)));
        if (stuck.length > 0 && healthy.size - stuck.length >= minHealthy) {
          for (const i of stuck) sinks[i]?.destroy(new Error(`replica took no data for ${stallMs} ms`));
        }
      }, stallMs);
    };
    const clearStall = (): void => {
      if (stallTimer) clearTimeout(stallTimer);
      stallTimer = undefined;
    };

    const settle = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearStall();
      source.off('data', onData);
      source.off('end', onEnd);
      // onSourceError stays: a source destroyed below may still report an error, and one that
      // nobody hears would end the process.
      if (error) {
        for (const i of healthy) sinks[i]?.destroy(error);
        source.destroy(error);
        reject(error);
      } else {
        resolve({ completed: [...finished].sort((a, b) => a - b), failed });
      }
    };

    const maybeDone = (): void => {
      if (!sourceEnded) return;
      if ([...healthy].every((i) => finished.has(i))) settle();
      else watchForStall();
    };

    const dropSink = (index: number, error: Error): void => {
      if (!healthy.has(index) || settled) return;
      healthy.delete(index);
      waitingForDrain.delete(index);
      failed.push({ index, error });
      if (healthy.size < minHealthy) {
        settle(tooFew(error));
        return;
      }
      if (waitingForDrain.size === 0 && source.isPaused()) source.resume();
      maybeDone();
    };

    function onData(chunk: Buffer): void {
      for (const i of healthy) {
        const sink = sinks[i];
        if (sink && !sink.write(chunk)) {
          waitingForDrain.add(i);
        }
      }
      if (waitingForDrain.size > 0) {
        source.pause();
        watchForStall();
      }
    }

    function onEnd(): void {
      sourceEnded = true;
      for (const i of healthy) sinks[i]?.end();
      maybeDone();
    }

    function onSourceError(error: Error): void {
      settle(error);
    }

    sinks.forEach((sink, i) => {
      sink.on('drain', () => {
        waitingForDrain.delete(i);
        if (waitingForDrain.size === 0 && !settled && !sourceEnded) {
          clearStall();
          source.resume();
        }
      });
      sink.on('error', (error: Error) => dropSink(i, error));
      sink.on('finish', () => {
        if (!healthy.has(i)) return;
        finished.add(i);
        maybeDone();
      });
      sink.on('close', () => {
        if (!finished.has(i) && healthy.has(i)) dropSink(i, new Error('sink closed before finishing'));
      });
    });

    if (healthy.size < minHealthy) {
      settle(tooFew(new Error(`only ${healthy.size} sinks for a quorum of ${minHealthy}`)));
      return;
    }
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onSourceError);
  });
}
