import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newFileId } from '../../shared/ids';
import { partitionOf } from '../../services/storage-node/src/placement/placement';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';

function meta(size: number) {
  return {
    id: newFileId(),
    name: 'f.bin',
    size,
    sha256: 'c'.repeat(64),
    contentType: 'application/octet-stream',
    createdAt: new Date().toISOString(),
  };
}

/** What anti-entropy and /cluster read of a store: every partition's digest, and the totals. */
function snapshot(store: MetadataStore): { digests: Record<number, string>; counts: object } {
  const digests: Record<number, string> = {};
  for (let p = 0; p < 8192; p++) {
    const d = store.digest(p);
    if (d) digests[p] = d;
  }
  return { digests, counts: store.counts() };
}

describe('partition summaries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-meta-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('survive a restart exactly, and match a rebuild from the rows', async () => {
    const path = join(dir, 'a.sqlite');
    const store = new MetadataStore(path);
    const files = Array.from({ length: 50 }, (_v, i) => meta(100 + i));
    for (const f of files)
      store.putLive({ meta: f, partition: partitionOf(f.id), heldFor: null, checksums: Buffer.alloc(4) });
    for (const f of files.slice(0, 10)) store.markDeleted(f.id, new Date().toISOString());
    for (const f of files.slice(10, 15)) store.forget(f.id);
    const forced = newFileId();
    store.markDeleted(forced, new Date().toISOString(), partitionOf(forced));
    const before = snapshot(store);
    expect(before.counts).toEqual({
      files: 35,
      bytes: files.slice(15).reduce((n, f) => n + f.size, 0),
      tombstones: 11,
    });
    await store.close();

    const reopened = new MetadataStore(path);
    expect(snapshot(reopened)).toEqual(before);
    await reopened.close();

    // A data dir from before the summaries were kept: they are built once from the rows.
    const raw = new Database(path);
    raw.exec("DELETE FROM partitions; DELETE FROM settings WHERE key = 'partition_summaries_since'");
    raw.close();
    const rebuilt = new MetadataStore(path);
    expect(snapshot(rebuilt)).toEqual(before);
    await rebuilt.close();
  });

  it('take concurrent puts in one transaction, each with its own answer', async () => {
    const grouped = new MetadataStore(join(dir, 'c.sqlite'));
    const oneByOne = new MetadataStore(join(dir, 'd.sqlite'));
    const files = Array.from({ length: 20 }, (_v, i) => meta(1000 + i));
    const gone = meta(5);
    for (const store of [grouped, oneByOne])
      store.markDeleted(gone.id, new Date().toISOString(), partitionOf(gone.id));
    const put = (f: ReturnType<typeof meta>) => ({
      meta: f,
      partition: partitionOf(f.id),
      heldFor: null,
      checksums: Buffer.alloc(4),
      inline: Buffer.alloc(f.size, 7),
    });

    const results = await Promise.all([...files, files[0]!, gone].map((f) => grouped.putLiveGrouped(put(f))));
    expect(results).toEqual([...files.map(() => 'stored'), 'already-stored', 'deleted']);
    for (const f of files) oneByOne.putLive(put(f));
    expect(snapshot(grouped)).toEqual(snapshot(oneByOne));
    expect(grouped.copyOf(files[3]!.id)?.data).toEqual(Buffer.alloc(1003, 7));

    await oneByOne.close();
    await grouped.close();
    // A transaction that cannot run (here: the database is closed) fails every put in it.
    const failed = await Promise.allSettled(files.slice(0, 3).map((f) => grouped.putLiveGrouped(put(f))));
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
  });

  it('name each partition with tombstones older than a time once, and no other', async () => {
    const store = new MetadataStore(join(dir, 'e.sqlite'));
    const live = meta(10);
    store.putLive({ meta: live, partition: 7, heldFor: null, checksums: Buffer.alloc(4) });
    store.markDeleted(newFileId(), '2026-01-01T00:00:00.000Z', 3);
    store.markDeleted(newFileId(), '2026-01-02T00:00:00.000Z', 3);
    store.markDeleted(newFileId(), '2026-01-01T00:00:00.000Z', 5);
    store.markDeleted(newFileId(), '2026-06-01T00:00:00.000Z', 9);
    expect(store.partitionsWithTombstonesBefore('2026-03-01T00:00:00.000Z')).toEqual(new Set([3, 5]));
    expect(store.partitionsWithTombstonesBefore('2026-01-01T00:00:00.000Z')).toEqual(new Set());
    await store.close();
  });

  it('leave no trace of an emptied partition', async () => {
    const store = new MetadataStore(join(dir, 'b.sqlite'));
    const f = meta(10);
    store.putLive({ meta: f, partition: partitionOf(f.id), heldFor: null, checksums: Buffer.alloc(4) });
    expect(store.digest(partitionOf(f.id))).toBeDefined();
    store.forget(f.id);
    expect(store.digest(partitionOf(f.id))).toBeUndefined();
    expect(store.counts()).toEqual({ files: 0, bytes: 0, tombstones: 0 });
    await store.close();
  });
});
