import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  BLOCK_SIZE,
  CHECKSUM_BYTES,
  blockLength,
  blockMatches,
  blocksCovering,
} from '../../../../shared/blocks';
import { CorruptCopyError } from '../../../../shared/streams';
import { markLast, takeBlock } from './block-pool';

/** A block of a copy did not match its checksum. */
export class CorruptBlockError extends CorruptCopyError {
  constructor(readonly block: number) {
    super(`block ${block} of the copy does not match its checksum`);
    this.name = 'CorruptBlockError';
  }
}

/**
 * Opens bytes start..end of a copy on disk for reading, verifying every block against its
 * checksum before any of its bytes is handed on. The first block is read and verified here,
 * before the stream exists, so a copy that is missing (ENOENT), unreadable (EIO, EISDIR, ...) or
 * damaged at its start is refused before a reader has anything and the caller can try another
 * copy; a fault in a later block fails the stream at that block's boundary, after only verified
 * bytes. Reads whole blocks into buffers from the block pool, which come back only once a
 * response has written them (store/block-pool.ts): one block read at a time, a block ahead of
 * the reader for up to READ_AHEAD_STREAMS downloads.
 */
export async function openVerified(
  path: string,
  size: number,
  checksums: Buffer,
  start: number,
  end: number,
  /** Whole blocks, each behind its checksum (shared/blocks.ts framing), for a peer to check again. */
  framed = false,
): Promise<Readable> {
  const { first, last } = blocksCovering(start, end);
  const fh = await open(path, 'r');
  let firstBlock: Buffer;
  try {
    firstBlock = await readBlock(fh, first, size, checksums);
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  return new VerifiedBlocks(fh, size, checksums, start, end, first, last, firstBlock, framed);
}

async function readBlock(fh: FileHandle, index: number, size: number, checksums: Buffer): Promise<Buffer> {
  const length = blockLength(index, size);
  const block = takeBlock().subarray(0, length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(block, filled, length - filled, index * BLOCK_SIZE + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  if (filled !== length || !blockMatches(checksums, index, block)) throw new CorruptBlockError(index);
  return block;
}

/**
 * Verified blocks are handed on in pieces of this size (views, not copies). 64 KiB pieces cost
 * 16 socket writes per block; 256 KiB took a large download from 1.1-1.3 to 0.8-0.9 ms of CPU per
 * MiB. The block stays in memory either way until its last piece is written.
 */
const PIECE_BYTES = 256 * 1024;

/** Downloads that may read a block ahead at once (see VerifiedBlocks.readAhead), and how many do. */
const READ_AHEAD_STREAMS = 4;
let readAheadStreams = 0;

class VerifiedBlocks extends Readable {
  private next: number;
  private reading = false;
  /** This download is one of the READ_AHEAD_STREAMS that read ahead. */
  private aheadLane = false;
  /** Why a block read failed, raised once the blocks before it have been handed on. */
  private failure: Error | undefined;
  /** Verified bytes not handed on yet. */
  private readonly queue: Buffer[] = [];

  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
    private readonly checksums: Buffer,
    private readonly start: number,
    private readonly end: number,
    first: number,
    private readonly last: number,
    firstBlock: Buffer,
    private readonly framed: boolean,
  ) {
    super();
    this.next = first + 1;
    this.enqueue(first, firstBlock);
  }

  override _read(): void {
    while (this.queue.length > 0) {
      if (!this.push(this.queue.shift())) break;
    }
    if (this.queue.length === 0 && this.failure) {
      this.destroy(this.failure);
      return;
    }
    if (this.queue.length === 0 && !this.reading && this.next > this.last) {
      this.push(null);
      return;
    }
    this.readAhead();
  }

  /**
   * Reads the next block while the one before is still being sent, so that the disk (a thread of
   * the pool) and the socket work at once: at most one block read and one waiting in the queue.
   * Reading ahead holds a block more per download, so only READ_AHEAD_STREAMS downloads at a time
   * do it (a crowd of stalled clients must not hold a block more each); the others read the next
   * block once the queue is empty.
   */
  private readAhead(): void {
    if (this.reading || this.failure || this.next > this.last) return;
    if (this.queue.length >= BLOCK_SIZE / PIECE_BYTES) return;
    if (this.queue.length > 0 && !this.aheadLane) {
      if (readAheadStreams >= READ_AHEAD_STREAMS) return;
      this.aheadLane = true;
      readAheadStreams++;
    }
    this.reading = true;
    const index = this.next++;
    readBlock(this.fh, index, this.size, this.checksums).then(
      (block) => {
        this.reading = false;
        if (this.destroyed) return;
        this.enqueue(index, block);
        this._read();
      },
      (err: unknown) => {
        this.reading = false;
        // Fails the stream at the block's boundary: the verified bytes before it still go out.
        this.failure = err as Error;
        if (this.queue.length === 0) this.destroy(this.failure);
      },
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.queue.length = 0;
    if (this.aheadLane) readAheadStreams--;
    this.aheadLane = false;
    this.fh.close().then(
      () => callback(err),
      () => callback(err),
    );
  }

  /** Queues the part of block `index` that lies in start..end (framed: all of it, behind its checksum). */
  private enqueue(index: number, block: Buffer): void {
    let part = block;
    if (this.framed) {
      this.queue.push(this.checksums.subarray(index * CHECKSUM_BYTES, (index + 1) * CHECKSUM_BYTES));
    } else {
      const blockStart = index * BLOCK_SIZE;
      const from = Math.max(this.start, blockStart) - blockStart;
      const to = Math.min(this.end, blockStart + block.length - 1) - blockStart + 1;
      part = block.subarray(from, to);
    }
    let piece = part;
    for (let at = 0; at < part.length; at += PIECE_BYTES) {
      piece = part.subarray(at, at + PIECE_BYTES);
      this.queue.push(piece);
    }
    markLast(piece);
  }
}

/**
 * Verified bytes already in memory, as a stream. A sender that can write them at once takes
 * `bytes` instead of streaming (a small download then costs one write, not a pipeline); a body
 * like this cannot fail part-way, so it needs no failover either.
 */
export class HeldBytes extends Readable {
  constructor(readonly bytes: Buffer) {
    super();
  }

  override _read(): void {
    if (this.bytes.length > 0) this.push(this.bytes);
    this.push(null);
  }
}

/**
 * Bytes start..end of a copy held in memory (a small copy kept in SQLite), checked block by block
 * like a file's before any is handed on; framed as for openVerified. Throws CorruptBlockError for
 * a damaged block: the copy is refused before a reader has anything.
 */
export function verifiedBuffer(
  data: Buffer,
  checksums: Buffer,
  start: number,
  end: number,
  framed = false,
): HeldBytes {
  const { first, last } = blocksCovering(start, end);
  const pieces: Buffer[] = [];
  for (let i = first; i <= last; i++) {
    const block = data.subarray(i * BLOCK_SIZE, i * BLOCK_SIZE + blockLength(i, data.length));
    if (block.length !== blockLength(i, data.length) || !blockMatches(checksums, i, block))
      throw new CorruptBlockError(i);
    if (framed) pieces.push(checksums.subarray(i * CHECKSUM_BYTES, (i + 1) * CHECKSUM_BYTES), block);
    else {
      const at = i * BLOCK_SIZE;
      pieces.push(block.subarray(Math.max(start, at) - at, Math.min(end + 1, at + block.length) - at));
    }
  }
  return new HeldBytes(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces));
}
