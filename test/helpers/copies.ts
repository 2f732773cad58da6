import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INLINE_MAX_BYTES } from '../../services/storage-node/src/store/blob-store';

/**
 * Where a node keeps a copy, for tests that damage or remove copies behind its back. Copies larger
 * than INLINE_MAX_BYTES have a blob file each; smaller ones live in SQLite beside their row.
 */
export const FILE_BACKED_MIN = INLINE_MAX_BYTES + 1;

export function blobPath(dataDir: string, id: string): string {
  return join(dataDir, 'blobs', createHash('sha256').update(id).digest('hex').slice(0, 2), id);
}

/** Flips bits of one byte of a file in place (mask 0xff by default). */
export function flipByte(path: string, offset: number, mask = 0xff): void {
  const bytes = readFileSync(path);
  bytes[offset] = bytes[offset]! ^ mask;
  writeFileSync(path, bytes);
}

/** The bytes of a small copy in a node's metadata store (WAL lets a test read it while the node runs). */
export function inlineBytes(dataDir: string, id: string): Buffer | undefined {
  const db = new Database(join(dataDir, 'metadata.sqlite'), { readonly: true });
  try {
    return db.prepare<[string], { data: Buffer }>('SELECT data FROM inline WHERE id = ?').get(id)?.data;
  } finally {
    db.close();
  }
}

/** Rot inside SQLite: one byte of a small copy flipped in place, its row and checksums untouched. */
export function flipInlineByte(dataDir: string, id: string, offset: number, mask = 0xff): void {
  const db = new Database(join(dataDir, 'metadata.sqlite'));
  try {
    const data = db.prepare<[string], { data: Buffer }>('SELECT data FROM inline WHERE id = ?').get(id)!.data;
    data[offset] = data[offset]! ^ mask;
    db.prepare('UPDATE inline SET data = ? WHERE id = ?').run(data, id);
  } finally {
    db.close();
  }
}
