import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ShoalError, errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { FileMeta, PreparedUpload } from '../../../../shared/protocol';
import { BlockChecksummer, checksumsOf } from '../../../../shared/blocks';
import { sha256Hex } from '../../../../shared/hashing';
import { ByteLimiter, HashingCounter, fanOut, readIfSmall } from '../../../../shared/streams';
import type { Membership } from '../membership/membership';
import type { Peer } from '../peers/peer';
import type { Nodes } from './nodes';
import { INLINE_MAX_BYTES } from '../store/blob-store';
import { callQuorum, requireQuorum, type QuorumResult } from './quorum';

/** A replica that takes no bytes for this long while W others keep up is dropped from the upload. */
export const REPLICA_STALL_MS = 5_000;

/** Uploads up to this size are read whole before they go out: the size replicas keep inline. */
const WHOLE_UPLOAD_MAX_BYTES = INLINE_MAX_BYTES;

export interface QuorumWriterOptions {
  replicas: number;
  writeQuorum: number;
  maxFileSize: number;
}

interface ChosenTarget {
  target: Peer;
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
  /** Block checksums of the client's bytes (base64): every replica's must be the same. */
  checksums: string;
  copies: PreparedCopy[];
}

/**
 * Writes one file to N replicas with a write quorum W, in two phases:
 *
 *  1. prepare: the bytes stream once from the client, through a size limiter, a sha256 and the
 *     block checksums (computed here once), to every chosen replica at the same time (fan-out at
 *     the pace of the slowest healthy one). Each replica keeps an fsync'd temp file with its own
 *     block checksums (it does not hash the whole file again). A replica that fails mid-stream is
 *     dropped; if fewer than W remain, the upload fails at once. An upload that ends within
 *     WHOLE_UPLOAD_MAX_BYTES is read whole first and goes to each replica as one Buffer with its
 *     Content-Length, hashed in one call: most uploads are small, and a chain of stream stages
 *     per replica cost more CPU than their bytes (docs/benchmarks.md).
 *  2. commit: each replica checks that its block checksums are ours, so its bytes are the
 *     client's, and makes its copy visible. The upload is acknowledged only once W commits
 *     succeeded; below that, the copies that did commit are deleted again, so nothing stays
 *     half-visible.
 *
 * Targets are the file's home replicas in placement order. A home member that cannot be reached
 * is replaced by the next member in the same order, which records that it holds the copy for
 * that home member (hinted handoff).
 */
export class QuorumWriter {
  constructor(
    private readonly options: QuorumWriterOptions,
    private readonly membership: Membership,
    private readonly nodes: Nodes,
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

    const tooLarge = (): ShoalError =>
      new ShoalError(
        'payload_too_large',
        `the file is larger than the limit of ${this.options.maxFileSize} bytes`,
      );
    let whole: Buffer | undefined;
    try {
      whole = await readIfSmall(source, WHOLE_UPLOAD_MAX_BYTES);
    } catch (err) {
      throw streamFailure(err);
    }
    if (whole) {
      if (whole.length > this.options.maxFileSize) throw tooLarge();
      return this.prepareWhole(fileId, whole, chosen, reqId);
    }

    const limiter = new ByteLimiter(this.options.maxFileSize, tooLarge);
    const hasher = new HashingCounter();
    const blocks = new BlockChecksummer();
    const sinks = chosen.map(() => new PassThrough({ highWaterMark: 1024 * 1024 }));
    // Started at once and observed from the start: a replica can fail before the stream ends.
    // A replica that swallowed the bytes (kernel buffers) but never answers - a hung peer - gets
    // a short grace once W others have answered, then is given up on.
    const receives = callQuorum(
      chosen.map((c, i) => ({ ...c, sink: sinks[i]! })),
      ({ target, sink }, signal) =>
        target.receive(fileId, sink, { reqId, signal }).catch((err: unknown) => {
          sink.destroy(err as Error);
          throw err;
        }),
      { quorum: writeQuorum, graceAfterQuorumMs: REPLICA_STALL_MS },
    );
    let streamError: unknown;
    const feed = pipeline(source, limiter, hasher, blocks).catch((err: unknown) => {
      streamError ??= err;
    });
    // Failing with one of the contract's errors, not a bare destroy of the stream, is what lets
    // the client hear 503: multer reports the first error its file stream sees, and this one
    // reaches it through the pipeline above. A replica's own (this node's disk filled up: 507)
    // stands as it is.
    const fan = fanOut(blocks, sinks, writeQuorum, {
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
    const received = await receives;
    const copies = await this.keepReceived(
      fileId,
      received,
      streamError === undefined ? hasher.bytes : -1,
      reqId,
    );
    if (streamError !== undefined) {
      await this.abort({ fileId, sha256: '', size: 0, checksums: '', copies }, reqId);
      throw streamFailure(streamError);
    }
    return this.prepared(fileId, hasher.sha256, hasher.bytes, blocks.checksums(), copies, reqId);
  }

  /**
   * A small upload, read whole: one Buffer, hashed in one call each, sent to every replica at once
   * with its Content-Length (a replica that hangs gets the same grace as in a streamed upload).
   */
  private async prepareWhole(
    fileId: string,
    data: Buffer,
    chosen: ChosenTarget[],
    reqId: string,
  ): Promise<PreparedWrite> {
    const received = await callQuorum(
      chosen,
      ({ target }, signal) => target.receive(fileId, data, { reqId, signal }),
      {
        quorum: this.options.writeQuorum,
        graceAfterQuorumMs: REPLICA_STALL_MS,
      },
    );
    const copies = await this.keepReceived(fileId, received, data.length, reqId);
    return this.prepared(fileId, sha256Hex(data), data.length, checksumsOf(data), copies, reqId);
  }

  /**
   * The copies that replicas received whole (`size` bytes; -1: the upload failed, keep none).
   * The others are aborted, and failures logged.
   */
  private async keepReceived(
    fileId: string,
    received: QuorumResult<ChosenTarget, PreparedUpload>,
    size: number,
    reqId: string,
  ): Promise<PreparedCopy[]> {
    const copies: PreparedCopy[] = [];
    const discard: Array<Promise<void>> = [];
    for (const { target, error } of received.failed) {
      this.log.warn(
        { fileId, peer: target.target.id, reqId, err: errorText(error) },
        'replica failed to receive',
      );
    }
    for (const { target: chosenTarget, value: prepared } of received.succeeded) {
      const { target, heldFor } = chosenTarget;
      if (size >= 0 && prepared.size === size) {
        copies.push({ target, heldFor, token: prepared.token });
        continue;
      }
      if (size >= 0) {
        this.log.error(
          { fileId, peer: target.id, reqId },
          'replica received different bytes; dropping its copy',
        );
      }
      discard.push(target.abort(prepared.token, reqId).catch(() => undefined));
    }
    await Promise.all(discard);
    return copies;
  }

  /** The prepared write, once W replicas hold the bytes; below that, the copies are aborted (503). */
  private async prepared(
    fileId: string,
    sha256: string,
    size: number,
    checksums: Buffer,
    copies: PreparedCopy[],
    reqId: string,
  ): Promise<PreparedWrite> {
    const { writeQuorum } = this.options;
    if (copies.length < writeQuorum) {
      await this.abort({ fileId, sha256, size, checksums: '', copies }, reqId);
      throw new ShoalError(
        'quorum_unavailable',
        `only ${copies.length} replica(s) stored the bytes, ${writeQuorum} are needed; nothing was stored`,
      );
    }
    return { fileId, sha256, size, checksums: checksums.toString('base64'), copies };
  }

  /** Makes prepared copies visible. Returns the ids of the nodes that now hold the file. */
  async commit(write: PreparedWrite, meta: FileMeta, reqId: string): Promise<string[]> {
    const { writeQuorum } = this.options;
    const result = await callQuorum(
      write.copies,
      (c) =>
        c.target.commit(
          write.fileId,
          { token: c.token, meta, heldFor: c.heldFor, checksums: write.checksums },
          reqId,
        ),
      { quorum: writeQuorum },
    );
    for (const { target, error } of result.failed) {
      this.log.warn(
        { fileId: write.fileId, peer: target.target.id, reqId, err: errorText(error) },
        'replica failed to commit',
      );
    }
    const committed = result.succeeded.map((s) => s.target.target);
    if (!result.met) await this.undoCommits(write.fileId, committed, reqId);
    requireQuorum(
      result,
      writeQuorum,
      (n) => `only ${n} replica(s) committed, ${writeQuorum} are needed; nothing was stored`,
    );
    return committed.map((t) => t.id);
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
    const reachable: Peer[] = [];
    const skippedHomes: string[] = [];
    let skippedFull = 0;
    let next = 0;
    while (reachable.length < replicas && next < placement.order.length) {
      const batch = placement.order.slice(next, next + (replicas - reachable.length));
      next += batch.length;
      // A member that reported its disk full takes no new copy: skipped like an unreachable one.
      const checks = await Promise.all(
        batch.map((id) =>
          this.membership.isFull(id) ? (skippedFull++, Promise.resolve(undefined)) : this.reachable(id),
        ),
      );
      batch.forEach((id, i) => {
        const peer = checks[i];
        if (peer) reachable.push(peer);
        else if (placement.home.includes(id)) skippedHomes.push(id);
      });
    }
    const homes = new Set(placement.home);
    const chosen = reachable.map((target) => ({
      target,
      heldFor: homes.has(target.id) ? null : (skippedHomes.shift() ?? null),
    }));
    return { chosen, skippedFull };
  }

  /** The member as a Peer if it can take a copy now, else undefined. */
  private async reachable(nodeId: string): Promise<Peer | undefined> {
    const peer = this.nodes.get(nodeId);
    if (!peer) return undefined;
    if (this.membership.heardFromWithin(nodeId, 3)) return peer;
    return (await peer.ping(1_000).catch(() => false)) ? peer : undefined;
  }

  /** Removes copies that committed when the write as a whole did not reach its quorum. */
  private async undoCommits(fileId: string, targets: Peer[], reqId: string): Promise<void> {
    const at = new Date().toISOString();
    await Promise.all(
      targets.map((peer) =>
        peer.delete(fileId, at, { reqId }).catch((err: unknown) => {
          this.log.error({ fileId, peer: peer.id, err: errorText(err) }, 'could not undo a partial commit');
        }),
      ),
    );
  }
}

/** What a client hears when the upload's own stream failed: its contract error, or a 503 saying why. */
function streamFailure(err: unknown): ShoalError {
  if (err instanceof ShoalError) return err;
  return new ShoalError('quorum_unavailable', `the upload stream failed: ${errorText(err)}`, { cause: err });
}
