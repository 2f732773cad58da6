import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import type { Logger } from '../../../../shared/logging';
import type { GossipMessage, MemberDigest, MemberState } from '../../../../shared/protocol';
import { PlacementTable } from '../placement/placement';
import type { PeerClient } from '../peers/peer-client';

interface Member extends MemberDigest {
  state: MemberState;
  /** Local clock time at which this member's (generation, heartbeat) last went up. */
  lastAdvanced: number;
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
  /** How many random members each round talks to. */
  fanout?: number;
}

export interface MemberView {
  id: string;
  url: string;
  state: MemberState;
}

/**
 * Who is in the cluster, with no special node: every member keeps the full member list and a
 * heartbeat counter per member, and every gossip round pushes its list to a few random members
 * and pulls theirs back (push-pull anti-entropy on membership). A member's own heartbeat goes up
 * each round; a newer (generation, heartbeat) always wins a merge, so news spreads epidemically
 * and every view converges to the same list.
 *
 * Failure detection follows from it: a member whose heartbeat has not advanced (as seen by this
 * node, from anyone's news) for a third of --failure-timeout-ms is `suspect`, and after the whole
 * timeout it is `dead`: it leaves placement and its copies get made elsewhere. Because any
 * member's fresh heartbeat reaches everyone through everyone, one slow link alone does not make a
 * member look dead. A restarted process starts a new generation (its start time), which beats
 * any heartbeat of its previous life.
 */
export class Membership extends EventEmitter {
  private readonly members = new Map<string, Member>();
  private readonly self: Member;
  private timer: NodeJS.Timeout | undefined;
  private dnsSeeds: string[] = [];
  private lastDnsLookup = 0;
  private placementTable: PlacementTable;
  private running = false;

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
      generation: now,
      heartbeat: 0,
      state: 'alive',
      lastAdvanced: now,
    };
    this.members.set(this.self.id, this.self);
    this.placementTable = new PlacementTable([this.self.id], options.replicas);
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
    this.refreshStates();
    return [...this.members.values()]
      .map((m) => ({ id: m.id, url: m.url, state: m.state }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Placement over every member not declared dead. */
  placement(): PlacementTable {
    this.refreshStates();
    return this.placementTable;
  }

  member(id: string): MemberView | undefined {
    const m = this.members.get(id);
    return m ? { id: m.id, url: m.url, state: m.state } : undefined;
  }

  /** True when this member's heartbeat went up within the last `rounds` gossip intervals. */
  heardFromWithin(id: string, rounds: number): boolean {
    const m = this.members.get(id);
    return m !== undefined && Date.now() - m.lastAdvanced <= rounds * this.options.gossipIntervalMs;
  }

  urlOf(id: string): string | undefined {
    return this.members.get(id)?.url;
  }

  /** Handles a gossip message from a peer and answers with this node's view (push-pull). */
  receive(message: GossipMessage): GossipMessage {
    this.merge(message.members);
    return this.digest();
  }

  digest(): GossipMessage {
    return {
      from: this.self.id,
      members: [...this.members.values()].map(({ id, url, generation, heartbeat }) => ({
        id,
        url,
        generation,
        heartbeat,
      })),
    };
  }

  /** One gossip round: bump our heartbeat, exchange lists with a few members and unknown seeds. */
  async round(): Promise<void> {
    this.self.heartbeat++;
    this.self.lastAdvanced = Date.now();
    this.refreshStates();
    const targets = await this.pickTargets();
    const timeoutMs = Math.max(200, Math.min(this.options.failureTimeoutMs / 2, 5_000));
    await Promise.all(
      targets.map(async (url) => {
        try {
          const answer = await this.peers.gossip(url, this.digest(), timeoutMs);
          this.merge(answer.members);
        } catch (err) {
          this.log.debug({ peer: url, err: (err as Error).message }, 'gossip exchange failed');
        }
      }),
    );
    this.refreshStates();
  }

  private async pickTargets(): Promise<string[]> {
    const fanout = this.options.fanout ?? 3;
    const others = [...this.members.values()].filter((m) => m.id !== this.self.id);
    const live = shuffle(others.filter((m) => m.state !== 'dead'));
    const dead = shuffle(others.filter((m) => m.state === 'dead'));
    const targets = live.slice(0, fanout).map((m) => m.url);
    // Keep knocking on dead members now and then, so a returning one is noticed even if it
    // has no seeds of its own; and on seeds we have no member for, so partitions heal.
    if (dead[0] && Math.random() < 0.3) targets.push(dead[0].url);
    const knownUrls = new Set(others.filter((m) => m.state !== 'dead').map((m) => m.url));
    const seeds = [...this.options.seeds, ...(await this.discoveredSeeds())].filter(
      (url) => url !== this.self.url && !knownUrls.has(url),
    );
    const seed = shuffle(seeds)[0];
    if (seed && (live.length === 0 || Math.random() < 0.2)) targets.push(seed);
    return [...new Set(targets)];
  }

  private async discoveredSeeds(): Promise<string[]> {
    const name = this.options.discoveryDns;
    if (!name) return [];
    const now = Date.now();
    if (now - this.lastDnsLookup < Math.max(this.options.gossipIntervalMs * 5, 5_000)) return this.dnsSeeds;
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

  private merge(digests: readonly MemberDigest[]): void {
    const now = Date.now();
    for (const d of digests) {
      if (d.id === this.self.id) {
        // Someone believes in a newer life of ours (we restarted within the same millisecond
        // clock?) - jump past it so our own news wins again.
        if (d.generation > this.self.generation) this.self.generation = d.generation + 1;
        continue;
      }
      const known = this.members.get(d.id);
      if (!known) {
        this.members.set(d.id, { ...d, state: 'alive', lastAdvanced: now });
        this.log.info({ peer: d.id, url: d.url }, 'member joined');
        continue;
      }
      const newer =
        d.generation > known.generation ||
        (d.generation === known.generation && d.heartbeat > known.heartbeat);
      if (newer) {
        known.url = d.url;
        known.generation = d.generation;
        known.heartbeat = d.heartbeat;
        known.lastAdvanced = now;
      }
    }
    this.refreshStates();
  }

  private refreshStates(): void {
    const now = Date.now();
    const { failureTimeoutMs } = this.options;
    const suspectAfter = Math.max(failureTimeoutMs / 3, this.options.gossipIntervalMs * 3);
    let changed = false;
    for (const m of this.members.values()) {
      if (m === this.self) continue;
      const silent = now - m.lastAdvanced;
      const state: MemberState =
        silent > failureTimeoutMs ? 'dead' : silent > suspectAfter ? 'suspect' : 'alive';
      if (state !== m.state) {
        this.log.info({ peer: m.id, from: m.state, to: state, silentMs: silent }, 'member state changed');
        if ((state === 'dead') !== (m.state === 'dead')) changed = true;
        m.state = state;
      }
    }
    if (changed || this.placementTable.members.length !== this.countPlaced()) {
      const placed = [...this.members.values()].filter((m) => m.state !== 'dead').map((m) => m.id);
      this.placementTable = new PlacementTable(placed, this.options.replicas);
      this.emit('placement-changed', this.placementTable);
    }
  }

  private countPlaced(): number {
    let n = 0;
    for (const m of this.members.values()) if (m.state !== 'dead') n++;
    return n;
  }
}

function shuffle<T>(items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
