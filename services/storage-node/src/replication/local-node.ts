import type { Readable } from 'node:stream';
import { ShoalError, errorText } from '../../../../shared/errors';
import type {
  CatchUpAnswer,
  CommitRequest,
  CopyResult,
  FileMeta,
  FileRecord,
  LocalListing,
  NodeStatus,
  ObjectListing,
  PreparedUpload,
  UploadListing,
} from '../../../../shared/protocol';
import { MAX_BATCH_BYTES, MAX_OBJECT_VERSIONS, MAX_UPLOAD_FILES } from '../../../../shared/protocol';
import { UPLOAD_RECORD_TYPE, scanBucket, type ListRequest } from '../s3/listing';
import { decideRead, sendsBody, type ReadRequest } from '../../../../shared/read-decision';
import { CorruptCopyError } from '../../../../shared/streams';
import { PARTITION_COUNT } from '../placement/placement';
import type { CopyRead, CopyToStore, Peer } from '../peers/peer';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';
import type { CopyFetcher } from './copy-fetcher';
import type { CopyFault, Scrubber } from './scrubber';

export interface LocalNodeOptions {
  id: string;
  url: string;
  /** Whether this node takes writes (started, not stopping, data dir healthy). */
  ready: () => boolean;
  /** Whether this node announced that it takes no new copies (disk full or failing). */
  full: () => boolean;
  /** Whether a URL belongs to a cluster member: pulls fetch only from members. */
  isMemberUrl: (url: string) => boolean;
  status: () => Promise<NodeStatus>;
  /**
   * Whether this node has caught up with its peers (CatchUp). Until it has, its own rows may hold
   * files deleted while it was away: it serves none of them, to clients or peers.
   */
  caughtUp: () => boolean;
  /** When this node last knew it was up to date with its peers (CatchUp), or null. */
  lastAliveAt: () => string | null;
}

/**
 * This node's own storage behind the Peer interface: what a peer's request does here, and what
 * this node does when it is one of a file's targets itself. The internal HTTP routes serve peers
 * from the same operations, so a call to self and a call to a peer behave alike.
 */
export class LocalNode implements Peer {
  readonly id: string;
  readonly url: string;

  constructor(
    private readonly options: LocalNodeOptions,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly scrubber: Scrubber,
    private readonly fetcher: CopyFetcher,
  ) {
    this.id = options.id;
    this.url = options.url;
  }

  async ping(): Promise<boolean> {
    return this.options.ready();
  }

  status(): Promise<NodeStatus> {
    return this.options.status();
  }

  async receive(_fileId: string, body: Readable | Buffer): Promise<PreparedUpload> {
    this.assertTakesCopies();
    return this.blobs.receive(body);
  }

  commit(_fileId: string, request: CommitRequest): Promise<'stored' | 'already-stored'> {
    return this.blobs.commit(
      request.token,
      request.meta,
      request.heldFor,
      Buffer.from(request.checksums, 'base64'),
    );
  }

  abort(token: string): Promise<void> {
    return this.blobs.abort(token);
  }

  delete(
    fileId: string,
    deletedAt: string,
    opts: { force?: boolean } = {},
  ): Promise<{ wasLive: boolean; known: boolean }> {
    return this.blobs.delete(fileId, deletedAt, opts.force ?? false);
  }

  forget(fileId: string, sha256: string | null): Promise<boolean> {
    return this.blobs.forget(fileId, sha256);
  }

  async record(fileId: string): Promise<FileRecord | undefined> {
    this.assertServing();
    return this.metadata.get(fileId);
  }

  async list(after: string, limit: number): Promise<LocalListing> {
    this.assertServing();
    const records = this.metadata.listAfter(after, limit + 1);
    return { records: records.slice(0, limit), truncated: records.length > limit };
  }

  async objectVersions(
    bucket: string,
    key: string,
    opts: { upload?: string | undefined } = {},
  ): Promise<FileRecord[]> {
    this.assertServing();
    // An upload's files are its record and up to 10,000 parts (S3's limit), newest first.
    const files = this.metadata.objectVersions(bucket, key, opts.upload);
    return files.slice(0, opts.upload === undefined ? MAX_OBJECT_VERSIONS : MAX_UPLOAD_FILES);
  }

  async listUploads(
    bucket: string,
    after: { key: string; upload: string },
    limit: number,
  ): Promise<UploadListing> {
    this.assertServing();
    const records = this.metadata.uploadRows(
      bucket,
      { key: Buffer.from(after.key, 'utf8'), upload: after.upload },
      UPLOAD_RECORD_TYPE,
      limit + 1,
    );
    return { records: records.slice(0, limit), truncated: records.length > limit };
  }

  async listObjects(request: ListRequest): Promise<ObjectListing> {
    this.assertServing();
    return scanBucket(
      (after, end, limit) => this.metadata.objectRows(request.bucket, after, end, limit),
      request,
    );
  }

  async digests(bitmap: Buffer): Promise<Record<string, string>> {
    this.assertServing();
    const digests: Record<string, string> = {};
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if ((bitmap[p >> 3]! & (1 << (p & 7))) === 0) continue;
      const d = this.metadata.digest(p);
      if (d) digests[p] = d;
    }
    return digests;
  }

  async partitionRecords(partition: number): Promise<FileRecord[]> {
    this.assertServing();
    return this.metadata.partitionRecords(partition);
  }

  async catchUp(since: string, limit: number): Promise<CatchUpAnswer> {
    return {
      tombstones: this.metadata.tombstonesSince(since, limit),
      caughtUp: this.options.caughtUp(),
      lastAliveAt: this.options.lastAliveAt(),
    };
  }

  async pull(meta: FileMeta, sources: string[], heldFor: string | null): Promise<{ bytes: number }> {
    if (this.options.full()) throw new ShoalError('insufficient_storage', 'this node is full');
    // Only ever fetch from cluster members: a pull must never be a way to make a node call anywhere.
    const members = sources.filter((s) => this.options.isMemberUrl(s));
    return { bytes: await this.fetcher.pull(meta, members, heldFor) };
  }

  async storeCopies(copies: CopyToStore[]): Promise<CopyResult[]> {
    if (this.options.full()) throw new ShoalError('insufficient_storage', 'this node is full');
    return this.fetcher.storeCopies(copies);
  }

  async readCopies(ids: string[]): Promise<Array<{ id: string; data: Buffer }>> {
    this.assertServing();
    return this.blobs.inlineCopies(ids, MAX_BATCH_BYTES);
  }

  /**
   * This node's own copy, every block verified against its checksum before any of its bytes
   * leaves (store/verified-read.ts), whatever range is read. A copy that turns out missing,
   * unreadable or damaged is taken out of service (Scrubber.takeOutOfService) and treated as
   * absent, so the caller goes to another copy: before the first byte when the fault is in the
   * first block read, at a block boundary, after only verified bytes, when it is further on.
   */
  async read(fileId: string, request: ReadRequest): Promise<CopyRead | 'deleted' | undefined> {
    this.assertServing();
    const local = await this.blobs.openLocal(fileId);
    if (local === 'absent') return this.metadata.get(fileId)?.state === 'deleted' ? 'deleted' : undefined;
    if (local === 'missing' || local === 'corrupt') {
      await this.scrubber.takeOutOfService(fileId, local);
      return undefined;
    }
    const decision = decideRead(local.record, request);
    if (!sendsBody(request.method, decision)) return { ...decision, record: local.record, body: undefined };
    let body: Readable;
    try {
      body = await local.read(decision.start, decision.end, request.framed === true);
    } catch (err) {
      const fault = faultOf(err);
      if (!fault) throw err;
      await this.scrubber.takeOutOfService(fileId, fault, errorText(err));
      return undefined;
    }
    // A fault further on fails the stream (the reader resumes from another copy) and takes this
    // copy out of service. A reader that goes away also ends it with an error, which says nothing
    // about the copy.
    body.on('error', (err) => {
      const fault = faultOf(err);
      if (fault) void this.scrubber.takeOutOfService(fileId, fault, errorText(err));
    });
    return { ...decision, record: local.record, body };
  }

  private assertServing(): void {
    if (!this.options.caughtUp())
      throw new ShoalError('not_ready', 'this node is catching up with its peers and serves nothing yet');
  }

  private assertTakesCopies(): void {
    if (!this.options.ready()) throw new ShoalError('not_ready', 'this node is not taking writes');
    if (this.options.full()) throw new ShoalError('insufficient_storage', 'this node is full');
  }
}

/**
 * What a failed read says about the copy: damaged bytes, a blob that is gone, or one the file
 * system cannot read (EIO, a directory in its place, ...). Undefined for anything else, such as
 * the reader going away.
 */
function faultOf(err: unknown): CopyFault | undefined {
  if (err instanceof CorruptCopyError) return 'corrupt';
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.syscall !== 'string') return undefined;
  return e.code === 'ENOENT' ? 'missing' : 'unreadable';
}
