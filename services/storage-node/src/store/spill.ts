import { createWriteStream, fdatasync, type WriteStream } from 'node:fs';
import { Writable } from 'node:stream';

/**
 * Where a received copy goes: memory while it stays small, a file once it grows past `limit`.
 * Small copies are then stored in SQLite with their row (one transaction, one shared flush, no
 * file at all); large ones stream to a temp file that is fsync'd when it closes (`flush: true`),
 * with backpressure from the disk all the way back to the sender.
 */
/** A file being received is flushed to disk, in the background, every this many bytes. */
const EARLY_FLUSH_BYTES = 16 * 1024 * 1024;

export interface SpillOptions {
  /** Bytes between early flushes of a file being received. */
  flushEveryBytes?: number;
  datasync?: Datasync;
}

type Datasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => void;

export class SpillingSink extends Writable {
  private chunks: Buffer[] = [];
  private held = 0;
  private file: WriteStream | undefined;
  /** Bytes handed to the file since the last early flush started. */
  private unflushed = 0;
  private flushing = false;
  private afterFlush: Array<() => void> = [];

  private readonly flushEveryBytes: number;
  private readonly datasync: Datasync;

  constructor(
    private readonly path: string,
    private readonly limit: number,
    /** Fault injection for tests: what flushes the file early (fs.fdatasync by default). */
    { flushEveryBytes = EARLY_FLUSH_BYTES, datasync = fdatasync }: SpillOptions = {},
  ) {
    super();
    this.flushEveryBytes = flushEveryBytes;
    this.datasync = datasync;
  }

  /** The bytes, when they stayed within the limit (after 'finish'); undefined when they went to the file. */
  get inline(): Buffer | undefined {
    return this.file ? undefined : Buffer.concat(this.chunks);
  }

  /** Whether the bytes went to the file at `path`. */
  get spilled(): boolean {
    return this.file !== undefined;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    if (!this.file && this.held + chunk.length <= this.limit) {
      this.chunks.push(chunk);
      this.held += chunk.length;
      cb();
      return;
    }
    if (!this.file) {
      this.file = createWriteStream(this.path, { flush: true });
      this.file.on('error', (err) => this.destroy(err));
      for (const held of this.chunks) this.file.write(held);
      this.chunks = [];
      this.held = 0;
    }
    this.unflushed += chunk.length;
    if (this.unflushed >= this.flushEveryBytes) this.flushEarly();
    if (this.file.write(chunk)) cb();
    else this.file.once('drain', () => cb());
  }

  /**
   * Starts writing what the file has so far to disk while more keeps arriving, so the fsync at the
   * close (the one the copy's durability rests on) finds little left to do instead of a whole large
   * file: the disk works during the transfer rather than after it. One at a time. An error fails
   * the copy here: Linux reports a write-back error once per open file, so the final fsync would
   * not see it again.
   */
  private flushEarly(): void {
    // WriteStream has its fd once open (null before); @types/node leaves it out.
    const fd = (this.file as (WriteStream & { fd?: number | null }) | undefined)?.fd;
    if (this.flushing || typeof fd !== 'number') return;
    this.flushing = true;
    this.unflushed = 0;
    this.datasync(fd, (err) => {
      this.flushing = false;
      if (err) this.destroy(err);
      // Closing waits for this flush: the fd must stay the file's while a sync of it is queued.
      for (const next of this.afterFlush.splice(0)) next();
    });
  }

  override _final(cb: (error?: Error | null) => void): void {
    const file = this.file;
    if (!file) {
      cb();
      return;
    }
    const close = (): void => {
      if (this.destroyed) return;
      // 'close' comes after the fsync and the close: only then are the bytes on disk.
      file.once('close', () => cb());
      file.end();
    };
    if (this.flushing) this.afterFlush.push(close);
    else close();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    // A finished sink is destroyed too (autoDestroy): its bytes are kept for `inline`.
    if (!this.writableFinished) this.chunks = [];
    const file = this.file;
    if (file && !file.destroyed) {
      if (this.flushing) this.afterFlush.push(() => file.destroy());
      else file.destroy();
    }
    cb(err);
  }
}
