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
