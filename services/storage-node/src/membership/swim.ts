import type { Logger } from '../../../../shared/logging';
import type { GossipMessage, MemberDigest, MemberState } from '../../../../shared/protocol';

/** Where the detector reads the time. Injected so tests can move time on without waiting. */
export interface Clock {
  now(): number;
}

/** Reads Date.now() on every call, so jest's fake timers move it too. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * The two calls the detector makes to other members. Each either answers within its timeout or
 * fails (rejects); the detector treats a failure and a timeout alike.
 */
export interface SwimTransport {
  /** Push-pull: sends our digest to the member at `url` and resolves with its own. */
  exchange(url: string, message: GossipMessage, timeoutMs: number): Promise<GossipMessage>;
  /** Asks the member at `helperUrl` to probe `targetUrl` for us (SWIM's ping-req): true when it answered. */
  probeVia(helperUrl: string, targetUrl: string, timeoutMs: number): Promise<boolean>;
}

/** URLs that may lead to the cluster when no member does (seeds, DNS): see Discovery. */
export interface SeedSource {
  /** Candidate URLs, leaving out those known to be this node. */
  seeds(): Promise<readonly string[]>;
  /** An exchange with `url` was answered by this node itself: it must not be offered again. */
  markSelf(url: string): void;
}

/**
 * What a member says about itself besides being alive. The detector carries the flags in gossip
 * under the member's incarnation, like its state, but never acts on them.
 */
export interface MemberFlags {
  full: boolean;
  leaving: boolean;
}

export interface SwimMember extends Readonly<MemberFlags> {
  readonly id: string;
  /** Where members reach it (gossip, probes, copies). */
  readonly url: string;
  /** Where clients reach it: `url` unless it serves node-to-node routes on a port of their own. */
  readonly publicUrl: string;
  readonly incarnation: number;
  readonly state: MemberState;
  /** Local time of the last successful exchange with it, in either direction (0: never). */
  readonly lastContact: number;
  /** Local time this node learned the member was dead (0 while it is not). */
  readonly deadSince: number;
}

interface Member extends MemberFlags {
  id: string;
  url: string;
  publicUrl: string;
  incarnation: number;
  state: MemberState;
  /** Local time this member became suspect (for the suspicion timeout). */
  suspectSince: number;
  lastContact: number;
  deadSince: number;
}

export interface SwimOptions {
  selfId: string;
  selfUrl: string;
  /** Where clients reach this node, if not at selfUrl. */
  publicUrl?: string;
  /** This process's first incarnation: its start time, so a restart beats claims about its last life. */
  incarnation: number;
  gossipIntervalMs: number;
  failureTimeoutMs: number;
  /** Members asked to probe a target indirectly before it is suspected. */
  indirectProbes?: number;
}

export interface SwimDeps {
  transport: SwimTransport;
  seeds: SeedSource;
  log: Logger;
  clock?: Clock;
  /** Uniform in [0, 1): shuffles the probe order and rolls the dice for dead members and seeds. */
  random?: () => number;
  /**
   * Called after the member table changed in a way a reader sees (a member joined, changed state,
   * URL or flags), once per message merged or step taken, never while reading.
   */
  onChange?: () => void;
}

/** Seeds asked in one round by a node that knows no live member. */
export const SEEDS_WHEN_ALONE = 3;
/** Chance per round of probing one dead member, and one seed no live member stands behind. */
const DEAD_PROBE_CHANCE = 0.3;
/** How far ahead of this node's clock an incarnation may be: clock skew, and then some. */
export const MAX_INCARNATION_LEAD_MS = 60 * 60 * 1000;
const SEED_PROBE_CHANCE = 0.2;

/**
 * SWIM failure detection with full-state push-pull dissemination (a storage cluster's member list
 * is small, so the whole list is the piggybacked update). It owns the member table and nothing
 * else: no timers (round() is one protocol period; the caller runs it on a schedule), no clock and
 * no network of its own (both injected), no knowledge of placement or of what the flags mean.
 *
 * Each round probes one member, taken in a shuffled round-robin order, by an exchange of member
 * lists. If that fails, up to `indirectProbes` other alive members are asked to probe it (so one
 * bad link does not condemn a node); if none reaches it, it becomes `suspect`. A suspect that does
 * not refute within failureTimeoutMs is declared `dead` by whoever holds the suspicion.
 *
 * Every claim carries the member's incarnation. Precedence, as in SWIM: alive(i) beats suspect(j)
 * and dead(j) for i > j; suspect(i) beats alive(j) for i >= j; dead(i) beats both for i >= j.
 * Only a member raises its own incarnation: to refute a claim that it is suspect or dead, and to
 * announce new flags (announce()); nothing else ever changes this node's own entry.
 *
 * A healed network partition merges back because dead members, and seeds with no live member
 * behind them, are still probed now and then: the first exchange lets the other side refute.
 */
export class SwimDetector {
  private readonly table = new Map<string, Member>();
  private readonly me: Member;
  private readonly clock: Clock;
  private readonly random: () => number;
  private probeOrder: string[] = [];
  /** The table changed since onChange was last called. */
  private changed = false;

  constructor(
    private readonly options: SwimOptions,
    private readonly deps: SwimDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.random = deps.random ?? Math.random;
    this.me = {
      id: options.selfId,
      url: options.selfUrl,
      publicUrl: options.publicUrl ?? options.selfUrl,
      incarnation: options.incarnation,
      state: 'alive',
      full: false,
      leaving: false,
      suspectSince: 0,
      lastContact: this.clock.now(),
      deadSince: 0,
    };
    this.table.set(this.me.id, this.me);
  }

  get self(): SwimMember {
    return this.me;
  }

  /** Every member, this node included, in the order they became known. */
  members(): SwimMember[] {
    return [...this.table.values()];
  }

  member(id: string): SwimMember | undefined {
    return this.table.get(id);
  }

  /** The gossip message this node sends: its whole member list. */
  digest(): GossipMessage {
    return {
      from: this.me.id,
      members: [...this.table.values()].map(({ id, url, publicUrl, incarnation, state, full, leaving }) => ({
        id,
        url,
        ...(publicUrl === url ? {} : { publicUrl }),
        incarnation,
        state,
        full,
        leaving,
      })),
    };
  }

  /** Handles a gossip message from a peer and answers with this node's list (push-pull). */
  receive(message: GossipMessage): GossipMessage {
    this.merge(message.members);
    const sender = this.table.get(message.from);
    if (sender) sender.lastContact = this.clock.now();
    return this.digest();
  }

  /** Probes a member on behalf of another (SWIM's ping-req). */
  probeFor(url: string): Promise<boolean> {
    return this.exchange(url);
  }

  /**
   * Announces new flags about this node (it takes no new copies, it is draining). Only the member
   * itself speaks for its own entry, so the news travels under a new incarnation, like a
   * refutation. Returns false (and changes nothing) when the flags already were so.
   */
  announce(flags: Partial<MemberFlags>): boolean {
    const next = { full: flags.full ?? this.me.full, leaving: flags.leaving ?? this.me.leaving };
    if (next.full === this.me.full && next.leaving === this.me.leaving) return false;
    Object.assign(this.me, next);
    this.me.incarnation++;
    this.changed = true;
    this.notify();
    return true;
  }

  /**
   * One protocol period: probe the next member (indirectly if need be), plus, now and then, a
   * dead member or a seed; a node that knows no live member asks several seeds at once.
   */
  async round(): Promise<void> {
    this.expireSuspects();
    const extra = await this.extraTargets();
    const target = this.nextProbeTarget();
    await Promise.all([target ? this.probe(target) : undefined, ...extra.map((url) => this.exchange(url))]);
    this.expireSuspects();
  }

  /** How long a direct probe may take; an indirect one gets twice as long (two hops). */
  probeTimeoutMs(): number {
    const { gossipIntervalMs, failureTimeoutMs } = this.options;
    return Math.max(100, Math.min(gossipIntervalMs, failureTimeoutMs / 4, 2_000));
  }

  private async probe(target: Member): Promise<void> {
    if (await this.exchange(target.url)) return;
    const helpers = this.shuffle(
      [...this.table.values()].filter((m) => m !== this.me && m !== target && m.state === 'alive'),
    ).slice(0, this.options.indirectProbes ?? 3);
    const answers = await Promise.all(
      helpers.map(async (h) => {
        try {
          return await this.deps.transport.probeVia(h.url, target.url, this.probeTimeoutMs() * 2);
        } catch {
          return false;
        }
      }),
    );
    if (answers.some(Boolean)) {
      target.lastContact = this.clock.now();
      return;
    }
    if (target.state === 'alive') {
      this.setState(target, 'suspect', target.incarnation, 'no direct or indirect probe reached it');
      this.notify();
    }
  }

  /** A push-pull exchange with one URL; true when a member other than this node answered. */
  private async exchange(url: string): Promise<boolean> {
    try {
      const answer = await this.deps.transport.exchange(url, this.digest(), this.probeTimeoutMs());
      if (answer.from === this.me.id) {
        // Nothing learned, and nothing to learn there next time either.
        this.deps.seeds.markSelf(url);
        return false;
      }
      this.merge(answer.members);
      const peer = this.table.get(answer.from);
      if (peer) peer.lastContact = this.clock.now();
      return true;
    } catch (err) {
      this.deps.log.debug({ peer: url, err: (err as Error).message }, 'gossip exchange failed');
      return false;
    }
  }

  private nextProbeTarget(): Member | undefined {
    for (let attempts = 0; attempts < 2; attempts++) {
      while (this.probeOrder.length > 0) {
        const m = this.table.get(this.probeOrder.shift()!);
        if (m && m !== this.me && m.state !== 'dead') return m;
      }
      this.probeOrder = this.shuffle([...this.table.keys()].filter((id) => id !== this.me.id));
    }
    return undefined;
  }

  private async extraTargets(): Promise<string[]> {
    const others = [...this.table.values()].filter((m) => m !== this.me);
    const live = others.filter((m) => m.state !== 'dead');
    const dead = this.shuffle(others.filter((m) => m.state === 'dead'));
    const targets: string[] = [];
    if (dead[0] && this.random() < DEAD_PROBE_CHANCE) targets.push(dead[0].url);
    const knownUrls = new Set(live.map((m) => m.url));
    const seeds = this.shuffle((await this.deps.seeds.seeds()).filter((url) => !knownUrls.has(url)));
    // Knowing nobody (just started, or cut off from everyone), ask a few seeds at once: a node
    // turns ready after its first round, and one seed alone may be this node itself (a headless
    // Service's addresses include its own, which it cannot tell from the others) or not up yet.
    if (live.length === 0) targets.push(...seeds.slice(0, SEEDS_WHEN_ALONE));
    else if (seeds[0] && this.random() < SEED_PROBE_CHANCE) targets.push(seeds[0]);
    return targets;
  }

  private merge(digests: readonly MemberDigest[]): void {
    // An incarnation starts as its process's start time and grows by one per refutation, so one
    // far ahead of this clock is a lie or a broken clock; believed, it would beat every
    // refutation the member can make after it (a "dead" at 2^53 is dead for good).
    const latest = this.clock.now() + MAX_INCARNATION_LEAD_MS;
    for (const d of digests) {
      if (!d || typeof d.id !== 'string' || typeof d.url !== 'string' || typeof d.incarnation !== 'number')
        continue;
      if (d.incarnation > latest) {
        this.deps.log.warn(
          { peer: d.id, incarnation: d.incarnation },
          'ignored gossip with an incarnation too far ahead of this clock',
        );
        continue;
      }
      if (d.id === this.me.id) {
        this.refute(d);
        continue;
      }
      const known = this.table.get(d.id);
      if (!known) {
        this.table.set(d.id, {
          id: d.id,
          url: d.url,
          publicUrl: d.publicUrl ?? d.url,
          incarnation: d.incarnation,
          state: d.state,
          full: d.full === true,
          leaving: d.leaving === true,
          suspectSince: d.state === 'suspect' ? this.clock.now() : 0,
          lastContact: 0,
          // Dead before we heard of it, for how long we cannot tell: counted from now.
          deadSince: d.state === 'dead' ? this.clock.now() : 0,
        });
        this.changed = true;
        this.deps.log.info({ peer: d.id, url: d.url, state: d.state }, 'member joined');
        continue;
      }
      if (d.incarnation > known.incarnation) {
        // A newer life of the member: everything it says about itself replaces what we knew.
        if (known.url !== d.url || known.full !== (d.full === true)) this.changed = true;
        known.url = d.url;
        known.publicUrl = d.publicUrl ?? d.url;
        known.full = d.full === true;
        if (known.leaving !== (d.leaving === true)) {
          known.leaving = d.leaving === true;
          this.changed = true;
          this.deps.log.info({ peer: known.id, leaving: known.leaving }, 'member drain state changed');
        }
        this.setState(known, d.state, d.incarnation, 'newer incarnation');
      } else if (d.incarnation === known.incarnation) {
        // Same life: only worse news counts (alive < suspect < dead).
        if (rank(d.state) > rank(known.state)) this.setState(known, d.state, d.incarnation, 'gossip');
      }
    }
    // Checked after the news is in: a refutation in this very message saves an overdue suspect.
    this.expireSuspects();
  }

  /** Someone thinks we are suspect or dead: raise our incarnation so "alive" wins everywhere. */
  private refute(claim: MemberDigest): void {
    if (claim.state !== 'alive' && claim.incarnation >= this.me.incarnation) {
      this.me.incarnation = claim.incarnation + 1;
      this.deps.log.info(
        { claimed: claim.state, incarnation: this.me.incarnation },
        'refuting a claim about this node',
      );
    } else if (claim.incarnation > this.me.incarnation) {
      this.me.incarnation = claim.incarnation + 1;
    }
  }

  private setState(m: Member, state: MemberState, incarnation: number, why: string): void {
    const before = m.state;
    m.incarnation = incarnation;
    if (state === before) return;
    m.state = state;
    if (state === 'suspect') m.suspectSince = this.clock.now();
    m.deadSince = state === 'dead' ? this.clock.now() : 0;
    this.changed = true;
    this.deps.log.info({ peer: m.id, from: before, to: state, incarnation, why }, 'member state changed');
  }

  private expireSuspects(): void {
    const now = this.clock.now();
    const { failureTimeoutMs } = this.options;
    for (const m of this.table.values()) {
      if (m.state === 'suspect' && now - m.suspectSince > failureTimeoutMs) {
        this.setState(m, 'dead', m.incarnation, `suspect for over ${failureTimeoutMs} ms`);
      }
    }
    this.notify();
  }

  private notify(): void {
    if (!this.changed) return;
    this.changed = false;
    this.deps.onChange?.();
  }

  private shuffle<T>(items: readonly T[]): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}

function rank(state: MemberState): number {
  return state === 'alive' ? 0 : state === 'suspect' ? 1 : 2;
}
