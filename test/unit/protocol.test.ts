import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { checksumsOf } from '../../shared/blocks';
import { errorBody } from '../../shared/errors';
import { sha256Hex } from '../../shared/hashing';
import { newFileId } from '../../shared/ids';
import { silentLogger } from '../../shared/logging';
import {
  CommitRequestSchema,
  DeleteRequestSchema,
  DigestsAnswerSchema,
  DigestsRequestSchema,
  ErrorBodySchema,
  FileMetaSchema,
  FileRecordSchema,
  ForgetRequestSchema,
  GossipMessageSchema,
  INTERNAL_ROUTES,
  LocalListingSchema,
  MAX_LISTING_PAGE,
  MAX_MEMBERS,
  MemberDigestSchema,
  NodeStatusSchema,
  PARTITION_COUNT,
  PartitionRecordsSchema,
  PreparedUploadSchema,
  ProbeRequestSchema,
  PullRequestSchema,
  CatchUpAnswerSchema,
  check,
  decodeMetaHeader,
  encodeMetaHeader,
  isIsoTimestamp,
  type FileMeta,
  type FileRecord,
  type MemberDigest,
  type NodeStatus,
} from '../../shared/protocol';
import { MAX_PAGE } from '../../services/storage-node/src/files/catalog';
import { Membership } from '../../services/storage-node/src/membership/membership';
import { PeerClient, PeerError } from '../../services/storage-node/src/peers/peer-client';
import { partitionOf } from '../../services/storage-node/src/placement/placement';
import { BlobStore } from '../../services/storage-node/src/store/blob-store';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';

const SHA = 'ab'.repeat(32);
const NOW = new Date().toISOString();

function meta(overrides: Partial<FileMeta> = {}): FileMeta {
  return {
    id: newFileId(),
    name: 'report.pdf',
    size: 1234,
    sha256: SHA,
    contentType: 'application/pdf',
    createdAt: NOW,
    ...overrides,
  };
}

function member(overrides: Partial<MemberDigest> = {}): MemberDigest {
  return {
    id: 'node-1',
    url: 'http://127.0.0.1:7001',
    incarnation: Date.now(),
    state: 'alive',
    ...overrides,
  };
}

function accepts(schema: Parameters<typeof check>[0], value: unknown): void {
  const result = check(schema, value);
  if (!result.ok) throw new Error(`refused: ${result.reason}`);
}

function refuses(schema: Parameters<typeof check>[0], value: unknown): string {
  const result = check(schema, value);
  if (result.ok) throw new Error(`accepted ${JSON.stringify(value)?.slice(0, 200)}`);
  return result.reason;
}

describe('protocol schemas accept what nodes really send', () => {
  let dir: string;
  let metadata: MetadataStore;
  let blobs: BlobStore;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-protocol-'));
    metadata = new MetadataStore(join(dir, 'metadata.sqlite'));
    blobs = new BlobStore(dir, metadata);
    await blobs.init();
  });

  afterAll(async () => {
    await metadata.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a gossip digest from a real member list, drained and full members included', () => {
    const m = new Membership(
      {
        selfId: 'shoal-0.shoal',
        selfUrl: 'http://shoal-0.shoal.default.svc.cluster.local:7001',
        seeds: [],
        discoveryDns: undefined,
        port: 7001,
        replicas: 3,
        gossipIntervalMs: 100,
        failureTimeoutMs: 1_000,
      },
      // Never called: the member list is built from receive() alone.
      {} as PeerClient,
      silentLogger(),
    );
    m.receive({
      from: 'b',
      members: [member({ id: 'b', url: 'https://[::1]:7002' }), member({ id: 'c', state: 'dead' })],
    });
    m.setFull(true);
    m.setLeaving(true);
    const digest = m.digest();
    accepts(GossipMessageSchema, digest);
    expect(check(GossipMessageSchema, digest)).toEqual({ ok: true, value: digest });
  });

  it('prepare answers, records, tombstones, listings and digests from a real store', async () => {
    const bytes = Buffer.from('hello');
    const prepared = await blobs.receive(Readable.from([bytes]));
    accepts(PreparedUploadSchema, prepared);
    const file = meta({ size: prepared.size, sha256: sha256Hex(bytes), name: 'ünïcødé name.txt' });
    const checksums = checksumsOf(bytes);
    const commit = { token: prepared.token, meta: file, checksums: checksums.toString('base64') };
    accepts(CommitRequestSchema, { ...commit, heldFor: null });
    accepts(CommitRequestSchema, { ...commit, heldFor: 'shoal-2.shoal' });
    await blobs.commit(prepared.token, file, 'node-3', checksums);

    const deleted = meta();
    metadata.putLive({
      meta: deleted,
      partition: partitionOf(deleted.id),
      heldFor: null,
      checksums: Buffer.alloc(0),
    });
    const at = new Date().toISOString();
    metadata.markDeleted(deleted.id, at);
    // A tombstone for an id this node never held: no name, sha256 or content type.
    const forced = newFileId();
    metadata.markDeleted(forced, at, partitionOf(forced));

    for (const id of [file.id, deleted.id, forced]) accepts(FileRecordSchema, metadata.get(id));
    expect(metadata.get(forced)).toMatchObject({ name: '', sha256: '', contentType: '', state: 'deleted' });
    accepts(LocalListingSchema, { records: metadata.listAfter('', 1000), truncated: false });
    accepts(PartitionRecordsSchema, metadata.partitionRecords(partitionOf(file.id)));
    accepts(CatchUpAnswerSchema, {
      tombstones: metadata.tombstonesSince(at, 1000),
      caughtUp: true,
      lastAliveAt: at,
    });
    expect(metadata.tombstonesSince(at, 1000)).toHaveLength(2);

    const p = partitionOf(file.id);
    const bitmap = Buffer.alloc(PARTITION_COUNT / 8);
    bitmap[p >> 3]! |= 1 << (p & 7);
    accepts(DigestsRequestSchema, { partitions: bitmap.toString('base64') });
    accepts(DigestsAnswerSchema, { digests: { [p]: metadata.digest(p), 0: SHA, 8191: SHA } });

    const record = metadata.get(file.id)!;
    expect(decodeMetaHeader(encodeMetaHeader(record))).toEqual(record);
  });

  it('the other requests and answers', () => {
    accepts(DeleteRequestSchema, { deletedAt: NOW, force: true });
    accepts(ForgetRequestSchema, { sha256: null });
    accepts(ForgetRequestSchema, { sha256: SHA });
    accepts(ProbeRequestSchema, { url: 'http://10.0.0.7:7001' });
    accepts(PullRequestSchema, {
      meta: meta(),
      sources: ['http://127.0.0.1:7001', 'https://shoal-1.shoal:7001/base'],
      heldFor: null,
    });
    accepts(ErrorBodySchema, errorBody('quorum_unavailable', 'try again'));
    const status: NodeStatus = {
      id: 'node-1',
      url: 'http://127.0.0.1:7001',
      ready: true,
      files: 3,
      bytes: 10 * 1024 ** 3,
      tombstones: 0,
      diskFreeBytes: null,
      full: false,
      diskTotalBytes: 2 ** 50,
      underReplicatedFiles: 0,
      underReplicatedPartitions: 0,
      pendingRepairBytes: 0,
      repairBytesReceived: 0,
      copiesMade: 0,
      surplusDropped: 0,
      corruptFound: 0,
    };
    accepts(NodeStatusSchema, status);
  });

  it('keeps unknown fields out instead of refusing them, for rolling upgrades', () => {
    const result = check(MemberDigestSchema, { ...member(), zone: 'eu-1' });
    expect(result.ok && 'zone' in result.value).toBe(false);
  });

  it('allows listing pages as large as the public listing asks for', () => {
    expect(MAX_LISTING_PAGE).toBeGreaterThanOrEqual(MAX_PAGE);
  });
});

describe('protocol schemas refuse', () => {
  it.each([
    ['an incarnation of 2^53', { incarnation: 2 ** 53 }],
    ['a negative incarnation', { incarnation: -1 }],
    ['a fractional incarnation', { incarnation: 1.5 }],
    ['an incarnation as a string', { incarnation: '17' }],
    ['an unknown state', { state: 'zombie' }],
    ['a javascript: URL', { url: 'javascript:alert(1)' }],
    ['a file: URL', { url: 'file:///etc/passwd' }],
    ['a URL with credentials', { url: 'http://user:pass@10.0.0.1:7001' }],
    ['a URL with a query', { url: 'http://10.0.0.1:7001?x=1' }],
    ['a URL with a fragment', { url: 'http://10.0.0.1:7001#x' }],
    ['a URL that does not parse', { url: 'http://' }],
    ['a very long URL', { url: `http://${'a'.repeat(2100)}.example` }],
    ['a node id with a slash', { id: 'node/1' }],
    ['an empty node id', { id: '' }],
    ['full as a string', { full: 'yes' }],
  ])('a member digest with %s', (_what, change) => {
    refuses(MemberDigestSchema, { ...member(), ...change });
  });

  it('a gossip message with more members than any cluster has', () => {
    const members = Array.from({ length: MAX_MEMBERS + 1 }, (_, i) => member({ id: `n${i}` }));
    expect(refuses(GossipMessageSchema, { from: 'n0', members })).toMatch(/members/);
    accepts(GossipMessageSchema, { from: 'n0', members: members.slice(0, MAX_MEMBERS) });
  });

  it('says where and what, briefly, without echoing the value', () => {
    const reason = refuses(GossipMessageSchema, {
      from: 'b',
      members: [member(), member({ url: 'javascript:alert(document.cookie)' })],
    });
    expect(reason).toBe(
      'members[1].url: member URLs are http(s) base URLs without credentials, query or fragment',
    );
  });

  it.each([
    ['a negative size', { size: -1 }],
    ['a size beyond 2^53', { size: 2 ** 53 }],
    ['a size as a string', { size: '12' }],
    ['an uppercase sha256', { sha256: SHA.toUpperCase() }],
    ['a short sha256', { sha256: SHA.slice(1) }],
    ['an id with a path in it', { id: '../../etc/passwd' }],
    ['an id over 64 characters', { id: 'a'.repeat(65) }],
    ['an empty name', { name: '' }],
    ['a name over 1024 bytes', { name: 'é'.repeat(513) }],
    ['a content type with a line break', { contentType: 'text/plain\r\nx-evil: 1' }],
    ['a content type over 255 characters', { contentType: `text/${'x'.repeat(251)}` }],
    ['a content type without a subtype', { contentType: 'text' }],
    ['a date that is not ISO', { createdAt: 'yesterday' }],
    ['an ISO date with an offset', { createdAt: '2024-01-01T00:00:00.000+01:00' }],
    ['February 30th', { createdAt: '2024-02-30T00:00:00.000Z' }],
    ['hour 24', { createdAt: '2024-01-01T24:00:00.000Z' }],
  ])('file metadata with %s', (_what, change) => {
    refuses(FileMetaSchema, { ...meta(), ...change });
  });

  it('a live record without full metadata, and a tombstone without its time', () => {
    const live: FileRecord = { ...meta(), state: 'live', deletedAt: null, heldFor: null };
    accepts(FileRecordSchema, live);
    refuses(FileRecordSchema, { ...live, sha256: '' });
    refuses(FileRecordSchema, { ...live, deletedAt: NOW });
    refuses(FileRecordSchema, { ...live, heldFor: 'no/such node' });
    refuses(FileRecordSchema, { ...live, state: 'deleted' });
    refuses(FileRecordSchema, { ...live, state: 'gone', deletedAt: NOW });
  });

  it('pages larger than their limits', () => {
    const record: FileRecord = { ...meta(), state: 'live', deletedAt: null, heldFor: null };
    refuses(LocalListingSchema, { records: Array(MAX_LISTING_PAGE + 1).fill(record), truncated: true });
    refuses(CatchUpAnswerSchema, {
      tombstones: Array(10_001).fill({ id: 'a', deletedAt: NOW }),
      caughtUp: true,
      lastAliveAt: null,
    });
  });

  it('bad requests of every kind', () => {
    refuses(CommitRequestSchema, { token: 'not-a-token', meta: meta(), heldFor: null });
    refuses(CommitRequestSchema, { token: 'ab'.repeat(16), meta: { ...meta(), size: -5 }, heldFor: null });
    refuses(CommitRequestSchema, { token: 'ab'.repeat(16), meta: meta(), heldFor: null });
    refuses(CommitRequestSchema, {
      token: 'ab'.repeat(16),
      meta: meta(),
      heldFor: null,
      checksums: 'not base64!',
    });
    refuses(DeleteRequestSchema, { deletedAt: 'now', force: false });
    refuses(DeleteRequestSchema, { deletedAt: NOW, force: 'true' });
    refuses(ForgetRequestSchema, { sha256: 'deadbeef' });
    refuses(ProbeRequestSchema, { url: 'file:///etc/passwd' });
    refuses(PullRequestSchema, { meta: meta(), sources: ['gopher://10.0.0.1'], heldFor: null });
    refuses(PullRequestSchema, {
      meta: meta(),
      sources: Array(MAX_MEMBERS + 1).fill('http://10.0.0.1:7001'),
      heldFor: null,
    });
    refuses(DigestsRequestSchema, { partitions: Buffer.alloc(10).toString('base64') });
    refuses(DigestsRequestSchema, { partitions: '!'.repeat(1368) });
    refuses(DigestsAnswerSchema, { digests: { [PARTITION_COUNT]: SHA } });
    refuses(DigestsAnswerSchema, { digests: { '007': SHA } });
    refuses(DigestsAnswerSchema, { digests: { 1: 'nope' } });
    refuses(ErrorBodySchema, { error: 'bad' });
    refuses(PreparedUploadSchema, { token: 'ab'.repeat(16), size: -1 });
  });

  it('timestamps: exactly what toISOString writes', () => {
    expect(isIsoTimestamp(new Date(0).toISOString())).toBe(true);
    expect(isIsoTimestamp('2024-02-29T23:59:59.999Z')).toBe(true);
    expect(isIsoTimestamp('2023-02-29T00:00:00.000Z')).toBe(false);
    expect(isIsoTimestamp('2024-04-31T00:00:00.000Z')).toBe(false);
    expect(isIsoTimestamp('2024-01-01T00:00:00Z')).toBe(false);
    expect(isIsoTimestamp('2024-1-01T00:00:00.000Z')).toBe(false);
  });
});

describe('the route table', () => {
  it('builds each path from its params, encoded, with the query both ends read the same way', () => {
    expect(INTERNAL_ROUTES.ping.path()).toBe('/internal/v1/ping');
    expect(INTERNAL_ROUTES.commit.path({ id: 'abc' })).toBe('/internal/v1/blobs/abc/commit');
    expect(INTERNAL_ROUTES.partitionRecords.path({ p: 17 })).toBe('/internal/v1/partitions/17/records');
    expect(INTERNAL_ROUTES.record.path({ id: '../x' })).toBe('/internal/v1/records/..%2Fx');
    const since = '2024-05-01T10:00:00.000Z';
    const path = INTERNAL_ROUTES.catchUp.path({ since, limit: 1000 });
    expect(path).toBe('/internal/v1/catch-up?since=2024-05-01T10%3A00%3A00.000Z&limit=1000');
    const query = Object.fromEntries(new URL(path, 'http://x').searchParams);
    expect(check(INTERNAL_ROUTES.catchUp.query, query)).toEqual({
      ok: true,
      value: { since, limit: 1000 },
    });
    const listing = INTERNAL_ROUTES.listing.path({ after: '', limit: 5 });
    expect(listing).toBe('/internal/v1/records?after=&limit=5');
    expect(check(INTERNAL_ROUTES.listing.query, { after: '', limit: '5' })).toEqual({
      ok: true,
      value: { after: '', limit: 5 },
    });
  });

  it('refuses params and queries out of range', () => {
    refuses(INTERNAL_ROUTES.partitionRecords.params, { p: String(PARTITION_COUNT) });
    refuses(INTERNAL_ROUTES.partitionRecords.params, { p: '-1' });
    refuses(INTERNAL_ROUTES.partitionRecords.params, { p: '0x10' });
    refuses(INTERNAL_ROUTES.listing.query, { after: '', limit: '0' });
    refuses(INTERNAL_ROUTES.listing.query, { after: '', limit: String(MAX_LISTING_PAGE + 1) });
    refuses(INTERNAL_ROUTES.listing.query, { after: '/', limit: '1' });
    refuses(INTERNAL_ROUTES.catchUp.query, { since: ['a', 'b'], limit: '1' });
    refuses(INTERNAL_ROUTES.catchUp.query, { limit: '1' });
    refuses(INTERNAL_ROUTES.abort.params, { token: '../../metadata.sqlite' });
    refuses(INTERNAL_ROUTES.ping.body, { surprise: true });
  });

  it('gives every route its own method and pattern', () => {
    const seen = new Set(Object.values(INTERNAL_ROUTES).map((r) => `${r.method} ${r.pattern}`));
    expect(seen.size).toBe(Object.keys(INTERNAL_ROUTES).length);
  });
});

describe('PeerClient and a peer that answers junk', () => {
  let server: Server;
  let base: string;
  let answer: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
  const client = new PeerClient({ nodeId: 'test', secret: 'a-cluster-secret-for-tests' });

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => answer(req, res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await client.close();
    await new Promise((resolve) => server.close(resolve));
  });

  function answerWith(status: number, body: string, headers: Record<string, string> = {}): void {
    answer = (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(body);
    };
  }

  async function failure(call: Promise<unknown>): Promise<PeerError> {
    const err: unknown = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof PeerError)) throw new Error(`expected a PeerError, got ${String(err)}`);
    return err;
  }

  it.each([
    ['not JSON', 'hello', (c: PeerClient) => c.ping(base, 1_000)],
    ['a wrong type', '{"ready":"yes"}', (c: PeerClient) => c.ping(base, 1_000)],
    ['nothing at all', '', (c: PeerClient) => c.status(base, 1_000)],
    [
      'a member with a javascript: URL',
      JSON.stringify({ from: 'x', members: [member({ url: 'javascript:alert(1)' })] }),
      (c: PeerClient) => c.gossip(base, { from: 'test', members: [] }, 1_000),
    ],
    [
      'an incarnation of 2^53',
      `{"from":"x","members":[{"id":"x","url":"http://a","incarnation":9007199254740992,"state":"alive"}]}`,
      (c: PeerClient) => c.gossip(base, { from: 'test', members: [] }, 1_000),
    ],
    [
      'a prepare answer with a negative size',
      JSON.stringify({ token: 'ab'.repeat(16), size: -1 }),
      (c: PeerClient) => c.prepareUpload(base, 'abc', Readable.from([Buffer.from('x')])),
    ],
    [
      'a digest that is not a sha256',
      '{"digests":{"5":"zz"}}',
      (c: PeerClient) => c.digests(base, Buffer.alloc(PARTITION_COUNT / 8)),
    ],
    [
      "another file's record",
      JSON.stringify({ ...meta({ id: 'other' }), state: 'live', deletedAt: null, heldFor: null }),
      (c: PeerClient) => c.record(base, 'asked-for', 1_000),
    ],
  ])('a 200 with %s is a protocol PeerError', async (_what, body, call) => {
    answerWith(200, body);
    const err = await failure(call(client));
    expect(err.kind).toBe('protocol');
    expect(err.status).toBe(200);
    expect(err.peer).toBe(base);
  });

  it('an error status keeps its code when the body is an error body, and its text when not', async () => {
    answerWith(503, JSON.stringify(errorBody('not_ready', 'starting')));
    expect(await failure(client.ping(base, 1_000))).toMatchObject({
      kind: 'status',
      status: 503,
      code: 'not_ready',
    });
    answerWith(502, '<html>bad gateway</html>');
    const err = await failure(client.ping(base, 1_000));
    expect(err).toMatchObject({ kind: 'status', status: 502, code: undefined });
    expect(err.message).toContain('bad gateway');
  });

  it('a copy without a valid x-shoal-meta header for that file is a protocol PeerError', async () => {
    const record: FileRecord = {
      ...meta({ id: 'f1', size: 3 }),
      state: 'live',
      deletedAt: null,
      heldFor: null,
    };
    answerWith(200, 'abc');
    expect((await failure(client.openBlob(base, 'f1', { method: 'GET' }))).kind).toBe('protocol');
    answerWith(200, 'abc', { 'x-shoal-meta': Buffer.from('{"id":"f1"}').toString('base64url') });
    expect((await failure(client.openBlob(base, 'f1', { method: 'GET' }))).kind).toBe('protocol');
    answerWith(200, 'abc', { 'x-shoal-meta': encodeMetaHeader({ ...record, id: 'f2' }) });
    expect((await failure(client.openBlob(base, 'f1', { method: 'GET' }))).kind).toBe('protocol');

    answerWith(200, 'abc', { 'x-shoal-meta': encodeMetaHeader(record) });
    const opened = await client.openBlob(base, 'f1', { method: 'GET' });
    expect(opened?.record).toEqual(record);
    expect(await opened?.body.toArray()).toEqual([Buffer.from('abc')]);
  });

  it('still reads well-formed answers: a 404 record, a 204 abort, a listing', async () => {
    answerWith(404, JSON.stringify(errorBody('not_found', 'no record')));
    expect(await client.record(base, 'abc', 1_000)).toBeUndefined();
    answer = (_req, res) => {
      res.writeHead(204);
      res.end();
    };
    await expect(client.abortUpload(base, 'ab'.repeat(16))).resolves.toBeUndefined();
    answerWith(200, JSON.stringify({ records: [], truncated: false }));
    expect(await client.listRecords(base, '', 10)).toEqual({ records: [], truncated: false });
  });
});
