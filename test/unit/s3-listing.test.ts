import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { objectFileId } from '../../shared/ids';
import { keyPartition } from '../../services/storage-node/src/placement/placement';
import {
  DELETE_MARKER_TYPE,
  compareKeys,
  mergeListings,
  resolveDisputes,
  scanBucket,
  successor,
  type ListRequest,
} from '../../services/storage-node/src/s3/listing';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';

/**
 * A bucket listing is decided from every node's own rows (scanBucket) merged at the asking node
 * (mergeListings). Here three real SQLite stores hold random versions and delete markers of random
 * keys, unicode included, as replication leaves them (some nodes missing the newest version, or
 * the marker); every page of every listing, walked to its end, must be what a single S3 bucket
 * with the newest version of each key would list.
 */

const BUCKET = 'b0123456789abcdef01234567';

interface Version {
  key: string;
  id: string;
  marker: boolean;
}

function put(store: MetadataStore, v: Version): void {
  store.putLive({
    meta: {
      id: v.id,
      name: v.key,
      size: v.marker ? 0 : 7,
      sha256: 'a'.repeat(64),
      contentType: v.marker ? DELETE_MARKER_TYPE : 'application/octet-stream',
      createdAt: new Date().toISOString(),
      object: { bucket: BUCKET, key: v.key, attrs: '{}' },
    },
    partition: keyPartition(BUCKET, v.key),
    heldFor: null,
    checksums: Buffer.alloc(4),
  });
}

/** A seeded random generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

/** What S3 would list: the newest version of each key, markers hiding it, then prefix and delimiter applied. */
function expected(all: Version[], request: Omit<ListRequest, 'limit' | 'bucket'>): string[] {
  const newest = new Map<string, Version>();
  for (const v of all) {
    const known = newest.get(v.key);
    if (!known || v.id > known.id) newest.set(v.key, v);
  }
  const out = new Set<string>();
  for (const v of newest.values()) {
    if (v.marker || !v.key.startsWith(request.prefix)) continue;
    const at = request.delimiter ? v.key.indexOf(request.delimiter, request.prefix.length) : -1;
    out.add(at < 0 ? v.key : `${v.key.slice(0, at + request.delimiter!.length)}/`);
  }
  return [...out].sort(compareKeys);
}

/** Common prefixes that nodes disagreed on, and had to be checked. */
let disputes = 0;

/** Every page of a listing, as a client paging with the continuation would see it. */
async function walk(
  stores: MetadataStore[],
  request: Omit<ListRequest, 'limit' | 'bucket'>,
  limit: number,
): Promise<string[]> {
  const seen: string[] = [];
  let after: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const answers = stores.map((store) =>
      scanBucket((a, end, n) => store.objectRows(BUCKET, a, end, n), {
        ...request,
        bucket: BUCKET,
        after,
        limit,
      }),
    );
    const unresolved = mergeListings(answers, limit);
    disputes += unresolved.disputed.length;
    const merged = await resolveDisputes(
      unresolved,
      async (prefix) => (await walk(stores, { prefix }, 100)).length > 0,
    );
    expect(merged.entries.length).toBeLessThanOrEqual(limit);
    for (const e of merged.entries) seen.push(e.prefix ? `${e.key}/` : e.key);
    if (!merged.truncated) return seen;
    after = merged.next;
  }
  throw new Error('the listing did not end');
}

describe('bucket listings merged from every node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-listing-'));
  let stores: MetadataStore[];
  const all: Version[] = [];

  beforeAll(() => {
    stores = [0, 1, 2].map((i) => new MetadataStore(join(dir, `n${i}.sqlite`)));
    const rand = random(42);
    const words = ['a', 'b', 'photos', 'été', '😀', 'z', 'a+b', '%', 'x y', '\uE000', 'dir'];
    const pick = () => words[Math.floor(rand() * words.length)]!;
    const keys = new Set<string>();
    while (keys.size < 400) {
      const depth = 1 + Math.floor(rand() * 3);
      keys.add(Array.from({ length: depth }, pick).join('/') + (rand() < 0.2 ? '/' : ''));
    }
    let t = Date.UTC(2026, 0, 1);
    for (const key of keys) {
      const versions = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < versions; i++) {
        const v = { key, id: objectFileId(keyPartition(BUCKET, key), (t += 1000)), marker: rand() < 0.25 };
        all.push(v);
        // Each version is on two or three of the nodes, as a write acknowledged at W = 2 leaves it.
        const missing = rand() < 0.4 ? Math.floor(rand() * 3) : -1;
        stores.forEach((s, n) => n !== missing && put(s, v));
      }
    }
  });

  afterAll(async () => {
    for (const s of stores) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([1, 2, 7, 1000])('pages through every key in UTF-8 byte order, %i at a time', async (limit) => {
    const listed = await walk(stores, { prefix: '' }, limit);
    expect(listed).toEqual(expected(all, { prefix: '' }));
    // Byte order is not JavaScript's: U+E000 sorts before an emoji in UTF-8, after it in UTF-16.
    expect(listed.findIndex((k) => k.startsWith('\uE000'))).toBeLessThan(
      listed.findIndex((k) => k.startsWith('😀')),
    );
  });

  it.each([
    { prefix: '', delimiter: '/' },
    { prefix: 'photos/', delimiter: '/' },
    { prefix: 'a', delimiter: '/' },
    { prefix: 'été/', delimiter: undefined },
    { prefix: '', delimiter: '+' },
    { prefix: 'dir/a', delimiter: 'b' },
  ])('rolls keys up into common prefixes: %o', async (request) => {
    for (const limit of [1, 3, 1000])
      expect(await walk(stores, request, limit)).toEqual(expected(all, request));
  });

  it('checks the prefixes that a node missing a delete still lists', () => {
    // The keys above include prefixes whose only live key is a version one node kept after the
    // others took its delete marker: each was disputed, and dropped after a check.
    expect(disputes).toBeGreaterThan(0);
  });

  it('lists no prefix whose keys are all deleted', async () => {
    const store = stores[0]!;
    const t = Date.UTC(2027, 0, 1);
    put(store, { key: 'gone/one', id: objectFileId(keyPartition(BUCKET, 'gone/one'), t), marker: false });
    put(store, { key: 'gone/one', id: objectFileId(keyPartition(BUCKET, 'gone/one'), t + 1), marker: true });
    const listed = await walk(stores, { prefix: '', delimiter: '/' }, 5);
    expect(listed).not.toContain('gone//');
    expect(listed).toContain('photos//');
  });

  it('finds the byte string just past every string with a prefix', () => {
    expect(successor(Buffer.from('a/'))).toEqual(Buffer.from('a0'));
    expect(successor(Buffer.from([0x61, 0xff]))).toEqual(Buffer.from([0x62]));
    expect(successor(Buffer.from([0xff]))).toBeUndefined();
  });
});
