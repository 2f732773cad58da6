import type { Readable } from 'node:stream';
import type {
  CatchUpAnswer,
  CommitRequest,
  CopyResult,
  FileMeta,
  FileRecord,
  LocalListing,
  NodeStatus,
  ObjectListing,
  UploadListing,
  PreparedUpload,
} from '../../../../shared/protocol';
import type { ReadDecision, ReadRequest } from '../../../../shared/read-decision';
import type { ListRequest } from '../s3/listing';

/** A copy opened for reading: what to answer, the record it belongs to, and the bytes to send. */
export interface CopyRead extends ReadDecision {
  record: FileRecord;
  /** The bytes of the decided range, for a GET answered 200 or 206; undefined otherwise. */
  body: Readable | undefined;
}

/** A small copy handed to a node with its bytes (Peer.storeCopies). */
export interface CopyToStore {
  meta: FileMeta;
  heldFor: string | null;
  data: Buffer;
}

/**
 * Everything one node asks of another's storage, whichever node it is: this node itself
 * (LocalNode, straight to its own store) or a peer (RemotePeer, over signed HTTP). Callers hold
 * Peers and never branch on "is this me?"; the one place that knows is the node directory
 * (replication/nodes.ts), as Garage's endpoints handle a call to self inside the endpoint.
 * Both implementations pass one contract test (test/integration/peer-contract.test.ts).
 *
 * Methods reject when the node cannot be reached or refuses; a refusal carries the node's
 * ShoalError code (PeerError.code for a remote one).
 */
export interface Peer {
  readonly id: string;
  /** Base URL others reach this node at: what a pull request names as a source. */
  readonly url: string;

  /** Is the node up and taking writes? */
  ping(timeoutMs: number): Promise<boolean>;
  status(timeoutMs: number): Promise<NodeStatus>;

  /**
   * Takes `body` as a pending copy (a small one in memory, a larger one in an fsync'd temp file);
   * nothing is visible until commit().
   */
  receive(
    fileId: string,
    body: Readable | Buffer,
    opts?: { reqId?: string; signal?: AbortSignal },
  ): Promise<PreparedUpload>;
  /** Makes a received copy visible ('already-stored' when the same bytes were there). */
  commit(fileId: string, request: CommitRequest, reqId?: string): Promise<'stored' | 'already-stored'>;
  abort(token: string, reqId?: string): Promise<void>;

  /**
   * Leaves a tombstone (and frees the bytes). With `force`, an id the node never knew gets one
   * too: repair telling an owner that missed the delete.
   */
  delete(
    fileId: string,
    deletedAt: string,
    opts?: { force?: boolean; reqId?: string },
  ): Promise<{ wasLive: boolean; known: boolean }>;
  /** Drops a surplus copy (only if its sha256 is `sha256`) or, with null, a tombstone past its grace. */
  forget(fileId: string, sha256: string | null): Promise<boolean>;

  record(fileId: string, opts?: { timeoutMs?: number; reqId?: string }): Promise<FileRecord | undefined>;
  /** The node's records (live and tombstones) after `after`, in byte order of id. */
  list(after: string, limit: number, reqId?: string): Promise<LocalListing>;
  /**
   * The live versions of an S3 key the node holds (delete markers included), newest first; with
   * `upload`, the files of that multipart upload instead.
   */
  objectVersions(
    bucket: string,
    key: string,
    opts?: { upload?: string | undefined; timeoutMs?: number; reqId?: string },
  ): Promise<FileRecord[]>;
  /** The records of a bucket's multipart uploads the node holds, after (key, upload id). */
  listUploads(
    bucket: string,
    after: { key: string; upload: string },
    limit: number,
    reqId?: string,
  ): Promise<UploadListing>;
  /** The node's next entries of a bucket listing (s3/listing.ts scanBucket). */
  listObjects(request: ListRequest, reqId?: string): Promise<ObjectListing>;
  /** Anti-entropy digests of the partitions set in `bitmap` that the node has rows in. */
  digests(bitmap: Buffer): Promise<Record<string, string>>;
  partitionRecords(partition: number): Promise<FileRecord[]>;
  /**
   * A page of the node's tombstones made at or after `since`, with whether the node is caught up
   * itself and when it last knew it was: what a node returning from an absence asks its peers.
   * Answered even while the node catches up itself.
   */
  catchUp(since: string, limit: number): Promise<CatchUpAnswer>;

  /** Has the node fetch a copy from one of `sources` (URLs of members) and store it. */
  pull(meta: FileMeta, sources: string[], heldFor: string | null): Promise<{ bytes: number }>;
  /**
   * Hands the node small copies (each at most MAX_BATCHED_COPY_BYTES) with their bytes: it checks
   * each against its meta (size and sha256) and stores those that match, in one flush. One result
   * per copy, in order; a copy refused (bytes that do not match, a tombstone) does not fail the rest.
   */
  storeCopies(copies: CopyToStore[]): Promise<CopyResult[]>;
  /**
   * The node's small copies of `ids` that it keeps inline and live (up to MAX_BATCH_BYTES in all;
   * the rest left out): what a leader that must receive them itself fetches in one request. The
   * caller checks each against the file's meta before keeping it.
   */
  readCopies(ids: string[]): Promise<Array<{ id: string; data: Buffer }>>;
  /**
   * Opens the node's own copy: 'deleted' when it holds a tombstone, undefined when it has no
   * usable copy. A body handed out must be read to its end or released with discard().
   */
  read(fileId: string, request: ReadRequest): Promise<CopyRead | 'deleted' | undefined>;
}
