import { BLOCK_SIZE } from '../../../../shared/blocks';

/**
 * Block buffers for reads of copies on disk, used again once a response has handed all of a
 * block's bytes to the kernel. A fresh 1 MiB buffer per block made V8 collect garbage every few
 * dozen blocks (a third of a large download's CPU went to the collector); a download now turns
 * over two or three buffers from here.
 *
 * A buffer comes back only through written(), which the HTTP response calls from the write
 * callback of a block's last piece (see markLast): libuv completes a socket's writes in order, so
 * by then every earlier piece of the block has left too. Any other reader of a copy simply never
 * returns its buffers, and the collector takes them as before. At most MAX_FREE buffers wait here,
 * and an idle node drops them after IDLE_MS, so the pool costs nothing at rest.
 */
const MAX_FREE = 8;
const IDLE_MS = 10_000;

const free: Buffer[] = [];
/** For a block handed out, the piece whose write finishes it (weak: abandoned blocks go with GC). */
const lastPieces = new WeakMap<ArrayBufferLike, Buffer>();
let idleTimer: NodeJS.Timeout | undefined;

/** A BLOCK_SIZE buffer, from the pool when one is free. */
export function takeBlock(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(BLOCK_SIZE);
}

/** `piece` is the last view of its block that a reader will send: its write frees the block. */
export function markLast(piece: Buffer): void {
  if (piece.buffer.byteLength === BLOCK_SIZE) lastPieces.set(piece.buffer, piece);
}

/** Does writing `chunk` complete a pooled block (so the writer should report it with written())? */
export function endsBlock(chunk: Buffer): boolean {
  return lastPieces.get(chunk.buffer) === chunk;
}

/** The write of `chunk` (for which endsBlock was true) has completed: its block may be used again. */
export function written(chunk: Buffer): void {
  if (lastPieces.get(chunk.buffer) !== chunk) return;
  lastPieces.delete(chunk.buffer);
  if (free.length >= MAX_FREE) return;
  free.push(Buffer.from(chunk.buffer, 0, BLOCK_SIZE));
  idleTimer?.refresh();
  idleTimer ??= setTimeout(() => {
    free.length = 0;
    idleTimer = undefined;
  }, IDLE_MS).unref();
}

/** Buffers waiting in the pool (tests). */
export function freeBlocks(): number {
  return free.length;
}
