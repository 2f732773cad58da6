import { randomBytes } from 'node:crypto';
import { open, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * fsync(2) of a directory: makes the names created, renamed or removed in it durable. A file's own
 * fsync does not, and a new directory's name needs its parent's.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces a small file so that after a power cut it holds the old bytes or the new ones, never an
 * empty or short file, and the new ones once this resolves: a temp file beside it, fsync, rename
 * over it, fsync the directory.
 */
export async function writeFileDurably(path: string, data: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(temp, data, { flush: true });
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}
