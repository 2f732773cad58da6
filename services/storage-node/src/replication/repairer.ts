import { pipeline } from 'node:stream';
import type { Logger } from '../../../../shared/logging';
import type { FileMeta, FileRecord } from '../../../../shared/protocol';
import { RateLimiter, Throttle, discard } from '../../../../shared/streams';
import type { Membership } from '../membership/membership';
import { PARTITION_COUNT, type PlacementTable } from '../placement/placement';
import type { PeerClient } from '../peers/peer-client';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';
import { errorText } from '../../../../shared/errors';

export interface RepairOptions {
  replicas: number;
  intervalMs: number;
  bytesPerSecond: number;
  concurrency: number;
  tombstoneGraceMs: number;
}

export interface RepairStatus {
  /** Files in partitions this node leads that have fewer than N verified copies on live members. */
  underReplicatedFiles: number;
  underReplicatedPartitions: number;
  /** Bytes of copies the last round found missing and had not made yet. */
  pendingBytes: number;
  /** Bytes this node has received as repair or rebalance copies since it started. */
  bytesReceived: number;
  copiesMade: number;
  surplusDropped: number;
  tombstonesSpread: number;
  lastRoundAt: string | null;
}

interface MemberRef {
  id: string;
  url: string;
}

interface CopyAction {
  meta: FileMeta;
  to: MemberRef[];
  from: MemberRef[];
  copiesNow: number;
  /** Restores redundancy (false: only moves a file that has its copies onto a new home member). */
  restores: boolean;
}

interface PartitionPlan {
  partition: number;
  tombstones: Array<{ member: MemberRef; id: string; deletedAt: string }>;
  copies: CopyAction[];
  forgets: Array<{ member: MemberRef; id: string; sha256: string | null }>;
  /** Files whose copies only rebalance and wait for a settled view. */
  deferred: number;
}

interface IdState {
  live: Map<string, FileRecord>;
  tombstones: Map<string, FileRecord>;
}

const MAX_PARTITIONS_PER_ROUND = 512;

/**
 * Anti-entropy, repair and rebalance, with no coordinator.
 *
 * Every partition has a leader: the first live member of its placement order. Each round, a node
 * asks every live member for its digests of the partitions it leads (one request per member; a
 * digest is the XOR of hashes of a partition's rows) and compares them: the partition is in sync
 * when every home member has this node's digest and no other member has any row in it. Only the
 * partitions that differ are looked at row by row, and the leader then:
 *
 *  - spreads tombstones to every home member and every holder (deletes win, for good);
 *  - has every home member that lacks a verified copy pull one from a holder (fewest copies
 *    first, at a bounded rate and concurrency) - this is repair after a loss, hinted handoff
 *    back to a returning home, and rebalancing onto a new member, all one mechanism;
 *  - makes a copy at once when it restores redundancy, but holds back one that only moves a
 *    file which has its copies until this node's view has settled (see isRestore);
 *  - once every home member holds a verified copy, tells members that are not home to drop
 *    their surplus copy, so no file keeps more than N copies and none ever has fewer than it had;
 *  - forgets tombstones that every home member has held for longer than the grace period.
 *
 * Because only the leader acts on a partition, survivors do not all copy the same file at once.
 */
export class Repairer {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly underReplicated = new Map<number, number>();
  private readonly pendingBytes = new Map<number, number>();
  private readonly pulling = new Map<string, Promise<number>>();
  /** When the last round held back rebalance moves: the time its view settles; 0 otherwise. */
  private deferredUntil = 0;
  /** One budget for every copy this node receives, whatever the concurrency. */
  private readonly rate: RateLimiter;
  readonly status: Omit<RepairStatus, 'underReplicatedFiles' | 'underReplicatedPartitions' | 'pendingBytes'> =
    {
      bytesReceived: 0,
      copiesMade: 0,
      surplusDropped: 0,
      tombstonesSpread: 0,
      lastRoundAt: null,
    };

  constructor(
    private readonly options: RepairOptions,
    private readonly selfId: string,
    private readonly membership: Membership,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly peers: PeerClient,
    private readonly log: Logger,
  ) {
    this.rate = new RateLimiter(options.bytesPerSecond);
  }

  start(): void {
    this.running = true;
    const tick = (): void => {
      if (!this.running) return;
      this.round()
        .catch((err: unknown) => {
          this.log.warn({ err: errorText(err) }, 'repair round failed');
          return false;
        })
        .then((busy) => {
          // While there is work, go again soon; an idle cluster costs one digest call per member per
          // interval. Moves held back for a settled view go as soon as it has settled.
          if (!this.running) return;
          let delay = busy ? Math.min(200, this.options.intervalMs) : this.options.intervalMs;
          if (this.deferredUntil > 0) delay = Math.min(delay, Math.max(50, this.deferredUntil - Date.now()));
          this.timer = setTimeout(tick, delay);
        });
    };
    this.timer = setTimeout(tick, Math.min(1_000, this.options.intervalMs));
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
  }

  snapshot(): RepairStatus {
    let files = 0;
    for (const n of this.underReplicated.values()) files += n;
    let bytes = 0;
    for (const n of this.pendingBytes.values()) bytes += n;
    return {
      ...this.status,
      underReplicatedFiles: files,
      underReplicatedPartitions: this.underReplicated.size,
      pendingBytes: bytes,
    };
  }

  /** One anti-entropy round over the partitions this node leads. Returns whether it found work. */
  async round(): Promise<boolean> {
    const table = this.membership.placement();
    const settledAt = this.membership.settledAt();
    const members = this.liveMembers(table);
    const led: number[] = [];
    const bitmap = Buffer.alloc(PARTITION_COUNT / 8);
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if (table.orderFor(p)[0] === this.selfId) {
        led.push(p);
        bitmap[p >> 3]! |= 1 << (p & 7);
      }
    }
    const others = members.filter((m) => m.id !== this.selfId);
    const digests = new Map<string, Record<string, string>>();
    await Promise.all(
      others.map(async (m) => {
        try {
          digests.set(m.id, await this.peers.digests(m.url, bitmap));
        } catch (err) {
          this.log.debug({ peer: m.id, err: errorText(err) }, 'no digests from member this round');
        }
      }),
    );
    const outOfSync: number[] = [];
    // In-sync partitions whose tombstones are past their grace still need a look, to forget them.
    const expired = this.metadata.partitionsWithTombstonesBefore(
      new Date(Date.now() - this.options.tombstoneGraceMs).toISOString(),
    );
    for (const p of led) {
      if (expired.has(p)) {
        outOfSync.push(p);
        continue;
      }
      const homes = new Set(table.orderFor(p).slice(0, this.options.replicas));
      const mine = this.metadata.digest(p);
      let inSync = true;
      for (const m of others) {
        const theirs = digests.get(m.id);
        if (!theirs) continue;
        const d = theirs[String(p)];
        if (homes.has(m.id) ? d !== mine : d !== undefined) {
          inSync = false;
          break;
        }
      }
      // A partition this node leads but holds nothing of, while others hold nothing either, is simply empty.
      if (inSync) {
        this.underReplicated.delete(p);
        this.pendingBytes.delete(p);
      } else outOfSync.push(p);
    }
    this.status.lastRoundAt = new Date().toISOString();
    if (outOfSync.length === 0) {
      this.deferredUntil = 0;
      return false;
    }
    this.log.debug({ partitions: outOfSync.length }, 'partitions out of sync');
    const plans: PartitionPlan[] = [];
    for (const p of outOfSync.slice(0, MAX_PARTITIONS_PER_ROUND)) {
      if (!this.running) break;
      try {
        plans.push(await this.plan(p, table, members, digests, Date.now() >= settledAt));
      } catch (err) {
        this.log.warn({ partition: p, err: errorText(err) }, 'could not plan a partition repair');
      }
    }
    const deferred = plans.reduce((sum, plan) => sum + plan.deferred, 0);
    if (deferred > 0 && this.deferredUntil === 0) {
      this.log.info(
        { files: deferred, settlesInMs: Math.max(0, settledAt - Date.now()) },
        'rebalance waits for a settled view',
      );
    }
    this.deferredUntil = deferred > 0 ? settledAt : 0;
    await this.execute(plans);
    // Busy only when something was done: a partition that cannot be fixed yet (a home member
    // unreachable) is retried at the normal interval, not in a tight loop.
    return plans.some((p) => p.tombstones.length + p.copies.length + p.forgets.length > 0);
  }

  /** Compares one partition row by row across the members involved and decides what to fix. */
  private async plan(
    partition: number,
    table: PlacementTable,
    members: MemberRef[],
    digests: Map<string, Record<string, string>>,
    settled: boolean,
  ): Promise<PartitionPlan> {
    const order = table.orderFor(partition);
    const homeIds = order.slice(0, this.options.replicas);
    const byId = new Map(members.map((m) => [m.id, m]));
    // Involved: this node, every home, and anyone holding rows of the partition.
    const involved = members.filter(
      (m) =>
        m.id === this.selfId ||
        homeIds.includes(m.id) ||
        digests.get(m.id)?.[String(partition)] !== undefined,
    );
    const rows = new Map<string, FileRecord[]>();
    await Promise.all(
      involved.map(async (m) => {
        try {
          rows.set(
            m.id,
            m.id === this.selfId
              ? this.metadata.partitionRecords(partition)
              : await this.peers.partitionRecords(m.url, partition),
          );
        } catch (err) {
          this.log.debug({ peer: m.id, partition, err: errorText(err) }, 'could not read partition rows');
        }
      }),
    );
    const answered = [...rows.keys()];
    const homesAnswered = homeIds.filter((id) => rows.has(id));
    const allHomesAnswered = homesAnswered.length === homeIds.length;

    const ids = new Map<string, IdState>();
    for (const [memberId, records] of rows) {
      for (const r of records) {
        const state = ids.get(r.id) ?? { live: new Map(), tombstones: new Map() };
        (r.state === 'live' ? state.live : state.tombstones).set(memberId, r);
        ids.set(r.id, state);
      }
    }

    const copies: CopyAction[] = [];
    const forgets: Array<{ member: MemberRef; id: string; sha256: string | null }> = [];
    const tombstones: Array<{ member: MemberRef; id: string; deletedAt: string }> = [];
    let under = 0;
    let pending = 0;
    let deferred = 0;
    const now = Date.now();
    const target = Math.min(this.options.replicas, table.members.length);
    const placed = new Set(table.members);

    for (const [id, state] of ids) {
      if (state.tombstones.size > 0) {
        const deletedAt = [...state.tombstones.values()][0]!.deletedAt ?? new Date().toISOString();
        for (const h of homesAnswered) {
          if (!state.tombstones.has(h)) tombstones.push({ member: byId.get(h)!, id, deletedAt });
        }
        for (const holder of state.live.keys()) {
          if (!homeIds.includes(holder)) tombstones.push({ member: byId.get(holder)!, id, deletedAt });
        }
        const homesHaveIt = allHomesAnswered && homeIds.every((h) => state.tombstones.has(h));
        if (homesHaveIt && state.live.size === 0) {
          for (const holder of state.tombstones.keys()) {
            if (!homeIds.includes(holder)) forgets.push({ member: byId.get(holder)!, id, sha256: null });
          }
          const age = now - Date.parse(deletedAt);
          if (age > this.options.tombstoneGraceMs) {
            for (const h of homeIds) forgets.push({ member: byId.get(h)!, id, sha256: null });
          }
        }
        continue;
      }

      // The bytes every copy should have: the sha256 most holders agree on.
      const votes = new Map<string, number>();
      for (const r of state.live.values()) votes.set(r.sha256, (votes.get(r.sha256) ?? 0) + 1);
      const sha256 = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]![0];
      const good = [...state.live.entries()].filter(([, r]) => r.sha256 === sha256).map(([m]) => m);
      for (const [m, r] of state.live) {
        if (r.sha256 !== sha256) forgets.push({ member: byId.get(m)!, id, sha256: r.sha256 });
      }
      const meta = [...state.live.values()].find((r) => r.sha256 === sha256)!;
      const lacking = homesAnswered.filter((h) => !good.includes(h));
      // A home member whose disk is full gets no copy now; a stand-in keeps holding it meanwhile.
      const missing = lacking.filter((h) => !this.membership.isFull(h));
      if (good.length < target) under++;
      const restores = missing.length > 0 && this.isRestore(good, placed, target);
      if (missing.length > 0 && !restores && !settled) {
        // The file has its copies; the move waits until no newcomer can still take the place of
        // the member it would go to. Surplus is not dropped meanwhile: a home member lacks it.
        deferred++;
        pending += meta.size * missing.length;
      } else if (missing.length > 0) {
        copies.push({
          meta: {
            id,
            name: meta.name,
            size: meta.size,
            sha256,
            contentType: meta.contentType,
            createdAt: meta.createdAt,
          },
          to: missing.map((h) => byId.get(h)!),
          from: good.map((m) => byId.get(m)!),
          copiesNow: good.length,
          restores,
        });
        pending += meta.size * missing.length;
      } else if (allHomesAnswered && lacking.length === 0) {
        // Surplus goes only once every home member, full ones included, holds a verified copy.
        for (const holder of good) {
          if (!homeIds.includes(holder)) forgets.push({ member: byId.get(holder)!, id, sha256 });
        }
      }
    }
    if (under > 0) this.underReplicated.set(partition, under);
    else this.underReplicated.delete(partition);
    this.pendingBytes.set(partition, pending);
    if (answered.length < involved.length)
      this.log.debug({ partition }, 'some members did not answer; partial repair');
    return { partition, tombstones, copies, forgets, deferred };
  }

  /**
   * Whether copying a file to the home members that lack it restores redundancy, rather than only
   * moving a file that already has its copies. It restores when fewer than min(N, placed members)
   * verified copies sit on live members that are not leaving (a holder died: its rows are not
   * read, so its copy does not count), or when a holder is leaving (a drain: its copy must move).
   * Otherwise every missing copy goes to a member that is home only because the member set grew
   * (or back to a returning home, which a stand-in covers meanwhile): a pure rebalance move, which
   * waits for a settled view. Copying it while a leader knows one newcomer but not yet another
   * would send some files to the first only for the second to take them over moments later.
   */
  private isRestore(good: readonly string[], placed: ReadonlySet<string>, target: number): boolean {
    const onPlaced = good.filter((m) => placed.has(m)).length;
    return onPlaced < target || good.some((m) => this.membership.isLeaving(m));
  }

  /**
   * Carries out the plans of a round: tombstones first, then copies across all partitions with
   * the files that have the fewest copies first (a file down to its last copy is repaired before
   * any other), then surplus drops, which each plan only made where every home already had a
   * verified copy.
   */
  private async execute(plans: PartitionPlan[]): Promise<void> {
    await this.runLimited(
      plans.flatMap((plan) =>
        plan.tombstones.map((t) => async () => {
          await this.tombstone(t.member, t.id, t.deletedAt);
          this.status.tombstonesSpread++;
        }),
      ),
    );
    const copies = plans
      .flatMap((plan) => plan.copies.map((c) => ({ ...c, partition: plan.partition })))
      .sort((a, b) => a.copiesNow - b.copiesNow);
    await this.runLimited(
      copies.flatMap((c) =>
        c.to.map((to) => async () => {
          const bytes = await this.copy(to, c.meta, c.from);
          this.pendingBytes.set(
            c.partition,
            Math.max(0, (this.pendingBytes.get(c.partition) ?? 0) - c.meta.size),
          );
          this.status.copiesMade++;
          this.log.info(
            {
              fileId: c.meta.id,
              peer: to.id,
              bytes,
              copiesBefore: c.copiesNow,
              reason: c.restores ? 'restore' : 'rebalance',
            },
            'copy made',
          );
        }),
      ),
    );
    await this.runLimited(
      plans.flatMap((plan) =>
        plan.forgets.map((f) => async () => {
          if (await this.forget(f.member, f.id, f.sha256)) {
            this.status.surplusDropped++;
            this.log.info({ fileId: f.id, peer: f.member.id }, 'surplus copy dropped');
          }
        }),
      ),
    );
  }

  /**
   * Fetches a copy from one of `sources` and stores it here, verified against meta.sha256.
   * Concurrent requests for the same file share one transfer.
   */
  async pull(meta: FileMeta, sources: string[], heldFor: string | null = null): Promise<number> {
    const existing = this.pulling.get(meta.id);
    if (existing) return existing;
    const work = this.pullOnce(meta, sources, heldFor).finally(() => this.pulling.delete(meta.id));
    this.pulling.set(meta.id, work);
    return work;
  }

  private async pullOnce(meta: FileMeta, sources: string[], heldFor: string | null): Promise<number> {
    const own = this.metadata.get(meta.id);
    if (own?.state === 'live' && own.sha256 === meta.sha256) return 0;
    let lastError: unknown = new Error('no source to copy from');
    for (const url of sources) {
      try {
        const res = await this.peers.openBlob(url, meta.id, { method: 'GET' });
        if (!res) continue;
        if (res.status !== 200 || res.record.sha256 !== meta.sha256) {
          discard(res.body);
          continue;
        }
        let bytes = 0;
        res.body.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          this.status.bytesReceived += chunk.length;
        });
        // pipeline(), so a failed store also releases the peer's response and its connection.
        await this.blobs.storeCopy(
          pipeline(res.body, new Throttle(this.rate), () => undefined),
          meta,
          heldFor,
        );
        return bytes;
      } catch (err) {
        lastError = err;
        this.log.debug({ fileId: meta.id, peer: url, err: errorText(err) }, 'pull from source failed');
      }
    }
    throw lastError;
  }

  private async copy(
    to: MemberRef,
    meta: FileMeta,
    from: MemberRef[],
    heldFor: string | null = null,
  ): Promise<number> {
    const sources = from.filter((m) => m.id !== to.id).map((m) => m.url);
    if (to.id === this.selfId) return this.pull(meta, sources, heldFor);
    return (await this.peers.pullCopy(to.url, meta, sources, heldFor)).bytes;
  }

  /**
   * Hinted handoff at write time: an upload acknowledged with fewer than N copies (a home member
   * failed mid-stream) gets its missing copies at once from the next members in placement order,
   * each recording which home member it holds the copy for. Anti-entropy later moves the copy to
   * the home member when it is back, and drops the stand-in's.
   */
  async handOff(meta: FileMeta, holders: string[]): Promise<void> {
    const table = this.membership.placement();
    const { order, home } = table.place(meta.id);
    const members = new Map(this.liveMembers(table).map((m) => [m.id, m]));
    const missingHomes = home.filter((id) => !holders.includes(id));
    const standIns = order.filter((id) => !home.includes(id) && !holders.includes(id));
    const from = holders.flatMap((id) => (members.has(id) ? [members.get(id)!] : []));
    for (const missing of missingHomes) {
      while (standIns.length > 0) {
        const to = members.get(standIns.shift()!);
        if (!to) continue;
        try {
          await this.copy(to, meta, from, missing);
          this.log.info(
            { fileId: meta.id, peer: to.id, heldFor: missing },
            'stand-in took the copy of a home member',
          );
          break;
        } catch (err) {
          this.log.debug(
            { fileId: meta.id, peer: to.id, err: errorText(err) },
            'stand-in could not take the copy',
          );
        }
      }
    }
  }

  private async tombstone(member: MemberRef, id: string, deletedAt: string): Promise<void> {
    if (member.id === this.selfId) await this.blobs.delete(id, deletedAt, true);
    else await this.peers.deleteFile(member.url, id, deletedAt, undefined, true);
  }

  private async forget(member: MemberRef, id: string, sha256: string | null): Promise<boolean> {
    if (member.id === this.selfId) return this.blobs.forget(id, sha256);
    return this.peers.forget(member.url, id, sha256);
  }

  /** Every member not declared dead, draining ones included: they hold copies to hand over. */
  private liveMembers(_table?: PlacementTable): MemberRef[] {
    return this.membership
      .view()
      .filter((m) => m.state !== 'dead')
      .map((m) => ({ id: m.id, url: m.url }));
  }

  private async runLimited(tasks: Array<() => Promise<void>>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < tasks.length && this.running) {
        const task = tasks[next++]!;
        await task().catch((err: unknown) => this.log.warn({ err: errorText(err) }, 'repair step failed'));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.options.concurrency) }, worker));
  }
}
