import { randomBytes } from 'node:crypto';
import { ShoalError } from './errors';

/** The contract: letters, digits, '-' and '_', at most 64 characters. Nothing else reaches a path. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Node ids also allow '.', so that a host name or a Kubernetes pod name can be one. A node id
 * never names a file or a directory, only a member.
 */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

export function assertValidId(id: unknown): string {
  if (!isValidId(id)) {
    throw new ShoalError('invalid_id', 'ids are 1-64 characters of letters, digits, "-" and "_"');
  }
  return id;
}

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * New file ids sort by creation time in plain byte order (so a listing reads oldest first) and
 * carry 80 random bits so two nodes minting ids in the same millisecond never collide.
 * Layout: 10 base36 chars of milliseconds, then 16 base36 random chars.
 */
export function newFileId(now: number = Date.now()): string {
  const time = now.toString(36).padStart(10, '0');
  const bytes = randomBytes(16);
  let random = '';
  for (const b of bytes) random += ALPHABET[b % 36];
  return time + random;
}

/**
 * The files that hold S3 objects (one per version of a key) have ids of their own shape, which a
 * native id (newFileId: base36, lower case) can never take: `O`, the key's partition in 4 hex
 * digits, `_`, then a newFileId. Every version of a key so lands in the key's partition, on the
 * same home members, where a read of the key finds them all; and versions of one key sort by
 * their time, then by their random part (the tie-break of last-writer-wins).
 */
const OBJECT_ID = /^O([0-9a-f]{4})_[0-9a-z]{26}$/;

export function objectFileId(partition: number, now: number = Date.now()): string {
  return `O${partition.toString(16).padStart(4, '0')}_${newFileId(now)}`;
}

export function isObjectFileId(id: string): boolean {
  return id.charCodeAt(0) === 79 /* O */ && OBJECT_ID.test(id);
}

/** The partition an object file id was made for; undefined for any other id. */
export function objectPartitionOf(id: string): number | undefined {
  const m = OBJECT_ID.exec(id);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/** The time (ms) in the newFileId part of an object file id: when its version was made. */
export function objectVersionTime(id: string): number {
  return parseInt(id.slice(6, 16), 36);
}
