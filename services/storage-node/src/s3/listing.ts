import type { FileRecord } from '../../../../shared/protocol';

/**
 * Listing a bucket without a bucket index anywhere: every node keeps the object rows of the
 * files it holds in one SQLite index, ordered by (bucket, key bytes, version), and a listing asks
 * every live member for its next entries and merges them (as the native listing merges records).
 *
 * `scanBucket` is one node's side: its entries after a point, one per key (its newest version
 * of that key, a delete marker included, since another node may hold an older version that the
 * marker hides) or one per common prefix under a delimiter. `mergeListings` is the asking node's
 * side: per key the newest version any node has, delete markers dropped, and nothing past the
 * first point where a node's answer was cut short (it may hold keys before it that others lack).
 *
 * Keys compare in UTF-8 byte order, as S3 lists them (not JavaScript's UTF-16 order, which puts
 * U+E000-U+FFFF after the astral planes).
 */

/** The content type of the file that records a deleted key (a zero-byte version that hides the older ones). */
export const DELETE_MARKER_TYPE = 'application/x-shoal-delete-marker';

/** The content type of the zero-byte file that records a multipart upload (s3/multipart.ts). */
export const UPLOAD_RECORD_TYPE = 'application/x-shoal-multipart-upload';

export function isDeleteMarker(record: FileRecord): boolean {
  return record.contentType === DELETE_MARKER_TYPE;
}

export interface ListRequest {
  bucket: string;
  prefix: string;
  delimiter?: string | undefined;
  /** List what comes after this key; a common prefix here means after every key under it. */
  after?: string | undefined;
  limit: number;
}

/** A key with the newest version known, or a common prefix (`prefix: true`, no record). */
export interface ListEntry {
  key: string;
  prefix?: boolean | undefined;
  /** A prefix under which every key this node holds is deleted (its newest version a marker). */
  dead?: boolean | undefined;
  record?: FileRecord | undefined;
}

export interface NodeListing {
  entries: ListEntry[];
  /** True when the node had more entries past the last one returned. */
  truncated: boolean;
}

/** A node's object rows after a (key bytes, version id) point, below `end`, in that order. */
export type RowSource = (
  after: { key: Buffer; id: string },
  end: Buffer | undefined,
  limit: number,
) => Array<{ key: Buffer; record: FileRecord }>;

/**
 * Rows read from SQLite at a time while scanning: few right after a jump past a common prefix
 * (the next key is often the next prefix already), doubling while rows keep being used.
 */
const FIRST_BATCH = 4;
const MAX_BATCH = 256;

export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The smallest byte string greater than every string that starts with `bytes`; undefined when
 * there is none (all 0xFF, which UTF-8 never holds).
 */
export function successor(bytes: Buffer): Buffer | undefined {
  let n = bytes.length;
  while (n > 0 && bytes[n - 1] === 0xff) n--;
  if (n === 0) return undefined;
  const next = Buffer.from(bytes.subarray(0, n));
  next[n - 1]!++;
  return next;
}

/** The common prefix `key` rolls up into under `delimiter` (prefix, then up to the first delimiter after it). */
export function commonPrefixOf(
  key: string,
  prefix: string,
  delimiter: string | undefined,
): string | undefined {
  if (!delimiter || !key.startsWith(prefix)) return undefined;
  const at = key.indexOf(delimiter, prefix.length);
  return at < 0 ? undefined : key.slice(0, at + delimiter.length);
}

/** One node's next `limit` entries of a listing (see the top of this file). */
export function scanBucket(source: RowSource, request: ListRequest): NodeListing {
  const { prefix, delimiter, after, limit } = request;
  const prefixBytes = Buffer.from(prefix, 'utf8');
  const end = prefix === '' ? undefined : successor(prefixBytes);
  // (key, id) > (k, '') takes key k itself; (k, '~') skips it ('~' sorts after every id character).
  let cursor: { key: Buffer; id: string } | undefined = { key: prefixBytes, id: '' };
  if (after !== undefined && Buffer.compare(Buffer.from(after, 'utf8'), prefixBytes) >= 0) {
    const rolled = commonPrefixOf(after, prefix, delimiter);
    cursor = rolled !== undefined ? past(rolled) : { key: Buffer.from(after, 'utf8'), id: '~' };
  }
  const entries: ListEntry[] = [];
  // The key being read: its rows come oldest version first, so the last one is the newest here.
  let pending: { key: string; newest: FileRecord } | undefined;
  // A common prefix whose keys so far all have a delete marker as their newest version here.
  let dead: string | undefined;

  /** Lists the dead prefix once the scan is past it (at `key`, or at the end). */
  const passDead = (key?: string): void => {
    if (dead !== undefined && (key === undefined || !key.startsWith(dead))) {
      entries.push({ key: dead, prefix: true, dead: true });
      dead = undefined;
    }
  };

  /** Adds the pending key's entry; returns where to read on when its common prefix was just listed. */
  const settle = (): { key: Buffer; id: string } | undefined | 'on' => {
    if (!pending) return 'on';
    const { key, newest } = pending;
    pending = undefined;
    passDead(key);
    const rolled = commonPrefixOf(key, prefix, delimiter);
    if (rolled === undefined) {
      entries.push({ key, record: newest });
      return 'on';
    }
    // A prefix is listed for a key that is there. A key whose newest version here is a delete
    // marker does not make one: the scan goes on to the next key under the same prefix, and if
    // none is there, says so (`dead`): another node may hold an older, live version of that key
    // and list the prefix, which the asking node must then check (resolveDisputes).
    if (isDeleteMarker(newest)) {
      dead = rolled;
      return 'on';
    }
    dead = undefined;
    entries.push({ key: rolled, prefix: true });
    return past(rolled);
  };

  let batch = FIRST_BATCH;
  scan: while (cursor && entries.length <= limit) {
    const rows = source(cursor, end, batch);
    batch = Math.min(batch * 2, MAX_BATCH);
    if (rows.length === 0) {
      settle();
      passDead();
      break;
    }
    for (const row of rows) {
      const key = row.record.object?.key;
      if (key === undefined) continue;
      if (pending && pending.key !== key) {
        const next = settle();
        if (next !== 'on') {
          cursor = next;
          batch = FIRST_BATCH;
          continue scan;
        }
        if (entries.length > limit) break scan;
      }
      pending = { key, newest: row.record };
      cursor = { key: row.key, id: row.record.id };
    }
  }
  // Rows of the last key may go on past this batch: it is settled only when the scan ran out.
  const truncated = entries.length > limit;
  return { entries: entries.slice(0, limit), truncated };
}

/** Just past every key under a common prefix. */
function past(rolled: string): { key: Buffer; id: string } | undefined {
  const next = successor(Buffer.from(rolled, 'utf8'));
  return next ? { key: next, id: '' } : undefined;
}

export interface MergedListing {
  /** Keys with their newest live version, and common prefixes, in byte order. */
  entries: ListEntry[];
  truncated: boolean;
  /** Where the next page starts (the `after` of its request) when truncated. */
  next: string | undefined;
  /**
   * Common prefixes among `entries` that one node lists and another holds only deleted keys
   * under: a node that missed a delete may list a prefix that is empty (resolveDisputes).
   */
  disputed: string[];
}

/**
 * Merges the nodes' answers into one page of at most `limit` entries. Entries past the smallest
 * last entry of any answer that was cut short are left for the next page: that node may hold
 * keys before them that the other answers do not show.
 */
export function mergeListings(answers: NodeListing[], limit: number): MergedListing {
  let horizon: string | undefined;
  for (const answer of answers) {
    const last = answer.entries[answer.entries.length - 1];
    if (answer.truncated && last && (horizon === undefined || compareKeys(last.key, horizon) < 0))
      horizon = last.key;
  }
  const keys = new Map<string, FileRecord>();
  const prefixes = new Map<string, { live: boolean; dead: boolean }>();
  for (const answer of answers) {
    for (const entry of answer.entries) {
      if (horizon !== undefined && compareKeys(entry.key, horizon) > 0) continue;
      if (entry.prefix) {
        const known = prefixes.get(entry.key) ?? { live: false, dead: false };
        if (entry.dead) known.dead = true;
        else known.live = true;
        prefixes.set(entry.key, known);
      } else if (entry.record) {
        const known = keys.get(entry.key);
        if (!known || entry.record.id > known.id) keys.set(entry.key, entry.record);
      }
    }
  }
  const all = [...new Set([...keys.keys(), ...prefixes.keys()])].sort(compareKeys);
  const entries: ListEntry[] = [];
  const disputed: string[] = [];
  let next: string | undefined;
  for (const key of all) {
    if (entries.length === limit) return { entries, truncated: true, next, disputed };
    next = key;
    const rolled = prefixes.get(key);
    if (rolled) {
      if (!rolled.live) continue;
      if (rolled.dead) disputed.push(key);
      entries.push({ key, prefix: true });
      continue;
    }
    const record = keys.get(key)!;
    if (!isDeleteMarker(record)) entries.push({ key, record });
  }
  if (horizon !== undefined) return { entries, truncated: true, next: horizon, disputed };
  return { entries, truncated: false, next: undefined, disputed };
}

/**
 * Drops the disputed common prefixes under which no key is live: `holdsLiveKey` asks the nodes
 * (a listing of that prefix without the delimiter, which resolves each key's versions).
 */
export async function resolveDisputes(
  page: MergedListing,
  holdsLiveKey: (prefix: string) => Promise<boolean>,
): Promise<MergedListing> {
  if (page.disputed.length === 0) return page;
  const empty = new Set<string>();
  for (const prefix of page.disputed) if (!(await holdsLiveKey(prefix))) empty.add(prefix);
  return { ...page, entries: page.entries.filter((e) => !(e.prefix && empty.has(e.key))), disputed: [] };
}
