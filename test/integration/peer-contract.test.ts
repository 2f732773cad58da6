import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { checksumsOf } from '../../shared/blocks';
import { ShoalError } from '../../shared/errors';
import { newFileId, objectFileId } from '../../shared/ids';
import { silentLogger } from '../../shared/logging';
import type { FileMeta } from '../../shared/protocol';
import {
  keyPartition,
  partitionOf,
  PARTITION_COUNT,
} from '../../services/storage-node/src/placement/placement';
import { DELETE_MARKER_TYPE, UPLOAD_RECORD_TYPE } from '../../services/storage-node/src/s3/listing';
import type { Peer } from '../../services/storage-node/src/peers/peer';
import { PeerClient, PeerError } from '../../services/storage-node/src/peers/peer-client';
import { RemotePeer } from '../../services/storage-node/src/peers/remote-peer';
import { CopyFetcher } from '../../services/storage-node/src/replication/copy-fetcher';
import { LocalNode } from '../../services/storage-node/src/replication/local-node';
import { Scrubber } from '../../services/storage-node/src/replication/scrubber';
import { BlobStore } from '../../services/storage-node/src/store/blob-store';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';
import { SECRET, TestCluster } from '../helpers/cluster';
import { flipInlineByte } from '../helpers/copies';

/**
 * One contract, two implementations: what a node's storage does when asked through the Peer
 * interface must not depend on whether the caller is the node itself (LocalNode, in this process,
 * on a real store in a temp dir) or another node (RemotePeer, over signed HTTP to a real node
 * process). Every caller of Peer relies on exactly these answers.
 */

const client = new PeerClient({ nodeId: 'contract-test', secret: SECRET });

/** The error code a refusal carries, whichever side refused. */
function codeOf(err: unknown): string | undefined {
  if (err instanceof ShoalError) return err.code;
  if (err instanceof PeerError) return err.code;
  return undefined;
}

async function bytesOf(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return codeOf(err) ?? 'rejected';
  }
  return undefined;
}

/** What a coordinator sends with a commit: the file and the block checksums of its bytes. */
function commitOf(token: string, meta: FileMeta, data: Buffer) {
  return { token, meta, heldFor: null, checksums: checksumsOf(data).toString('base64') };
}

function metaFor(data: Buffer, name = 'f.bin'): FileMeta {
  return {
    id: newFileId(),
    name,
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    contentType: 'application/octet-stream',
    createdAt: new Date().toISOString(),
  };
}

/** Stores a file on a peer the way an upload does: receive, then commit. */
async function store(peer: Peer, data: Buffer): Promise<FileMeta> {
  const meta = metaFor(data);
  const prepared = await peer.receive(meta.id, Readable.from([data]));
  await peer.commit(meta.id, commitOf(prepared.token, meta, data));
  return meta;
}

let cluster: TestCluster;
let local: LocalNode;
let metadata: MetadataStore;
let dir: string;

beforeAll(async () => {
  // Two real nodes: the remote implementation talks to node-1; node-2 is a source for pulls.
  // Repair stays quiet so it does not move the test's files around.
  cluster = await TestCluster.start({
    nodes: 2,
    replicas: 1,
    writeQuorum: 1,
    args: ['--repair-interval-ms', '3600000'],
  });
  dir = mkdtempSync(join(tmpdir(), 'shoal-contract-'));
  metadata = new MetadataStore(join(dir, 'metadata.sqlite'));
  const blobs = new BlobStore(dir, metadata);
  await blobs.init();
  const log = silentLogger();
  const scrubber = new Scrubber({ intervalMs: 3_600_000, bytesPerSecond: 1 << 30 }, metadata, blobs, log);
  local = new LocalNode(
    {
      id: 'local',
      url: 'http://127.0.0.1:1',
      ready: () => true,
      full: () => false,
      isMemberUrl: (url) => cluster.nodes.some((n) => n.url === url),
      status: () => Promise.reject(new Error('not used')),
      caughtUp: () => true,
      lastAliveAt: () => null,
    },
    metadata,
    blobs,
    scrubber,
    new CopyFetcher(1 << 30, metadata, blobs, client, log),
  );
});

afterAll(async () => {
  await metadata?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await cluster?.stopAll();
  await client.close();
});

describe.each([
  ['LocalNode (this node)', (): Peer => local, (): string => dir],
  [
    'RemotePeer (another node over HTTP)',
    (): Peer => new RemotePeer('node-1', cluster.url(0), client),
    (): string => cluster.node(0).dataDir,
  ],
])('Peer contract: %s', (_name, peerOf, dataDirOf) => {
  let peer: Peer;
  beforeAll(() => {
    peer = peerOf();
  });

  it('is up and taking writes', async () => {
    expect(await peer.ping(2_000)).toBe(true);
  });

  it('keeps a received copy invisible until commit, then serves it whole, by range and conditionally', async () => {
    const data = randomBytes(10_000);
    const meta = metaFor(data);
    const prepared = await peer.receive(meta.id, Readable.from([data]));
    expect(prepared).toMatchObject({ size: data.length });
    expect(await peer.record(meta.id)).toBeUndefined();
    expect(await peer.read(meta.id, { method: 'GET' })).toBeUndefined();
    await peer.commit(meta.id, commitOf(prepared.token, meta, data));
    expect(await peer.record(meta.id)).toMatchObject({ ...meta, state: 'live', heldFor: null });

    const whole = await peer.read(meta.id, { method: 'GET' });
    if (!whole || whole === 'deleted') throw new Error('no copy');
    expect(whole).toMatchObject({ status: 200, start: 0, end: data.length - 1 });
    expect(await bytesOf(whole.body!)).toEqual(data);

    const part = await peer.read(meta.id, { method: 'GET', range: 'bytes=100-199' });
    if (!part || part === 'deleted') throw new Error('no copy');
    expect(part.status).toBe(206);
    expect(await bytesOf(part.body!)).toEqual(data.subarray(100, 200));

    const head = await peer.read(meta.id, { method: 'HEAD' });
    expect(head).toMatchObject({ status: 200, body: undefined });
    expect(await peer.read(meta.id, { method: 'GET', ifNoneMatch: `"${meta.sha256}"` })).toMatchObject({
      status: 304,
      body: undefined,
    });
    expect(await peer.read(meta.id, { method: 'GET', range: 'bytes=20000-' })).toMatchObject({
      status: 416,
      body: undefined,
    });
  });

  it('drops an aborted copy and refuses to commit it, or a copy with other bytes', async () => {
    const data = randomBytes(1_000);
    const meta = metaFor(data);
    const aborted = await peer.receive(meta.id, Readable.from([data]));
    await peer.abort(aborted.token);
    expect(await refusal(peer.commit(meta.id, commitOf(aborted.token, meta, data)))).toBe('not_found');
    const wrong = await peer.receive(meta.id, Readable.from([randomBytes(1_000)]));
    expect(await refusal(peer.commit(meta.id, commitOf(wrong.token, meta, data)))).toBe('checksum_mismatch');
    expect(await peer.record(meta.id)).toBeUndefined();
  });

  it('takes many commits at once and answers each on its own, a bad one failing alone', async () => {
    // Started together, as concurrent uploads do: a remote peer gets them in batches.
    const files = Array.from({ length: 40 }, (_v, i) => randomBytes(i % 2 === 0 ? 2_000 : 200_000));
    const prepared = await Promise.all(
      files.map(async (data) => {
        const meta = metaFor(data);
        return { data, meta, token: (await peer.receive(meta.id, Readable.from([data]))).token };
      }),
    );
    const bad = prepared[7]!;
    const other = randomBytes(bad.data.length);
    const outcomes = await Promise.all(
      prepared.map(({ data, meta, token }) =>
        refusal(peer.commit(meta.id, commitOf(token, meta, data === bad.data ? other : data))),
      ),
    );
    expect(outcomes.filter((o) => o !== undefined)).toEqual(['checksum_mismatch']);
    expect(outcomes[7]).toBe('checksum_mismatch');
    expect(await peer.record(bad.meta.id)).toBeUndefined();
    for (const { data, meta } of prepared.filter((p) => p !== bad)) {
      const copy = await peer.read(meta.id, { method: 'GET' });
      if (!copy || copy === 'deleted') throw new Error(`no copy of ${meta.id}`);
      expect((await bytesOf(copy.body!)).equals(data)).toBe(true);
    }
  });

  it('turns a copy into a tombstone that wins for good', async () => {
    const data = randomBytes(500);
    const meta = await store(peer, data);
    const at = new Date().toISOString();
    expect(await peer.delete(meta.id, at)).toEqual({ wasLive: true, known: true });
    expect(await peer.delete(meta.id, at)).toEqual({ wasLive: false, known: true });
    expect(await peer.read(meta.id, { method: 'GET' })).toBe('deleted');
    expect(await peer.record(meta.id)).toMatchObject({ state: 'deleted', deletedAt: at });
    // A late replica of the deleted file is refused.
    const late = await peer.receive(meta.id, Readable.from([data]));
    expect(await refusal(peer.commit(meta.id, commitOf(late.token, meta, data)))).toBe('conflict');
  });

  it('records a tombstone for an unknown id only when forced', async () => {
    const id = newFileId();
    const at = new Date().toISOString();
    expect(await peer.delete(id, at)).toEqual({ wasLive: false, known: false });
    expect(await peer.record(id)).toBeUndefined();
    await peer.delete(id, at, { force: true });
    expect(await peer.record(id)).toMatchObject({ id, state: 'deleted' });
    const caughtUp = await peer.catchUp(at, 1000);
    expect(caughtUp.tombstones.map((t) => t.id)).toContain(id);
    expect(caughtUp.caughtUp).toBe(true);
  });

  it('forgets a copy only when told its exact sha256', async () => {
    const meta = await store(peer, randomBytes(300));
    expect(await peer.forget(meta.id, 'f'.repeat(64))).toBe(false);
    expect(await peer.record(meta.id)).toBeDefined();
    expect(await peer.forget(meta.id, meta.sha256)).toBe(true);
    expect(await peer.record(meta.id)).toBeUndefined();
  });

  it('lists its records in id order with a truncation flag, and reports partition rows and digests', async () => {
    const metas = [await store(peer, randomBytes(10)), await store(peer, randomBytes(10))];
    const first = metas[0]!;
    const page = await peer.list('', 1_000);
    const ids = page.records.map((r) => r.id);
    expect(ids).toEqual([...ids].sort());
    expect(ids).toEqual(expect.arrayContaining(metas.map((m) => m.id)));
    // After '' (the start): more records follow the first, so the page of one is cut short.
    const cut = await peer.list('', 1);
    expect(cut.records).toHaveLength(1);
    expect(cut.truncated).toBe(true);

    const p = partitionOf(first.id);
    expect((await peer.partitionRecords(p)).map((r) => r.id)).toContain(first.id);
    const bitmap = Buffer.alloc(PARTITION_COUNT / 8);
    bitmap[p >> 3]! |= 1 << (p & 7);
    const digests = await peer.digests(bitmap);
    expect(Object.keys(digests)).toEqual([String(p)]);
    expect(digests[String(p)]).toMatch(/^[0-9a-f]{64}$/);
  });

  it("keeps an S3 object's files as versions of its key, apart from uploads and the native listing", async () => {
    const bucket = `b${randomBytes(12).toString('hex')}`;
    const storeObject = async (key: string, contentType: string, upload?: string): Promise<FileMeta> => {
      const data = randomBytes(50);
      const meta: FileMeta = {
        ...metaFor(data, key),
        id: objectFileId(keyPartition(bucket, key)),
        contentType,
        object: { bucket, key, attrs: '{"etag":"x"}', ...(upload ? { upload } : {}) },
      };
      const prepared = await peer.receive(meta.id, Readable.from([data]));
      await peer.commit(meta.id, commitOf(prepared.token, meta, data));
      return meta;
    };
    const v1 = await storeObject('photos/a.jpg', 'application/octet-stream');
    const v2 = await storeObject('photos/a.jpg', 'application/octet-stream');
    await storeObject('photos/b.jpg', 'application/octet-stream');
    await storeObject('gone', DELETE_MARKER_TYPE);
    const upload = newFileId();
    const part = await storeObject('photos/a.jpg', 'application/x-shoal-part', upload);
    const record = await storeObject('photos/a.jpg', UPLOAD_RECORD_TYPE, upload);

    // Newest version first, the tag as stored; an upload's files only when asked for by upload.
    const versions = await peer.objectVersions(bucket, 'photos/a.jpg');
    expect(versions.map((v) => v.id)).toEqual([v2.id, v1.id]);
    expect(versions[0]!.object).toEqual(v2.object);
    expect((await peer.objectVersions(bucket, 'photos/a.jpg', { upload })).map((v) => v.id).sort()).toEqual(
      [part.id, record.id].sort(),
    );
    expect(await peer.objectVersions(bucket, 'never')).toEqual([]);
    // Asked together (batched to a remote node), each key gets its own versions.
    const together = await Promise.all(
      ['photos/b.jpg', 'never', 'photos/a.jpg', 'gone'].map((k) => peer.objectVersions(bucket, k)),
    );
    expect(together.map((vs) => vs.map((v) => v.object?.key))).toEqual([
      ['photos/b.jpg'],
      [],
      ['photos/a.jpg', 'photos/a.jpg'],
      ['gone'],
    ]);

    const rolled = await peer.listObjects({ bucket, prefix: '', delimiter: '/', limit: 10 });
    expect(rolled.entries.map((e) => [e.key, e.prefix ?? false])).toEqual([
      ['gone', false],
      ['photos/', true],
    ]);
    const flat = await peer.listObjects({ bucket, prefix: 'photos/', limit: 1 });
    expect(flat).toMatchObject({
      entries: [{ key: 'photos/a.jpg', record: { id: v2.id } }],
      truncated: true,
    });
    const uploads = await peer.listUploads(bucket, { key: '', upload: '' }, 10);
    expect(uploads.records.map((r) => r.id)).toEqual([record.id]);

    // The files of S3 objects are not the native API's: its listing leaves them out.
    const native = await peer.list('', 1_000);
    expect(native.records.some((r) => r.object !== undefined)).toBe(false);
  });

  it('pulls a copy from a member, verified, once', async () => {
    const source = new RemotePeer('node-2', cluster.url(1), client);
    const data = randomBytes(50_000);
    const meta = await store(source, data);
    expect(await peer.pull(meta, [cluster.url(1)], null)).toEqual({ bytes: data.length });
    expect(await peer.record(meta.id)).toMatchObject({ sha256: meta.sha256, state: 'live' });
    expect(await peer.pull(meta, [cluster.url(1)], null)).toEqual({ bytes: 0 });
    // Asked for other bytes than the source holds, it stores nothing.
    const other = { ...meta, id: newFileId(), sha256: 'e'.repeat(64) };
    expect(await refusal(peer.pull(other, [cluster.url(1)], null))).toBeDefined();
    expect(await peer.record(other.id)).toBeUndefined();
  });

  it('stores a batch of small copies that check out, and only those, each served back whole', async () => {
    const good = [randomBytes(1_000), randomBytes(20_000), randomBytes(0)].map((data) => ({
      meta: metaFor(data),
      heldFor: null,
      data,
    }));
    const damaged = randomBytes(5_000);
    const wrong = { meta: metaFor(damaged), heldFor: null, data: Buffer.from(damaged) };
    wrong.data[100]! ^= 1;
    const short = { meta: metaFor(damaged), heldFor: null, data: damaged.subarray(1) };
    const gone = await store(peer, randomBytes(300));
    await peer.delete(gone.id, new Date().toISOString());
    const deleted = { meta: gone, heldFor: null, data: randomBytes(300) };
    const results = await peer.storeCopies([good[0]!, wrong, good[1]!, short, deleted, good[2]!]);
    expect(results.map((r) => [r.id, r.result])).toEqual([
      [good[0]!.meta.id, 'stored'],
      [wrong.meta.id, 'refused'],
      [good[1]!.meta.id, 'stored'],
      [short.meta.id, 'refused'],
      [gone.id, 'refused'],
      [good[2]!.meta.id, 'stored'],
    ]);
    for (const { meta, data } of good) {
      const read = await peer.read(meta.id, { method: 'GET' });
      if (!read || read === 'deleted') throw new Error(`no copy of ${meta.id}`);
      expect(read.record).toMatchObject({ sha256: meta.sha256, size: data.length, state: 'live' });
      // An empty file is answered with no body at all.
      expect(read.body ? await bytesOf(read.body) : Buffer.alloc(0)).toEqual(data);
    }
    expect(await peer.record(wrong.meta.id)).toBeUndefined();
    expect(await peer.record(short.meta.id)).toBeUndefined();
    expect(await peer.record(gone.id)).toMatchObject({ state: 'deleted' });
    // Sent again, the stored ones are already there.
    expect((await peer.storeCopies([good[1]!])).map((r) => r.result)).toEqual(['already-stored']);
  });

  it('hands out its small copies of the files asked for, each once, and nothing else', async () => {
    const small = randomBytes(2_000);
    const kept = await store(peer, small);
    const large = await store(peer, randomBytes(100 * 1024));
    const gone = await store(peer, randomBytes(10));
    await peer.delete(gone.id, new Date().toISOString());
    const unknown = newFileId();
    const damaged = await store(peer, randomBytes(3_000));
    flipInlineByte(dataDirOf(), damaged.id, 1_000);
    const copies = await peer.readCopies([kept.id, large.id, gone.id, unknown, damaged.id, kept.id]);
    // A copy whose bytes no longer match its checksums is not handed on.
    expect(copies).toEqual([{ id: kept.id, data: small }]);
  });

  it('fetches from members only: a pull naming another URL stores nothing', async () => {
    const meta = metaFor(randomBytes(10));
    expect(await refusal(peer.pull(meta, ['http://127.0.0.1:9/'], null))).toBeDefined();
    expect(await peer.record(meta.id)).toBeUndefined();
  });
});
