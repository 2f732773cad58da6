import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { checksumsOf } from '../../shared/blocks';
import type { FileMeta } from '../../shared/protocol';
import { BlobStore } from '../../services/storage-node/src/store/blob-store';
import { lockDataDir } from '../../services/storage-node/src/store/data-dir-lock';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';

/**
 * Fills a stopped node's data dir through the node's own write path, for `npm run bench:scale`:
 * each file goes through BlobStore.receive (block checksums; a small copy held in memory, a larger
 * one to a fsync'd temp file) and BlobStore.commit (one SQLite transaction and the grouped WAL
 * flush; a larger copy renamed into blobs/ first), exactly what a replica does for
 * PUT /internal/v1/blobs/:id and its commit, minus the two HTTP requests. The data dir that results is the one the node would have written.
 *
 * The files are a pure function of (seed, index, size), so several data dirs filled with the same
 * seed hold the same files with the same ids: the copies of a replicated cluster.
 *
 * `node fill-store.js <dataDir> --files N [--file-bytes B] [--seed S] [--concurrency C]`
 * prints a JSON line of progress every few seconds and `{"done": N, "seconds": S}` at the end.
 */

/** Ids sort by creation time like newFileId's, from a fixed start, one millisecond apart. */
const T0 = Date.UTC(2026, 0, 1);
const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

const bases = new Map<string, Buffer>();

function baseBytes(seed: string, bytes: number): Buffer {
  const key = `${seed}:${bytes}`;
  let base = bases.get(key);
  if (!base) {
    base = Buffer.alloc(bytes);
    for (let off = 0, k = 0; off < bytes; off += 32, k++)
      createHash('sha256').update(`${seed}:${k}`).digest().copy(base, off);
    bases.set(key, base);
  }
  return base;
}

/** File number `i` of a fill: its id, bytes and metadata. */
export function scaleFile(seed: string, i: number, bytes: number): { meta: FileMeta; data: Buffer } {
  const data = Buffer.from(baseBytes(seed, bytes));
  if (bytes >= 8) data.writeDoubleBE(i, 0);
  const random = createHash('sha256').update(`${seed}/${i}`).digest();
  let suffix = '';
  for (let k = 0; k < 16; k++) suffix += ALPHABET[random[k]! % 36];
  const id = (T0 + i).toString(36).padStart(10, '0') + suffix;
  return {
    data,
    meta: {
      id,
      name: `f${i}.bin`,
      size: bytes,
      sha256: createHash('sha256').update(data).digest('hex'),
      contentType: 'application/octet-stream',
      createdAt: new Date(T0 + i).toISOString(),
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const dataDir = argv[0];
  const flag = (name: string, fallback: string): string => {
    const at = argv.indexOf(name);
    return at > 0 && argv[at + 1] !== undefined ? argv[at + 1]! : fallback;
  };
  const files = Number(flag('--files', '1000000'));
  const bytes = Number(flag('--file-bytes', '1024'));
  const seed = flag('--seed', 'shoal-scale');
  const concurrency = Number(flag('--concurrency', '32'));
  if (!dataDir || !Number.isInteger(files) || files < 1 || !Number.isInteger(bytes) || bytes < 0)
    throw new Error('usage: fill-store.js <dataDir> --files N [--file-bytes B] [--seed S] [--concurrency C]');

  mkdirSync(dataDir, { recursive: true });
  const lock = lockDataDir(dataDir);
  const metadata = new MetadataStore(join(dataDir, 'metadata.sqlite'));
  const blobs = new BlobStore(dataDir, metadata);
  await blobs.init();

  const start = performance.now();
  // A fill that was cut short carries on where it stopped (the last few again: they may have gaps).
  let next = Math.max(0, metadata.counts().files - concurrency);
  let done = next;
  const progress = setInterval(() => {
    const seconds = (performance.now() - start) / 1000;
    process.stdout.write(JSON.stringify({ progress: done, seconds: Math.round(seconds) }) + '\n');
  }, 5_000);
  const worker = async (): Promise<void> => {
    while (next < files) {
      const { meta, data } = scaleFile(seed, next++, bytes);
      const prepared = await blobs.receive(Readable.from([data]));
      // As a replica does: the coordinator's block checksums vouch for the bytes.
      await blobs.commit(prepared.token, meta, null, checksumsOf(data));
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(progress);
  const seconds = (performance.now() - start) / 1000;
  await metadata.close();
  lock.release();
  process.stdout.write(JSON.stringify({ done, seconds: Math.round(seconds * 10) / 10 }) + '\n');
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(
      `fill-store: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}
