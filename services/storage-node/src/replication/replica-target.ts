import type { Readable } from 'node:stream';
import type { CommitRequest, FileMeta, PreparedUpload } from '../../../../shared/protocol';
import type { BlobStore } from '../store/blob-store';
import type { PeerClient } from '../peers/peer-client';

/**
 * One place a copy can go: this node's own store or a peer. Both take the same two-phase steps
 * (receive into an fsync'd temp file, then commit or abort), so the quorum writer does not care
 * which is which.
 */
export interface ReplicaTarget {
  readonly nodeId: string;
  receive(body: Readable, reqId?: string, signal?: AbortSignal): Promise<PreparedUpload>;
  commit(request: CommitRequest, reqId?: string): Promise<void>;
  abort(token: string, reqId?: string): Promise<void>;
}

export class LocalTarget implements ReplicaTarget {
  constructor(
    readonly nodeId: string,
    private readonly blobs: BlobStore,
  ) {}

  receive(body: Readable): Promise<PreparedUpload> {
    return this.blobs.receive(body);
  }

  async commit(request: CommitRequest): Promise<void> {
    await this.blobs.commit(request.token, request.meta, request.heldFor);
  }

  abort(token: string): Promise<void> {
    return this.blobs.abort(token);
  }
}

export class RemoteTarget implements ReplicaTarget {
  constructor(
    readonly nodeId: string,
    private readonly url: string,
    private readonly fileId: string,
    private readonly peers: PeerClient,
  ) {}

  receive(body: Readable, reqId?: string, signal?: AbortSignal): Promise<PreparedUpload> {
    return this.peers.prepareUpload(this.url, this.fileId, body, reqId, signal);
  }

  commit(request: CommitRequest, reqId?: string): Promise<void> {
    return this.peers.commitUpload(this.url, this.fileId, request, reqId);
  }

  abort(token: string, reqId?: string): Promise<void> {
    return this.peers.abortUpload(this.url, token, reqId);
  }
}

export type { FileMeta };
