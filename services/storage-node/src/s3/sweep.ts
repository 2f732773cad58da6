import { setImmediate as nextTurn } from 'node:timers/promises';
import { errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { FileRecord } from '../../../../shared/protocol';
import { UPLOAD_RECORD_TYPE } from './listing';
import { PART_TYPE, type S3Multipart } from './multipart';
import { attrsOf, isManifest, type S3Objects } from './objects';

/**
 * What a crash can leave of S3's files, found in this node's own rows and removed through the
 * cluster, as a client's delete would:
 *
 * - versions older than a key's current one: the reclaim that follows an answer runs after it, so
 *   a coordinator that dies in between leaves them;
 * - parts of an upload whose record is gone: an abort deletes the record first (so no part can be
 *   added after it), then the parts; a completion deletes the record, then the parts it left out;
 * - objects of a deleted bucket: DeleteBucket refuses a bucket with objects in it, but a PutObject
 *   that began before the deletion may end after it.
 *
 * Each pass walks the node's object rows in index order, a page at a time, and picks the keys that
 * look like either; only those whose first live home this node is, so one member acts on a key.
 * Every removal is decided again on the cluster's answer (S3Objects.versions), never on this
 * node's rows alone: they may lag behind.
 *
 * Also run by the same worker: the multipart uploads older than the expiry are aborted
 * (S3Multipart.sweep).
 */

export interface SweepCounts {
  /** Keys acted on, and what was removed. */
  keys: number;
  versions: number;
  parts: number;
  /** Files of deleted buckets' keys. */
  orphaned: number;
}

/** A row of the walk: its key's bytes (the cursor) and its record. */
export interface ObjectRow {
  key: Buffer;
  record: FileRecord;
}

export interface S3SweepOptions {
  /** How long after a version's time its replaced versions may be left to the normal reclaim. */
  graceMs: number;
  /** How old a part must be before an upload without a record is taken as left over. */
  partAgeMs: number;
  /** Rows per page of the walk, and at most how many keys one pass acts on. */
  pageSize?: number;
  maxKeys?: number;
}

const PAGE_SIZE = 500;
const MAX_KEYS_PER_PASS = 1_000;

type Cursor = { bucket: string; key: Buffer; id: string };
const START: Cursor = { bucket: '', key: Buffer.alloc(0), id: '' };

export class S3Sweep {
  /**
   * Where the next pass starts: after the last key a pass acted on when it stopped at maxKeys, so
   * keys that stay suspect (a peer down, a replacement still within the grace) never keep the
   * walk from the rest; back at the start once a walk reaches the end.
   */
  private resume: Cursor = START;

  constructor(
    private readonly objects: S3Objects,
    private readonly multipart: S3Multipart,
    /** The node's object rows after a (bucket, key bytes, id) cursor, in that order (MetadataStore.allObjectRows). */
    private readonly rows: (after: { bucket: string; key: Buffer; id: string }, limit: number) => ObjectRow[],
    /** Whether a bucket id is that of a deleted bucket (S3Buckets.isDeleted). */
    private readonly deletedBucket: (id: string) => boolean,
    private readonly options: S3SweepOptions,
    private readonly log: Logger,
  ) {}

  /** One walk over the node's object rows, acting on what it found; never throws. */
  async pass(): Promise<SweepCounts> {
    const counts: SweepCounts = { keys: 0, versions: 0, parts: 0, orphaned: 0 };
    const found = this.find();
    for await (const group of found) {
      counts.keys++;
      const { bucket, key } = group;
      const reqId = `sweep-${group.last}`;
      try {
        if (group.uploads) {
          counts.orphaned += await this.objects.removeKey(bucket, key, group.uploads, reqId);
          continue;
        }
        if (group.replaced)
          counts.versions += await this.objects.reclaimLeftovers(bucket, key, this.options.graceMs, reqId);
        for (const upload of group.orphans)
          counts.parts += await this.multipart.removeOrphans(bucket, key, upload, reqId);
      } catch (err) {
        this.log.warn({ bucket, key, err: errorText(err) }, 'could not sweep what a crash left of a key');
      }
    }
    if (counts.versions + counts.parts + counts.orphaned > 0)
      this.log.info({ ...counts }, 'S3 sweep removed left-over files');
    return counts;
  }

  /** The keys that look like they hold left-overs, found a page of rows at a time. */
  private async *find(): AsyncGenerator<Suspect> {
    const pageSize = this.options.pageSize ?? PAGE_SIZE;
    const maxKeys = this.options.maxKeys ?? MAX_KEYS_PER_PASS;
    let cursor = this.resume;
    this.resume = START;
    let group: Group | undefined;
    let yielded = 0;
    for (;;) {
      const page = this.rows(cursor, pageSize);
      for (const { key, record } of page) {
        const { bucket } = record.object!;
        if (!group || group.bucket !== bucket || !group.keyBytes.equals(key)) {
          const suspect = group && this.suspect(group);
          if (suspect) {
            yield suspect;
            if (++yielded >= maxKeys) {
              this.resume = { bucket: group!.bucket, key: group!.keyBytes, id: suspect.last };
              return;
            }
          }
          group = { bucket, keyBytes: key, rows: [] };
        }
        group.rows.push(record);
      }
      const last = page[page.length - 1];
      if (page.length < pageSize || !last) break;
      cursor = { bucket: last.record.object!.bucket, key: last.key, id: last.record.id };
      // A walk of a million rows must not hold the event loop: requests go between pages.
      await nextTurn();
    }
    const suspect = group && this.suspect(group);
    if (suspect) yield suspect;
  }

  /** What a key's rows here suggest was left over, if anything, and if this node sweeps the key. */
  private suspect(group: Group): Suspect | undefined {
    const key = group.keyBytes.toString('utf8');
    if (this.deletedBucket(group.bucket)) {
      if (!this.objects.sweeps(group.bucket, key)) return undefined;
      const uploads = new Set(group.rows.flatMap((r) => r.object!.upload ?? []));
      return { ...this.named(group, key), replaced: false, orphans: [], uploads: [...uploads] };
    }
    const versions = group.rows.filter((r) => r.object!.upload === undefined);
    const replaced = versions.length > 1;
    const listed = new Set(versions.filter(isManifest).map((v) => attrsOf(v).upload));
    const uploads = new Map<string, { record: boolean; oldPart: boolean }>();
    const oldBefore = Date.now() - this.options.partAgeMs;
    for (const row of group.rows) {
      const upload = row.object!.upload;
      if (upload === undefined) continue;
      const seen = uploads.get(upload) ?? { record: false, oldPart: false };
      if (row.contentType === UPLOAD_RECORD_TYPE) seen.record = true;
      if (row.contentType === PART_TYPE && Date.parse(row.createdAt) < oldBefore) seen.oldPart = true;
      uploads.set(upload, seen);
    }
    const orphans = [...uploads]
      .filter(([upload, seen]) => seen.oldPart && !seen.record && !listed.has(upload))
      .map(([upload]) => upload);
    if (!replaced && orphans.length === 0) return undefined;
    if (!this.objects.sweeps(group.bucket, key)) return undefined;
    return { ...this.named(group, key), replaced, orphans };
  }

  private named(group: Group, key: string): { bucket: string; key: string; last: string } {
    return { bucket: group.bucket, key, last: group.rows[group.rows.length - 1]!.id };
  }
}

interface Group {
  bucket: string;
  keyBytes: Buffer;
  rows: FileRecord[];
}

interface Suspect {
  bucket: string;
  key: string;
  /** More than one version of the key is here. */
  replaced: boolean;
  /** Uploads with old parts here, and neither their record nor a version that lists them. */
  orphans: string[];
  /** Set for a key of a deleted bucket: everything of it goes, these uploads' files too. */
  uploads?: string[];
  /** The id of the key's last row, to name the sweep's requests in the logs. */
  last: string;
}
