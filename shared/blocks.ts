import { Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';

/**
 * Every copy is checked block by block: a CRC-32 of each BLOCK_SIZE slice of the file, computed
 * once while the bytes stream in and kept beside the whole-file sha256. Reads verify each block
 * before any of its bytes leaves the node, so a damaged block is caught where it is, whatever
 * range is read, and a failover can resume at any byte of a verified block. CRC-32 is what zlib
 * computes with the CPU's carry-less multiply (about 4 GB/s here, three times sha256), strong
 * enough to catch bit rot and torn writes in 1 MiB (every burst up to 32 bits, anything else but
 * one time in 4 billion); the sha256 stays the file's identity and end-to-end check.
 */
export const BLOCK_SIZE = 1024 * 1024;
/** Bytes of one block's checksum in a checksum list (big-endian CRC-32). */
export const CHECKSUM_BYTES = 4;

export function blockCount(size: number): number {
  return Math.ceil(size / BLOCK_SIZE);
}

/** The blocks holding bytes start..end (inclusive); none for an empty range. */
export function blocksCovering(start: number, end: number): { first: number; last: number } {
  return { first: Math.floor(start / BLOCK_SIZE), last: Math.floor(end / BLOCK_SIZE) };
}

/** Bytes of block `index` of a file of `size` bytes. */
export function blockLength(index: number, size: number): number {
  return Math.min(BLOCK_SIZE, size - index * BLOCK_SIZE);
}

export function checksumAt(checksums: Buffer, index: number): number {
  return checksums.readUInt32BE(index * CHECKSUM_BYTES);
}

/** The checksum list of a whole buffer. */
export function checksumsOf(data: Buffer): Buffer {
  const list = Buffer.alloc(blockCount(data.length) * CHECKSUM_BYTES);
  for (let i = 0; i * BLOCK_SIZE < data.length; i++) {
    list.writeUInt32BE(crc32(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)), i * CHECKSUM_BYTES);
  }
  return list;
}

export function blockMatches(checksums: Buffer, index: number, block: Buffer): boolean {
  return crc32(block) === checksumAt(checksums, index);
}

/** Passes bytes through unchanged while computing the checksum of every block. */
export class BlockChecksummer extends Transform {
  private readonly done: number[] = [];
  private current = 0;
  private filled = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(BLOCK_SIZE - this.filled, chunk.length - offset);
      this.current = crc32(chunk.subarray(offset, offset + take), this.current);
      this.filled += take;
      offset += take;
      if (this.filled === BLOCK_SIZE) {
        this.done.push(this.current);
        this.current = 0;
        this.filled = 0;
      }
    }
    cb(null, chunk);
  }

  /** The checksum list, once every byte has passed. */
  checksums(): Buffer {
    const list = Buffer.alloc((this.done.length + (this.filled > 0 ? 1 : 0)) * CHECKSUM_BYTES);
    this.done.forEach((c, i) => list.writeUInt32BE(c, i * CHECKSUM_BYTES));
    if (this.filled > 0) list.writeUInt32BE(this.current, this.done.length * CHECKSUM_BYTES);
    return list;
  }
}
