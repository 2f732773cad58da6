import { Readable } from 'node:stream';
import { ShoalError, errorText } from '../../../../shared/errors';
import { objectFileId, objectVersionTime } from '../../../../shared/ids';
import type { Logger } from '../../../../shared/logging';
import { MAX_OBJECT_ATTRS_LENGTH, type FileMeta, type FileRecord } from '../../../../shared/protocol';
import type { Catalog } from '../files/catalog';
import type { FileReader } from '../files/download';
import type { Membership } from '../membership/membership';
import { keyPartition } from '../placement/placement';
import type { Peer } from '../peers/peer';
import type { Nodes } from '../replication/nodes';
import type { PreparedWrite, QuorumWriter } from '../replication/quorum-write';
import { callQuorum } from '../replication/quorum';
import { S3Error } from './errors';
import {
  DELETE_MARKER_TYPE,
  isDeleteMarker,
  mergeListings,
  resolveDisputes,
  type ListRequest,
  type MergedListing,
  type NodeListing,
} from './listing';

/**
 * S3 objects on Shoal's storage engine. Every version of an object is a file of its own, written
 * by the same quorum write as an upload and so replicated, verified and repaired like any file.
 * Its id puts it in its key's partition (shared/ids.ts objectFileId), so all versions of a key
 * live on the key's home members, and its row carries the bucket, the key and the S3 attributes
 * (ObjectAttrs) in the columns of the node's own object index.
 *
 * - Which version is current: the newest live one, by the time in its id and then its random part
 *   (last writer wins; the tie-break is the id). A read asks every live member for the key's
 *   versions and needs answers from N - W + 1 of the key's first N live members, so it meets at
 *   least one of the W that acknowledged the newest write.
 * - A delete writes a delete marker: a zero-byte version newer than every version seen, that
 *   hides the older ones even where a node still holds one (a late copy, a member that was down).
 * - Once a new version (or marker) is acknowledged, the versions older than it are deleted like
 *   files (tombstones at W of their holders): the replaced bytes are reclaimed.
 */

/** What S3 keeps about an object besides its bytes, as JSON in the file's row (at most MAX_OBJECT_ATTRS_LENGTH). */
export interface ObjectAttrs {
  /** The ETag without quotes: the MD5 of the bytes, or md5-of-md5s-N for a multipart object. */
  etag: string;
  /** Content-Type as the client sent it. */
  type: string;
  /** Stored headers (cache-control, content-disposition, ...), lower-case names. */
  headers?: Record<string, string>;
  /** User metadata (x-amz-meta-*), names lower-case without the prefix. */
  meta?: Record<string, string>;
  /** The object's checksum: algorithm and base64 value (`-N` after a multipart object's COMPOSITE one). */
  checksum?: { algorithm: string; value: string };
  /** A multipart object's checksum type (COMPOSITE when unset); a single-part object's is FULL_OBJECT. */
  checksumType?: ChecksumType;
  /** A multipart object (its version file holds the manifest): its size, part count and upload. */
  size?: number;
  parts?: number;
  upload?: string;
}

/** How a multipart object's checksum covers it: a checksum of the parts' checksums, or of the bytes. */
export type ChecksumType = 'COMPOSITE' | 'FULL_OBJECT';

export interface StoredObject {
  record: FileRecord;
  attrs: ObjectAttrs;
}

export interface S3ObjectsOptions {
  replicas: number;
  writeQuorum: number;
}

/** How long a member may take to say which versions of a key it holds. */
const LOOKUP_TIMEOUT_MS = 5_000;

export class S3Objects {
  constructor(
    private readonly options: S3ObjectsOptions,
    private readonly membership: Membership,
    private readonly nodes: Nodes,
    private readonly writer: QuorumWriter,
    private readonly reader: FileReader,
    private readonly catalog: Catalog,
    private readonly log: Logger,
  ) {}

  /**
   * Every live version of the key that the cluster holds, newest first, delete markers included.
   *
   * N - W + 1 of the key's N homes meet at least one of the W that acknowledged the newest write.
   * When the cluster is calm (every member alive, none draining, no newcomer in the last settle
   * period), the write went to those homes, and asking that many of them is enough: this node
   * first when it is one, so a read costs one call to a peer in a cluster of three. Otherwise,
   * and when one of them fails, every live member is asked: while the cluster grows or a member
   * drains or dies, the newest version may sit on a member that is not among the key's homes now.
   * Throws ServiceUnavailable when fewer than N - W + 1 of the key's first N live members answer.
   */
  async versions(bucket: string, key: string, reqId: string, upload?: string): Promise<FileRecord[]> {
    const live = this.nodes.live();
    const homes = this.homes(bucket, key);
    const needed = Math.min(this.options.replicas - this.options.writeQuorum + 1, homes.length);
    const ask = (peers: Peer[]) =>
      callQuorum(
        peers,
        (peer) => peer.objectVersions(bucket, key, { upload, timeoutMs: LOOKUP_TIMEOUT_MS, reqId }),
        { quorum: peers.length },
      );
    const self = this.nodes.self.id;
    if (this.calm()) {
      const nearest = [...homes].sort((a, b) => Number(b === self) - Number(a === self)).slice(0, needed);
      const quick = await ask(nearest.flatMap((id) => this.nodes.get(id) ?? []));
      if (quick.failed.length === 0 && quick.succeeded.length === needed) return newestFirst(quick.succeeded);
    }
    const result = await ask(live);
    const answeredHomes = result.succeeded.filter((s) => homes.includes(s.target.id)).length;
    if (answeredHomes < needed) {
      for (const { target, error } of result.failed)
        this.log.warn({ peer: target.id, reqId, err: errorText(error) }, 'member could not look up a key');
      throw new S3Error(
        'ServiceUnavailable',
        `Only ${answeredHomes} of the nodes holding this key answered, ${needed} are needed; try again.`,
      );
    }
    return newestFirst(result.succeeded);
  }

  /** Every member alive and staying, and no newcomer within the settle period. */
  private calm(): boolean {
    if (Date.now() < this.membership.settledAt()) return false;
    return this.membership.view().every((m) => m.state === 'alive' && !m.leaving);
  }

  /** The current version of a key, or undefined when there is none (never written, or deleted). */
  async current(bucket: string, key: string, reqId: string): Promise<StoredObject | undefined> {
    const newest = (await this.versions(bucket, key, reqId))[0];
    if (!newest || isDeleteMarker(newest)) return undefined;
    return { record: newest, attrs: attrsOf(newest) };
  }

  /**
   * Streams `body` to the key's home members as a new version. `finish` runs once every byte is
   * in and durable on W replicas, before anything is visible: it checks what the client declared
   * (digests, checksums, lengths) and returns the attributes to store. A throw there (or from the
   * body) aborts the copies, so a refused upload leaves nothing behind.
   */
  async put(
    bucket: string,
    key: string,
    body: Readable,
    finish: (write: PreparedWrite) => ObjectAttrs,
    reqId: string,
  ): Promise<{ meta: FileMeta; attrs: ObjectAttrs }> {
    const written = await this.write({ bucket, key }, body, OBJECT_TYPE, finish, reqId);
    this.reclaimOlderThan(bucket, key, written.meta.id, reqId);
    return written;
  }

  /**
   * Writes one file of a key: a version (`upload` unset) or a multipart upload's record or part.
   * `finish` as for put().
   */
  async write<A extends object>(
    tag: { bucket: string; key: string; upload?: string },
    body: Readable,
    contentType: string,
    finish: (write: PreparedWrite) => A,
    reqId: string,
    at: number = Date.now(),
  ): Promise<{ meta: FileMeta; attrs: A }> {
    const id = objectFileId(keyPartition(tag.bucket, tag.key), at);
    const write = await this.writer.prepare(id, body, reqId);
    let meta: FileMeta;
    let attrs: A;
    try {
      attrs = finish(write);
      meta = this.metaFor(write, tag, attrs, contentType);
    } catch (err) {
      await this.writer.abort(write, reqId);
      throw err;
    }
    await this.writer.commit(write, meta, reqId);
    return { meta, attrs };
  }

  /**
   * Deletes a key: a delete marker newer than every version seen, then the older versions are
   * reclaimed. A key with no current version is left as it is (S3 answers 204 all the same).
   */
  async remove(bucket: string, key: string, reqId: string): Promise<void> {
    const versions = await this.versions(bucket, key, reqId);
    const newest = versions[0];
    if (!newest || isDeleteMarker(newest)) return;
    // A clock behind the newest version's must not make a marker that loses to it.
    const at = Math.max(Date.now(), objectVersionTime(newest.id) + 1);
    await this.write({ bucket, key }, Readable.from([]), DELETE_MARKER_TYPE, () => ({}), reqId, at);
    this.reclaim(versions, [], reqId);
  }

  /**
   * One page of a bucket's listing, merged from every live member's (s3/listing.ts). Every
   * version (and delete marker) that was acknowledged is on W members at least, so the answers
   * of all but W - 1 of them hold all of it: a member that has died but is not declared dead yet
   * does not stop listings.
   */
  async list(request: ListRequest, reqId: string): Promise<MergedListing> {
    const entries: MergedListing['entries'] = [];
    let after = request.after;
    // Delete markers and versions hidden by them take room in the members' answers: a page may
    // need more than one round to fill, and is answered short (but truncated) after a few.
    for (let round = 0; round < 4; round++) {
      const page = await this.listOnce({ ...request, after, limit: request.limit - entries.length }, reqId);
      entries.push(...page.entries);
      if (!page.truncated || entries.length >= request.limit) return { ...page, entries };
      after = page.next;
    }
    return { entries, truncated: true, next: after, disputed: [] };
  }

  private async listOnce(request: ListRequest, reqId: string): Promise<MergedListing> {
    const live = this.nodes.live();
    const result = await callQuorum(live, (peer) => peer.listObjects(request, reqId), {
      quorum: live.length,
    });
    for (const { target, error } of result.failed)
      this.log.warn({ peer: target.id, reqId, err: errorText(error) }, 'member could not list a bucket');
    if (result.failed.length >= this.options.writeQuorum || result.succeeded.length === 0)
      throw new S3Error(
        'ServiceUnavailable',
        `${result.failed.length} of the nodes holding part of this bucket could not list it; try again.`,
      );
    // A member that did not answer leaves no horizon: what it alone holds was never acknowledged.
    const answers: NodeListing[] = result.succeeded.map((s) => s.value);
    return resolveDisputes(mergeListings(answers, request.limit), (prefix) =>
      this.holdsLiveKey(request.bucket, prefix, reqId),
    );
  }

  /** Whether some key under `prefix` has a live newest version. */
  private async holdsLiveKey(bucket: string, prefix: string, reqId: string): Promise<boolean> {
    let after: string | undefined;
    for (let round = 0; round < 100; round++) {
      const page = await this.listOnce({ bucket, prefix, after, limit: 100 }, reqId);
      if (page.entries.length > 0) return true;
      if (!page.truncated) return false;
      after = page.next;
    }
    return true;
  }

  /** Whether the bucket holds no object (delete markers do not count). */
  async isEmpty(bucket: string, reqId: string): Promise<boolean> {
    const page = await this.list({ bucket, prefix: '', limit: 1 }, reqId);
    return page.entries.length === 0 && !page.truncated;
  }

  private metaFor(
    write: PreparedWrite,
    tag: { bucket: string; key: string; upload?: string },
    attrs: object,
    contentType: string,
  ): FileMeta {
    const text = JSON.stringify(attrs);
    if (text.length > MAX_OBJECT_ATTRS_LENGTH)
      throw new S3Error(
        'MetadataTooLarge',
        `An object's metadata and stored headers are limited to ${MAX_OBJECT_ATTRS_LENGTH} characters.`,
      );
    return {
      id: write.fileId,
      name: tag.key,
      size: write.size,
      sha256: write.sha256,
      contentType,
      createdAt: new Date().toISOString(),
      object: { ...tag, attrs: text },
    };
  }

  /**
   * In the background: the versions of the key older than `id` are deleted. A home of the key that
   * holds no older version asks no one: the key is new (most writes), or this node missed the
   * older one, which then reaches it by repair and is swept (s3/sweep.ts). That saves a lookup at
   * a peer per new key.
   */
  reclaimOlderThan(bucket: string, key: string, id: string, reqId: string): void {
    this.olderVersionsMayExist(bucket, key, id)
      .then((may) => (may ? this.versions(bucket, key, reqId) : []))
      .then(
        (versions) =>
          this.reclaim(
            versions.filter((v) => v.id < id),
            versions.filter((v) => v.id >= id),
            reqId,
          ),
        (err: unknown) =>
          this.log.warn(
            { bucket, key, reqId, err: errorText(err) },
            'could not look up older versions to reclaim',
          ),
      );
  }

  /**
   * Deletes replaced versions (or an upload's unused files) in the background. A multipart
   * object's parts go first, then the version that lists them, so a failure part-way leaves the
   * list for a later attempt. The parts of an upload that one of `kept` lists stay: two
   * completions of one upload (a client's retry while the first was still at work) make two
   * versions that list the same parts, and the older one's going must not take the newer's bytes.
   */
  reclaim(versions: FileRecord[], kept: FileRecord[], reqId: string): void {
    const keptUploads = uploadsListed(kept);
    for (const version of versions) {
      this.reclaimOne(version, keptUploads, reqId).catch((err: unknown) => {
        this.log.warn(
          { fileId: version.id, reqId, err: errorText(err) },
          'could not reclaim a replaced version',
        );
      });
    }
  }

  /**
   * What a crash left of a key's replaced versions (the reclaim after an answer never ran, or
   * died part-way): every version older than the current one, once the current one is older than
   * `graceMs` (by then it is on every home of the key). Returns how many versions were removed.
   */
  async reclaimLeftovers(bucket: string, key: string, graceMs: number, reqId: string): Promise<number> {
    const [newest, ...older] = await this.versions(bucket, key, reqId);
    if (!newest || Date.now() - objectVersionTime(newest.id) < graceMs) return 0;
    const keptUploads = uploadsListed([newest]);
    for (const version of older) await this.reclaimOne(version, keptUploads, reqId);
    return older.length;
  }

  /**
   * Removes every file of a key: its versions (a multipart one's parts with it) and the files of
   * `uploads`. For a key of a deleted bucket. Returns how many versions and upload files went.
   */
  async removeKey(bucket: string, key: string, uploads: string[], reqId: string): Promise<number> {
    const versions = await this.versions(bucket, key, reqId);
    for (const version of versions) await this.reclaimOne(version, new Set(), reqId);
    let removed = versions.length;
    for (const upload of uploads) {
      const files = await this.versions(bucket, key, reqId, upload);
      for (const file of files) await this.deleteFile(file.id, reqId);
      removed += files.length;
    }
    return removed;
  }

  /** False when this node is one of the key's homes and holds no version of it older than `id`. */
  private async olderVersionsMayExist(bucket: string, key: string, id: string): Promise<boolean> {
    if (!this.homes(bucket, key).includes(this.nodes.self.id)) return true;
    const mine = await this.nodes.self.objectVersions(bucket, key);
    return mine.some((v) => v.id < id);
  }

  /** The key's first N live members. */
  private homes(bucket: string, key: string): string[] {
    const live = new Set(this.nodes.live().map((p) => p.id));
    return this.membership
      .placement()
      .orderFor(keyPartition(bucket, key))
      .filter((id) => live.has(id))
      .slice(0, this.options.replicas);
  }

  /** Whether this node is the first live member of the key's placement: the one that sweeps it. */
  sweeps(bucket: string, key: string): boolean {
    return this.homes(bucket, key)[0] === this.nodes.self.id;
  }

  private async reclaimOne(version: FileRecord, keptUploads: Set<string>, reqId: string): Promise<void> {
    if (isManifest(version) && !keptUploads.has(attrsOf(version).upload ?? '')) {
      const manifest = await this.manifestOf(version, reqId);
      for (const part of manifest.parts) await this.deleteFile(part.id, reqId);
    }
    await this.deleteFile(version.id, reqId);
  }

  /** Deletes one file of the cluster (tombstones at W of its holders); one already gone is fine. */
  async deleteFile(id: string, reqId: string): Promise<void> {
    try {
      await this.catalog.delete(id, reqId);
    } catch (err) {
      if (!(err instanceof ShoalError && err.code === 'not_found')) throw err;
    }
  }

  /** The part list a multipart object's version file holds. */
  async manifestOf(version: FileRecord, reqId: string): Promise<Manifest> {
    const read = await this.reader.open(version.id, { method: 'GET', reqId });
    const chunks: Buffer[] = [];
    for await (const chunk of read.body ?? []) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Manifest;
  }
}

/** The versions the members answered with, each once, newest first. */
function newestFirst(answers: Array<{ value: FileRecord[] }>): FileRecord[] {
  const byId = new Map<string, FileRecord>();
  for (const { value } of answers) for (const record of value) byId.set(record.id, record);
  return [...byId.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/** What a multipart object's version file holds: its parts in order, each a file of its own. */
export interface Manifest {
  parts: Array<{ id: string; size: number }>;
}

/** The content type of a single-part object's file (S3's Content-Type is kept in its attrs). */
export const OBJECT_TYPE = 'application/octet-stream';
/** The content type of a multipart object's version file, which holds its Manifest. */
export const MANIFEST_TYPE = 'application/x-shoal-multipart-object';

export function isManifest(record: FileRecord): boolean {
  return record.contentType === MANIFEST_TYPE;
}

/** The multipart uploads whose parts the manifest versions among `versions` list. */
function uploadsListed(versions: FileRecord[]): Set<string> {
  return new Set(versions.flatMap((v) => (isManifest(v) ? [attrsOf(v).upload ?? ''] : [])));
}

export function attrsOf(record: FileRecord): ObjectAttrs {
  return JSON.parse(record.object?.attrs ?? '{}') as ObjectAttrs;
}
