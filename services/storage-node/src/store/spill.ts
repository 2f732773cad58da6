import { createWriteStream, type WriteStream } from 'node:fs';
import { Writable } from 'node:stream';

/**
 * Where a received copy goes: memory while it stays small, a file once it grows past `limit`.
 * Small copies are then stored in SQLite with their row (one transaction, one shared flush, no
 * file at all); large ones stream to a temp file that is fsync'd when it closes (`flush: true`),
 * with backpressure from the disk all the way back to the sender.
 */
export class SpillingSink extends Writable {
  private chunks: Buffer[] = [];
  private held = 0;
  private file: WriteStream | undefined;

  constructor(
    private readonly path: string,
    private readonly limit: number,
  ) {
    super();
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
    if (this.file.write(chunk)) cb();
    else this.file.once('drain', () => cb());
  }

  override _final(cb: (error?: Error | null) => void): void {
    if (!this.file) {
      cb();
      return;
    }
    // 'close' comes after the fsync and the close: only then are the bytes on disk.
    this.file.once('close', () => cb());
    this.file.end();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    // A finished sink is destroyed too (autoDestroy): its bytes are kept for `inline`.
    if (!this.writableFinished) this.chunks = [];
    if (this.file && !this.file.destroyed) this.file.destroy();
    cb(err);
  }
}
