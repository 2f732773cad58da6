import { Readable, pipeline } from 'node:stream';
import { ShoalError, errorText } from '../../../../shared/errors';
import { etagMatches, parseRange } from '../../../../shared/http-range';
import type { Logger } from '../../../../shared/logging';
import type { FileRecord } from '../../../../shared/protocol';
import type { Membership } from '../membership/membership';
import { PeerError, type PeerClient } from '../peers/peer-client';
import type { BlobStore } from '../store/blob-store';
import type { Repairer } from '../replication/repairer';
import type { Scrubber } from '../replication/scrubber';
import { ResumingReadable, VerifyingStream, discard, type ByteSource } from '../../../../shared/streams';
import { toMeta } from './catalog';

/** Copies up to this size are re-hashed before any byte is served. */
export const VERIFY_BEFORE_SERVE = 16 * 1024 * 1024;

export interface ReadRequest {
  method: 'GET' | 'HEAD';
  range?: string;
  ifNoneMatch?: string;
  reqId?: string;
}

export interface ReadDecision {
  status: 200 | 206 | 304 | 416;
  /** First and last byte sent (inclusive); for an empty body start = 0, end = -1. */
  start: number;
  end: number;
}

/** What to answer for a file, from its record and the request's conditional and range headers. */
export function decideRead(
  record: FileRecord,
  request: Pick<ReadRequest, 'range' | 'ifNoneMatch'>,
): ReadDecision {
  const full: ReadDecision = { status: 200, start: 0, end: record.size - 1 };
  if (etagMatches(request.ifNoneMatch, `"${record.sha256}"`)) return { ...full, status: 304 };
  const range = parseRange(request.range, record.size);
  if (range.kind === 'unsatisfiable') return { ...full, status: 416 };
  if (range.kind === 'range') return { status: 206, start: range.start, end: range.end };
  return full;
}

export interface FileRead extends ReadDecision {
  record: FileRecord;
  /** The bytes to send, for a GET answered 200 or 206. */
  body: Readable | undefined;
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
    private readonly selfId: string,
    private readonly membership: Membership,
    private readonly blobs: BlobStore,
    private readonly peers: PeerClient,
    private readonly scrubber: Scrubber,
    private readonly repairer: Repairer,
    private readonly log: Logger,
  ) {}

  /** Nodes to try for a file, best first, this node excluded. */
  candidates(fileId: string): string[] {
    const order = this.membership.placement().place(fileId).order;
    // Members outside placement but alive (draining ones) may still hold the only copy in hand.
    const others = this.membership
      .view()
      .filter((m) => m.state !== 'dead' && !order.includes(m.id))
      .map((m) => m.id);
    return [...order, ...others].filter((id) => id !== this.selfId);
  }

  /**
   * This node's own copy, verified: a copy of up to VERIFY_BEFORE_SERVE bytes is re-hashed before
   * a byte is sent; a larger one is hashed as it streams and the response is cut (never
   * completed) if it does not match. A damaged copy is quarantined and treated as absent.
   * Returns 'deleted' for a tombstone, undefined when there is no usable local copy.
   */
  async openLocal(fileId: string, request: ReadRequest): Promise<FileRead | 'deleted' | undefined> {
    const own = this.blobs.metadataOf(fileId);
    if (own?.state === 'deleted') return 'deleted';
    const local = await this.blobs.openLocal(fileId);
    if (!local) return undefined;
    const decision = decideRead(local.record, request);
    const streams =
      request.method === 'GET' &&
      (decision.status === 200 || decision.status === 206) &&
      decision.end >= decision.start;
    if (streams && local.record.size <= VERIFY_BEFORE_SERVE) {
      if ((await this.scrubber.check(fileId)) !== 'ok') return undefined;
    }
    let body: Readable | undefined;
    if (streams) {
      body = local.read(decision.start, decision.end);
      if (local.record.size > VERIFY_BEFORE_SERVE && decision.status === 200) {
        // pipeline(), not pipe(): when the client goes away and the outer stream is destroyed,
        // the file stream must close too (pipe() would leave its descriptor open).
        body = pipeline(
          body,
          new VerifyingStream(local.record.sha256, () => {
            void this.scrubber.check(fileId);
          }),
          () => undefined,
        );
      }
    }
    return { ...decision, record: local.record, body, servedBy: this.selfId };
  }

  async open(fileId: string, request: ReadRequest): Promise<FileRead> {
    const local = await this.openLocal(fileId, request);
    if (local === 'deleted') throw notFound();
    const candidates = this.candidates(fileId);
    if (local) {
      return local.body
        ? {
            ...local,
            body: this.resumable(
              fileId,
              local.record,
              { from: this.selfId, body: local.body },
              local,
              candidates,
              request.reqId,
            ),
          }
        : local;
    }

    let answered = 0;
    for (let i = 0; i < candidates.length; i++) {
      const nodeId = candidates[i]!;
      const url = this.membership.urlOf(nodeId);
      if (!url) continue;
      try {
        const res = await this.peers.openBlob(url, fileId, request);
        answered++;
        if (!res) continue;
        const decision = decideRead(res.record, request);
        if (res.status !== decision.status) {
          discard(res.body);
          throw new Error(`peer answered ${res.status}, expected ${decision.status}`);
        }
        const streams =
          request.method === 'GET' &&
          (decision.status === 200 || decision.status === 206) &&
          decision.end >= decision.start;
        // Nothing to pass on (HEAD, 304, 416): read to its end, so the connection can be reused.
        if (!streams) res.body.resume();
        const body = streams
          ? this.resumable(
              fileId,
              res.record,
              { from: nodeId, body: res.body },
              decision,
              candidates.slice(i + 1),
              request.reqId,
            )
          : undefined;
        this.repairIfHome(res.record, url);
        return { ...decision, record: res.record, body, servedBy: nodeId };
      } catch (err) {
        if (err instanceof PeerError && err.code === 'deleted') throw notFound();
        this.log.debug(
          { fileId, peer: nodeId, err: errorText(err) },
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
    if (!this.membership.placement().place(record.id).home.includes(this.selfId)) return;
    this.repairer.pull(toMeta(record), [sourceUrl]).then(
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
    fallbacks: string[],
    reqId?: string,
  ): Readable {
    const remaining = [...fallbacks];
    const { end } = decision;
    const openSlice = async (nodeId: string, from: number): Promise<Readable | undefined> => {
      const url = this.membership.urlOf(nodeId);
      if (!url) return undefined;
      const res = await this.peers.openBlob(url, fileId, {
        method: 'GET',
        range: `bytes=${from}-${end}`,
        reqId,
      });
      if (!res) return undefined;
      if (res.status !== 206 || res.record.sha256 !== record.sha256) {
        discard(res.body);
        return undefined;
      }
      return res.body;
    };
    const openRest = async (from: number): Promise<ByteSource | undefined> => {
      while (remaining.length > 0) {
        const nodeId = remaining.shift()!;
        const body = await openSlice(nodeId, from).catch(() => undefined);
        if (body) return { from: nodeId, body };
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
