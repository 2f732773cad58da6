import type { Readable } from 'node:stream';
import {
  MAX_BATCH_COMMITS,
  MAX_BATCH_LOOKUPS,
  type CatchUpAnswer,
  type CommitBatchRequest,
  type CommitRequest,
  type CopyResult,
  type FileMeta,
  type FileRecord,
  type LocalListing,
  type NodeStatus,
  type ObjectListing,
  type UploadListing,
  type PreparedUpload,
} from '../../../../shared/protocol';
import type { ListRequest } from '../s3/listing';
import { pipeline } from 'node:stream';
import { FrameVerifier, blocksCovering } from '../../../../shared/blocks';
import { HEADER_FRAMED } from '../../../../shared/protocol';
import { decideRead, sendsBody, type ReadRequest } from '../../../../shared/read-decision';
import { discard } from '../../../../shared/streams';
import type { CopyRead, CopyToStore, Peer } from './peer';
import { BatchQueue } from './batch-queue';
import { COMMIT_TIMEOUT_MS, PeerError, type PeerClient } from './peer-client';

/** Another node, reached over signed HTTP through the shared PeerClient. */
export class RemotePeer implements Peer {
  /** False once the peer answered that it does not know batched commits (an older version). */
  private batchesCommits = true;
  /**
   * Commits to this peer, batched: many uploads' commits in one request and one flush on the
   * peer, instead of a request each (BatchQueue).
   */
  private readonly commits = new BatchQueue<QueuedCommit, 'stored' | 'already-stored'>(
    (items) => this.sendCommits(items),
    {
      maxBatch: MAX_BATCH_COMMITS,
      deadlineMs: COMMIT_TIMEOUT_MS,
      timeoutError: () => new PeerError(this.url, 'timeout', 'the commit was not answered in time'),
    },
  );

  /** False once the peer answered that it does not know batched key lookups (an older version). */
  private batchesLookups = true;
  /** Key lookups to this peer, batched like commits: under load, many reads' lookups in one request. */
  private readonly lookups = new BatchQueue<QueuedLookup, FileRecord[]>((items) => this.sendLookups(items), {
    maxBatch: MAX_BATCH_LOOKUPS,
    deadlineMs: LOOKUP_TIMEOUT_MS,
    timeoutError: () => new PeerError(this.url, 'timeout', 'the key lookup was not answered in time'),
  });

  constructor(
    readonly id: string,
    readonly url: string,
    private readonly client: PeerClient,
  ) {}

  ping(timeoutMs: number): Promise<boolean> {
    return this.client.ping(this.url, timeoutMs);
  }

  status(timeoutMs: number): Promise<NodeStatus> {
    return this.client.status(this.url, timeoutMs);
  }

  receive(
    fileId: string,
    body: Readable | Buffer,
    opts: { reqId?: string; signal?: AbortSignal } = {},
  ): Promise<PreparedUpload> {
    return this.client.prepareUpload(this.url, fileId, body, opts.reqId, opts.signal);
  }

  commit(fileId: string, request: CommitRequest, reqId?: string): Promise<'stored' | 'already-stored'> {
    if (!this.batchesCommits) return this.client.commitUpload(this.url, fileId, request, reqId);
    return this.commits.add({ commit: { id: fileId, ...request }, reqId });
  }

  abort(token: string, reqId?: string): Promise<void> {
    return this.client.abortUpload(this.url, token, reqId);
  }

  delete(
    fileId: string,
    deletedAt: string,
    opts: { force?: boolean; reqId?: string } = {},
  ): Promise<{ wasLive: boolean; known: boolean }> {
    return this.client.deleteFile(this.url, fileId, deletedAt, opts.reqId, opts.force ?? false);
  }

  forget(fileId: string, sha256: string | null): Promise<boolean> {
    return this.client.forget(this.url, fileId, sha256);
  }

  record(fileId: string, opts: { timeoutMs?: number; reqId?: string } = {}): Promise<FileRecord | undefined> {
    return this.client.record(this.url, fileId, opts.timeoutMs ?? 5_000, opts.reqId);
  }

  list(after: string, limit: number, reqId?: string): Promise<LocalListing> {
    return this.client.listRecords(this.url, after, limit, reqId);
  }

  objectVersions(
    bucket: string,
    key: string,
    opts: { upload?: string | undefined; timeoutMs?: number; reqId?: string } = {},
  ): Promise<FileRecord[]> {
    const timeoutMs = Math.min(opts.timeoutMs ?? LOOKUP_TIMEOUT_MS, LOOKUP_TIMEOUT_MS);
    if (opts.upload !== undefined || !this.batchesLookups)
      return this.client.objectVersions(this.url, bucket, key, opts.upload, timeoutMs, opts.reqId);
    return this.lookups.add({ bucket, key, reqId: opts.reqId }, timeoutMs);
  }

  listUploads(
    bucket: string,
    after: { key: string; upload: string },
    limit: number,
    reqId?: string,
  ): Promise<UploadListing> {
    return this.client.listUploads(this.url, bucket, after, limit, reqId);
  }

  listObjects(request: ListRequest, reqId?: string): Promise<ObjectListing> {
    return this.client.listObjects(this.url, request, reqId);
  }

  digests(bitmap: Buffer): Promise<Record<string, string>> {
    return this.client.digests(this.url, bitmap);
  }

  partitionRecords(partition: number): Promise<FileRecord[]> {
    return this.client.partitionRecords(this.url, partition);
  }

  catchUp(since: string, limit: number): Promise<CatchUpAnswer> {
    return this.client.catchUp(this.url, since, limit);
  }

  async pull(meta: FileMeta, sources: string[], heldFor: string | null): Promise<{ bytes: number }> {
    return { bytes: (await this.client.pullCopy(this.url, meta, sources, heldFor)).bytes };
  }

  storeCopies(copies: CopyToStore[]): Promise<CopyResult[]> {
    return this.client.storeCopies(
      this.url,
      copies.map((c) => ({ meta: c.meta, heldFor: c.heldFor, data: c.data.toString('base64') })),
    );
  }

  readCopies(ids: string[]): Promise<Array<{ id: string; data: Buffer }>> {
    return this.client.readCopies(this.url, ids);
  }

  async read(fileId: string, request: ReadRequest): Promise<CopyRead | 'deleted' | undefined> {
    let res;
    try {
      // Framed: the peer sends whole blocks behind their checksums, and each is checked here
      // again before any of its bytes goes on (FrameVerifier).
      res = await this.client.openBlob(this.url, fileId, { ...request, framed: true });
    } catch (err) {
      if (err instanceof PeerError && err.code === 'deleted') return 'deleted';
      throw err;
    }
    if (!res) return undefined;
    const decision = decideRead(res.record, request);
    if (res.status !== decision.status) {
      discard(res.body);
      throw new PeerError(
        this.url,
        'status',
        `peer answered ${res.status}, expected ${decision.status}`,
        res.status,
      );
    }
    if (!sendsBody(request.method, decision)) {
      // Nothing to pass on (HEAD, 304, 416): read to its end, so the connection can be reused.
      res.body.resume();
      return { ...decision, record: res.record, body: undefined };
    }
    const { first } = blocksCovering(decision.start, decision.end);
    if (res.headers[HEADER_FRAMED] !== String(first)) {
      discard(res.body);
      throw new PeerError(this.url, 'protocol', `peer did not send framed blocks from ${first}`, res.status);
    }
    const verifier = new FrameVerifier(res.record.size, first, decision.start, decision.end);
    return { ...decision, record: res.record, body: pipeline(res.body, verifier, () => undefined) };
  }

  private async sendCommits(items: QueuedCommit[]): Promise<Array<'stored' | 'already-stored' | Error>> {
    const commits = items.map((i) => i.commit);
    const answers = await batchOrNothing(this.client.commitBatch(this.url, commits, items[0]?.reqId));
    if (answers) return answers;
    this.batchesCommits = false;
    return eachAlone(items, ({ commit: { id, ...request }, reqId }) =>
      this.client.commitUpload(this.url, id, request, reqId),
    );
  }

  private async sendLookups(items: QueuedLookup[]): Promise<Array<FileRecord[] | Error>> {
    const lookups = items.map(({ bucket, key }) => ({ bucket, key }));
    const batch = this.client.objectLookupBatch(this.url, lookups, LOOKUP_TIMEOUT_MS, items[0]?.reqId);
    const answers = await batchOrNothing(batch);
    if (answers) return answers;
    this.batchesLookups = false;
    return eachAlone(items, ({ bucket, key, reqId }) =>
      this.client.objectVersions(this.url, bucket, key, undefined, LOOKUP_TIMEOUT_MS, reqId),
    );
  }
}

/** How long a peer may take to say which versions of keys it holds. */
const LOOKUP_TIMEOUT_MS = 5_000;

/** A batch's answers, or undefined when the peer is of an older version that has no such route. */
async function batchOrNothing<R>(batch: Promise<R[]>): Promise<R[] | undefined> {
  try {
    return await batch;
  } catch (err) {
    if (err instanceof PeerError && err.status === 404 && err.code === 'not_found') return undefined;
    throw err;
  }
}

/** Sends each item on its own; an Error, whatever was thrown, since BatchQueue takes anything else as a result. */
function eachAlone<I, R>(items: I[], send: (item: I) => Promise<R>): Promise<Array<R | Error>> {
  return Promise.all(
    items.map((item) =>
      send(item).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
    ),
  );
}

interface QueuedLookup {
  bucket: string;
  key: string;
  reqId: string | undefined;
}

interface QueuedCommit {
  commit: CommitBatchRequest['commits'][number];
  reqId: string | undefined;
}
