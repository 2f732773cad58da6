import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ShoalError, errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { FileMeta, PreparedUpload } from '../../../../shared/protocol';
import { ByteLimiter, HashingCounter, fanOut } from '../../../../shared/streams';
import type { Membership } from '../membership/membership';
import type { PeerClient } from '../peers/peer-client';
import type { BlobStore } from '../store/blob-store';
import { LocalTarget, RemoteTarget, type ReplicaTarget } from './replica-target';

/** A replica that takes no bytes for this long while W others keep up is dropped from the upload. */
export const REPLICA_STALL_MS = 5_000;

export interface QuorumWriterOptions {
  replicas: number;
  writeQuorum: number;
  maxFileSize: number;
}

interface ChosenTarget {
  target: ReplicaTarget;
  /** The home member this copy stands in for, when that member could not take it. */
  heldFor: string | null;
}

export interface PreparedCopy extends ChosenTarget {
  token: string;
}

export interface PreparedWrite {
  fileId: string;
  sha256: string;
  size: number;
  copies: PreparedCopy[];
}

/**
 * Writes one file to N replicas with a write quorum W, in two phases:
 *
 *  1. prepare: the bytes stream once from the client, through a sha256 and a size limiter, to
 *     every chosen replica at the same time (fan-out at the pace of the slowest healthy one).
 *     Each replica keeps an fsync'd temp file and reports the sha256 it computed. A replica that
 *     fails mid-stream is dropped; if fewer than W remain, the upload fails at once.
 *  2. commit: replicas whose sha256 matches ours make their copy visible. The upload is
 *     acknowledged only once W commits succeeded; below that, the copies that did commit are
 *     deleted again, so nothing stays half-visible.
 *
 * Targets are the file's home replicas in placement order. A home member that cannot be reached
 * is replaced by the next member in the same order, which records that it holds the copy for
 * that home member (hinted handoff).
 */
export class QuorumWriter {
  constructor(
    private readonly options: QuorumWriterOptions,
    private readonly selfId: string,
    private readonly membership: Membership,
    private readonly blobs: BlobStore,
    private readonly peers: PeerClient,
    private readonly log: Logger,
  ) {}

  async prepare(fileId: string, source: Readable, reqId: string): Promise<PreparedWrite> {
    const { chosen, skippedFull } = await this.chooseTargets(fileId);
    const { writeQuorum } = this.options;
    if (chosen.length < writeQuorum && skippedFull > 0) {
      throw new ShoalError(
        'insufficient_storage',
        `only ${chosen.length} node(s) have room for a copy, ${writeQuorum} are needed; nothing was stored`,
      );
    }
    if (chosen.length < writeQuorum) {
      throw new ShoalError(
        'quorum_unavailable',
        `only ${chosen.length} node(s) can take a copy, ${writeQuorum} are needed; nothing was stored`,
      );
    }

    const limiter = new ByteLimiter(
      this.options.maxFileSize,
      () =>
        new ShoalError(
          'payload_too_large',
          `the file is larger than the limit of ${this.options.maxFileSize} bytes`,
        ),
    );
    const hasher = new HashingCounter();
    const sinks = chosen.map(() => new PassThrough());
    // Settle-tracking is attached at once: a replica can fail before the stream ends, and its
    // rejection must never be left unobserved meanwhile.
    const aborts = chosen.map(() => new AbortController());
    let fulfilled = 0;
    let onQuorum: () => void = () => undefined;
    const quorumReceived = new Promise<void>((resolve) => (onQuorum = resolve));
    const receives = Promise.allSettled(
      chosen.map(({ target }, i) =>
        target.receive(sinks[i]!, reqId, aborts[i]!.signal).then(
          (prepared) => {
            if (++fulfilled >= writeQuorum) onQuorum();
            return prepared;
          },
          (err: unknown) => {
            sinks[i]!.destroy(err as Error);
            throw err;
          },
        ),
      ),
    );
    let streamError: unknown;
    const feed = pipeline(source, limiter, hasher).catch((err: unknown) => {
      streamError ??= err;
    });
    // Failing with one of the contract's errors, not a bare destroy of the stream, is what lets
    // the client hear 503: multer reports the first error its file stream sees, and this one
    // reaches it through the pipeline above. A replica's own (this node's disk filled up: 507)
    // stands as it is.
    const fan = fanOut(hasher, sinks, writeQuorum, {
      stallMs: REPLICA_STALL_MS,
      tooFew: (cause) =>
        cause instanceof ShoalError
          ? cause
          : new ShoalError(
              'quorum_unavailable',
              `fewer than ${writeQuorum} replicas could take the whole upload (${errorText(cause)}); nothing was stored`,
              { cause },
            ),
    }).catch((err: unknown) => {
      streamError ??= err;
    });
    await Promise.all([feed, fan]);
    // A replica that swallowed the bytes (kernel buffers) but never answers - a hung peer - gets
    // a short grace once W others have answered, then is given up on.
    const graceOver = quorumReceived.then(() => new Promise((r) => setTimeout(r, REPLICA_STALL_MS).unref()));
    await Promise.race([receives, graceOver]);
    aborts.forEach((a) =>
      a.abort(new Error(`replica did not answer within ${REPLICA_STALL_MS} ms of the quorum`)),
    );
    const settled = await receives;

    const copies: PreparedCopy[] = [];
    const discard: Array<Promise<void>> = [];
    settled.forEach((result, i) => {
      const { target, heldFor } = chosen[i]!;
      if (result.status === 'rejected') {
        this.log.warn(
          { fileId, peer: target.nodeId, reqId, err: errorText(result.reason) },
          'replica failed to receive',
        );
        return;
      }
      const prepared: PreparedUpload = result.value;
      if (streamError === undefined && prepared.sha256 === hasher.sha256 && prepared.size === hasher.bytes) {
        copies.push({ target, heldFor, token: prepared.token });
      } else {
        if (streamError === undefined) {
          this.log.error(
            { fileId, peer: target.nodeId, reqId },
            'replica received different bytes; dropping its copy',
          );
        }
        discard.push(target.abort(prepared.token, reqId).catch(() => undefined));
      }
    });
    await Promise.all(discard);

    if (streamError !== undefined) {
      await this.abort({ fileId, sha256: '', size: 0, copies }, reqId);
      if (streamError instanceof ShoalError) throw streamError;
      throw new ShoalError('quorum_unavailable', `the upload stream failed: ${errorText(streamError)}`, {
        cause: streamError,
      });
    }
    if (copies.length < writeQuorum) {
      await this.abort({ fileId, sha256: hasher.sha256, size: hasher.bytes, copies }, reqId);
      throw new ShoalError(
        'quorum_unavailable',
        `only ${copies.length} replica(s) stored the bytes, ${writeQuorum} are needed; nothing was stored`,
      );
    }
    return { fileId, sha256: hasher.sha256, size: hasher.bytes, copies };
  }

  /** Makes prepared copies visible. Returns the ids of the nodes that now hold the file. */
  async commit(write: PreparedWrite, meta: FileMeta, reqId: string): Promise<string[]> {
    const results = await Promise.allSettled(
      write.copies.map((c) => c.target.commit({ token: c.token, meta, heldFor: c.heldFor }, reqId)),
    );
    const committed: string[] = [];
    results.forEach((r, i) => {
      const nodeId = write.copies[i]!.target.nodeId;
      if (r.status === 'fulfilled') committed.push(nodeId);
      else
        this.log.warn(
          { fileId: write.fileId, peer: nodeId, reqId, err: errorText(r.reason) },
          'replica failed to commit',
        );
    });
    if (committed.length < this.options.writeQuorum) {
      await this.undoCommits(write.fileId, committed, reqId);
      throw new ShoalError(
        'quorum_unavailable',
        `only ${committed.length} replica(s) committed, ${this.options.writeQuorum} are needed; nothing was stored`,
      );
    }
    return committed;
  }

  async abort(write: PreparedWrite, reqId: string): Promise<void> {
    await Promise.all(write.copies.map((c) => c.target.abort(c.token, reqId).catch(() => undefined)));
  }

  /**
   * The first N members of the file's placement order that can be reached. A member we heard a
   * gossip exchange with in the last three rounds is taken on trust; any other is pinged first.
   */
  private async chooseTargets(fileId: string): Promise<{ chosen: ChosenTarget[]; skippedFull: number }> {
    const placement = this.membership.placement().place(fileId);
    const { replicas } = this.options;
    const reachable: string[] = [];
    const skippedHomes: string[] = [];
    let skippedFull = 0;
    let next = 0;
    while (reachable.length < replicas && next < placement.order.length) {
      const batch = placement.order.slice(next, next + (replicas - reachable.length));
      next += batch.length;
      // A member that reported its disk full takes no new copy: skipped like an unreachable one.
      const checks = await Promise.all(
        batch.map((id) => (this.membership.isFull(id) ? (skippedFull++, false) : this.isReachable(id))),
      );
      batch.forEach((id, i) => {
        if (checks[i]) reachable.push(id);
        else if (placement.home.includes(id)) skippedHomes.push(id);
      });
    }
    const homes = new Set(placement.home);
    const chosen = reachable.map((nodeId) => ({
      target: this.targetFor(fileId, nodeId),
      heldFor: homes.has(nodeId) ? null : (skippedHomes.shift() ?? null),
    }));
    return { chosen, skippedFull };
  }

  private async isReachable(nodeId: string): Promise<boolean> {
    if (nodeId === this.selfId) return true;
    if (this.membership.heardFromWithin(nodeId, 3)) return true;
    const url = this.membership.urlOf(nodeId);
    if (!url) return false;
    return this.peers.ping(url, 1_000).catch(() => false);
  }

  private targetFor(fileId: string, nodeId: string): ReplicaTarget {
    if (nodeId === this.selfId) return new LocalTarget(nodeId, this.blobs);
    const url = this.membership.urlOf(nodeId);
    if (!url) throw new Error(`no url for member ${nodeId}`);
    return new RemoteTarget(nodeId, url, fileId, this.peers);
  }

  /** Removes copies that committed when the write as a whole did not reach its quorum. */
  private async undoCommits(fileId: string, nodeIds: string[], reqId: string): Promise<void> {
    const at = new Date().toISOString();
    await Promise.all(
      nodeIds.map(async (nodeId) => {
        try {
          if (nodeId === this.selfId) await this.blobs.delete(fileId, at);
          else {
            const url = this.membership.urlOf(nodeId);
            if (url) await this.peers.deleteFile(url, fileId, at, reqId);
          }
        } catch (err) {
          this.log.error({ fileId, peer: nodeId, err: errorText(err) }, 'could not undo a partial commit');
        }
      }),
    );
  }
}
