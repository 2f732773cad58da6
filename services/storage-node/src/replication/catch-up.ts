import { errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { CatchUpAnswer, FileRecord } from '../../../../shared/protocol';
import type { WorkResult, Worker } from '../../../../shared/worker';
import type { Membership } from '../membership/membership';
import type { Peer } from '../peers/peer';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';
import type { Nodes } from './nodes';
import { callQuorum } from './quorum';

const LAST_ALIVE_KEY = 'last_alive_at';
/** Allowance for clocks that disagree between nodes. */
export const CLOCK_SKEW_MS = 60_000;
const PAGE = 1000;
/** Partitions whose rows are checked at once when a node returns from a long absence. */
const VERIFY_CONCURRENCY = 8;

/** When this node last knew it was up to date with its peers, or null (a new data dir). */
export function lastAliveAt(metadata: MetadataStore): string | null {
  return metadata.getSetting(LAST_ALIVE_KEY) ?? null;
}

export interface CatchUpOptions {
  replicas: number;
  writeQuorum: number;
  tombstoneGraceMs: number;
  /** Whether this node is meant to have peers (--seeds or --discovery-dns): a lone node has no one to learn from. */
  expectsPeers: boolean;
  /** How long without an exchange with any peer this node counts as out of touch (--failure-timeout-ms). */
  outOfTouchMs: number;
  gossipIntervalMs: number;
}

/**
 * Catch up before serving. A node's own rows can be stale: files deleted while it was down, or
 * while it was cut off from every peer, are still live here. So a node counts as caught up, and
 * serves its own rows to anyone (public reads and listings, peers' reads, digests, partition
 * rows), only after it has learned what it missed:
 *
 *  - It asks its peers for the tombstones made since it was last up to date (`last_alive_at`,
 *    stamped every few seconds while it is caught up and in touch with a peer) and applies them.
 *    It needs answers from N - W peers at least (one, with the defaults): a delete reached W of a
 *    file's N home members, so if this node missed it, every set of N - W others includes one that
 *    has it. While it reaches too few it stays not ready. Peers answer this even while they catch
 *    up themselves, so a whole cluster restarting at once comes up from its members' tombstones.
 *  - Away longer than the tombstone grace, tombstones of deletes it missed may be forgotten
 *    already. Then it must not bring back rows it cannot prove live: every live row is checked
 *    against the rows of peers that are caught up; a tombstone there deletes it, the same bytes
 *    live there keep it, and anything else is set aside in quarantine/ (a later pull of the same
 *    file adopts it again). If no caught-up peer is about but every member answered and was away
 *    as long (the whole cluster was down), nobody can have deleted anything meanwhile, and the
 *    rows stand.
 *  - A running node that stays out of touch with every peer for longer than the grace falls back
 *    to catching up, for the same reason, until it is back in touch and has checked its rows.
 *
 * A node with no rows has nothing to bring back, and a node with no peers nothing to learn.
 */
export class CatchUp implements Worker {
  readonly name = 'catch-up';
  private caught = false;
  /** Local time of the last stamp (or of start): when this node last knew it was up to date. */
  private lastStamp = Date.now();
  private stampFailing = false;

  constructor(
    private readonly options: CatchUpOptions,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly nodes: Nodes,
    private readonly membership: Membership,
    /** Told why this node is not caught up, or null once it is (lifecycle, /readyz). */
    private readonly report: (catchingUp: string | null) => void,
    private readonly log: Logger,
  ) {}

  get caughtUp(): boolean {
    return this.caught;
  }

  /**
   * One step: while caught up, stamp the time if in touch with a peer (or alone by design), or
   * fall back to catching up after too long out of touch; while catching up, try once more.
   */
  async work(): Promise<WorkResult> {
    if (this.caught) {
      if (!this.options.expectsPeers || this.inTouch()) this.stamp();
      else if (Date.now() - this.lastStamp > this.awayLimitMs()) {
        this.caught = false;
        this.setWhy('this node was out of touch with every peer for longer than the tombstone grace');
        this.log.warn('out of touch with every peer for longer than the tombstone grace; catching up again');
      }
      return 'idle';
    }
    await this.attempt();
    return this.caught ? 'idle' : { throttleMs: this.options.gossipIntervalMs };
  }

  /** Tries to catch up once; true when caught up. */
  async attempt(): Promise<boolean> {
    try {
      if (await this.catchUpOnce()) {
        this.stamp();
        if (!this.caught) this.log.info('caught up with peers; serving');
        this.caught = true;
        this.report(null);
      }
    } catch (err) {
      this.setWhy(`this node is catching up with its peers (${errorText(err)})`);
      this.log.warn({ err: errorText(err) }, 'catching up failed; trying again');
    }
    return this.caught;
  }

  private async catchUpOnce(): Promise<boolean> {
    const { files, tombstones } = this.metadata.counts();
    if (files + tombstones === 0 || !this.options.expectsPeers) return true;
    const lastAlive = lastAliveAt(this.metadata);
    const since = lastAlive
      ? new Date(Date.parse(lastAlive) - CLOCK_SKEW_MS).toISOString()
      : new Date(0).toISOString();
    const peers = this.nodes.live().filter((p) => p.id !== this.nodes.self.id);
    const result = await callQuorum(peers, (peer) => this.tombstonesOf(peer, since), { quorum: 0 });
    const need = Math.max(1, this.options.replicas - this.options.writeQuorum);
    if (result.succeeded.length < need) {
      this.setWhy(
        `this node is catching up: ${result.succeeded.length} of the ${need} peer(s) it needs to hear from answered`,
      );
      return false;
    }
    let applied = 0;
    for (const { value } of result.succeeded) {
      for (const t of value.tombstones) {
        if ((await this.blobs.delete(t.id, t.deletedAt)).wasLive) applied++;
      }
    }
    if (applied > 0) this.log.info({ applied, since }, 'applied deletes made while this node was away');

    const awayMs = lastAlive ? Date.now() - Date.parse(lastAlive) : Number.POSITIVE_INFINITY;
    if (awayMs <= this.awayLimitMs() || this.metadata.counts().files === 0) return true;
    const caughtUpPeers = result.succeeded.filter((s) => s.value.caughtUp).map((s) => s.target);
    if (caughtUpPeers.length > 0) return this.verifyRows(caughtUpPeers);
    // Nobody caught up to check against. If every member answered and was away as long as this
    // node, the cluster was down as a whole: nobody deleted anything meanwhile.
    const allAnswered = result.failed.length === 0;
    const allAway = result.succeeded.every(
      (s) =>
        s.value.lastAliveAt === null || Date.now() - Date.parse(s.value.lastAliveAt) > this.awayLimitMs(),
    );
    if (allAnswered && allAway) {
      this.log.warn('the whole cluster was away longer than the tombstone grace; keeping every row');
      return true;
    }
    this.setWhy(
      'this node was away longer than the tombstone grace and waits for a caught-up peer to check its rows',
    );
    return false;
  }

  /** Every tombstone a peer made since `since`, page by page, with its catch-up state. */
  private async tombstonesOf(peer: Peer, since: string): Promise<CatchUpAnswer> {
    let from = since;
    const all: CatchUpAnswer['tombstones'] = [];
    for (;;) {
      const page = await peer.catchUp(from, PAGE);
      all.push(...page.tombstones);
      if (page.tombstones.length < PAGE) return { ...page, tombstones: all };
      from = page.tombstones[page.tombstones.length - 1]!.deletedAt;
    }
  }

  /**
   * Checks every live row against caught-up peers' rows of the same partition: deleted there,
   * deleted here; live there with the same bytes, kept; otherwise set aside in quarantine/.
   */
  private async verifyRows(peers: Peer[]): Promise<boolean> {
    const partitions = this.metadata.livePartitions();
    const counts = { kept: 0, deleted: 0, setAside: 0 };
    let failed = false;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < partitions.length && !failed) {
        const p = partitions[next++]!;
        const answers = await callQuorum(peers, (peer) => peer.partitionRecords(p), { quorum: peers.length });
        if (!answers.met) {
          failed = true;
          return;
        }
        const theirs = new Map<string, FileRecord[]>();
        for (const { value } of answers.succeeded) {
          for (const r of value) theirs.set(r.id, [...(theirs.get(r.id) ?? []), r]);
        }
        for (const mine of this.metadata.partitionRecords(p)) {
          if (mine.state !== 'live') continue;
          const seen = theirs.get(mine.id) ?? [];
          const tombstone = seen.find((r) => r.state === 'deleted');
          if (tombstone) {
            await this.blobs.delete(mine.id, tombstone.deletedAt ?? new Date().toISOString());
            counts.deleted++;
          } else if (seen.some((r) => r.state === 'live' && r.sha256 === mine.sha256)) {
            counts.kept++;
          } else {
            await this.blobs.quarantine(mine.id);
            counts.setAside++;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: VERIFY_CONCURRENCY }, worker));
    if (failed) {
      this.setWhy('this node was away longer than the tombstone grace and could not check all its rows yet');
      return false;
    }
    this.log.warn(
      counts,
      'away longer than the tombstone grace: checked every live row against caught-up peers',
    );
    return true;
  }

  /**
   * An absence longer than this may have outlived tombstones: the grace, less an allowance for
   * clocks that disagree (at most a tenth of the grace, so a short grace in a test still works).
   */
  private awayLimitMs(): number {
    return this.options.tombstoneGraceMs - Math.min(CLOCK_SKEW_MS, this.options.tombstoneGraceMs / 10);
  }

  private inTouch(): boolean {
    const rounds = Math.max(1, Math.ceil(this.options.outOfTouchMs / this.options.gossipIntervalMs));
    return this.membership
      .view()
      .some((m) => m.id !== this.nodes.self.id && this.membership.heardFromWithin(m.id, rounds));
  }

  private setWhy(why: string): void {
    this.report(why);
  }

  /**
   * Records that this node is up to date now. A synchronous SQLite write, which a data dir that
   * refuses writes makes throw: caught here and noted once, since the data dir check reports the
   * cause, rather than left to the worker's backoff.
   */
  private stamp(): void {
    try {
      this.metadata.setSetting(LAST_ALIVE_KEY, new Date().toISOString());
      this.lastStamp = Date.now();
      if (this.stampFailing) this.log.info('recording the last-alive time works again');
      this.stampFailing = false;
    } catch (err) {
      if (!this.stampFailing) this.log.warn({ err: errorText(err) }, 'could not record the last-alive time');
      this.stampFailing = true;
    }
  }
}
