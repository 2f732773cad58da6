import { EventEmitter } from 'node:events';
import type { Logger } from '../../../../shared/logging';
import type { GossipMessage, MemberState } from '../../../../shared/protocol';
import { BackgroundWorker } from '../../../../shared/worker';
import { PlacementTable } from '../placement/placement';
import type { PeerClient } from '../peers/peer-client';
import { Discovery, relookupIntervalMs } from './discovery';
import { peerTransport } from './peer-transport';
import { SwimDetector, systemClock, type SwimMember } from './swim';

export interface MembershipOptions {
  selfId: string;
  /** Where peers reach this node (its internal listener under --internal-port). */
  selfUrl: string;
  /** Where clients reach it, when that differs (--internal-port). */
  publicUrl?: string;
  seeds: readonly string[];
  discoveryDns: string | undefined;
  /** Scheme and port assumed for addresses found through DNS. */
  scheme?: 'http' | 'https';
  port: number;
  replicas: number;
  gossipIntervalMs: number;
  failureTimeoutMs: number;
  /** Members asked to probe a target indirectly before it is suspected. */
  indirectProbes?: number;
}

export interface MemberView {
  id: string;
  /** Where peers reach it. */
  url: string;
  /** Where clients reach it (/cluster, file info). */
  publicUrl: string;
  state: MemberState;
  full: boolean;
  leaving: boolean;
}

/**
 * Who is in the cluster, as the rest of the node sees it; the one membership object the node
 * passes around. It puts together:
 *  - SwimDetector (swim.ts): the member table and failure detection, one round per protocol period;
 *  - Discovery (discovery.ts): seeds and --discovery-dns, where a node looks when it knows nobody;
 *  - peerTransport (peer-transport.ts): the detector's two calls over PeerClient;
 * and keeps what only this node cares about: the gossip loop (a BackgroundWorker), this node's
 * flags (full, leaving), and the placement table with its settle clock.
 *
 * Reading (view, placement, member, urlOf, isFull, isLeaving, settledAt, heardFromWithin) never
 * changes anything. State changes only in a gossip round, when a message is merged, or when this
 * node announces its flags; the detector reports each change and the placement table is rebuilt
 * then, so every reader between two changes sees the same view.
 */
export class Membership extends EventEmitter {
  private readonly swim: SwimDetector;
  private readonly gossip: BackgroundWorker;
  private placementTable: PlacementTable;
  /** Local time a member last entered placement (joined, came back from dead, stopped draining). */
  private placementGrewAt: number;
  private stopped = false;
  /**
   * How long placement must go without gaining a member before the view counts as settled (see
   * settledAt). It covers how late one member can learn of a newcomer that another already knows:
   * a newcomer may find the cluster only at its next DNS re-lookup (relookupIntervalMs: its first
   * lookup can come before the Service lists anyone, or fail), and from the first member that
   * knows it, push-pull gossip reaches every member within a few protocol periods (log n of them;
   * 4 covers a few dozen members).
   */
  readonly settlePeriodMs: number;

  constructor(
    private readonly options: MembershipOptions,
    peers: PeerClient,
    private readonly log: Logger,
    now: number = Date.now(),
  ) {
    super();
    const relookupMs = relookupIntervalMs(options.gossipIntervalMs);
    const discovery = new Discovery(
      {
        selfUrl: options.selfUrl,
        seeds: options.seeds,
        dnsName: options.discoveryDns,
        scheme: options.scheme ?? 'http',
        port: options.port,
        relookupMs,
      },
      log,
    );
    this.swim = new SwimDetector(
      {
        selfId: options.selfId,
        selfUrl: options.selfUrl,
        publicUrl: options.publicUrl,
        incarnation: now,
        gossipIntervalMs: options.gossipIntervalMs,
        failureTimeoutMs: options.failureTimeoutMs,
        indirectProbes: options.indirectProbes,
      },
      { transport: peerTransport(peers), seeds: discovery, log, onChange: () => this.refreshPlacement() },
    );
    this.placementTable = new PlacementTable([options.selfId], options.replicas);
    // A node that has just started knows nobody yet: its view is as unsettled as it gets.
    this.placementGrewAt = systemClock.now();
    this.settlePeriodMs = relookupMs + 4 * options.gossipIntervalMs;
    const interval = options.gossipIntervalMs;
    this.gossip = new BackgroundWorker(
      {
        name: 'gossip',
        work: async () => {
          await this.swim.round();
          return 'idle';
        },
      },
      // A round that throws (it should not: every call in it is caught) is retried a period later.
      { firstMs: interval, idleMs: interval, backoffMs: interval, maxBackoffMs: interval },
      log,
    );
  }

  get selfId(): string {
    return this.options.selfId;
  }

  /** Starts gossiping; resolves once the first round (with seeds, if any) is done. */
  async start(): Promise<void> {
    // The first round runs here rather than on the worker's schedule: the node turns ready after
    // it, and must not be ready knowing nobody while others are up.
    try {
      await this.gossip.runOnce();
    } catch (err) {
      this.log.warn({ err }, 'gossip round failed');
    }
    if (!this.stopped) this.gossip.start();
  }

  /** Stops gossiping. A round under way finishes on its own (its calls have short timeouts). */
  stop(): void {
    this.stopped = true;
    void this.gossip.stop();
  }

  /** One protocol period, outside the schedule (tests). */
  round(): Promise<void> {
    return this.swim.round();
  }

  /** The current member list, this node included, sorted by id. */
  view(): MemberView[] {
    return this.swim
      .members()
      .map(toView)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Placement over every member not declared dead and not draining. */
  placement(): PlacementTable {
    return this.placementTable;
  }

  /**
   * Local time from which this node's view counts as settled: settlePeriodMs after a member last
   * entered placement. Until then a member this node has not heard of yet may be about to join and
   * outrank members that look like home members now, so moves that only rebalance wait (repairer).
   * Only growth counts: when a member dies or drains, every other member keeps or improves its
   * rank (rendezvous hashing), so no copy made before that news arrived turns out to be misplaced.
   */
  settledAt(): number {
    return this.placementGrewAt + this.settlePeriodMs;
  }

  member(id: string): MemberView | undefined {
    const m = this.swim.member(id);
    return m ? toView(m) : undefined;
  }

  urlOf(id: string): string | undefined {
    return this.swim.member(id)?.url;
  }

  /** Where clients reach a member (its url, unless it has an internal port). */
  publicUrlOf(id: string): string | undefined {
    return this.swim.member(id)?.publicUrl;
  }

  /**
   * Members this node has known to be dead for less than `ms`: they may come back with copies of
   * files deleted meanwhile, so tombstones must outlive their absence (see the repair planner).
   */
  deadWithin(ms: number): string[] {
    const now = systemClock.now();
    return this.swim
      .members()
      .filter((m) => m.state === 'dead' && now - m.deadSince < ms)
      .map((m) => m.id);
  }

  /** True when this node exchanged gossip with the member within the last `rounds` intervals. */
  heardFromWithin(id: string, rounds: number): boolean {
    const m = this.swim.member(id);
    return (
      m !== undefined &&
      m.state === 'alive' &&
      systemClock.now() - m.lastContact <= rounds * this.options.gossipIntervalMs
    );
  }

  /** Handles a gossip message from a peer and answers with this node's view (push-pull). */
  receive(message: GossipMessage): GossipMessage {
    return this.swim.receive(message);
  }

  digest(): GossipMessage {
    return this.swim.digest();
  }

  /**
   * Announces that this node takes no new copies (its disk is full, or refuses writes), or takes
   * them again. `reason` is for the log.
   */
  setFull(full: boolean, reason?: string): void {
    if (!this.swim.announce({ full })) return;
    this.log.warn({ full, reason }, full ? 'taking no new copies' : 'taking new copies again');
  }

  /**
   * Starts (or cancels) draining this node: it leaves placement everywhere, so the leaders of
   * its partitions copy its files to their new home members and then tell it to drop its own.
   */
  setLeaving(leaving: boolean): void {
    if (!this.swim.announce({ leaving })) return;
    this.log.warn(
      { leaving },
      leaving ? 'draining: handing every copy to its next owner' : 'drain cancelled',
    );
  }

  isLeaving(id: string): boolean {
    return this.swim.member(id)?.leaving === true;
  }

  isFull(id: string): boolean {
    return this.swim.member(id)?.full === true;
  }

  /** Probes a member on behalf of another (SWIM's ping-req). */
  probeFor(url: string): Promise<boolean> {
    return this.swim.probeFor(url);
  }

  /** Called by the detector after each change: rebuilds placement if the placed members changed. */
  private refreshPlacement(): void {
    // A draining member owns nothing: it is out of placement while still alive and serving.
    const placed = this.swim
      .members()
      .filter((m) => m.state !== 'dead' && !m.leaving)
      .map((m) => m.id)
      .sort();
    const before = this.placementTable.members;
    if (placed.length === before.length && placed.every((id, i) => id === before[i])) return;
    const known = new Set(before);
    if (placed.some((id) => !known.has(id))) this.placementGrewAt = systemClock.now();
    this.placementTable = new PlacementTable(placed, this.options.replicas);
    this.emit('placement-changed', this.placementTable);
  }
}

function toView(m: SwimMember): MemberView {
  return { id: m.id, url: m.url, publicUrl: m.publicUrl, state: m.state, full: m.full, leaving: m.leaving };
}
