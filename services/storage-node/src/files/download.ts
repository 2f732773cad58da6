import type { Readable } from 'node:stream';
import { ShoalError, errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import { metaOf, type FileRecord } from '../../../../shared/protocol';
import type { ReadDecision, ReadRequest } from '../../../../shared/read-decision';
import { ResumingReadable, discard, type ByteSource } from '../../../../shared/streams';
import type { Membership } from '../membership/membership';
import type { CopyRead, Peer } from '../peers/peer';
import type { CopyFetcher } from '../replication/copy-fetcher';
import type { Nodes } from '../replication/nodes';
import { HeldBytes } from '../store/verified-read';

export type { ReadDecision, ReadRequest };

export interface FileRead extends CopyRead {
  servedBy: string;
}

/**
 * Serves a file from whichever copy survives: this node's own first, then the file's home
 * replicas in placement order, then every other live member. A copy that cannot be opened is
 * skipped before any byte is sent. If a copy fails part-way through, the rest of the bytes are
 * fetched from the next copy with a range request, so the client still gets one whole, correct
 * body; only when no copy can finish is the response cut off.
 */
export class FileReader {
  constructor(
    private readonly membership: Membership,
    private readonly nodes: Nodes,
    private readonly fetcher: CopyFetcher,
    private readonly log: Logger,
  ) {}

  /** Nodes to try for a file, best first, this node excluded. */
  candidates(fileId: string): Peer[] {
    const order = this.membership.placement().place(fileId).order;
    // Members outside placement but alive (draining ones) may still hold the only copy in hand.
    const others = this.membership
      .view()
      .filter((m) => m.state !== 'dead' && !order.includes(m.id))
      .map((m) => m.id);
    return [...order, ...others]
      .filter((id) => id !== this.nodes.self.id)
      .flatMap((id) => {
        const peer = this.nodes.get(id);
        return peer ? [peer] : [];
      });
  }

  /**
   * This node's own copy, verified (see LocalNode.read): 'deleted' for a tombstone, undefined
   * when there is no usable local copy.
   */
  async openLocal(fileId: string, request: ReadRequest): Promise<FileRead | 'deleted' | undefined> {
    const local = await this.nodes.self.read(fileId, request);
    return local === 'deleted' || local === undefined ? local : { ...local, servedBy: this.nodes.self.id };
  }

  async open(fileId: string, request: ReadRequest): Promise<FileRead> {
    const local = await this.openLocal(fileId, request);
    if (local === 'deleted') throw notFound();
    if (local) {
      // Bytes already in memory and verified cannot fail part-way: nothing to resume.
      return local.body && !(local.body instanceof HeldBytes)
        ? {
            ...local,
            body: this.resumable(
              fileId,
              local.record,
              { from: this.nodes.self.id, body: local.body },
              local,
              // Worked out only if the local copy fails part-way: most reads never need them.
              () => this.candidates(fileId),
              request.reqId,
            ),
          }
        : local;
    }

    const candidates = this.candidates(fileId);
    let answered = 0;
    for (let i = 0; i < candidates.length; i++) {
      const peer = candidates[i]!;
      try {
        const read = await peer.read(fileId, request);
        answered++;
        if (read === 'deleted') throw notFound();
        if (!read) continue;
        const body = read.body
          ? this.resumable(
              fileId,
              read.record,
              { from: peer.id, body: read.body },
              read,
              () => candidates.slice(i + 1),
              request.reqId,
            )
          : undefined;
        this.repairIfHome(read.record, peer.url);
        return { ...read, body, servedBy: peer.id };
      } catch (err) {
        if (err instanceof ShoalError && err.code === 'not_found') throw err;
        this.log.debug(
          { fileId, peer: peer.id, err: errorText(err) },
          'skipping a copy that could not be opened',
        );
      }
    }
    if (answered === 0 && candidates.length > 0) {
      throw new ShoalError('replica_unavailable', 'no node holding a copy of this file could be reached');
    }
    throw notFound();
  }

  /**
   * Read repair: a home member that had to borrow a copy fetches its own in the background. Not
   * while members are still joining (the view has not settled): this node may be home only until
   * it hears of a newcomer, and anti-entropy makes every copy that restores redundancy anyway.
   */
  private repairIfHome(record: FileRecord, sourceUrl: string): void {
    if (Date.now() < this.membership.settledAt()) return;
    if (!this.membership.placement().place(record.id).home.includes(this.nodes.self.id)) return;
    this.fetcher.pull(metaOf(record), [sourceUrl]).then(
      (bytes) => {
        if (bytes > 0)
          this.log.info({ fileId: record.id, bytes }, 'read repair: fetched the missing local copy');
      },
      (err: unknown) => this.log.debug({ fileId: record.id, err: errorText(err) }, 'read repair failed'),
    );
  }

  /**
   * The body of a read from `first`, finished from the other copies in `fallbacks` if it breaks
   * part-way (see ResumingReadable: a client that hangs up never starts a resume).
   */
  private resumable(
    fileId: string,
    record: FileRecord,
    first: ByteSource,
    decision: ReadDecision,
    fallbacks: () => Peer[],
    reqId?: string,
  ): Readable {
    let remaining: Peer[] | undefined;
    const { end } = decision;
    const openSlice = async (peer: Peer, from: number): Promise<Readable | undefined> => {
      const read = await peer.read(fileId, { method: 'GET', range: `bytes=${from}-${end}`, reqId });
      if (read === 'deleted' || read === undefined) return undefined;
      if (read.status !== 206 || read.record.sha256 !== record.sha256) {
        discard(read.body);
        return undefined;
      }
      return read.body;
    };
    const openRest = async (from: number): Promise<ByteSource | undefined> => {
      remaining ??= fallbacks();
      while (remaining.length > 0) {
        const peer = remaining.shift()!;
        const body = await openSlice(peer, from).catch(() => undefined);
        if (body) return { from: peer.id, body };
      }
      return undefined;
    };
    return new ResumingReadable(first, decision, openRest, (failed, at, err) =>
      this.log.warn(
        { fileId, peer: failed.from, reqId, bytes: at, err: errorText(err) },
        'copy failed mid-download; resuming from another',
      ),
    );
  }
}

function notFound(): ShoalError {
  return new ShoalError('not_found', 'no such file');
}
