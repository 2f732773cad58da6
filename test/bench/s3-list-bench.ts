import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checksumsOf } from '../../shared/blocks';
import { objectFileId } from '../../shared/ids';
import { keyPartition } from '../../services/storage-node/src/placement/placement';
import { asJson, Registry } from '../../services/storage-node/src/registry/registry';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';
import { TestCluster } from '../helpers/cluster';

/**
 * `npm run bench:s3-list`: listing a bucket of a million keys through S3, on three nodes that each
 * hold every key (N = 3), as the object index decision in ARCHITECTURE.md is judged by.
 *
 * The keys are written into one node's SQLite as the rows a replica's commit writes (each object
 * 16 bytes kept inline), and the file is copied to the other two; the
 * bucket and an access key go into every node's registry. Then the three nodes start, and the
 * bucket is listed whole with the AWS SDK, 1000 keys a page (S3's largest): keys/s, and the time of
 * a page; then once with a delimiter (one entry per "directory"), and a few single GETs.
 *
 * `node dist/test/bench/s3-list-bench.js [--keys N] [--seed-dir DIR]` (default 1,000,000 keys;
 * with --seed-dir, the filled SQLite is kept there and reused by later runs).
 */

const BUCKET_ID = 'b000000000000000000000001';
const KEY = {
  accessKeyId: 'SKBENCHLISTING000001',
  secretAccessKey: 'bench-listing-secret-not-for-real-use-0',
};

function keyOf(i: number): string {
  // 1000 "directories" of 1000 files each, in an order unlike their numbers.
  return `photos/${String(i % 1000).padStart(4, '0')}/IMG_${String(i).padStart(7, '0')}.jpg`;
}

async function fill(dir: string, keys: number): Promise<void> {
  const path = join(dir, 'metadata.sqlite');
  const started = performance.now();
  // The schema, from the store itself; then the rows in one transaction of plain inserts (a
  // million commits through the store take minutes), and the store again to build the partition
  // summaries from them, as it does for a data dir that has none.
  await new MetadataStore(path).close();
  const db = new Database(path);
  const data = Buffer.from('sixteen bytes!!\n');
  const checksums = checksumsOf(data);
  const sha256 = createHash('sha256').update(data).digest('hex');
  const t0 = Date.UTC(2026, 0, 1);
  const insertRow = db.prepare(
    `INSERT INTO files (id, partition, name, size, sha256, content_type, created_at, state, deleted_at, held_for,
       obj_bucket, obj_key, obj_attrs, obj_upload)
     VALUES (?, ?, ?, ?, ?, 'application/octet-stream', ?, 'live', NULL, NULL, ?, ?, ?, NULL)`,
  );
  const insertChecksums = db.prepare('INSERT INTO checksums (id, list) VALUES (?, ?)');
  const insertInline = db.prepare('INSERT INTO inline (id, data) VALUES (?, ?)');
  const attrs = '{"etag":"d41d8cd98f00b204e9800998ecf8427e","type":"image/jpeg"}';
  db.transaction(() => {
    for (let i = 0; i < keys; i++) {
      const key = keyOf(i);
      const partition = keyPartition(BUCKET_ID, key);
      const id = objectFileId(partition, t0 + i);
      const createdAt = new Date(t0 + i).toISOString();
      insertRow.run(id, partition, key, data.length, sha256, createdAt, BUCKET_ID, Buffer.from(key), attrs);
      insertChecksums.run(id, checksums);
      insertInline.run(id, data);
    }
    db.exec("DELETE FROM partitions; DELETE FROM settings WHERE key = 'partition_summaries_since'");
  })();
  db.close();
  await new MetadataStore(path).close();
  console.log(`filled ${keys} keys in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

function registerBucket(dir: string): void {
  const registry = new Registry(join(dir, 'registry.sqlite'), 'bench-fill');
  registry.put(
    's3-key',
    KEY.accessKeyId,
    asJson({ name: 'bench', secret: KEY.secretAccessKey, createdAt: new Date().toISOString() }),
  );
  registry.put(
    'bucket',
    'million',
    asJson({ id: BUCKET_ID, owner: KEY.accessKeyId, createdAt: new Date().toISOString(), grants: {} }),
  );
  registry.close();
}

async function main(): Promise<void> {
  const at = process.argv.indexOf('--keys');
  const keys = at > 0 ? Number(process.argv[at + 1]) : 1_000_000;
  const keptAt = process.argv.indexOf('--seed-dir');
  const seed = keptAt > 0 ? process.argv[keptAt + 1]! : mkdtempSync(join(tmpdir(), 'shoal-s3-list-'));
  if (!existsSync(join(seed, 'metadata.sqlite'))) await fill(seed, keys);
  const started = performance.now();
  const cluster = await TestCluster.start({
    nodes: 3,
    s3: true,
    startTimeoutMs: 300_000,
    // Quiet repair: the rows are the same everywhere, nothing to compare while listing.
    args: ['--repair-interval-ms', '3600000', '--scrub-interval-ms', '3600000'],
    prepareDataDir: async (dir) => {
      await copyFile(join(seed, 'metadata.sqlite'), join(dir, 'metadata.sqlite'));
      registerBucket(dir);
    },
  });
  console.log(
    `three nodes ready ${((performance.now() - started) / 1000).toFixed(1)} s after the copies began`,
  );
  try {
    const client = new S3Client({
      endpoint: cluster.node(0).s3Url,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: KEY,
    });
    const pages: number[] = [];
    let listed = 0;
    let token: string | undefined;
    const started = performance.now();
    do {
      const t = performance.now();
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: 'million', ContinuationToken: token }),
      );
      pages.push(performance.now() - t);
      listed += page.KeyCount ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const seconds = (performance.now() - started) / 1000;
    pages.sort((a, b) => a - b);
    const pct = (p: number) => pages[Math.min(pages.length - 1, Math.floor(pages.length * p))]!.toFixed(1);
    console.log(
      `listed ${listed} keys in ${seconds.toFixed(1)} s: ${Math.round(listed / seconds)} keys/s; ` +
        `a page of 1000: median ${pct(0.5)} ms, p99 ${pct(0.99)} ms`,
    );
    const t = performance.now();
    const dirs = await client.send(
      new ListObjectsV2Command({ Bucket: 'million', Prefix: 'photos/', Delimiter: '/' }),
    );
    console.log(
      `with a delimiter: ${dirs.CommonPrefixes?.length ?? 0} common prefixes in ${(performance.now() - t).toFixed(0)} ms`,
    );
    const gets: number[] = [];
    for (let i = 0; i < 200; i++) {
      const g = performance.now();
      const res = await client.send(
        new GetObjectCommand({ Bucket: 'million', Key: keyOf((i * 7919) % keys) }),
      );
      await res.Body!.transformToByteArray();
      gets.push(performance.now() - g);
    }
    gets.sort((a, b) => a - b);
    console.log(
      `GET of one key among them: median ${gets[100]!.toFixed(2)} ms, p99 ${gets[198]!.toFixed(2)} ms`,
    );
  } finally {
    await cluster.stopAll();
    if (keptAt < 0) rmSync(seed, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
