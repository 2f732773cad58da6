import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import type { Logger } from '../../../../shared/logging';
import type { GossipMessage, MemberDigest, MemberState } from '../../../../shared/protocol';
import { PlacementTable } from '../placement/placement';
import type { PeerClient } from '../peers/peer-client';

interface Member extends MemberDigest {
  /** Local time this member became suspect (for the suspicion timeout). */
  suspectSince: number;
  /** Local time of the last successful exchange with it, in either direction. */
  lastContact: number;
}

export interface MembershipOptions {
  selfId: string;
  selfUrl: string;
  seeds: readonly string[];
  discoveryDns: string | undefined;
  /** Port assumed for addresses found through DNS. */
  port: number;
  replicas: number;
  gossipIntervalMs: number;
  failureTimeoutMs: number;
  /** Members asked to probe a target indirectly before it is suspected. */
  indirectProbes?: number;
}

export interface MemberView {
  id: string;
  url: string;
  state: MemberState;
  full: boolean;
  leaving: boolean;
}

/**
 * Who is in the cluster, with no special node: SWIM-style failure detection with full-state
 * push-pull dissemination (the member list of a storage cluster is small).
 *
 * Each round (--gossip-interval-ms) a node probes one member, taken in a shuffled round-robin
 * order, by exchanging member lists with it. If the probe fails, up to 3 other members are asked
 * to probe the target (indirect probes, so one bad link does not condemn a node); if none
 * reaches it, the target becomes `suspect`. A suspect that does not refute within
 * --failure-timeout-ms is declared `dead` and leaves placement; its copies are then made again.
 *
 * Every claim carries the member's incarnation. Precedence, as in SWIM: alive(i) beats
 * suspect(j) and dead(j) for i > j; suspect(i) beats alive(j) for i >= j; dead(i) beats both
 * for i >= j. A member that hears itself suspected or declared dead raises its incarnation and
 * is alive again everywhere as the news spreads. That is also how a healed network partition
 * merges back: dead members and unknown seeds keep being probed now and then, and the first
 * exchange lets the other side refute.
 */
export class Membership extends EventEmitter {
  private readonly members = new Map<string, Member>();
  private readonly self: Member;
  private timer: NodeJS.Timeout | undefined;
  private dnsSeeds: string[] = [];
  /** Seed URLs that turned out to reach this very node (a headless Service lists every pod). */
  private readonly ownUrls = new Set<string>();
  private lastDnsLookup = 0;
  private placementTable: PlacementTable;
  private running = false;
  private probeOrder: string[] = [];
  /** Local time a member last entered placement (joined, came back from dead, stopped draining). */
  private placementGrewAt: number;
  /**
   * How long placement must go without gaining a member before the view counts as settled (see
   * settledAt). It covers how late one member can learn of a newcomer that another already knows:
   * a newcomer may find the cluster only at its next DNS re-lookup (discoveryIntervalMs: its first
   * lookup can come before the Service lists anyone, or fail), and from the first member that
   * knows it, push-pull gossip reaches every member within a few protocol periods (log n of them;
   * 4 covers a few dozen members).
   */
  readonly settlePeriodMs: number;

  constructor(
    private readonly options: MembershipOptions,
    private readonly peers: PeerClient,
    private readonly log: Logger,
    now: number = Date.now(),
  ) {
    super();
    this.self = {
      id: options.selfId,
      url: options.selfUrl,
      incarnation: now,
      state: 'alive',
      suspectSince: 0,
      lastContact: now,
    };
    this.members.set(this.self.id, this.self);
    this.placementTable = new PlacementTable([this.self.id], options.replicas);
    // A node that has just started knows nobody yet: its view is as unsettled as it gets.
    this.placementGrewAt = Date.now();
    this.settlePeriodMs = this.discoveryIntervalMs() + 4 * options.gossipIntervalMs;
  }

  get selfId(): string {
    return this.self.id;
  }

  /** Starts gossiping; resolves once the first exchange (with seeds, if any) is done. */
  start(): Promise<void> {
    this.running = true;
    const tick = (): Promise<void> =>
      this.round()
        .catch((err: unknown) => this.log.warn({ err }, 'gossip round failed'))
        .finally(() => {
          if (this.running) this.timer = setTimeout(() => void tick(), this.options.gossipIntervalMs);
        });
    return tick();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
  }

  /** The current member list, this node included, sorted by id. */
  view(): MemberView[] {
    this.expireSuspects();
    return [...this.members.values()]
      .map((m) => ({
        id: m.id,
        url: m.url,
        state: m.state,
        full: m.full === true,
        leaving: m.leaving === true,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Placement over every member not declared dead. */
  placement(): PlacementTable {
    this.expireSuspects();
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
    const m = this.members.get(id);
    return m
      ? { id: m.id, url: m.url, state: m.state, full: m.full === true, leaving: m.leaving === true }
      : undefined;
  }

  urlOf(id: string): string | undefined {
    return this.members.get(id)?.url;
  }

  /** True when this node exchanged gossip with the member within the last `rounds` intervals. */
  heardFromWithin(id: string, rounds: number): boolean {
    const m = this.members.get(id);
    return (
      m !== undefined &&
      m.state === 'alive' &&
      Date.now() - m.lastContact <= rounds * this.options.gossipIntervalMs
    );
  }

  /** Handles a gossip message from a peer and answers with this node's view (push-pull). */
  receive(message: GossipMessage): GossipMessage {
    this.merge(message.members);
    const sender = this.members.get(message.from);
    if (sender) sender.lastContact = Date.now();
    return this.digest();
  }

  digest(): GossipMessage {
    return {
      from: this.self.id,
      members: [...this.members.values()].map(({ id, url, incarnation, state, full, leaving }) => ({
        id,
        url,
        incarnation,
        state,
        full: full === true,
        leaving: leaving === true,
      })),
    };
  }

  /**
   * Announces that this node takes no new copies (its disk is full, or refuses writes), or takes
   * them again. Only the member itself speaks for its own state, so the news travels as a new
   * incarnation, like a refutation. `reason` is for the log.
   */
  setFull(full: boolean, reason?: string): void {
    if ((this.self.full === true) === full) return;
    this.self.full = full;
    this.self.incarnation++;
    this.log.warn({ full, reason }, full ? 'taking no new copies' : 'taking new copies again');
  }

  /**
   * Starts (or cancels) draining this node: it leaves placement everywhere, so the leaders of
   * its partitions copy its files to their new home members and then tell it to drop its own.
   */
  setLeaving(leaving: boolean): void {
    if ((this.self.leaving === true) === leaving) return;
    this.self.leaving = leaving;
    this.self.incarnation++;
    this.log.warn(
      { leaving },
      leaving ? 'draining: handing every copy to its next owner' : 'drain cancelled',
    );
    this.rebuildPlacement();
  }

  isLeaving(id: string): boolean {
    return this.members.get(id)?.leaving === true;
  }

  isFull(id: string): boolean {
    return this.members.get(id)?.full === true;
  }

  /** Probes a member on behalf of another (SWIM's ping-req). */
  async probeFor(url: string): Promise<boolean> {
    return this.exchange(url, this.probeTimeoutMs());
  }

  /** One protocol period: probe one member (indirectly if need be), plus dead members and seeds now and then. */
  async round(): Promise<void> {
    this.expireSuspects();
    const extra = await this.extraTargets();
    const target = this.nextProbeTarget();
    await Promise.all([
      target ? this.probe(target) : Promise.resolve(),
      ...extra.map((url) => this.exchange(url, this.probeTimeoutMs())),
    ]);
    this.expireSuspects();
  }

  private async probe(target: Member): Promise<void> {
    if (await this.exchange(target.url, this.probeTimeoutMs())) return;
    const helpers = shuffle(
      [...this.members.values()].filter((m) => m !== this.self && m !== target && m.state === 'alive'),
    ).slice(0, this.options.indirectProbes ?? 3);
    const answers = await Promise.all(
      helpers.map((h) => this.peers.probe(h.url, target.url, this.probeTimeoutMs() * 2).catch(() => false)),
    );
    if (answers.some(Boolean)) {
      target.lastContact = Date.now();
      return;
    }
    if (target.state === 'alive') {
      this.setState(target, 'suspect', target.incarnation, 'no direct or indirect probe reached it');
    }
  }

  /** A push-pull exchange with one URL; true when it answered. */
  private async exchange(url: string, timeoutMs: number): Promise<boolean> {
    try {
      const answer = await this.peers.gossip(url, this.digest(), timeoutMs);
      if (answer.from === this.self.id) {
        // Nothing learned, and nothing to learn there next time either.
        this.ownUrls.add(url);
        return false;
      }
      this.merge(answer.members);
      const peer = this.members.get(answer.from);
      if (peer) peer.lastContact = Date.now();
      return true;
    } catch (err) {
      this.log.debug({ peer: url, err: (err as Error).message }, 'gossip exchange failed');
      return false;
    }
  }

  private probeTimeoutMs(): number {
    return Math.max(100, Math.min(this.options.gossipIntervalMs, this.options.failureTimeoutMs / 4, 2_000));
  }

  private nextProbeTarget(): Member | undefined {
    for (let attempts = 0; attempts < 2; attempts++) {
      while (this.probeOrder.length > 0) {
        const m = this.members.get(this.probeOrder.shift()!);
        if (m && m !== this.self && m.state !== 'dead') return m;
      }
      this.probeOrder = shuffle([...this.members.keys()].filter((id) => id !== this.self.id));
    }
    return undefined;
  }

  private async extraTargets(): Promise<string[]> {
    const others = [...this.members.values()].filter((m) => m !== this.self);
    const live = others.filter((m) => m.state !== 'dead');
    const dead = shuffle(others.filter((m) => m.state === 'dead'));
    const targets: string[] = [];
    if (dead[0] && Math.random() < 0.3) targets.push(dead[0].url);
    const knownUrls = new Set(live.map((m) => m.url));
    const seeds = shuffle(
      [...this.options.seeds, ...(await this.discoveredSeeds())].filter(
        (url) => url !== this.self.url && !this.ownUrls.has(url) && !knownUrls.has(url),
      ),
    );
    // Knowing nobody (just started, or cut off from everyone), ask a few seeds at once: a node
    // turns ready after its first round, and one seed alone may be this node itself (the Service's
    // addresses include its own, which it cannot tell from the others) or not listening yet.
    if (live.length === 0) targets.push(...seeds.slice(0, SEEDS_WHEN_ALONE));
    else if (seeds[0] && Math.random() < 0.2) targets.push(seeds[0]);
    return targets;
  }

  private async discoveredSeeds(): Promise<string[]> {
    const name = this.options.discoveryDns;
    if (!name) return [];
    const now = Date.now();
    if (now - this.lastDnsLookup < this.discoveryIntervalMs()) return this.dnsSeeds;
    this.lastDnsLookup = now;
    try {
      const records = await lookup(name, { all: true });
      this.dnsSeeds = records.map((r) =>
        r.family === 6
          ? `http://[${r.address}]:${this.options.port}`
          : `http://${r.address}:${this.options.port}`,
      );
    } catch (err) {
      this.log.debug({ err: (err as Error).message, name }, 'discovery lookup failed');
    }
    return this.dnsSeeds;
  }

  /** How often --discovery-dns is looked up again. */
  private discoveryIntervalMs(): number {
    return Math.max(this.options.gossipIntervalMs * 5, 5_000);
  }

  private merge(digests: readonly MemberDigest[]): void {
    for (const d of digests) {
      if (!d || typeof d.id !== 'string' || typeof d.url !== 'string' || typeof d.incarnation !== 'number')
        continue;
      if (d.id === this.self.id) {
        this.refute(d);
        continue;
      }
      const known = this.members.get(d.id);
      if (!known) {
        const now = Date.now();
        this.members.set(d.id, { ...d, suspectSince: d.state === 'suspect' ? now : 0, lastContact: 0 });
        this.log.info({ peer: d.id, url: d.url, state: d.state }, 'member joined');
        this.rebuildPlacement();
        continue;
      }
      if (d.incarnation > known.incarnation) {
        known.url = d.url;
        known.full = d.full === true;
        if ((known.leaving === true) !== (d.leaving === true)) {
          known.leaving = d.leaving === true;
          this.log.info({ peer: known.id, leaving: known.leaving }, 'member drain state changed');
          this.rebuildPlacement();
        }
        this.setState(known, d.state, d.incarnation, 'newer incarnation');
      } else if (d.incarnation === known.incarnation) {
        // Same life: only worse news counts (alive < suspect < dead).
        if (rank(d.state) > rank(known.state)) this.setState(known, d.state, d.incarnation, 'gossip');
      }
    }
  }

  /** Someone thinks we are suspect or dead: raise our incarnation so "alive" wins everywhere. */
  private refute(claim: MemberDigest): void {
    if (claim.state !== 'alive' && claim.incarnation >= this.self.incarnation) {
      this.self.incarnation = claim.incarnation + 1;
      this.log.info(
        { claimed: claim.state, incarnation: this.self.incarnation },
        'refuting a claim about this node',
      );
    } else if (claim.incarnation > this.self.incarnation) {
      this.self.incarnation = claim.incarnation + 1;
    }
  }

  private setState(m: Member, state: MemberState, incarnation: number, why: string): void {
    const before = m.state;
    m.incarnation = incarnation;
    if (state === before) return;
    m.state = state;
    if (state === 'suspect') m.suspectSince = Date.now();
    this.log.info({ peer: m.id, from: before, to: state, incarnation, why }, 'member state changed');
    if ((state === 'dead') !== (before === 'dead')) this.rebuildPlacement();
  }

  private expireSuspects(): void {
    const now = Date.now();
    for (const m of this.members.values()) {
      if (m.state === 'suspect' && now - m.suspectSince > this.options.failureTimeoutMs) {
        this.setState(m, 'dead', m.incarnation, `suspect for over ${this.options.failureTimeoutMs} ms`);
      }
    }
  }

  private rebuildPlacement(): void {
    // A draining member owns nothing: it is out of placement while still alive and serving.
    const placed = [...this.members.values()]
      .filter((m) => m.state !== 'dead' && !m.leaving)
      .map((m) => m.id);
    const before = new Set(this.placementTable.members);
    if (placed.some((id) => !before.has(id))) this.placementGrewAt = Date.now();
    this.placementTable = new PlacementTable(placed, this.options.replicas);
    this.emit('placement-changed', this.placementTable);
  }
}

/** Seeds asked in one round by a node that knows no live member. */
const SEEDS_WHEN_ALONE = 3;

function rank(state: MemberState): number {
  return state === 'alive' ? 0 : state === 'suspect' ? 1 : 2;
}

function shuffle<T>(items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
