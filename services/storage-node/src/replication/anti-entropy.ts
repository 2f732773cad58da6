import type { Logger } from '../../../../shared/logging';
import {
  MAX_BATCH_BYTES,
  MAX_BATCH_COPIES,
  MAX_BATCHED_COPY_BYTES,
  type CopyResult,
  type FileMeta,
  type FileRecord,
} from '../../../../shared/protocol';
import { BackgroundWorker, type WorkResult } from '../../../../shared/worker';
import { errorText } from '../../../../shared/errors';
import type { Membership } from '../membership/membership';
import { PARTITION_COUNT } from '../placement/placement';
import type { CopyToStore, Peer } from '../peers/peer';
import type { MetadataStore } from '../store/metadata';
import type { CopyFetcher } from './copy-fetcher';
import type { Nodes } from './nodes';
import { callQuorum } from './quorum';
import {
  planPartition,
  partitionsOutOfSync,
  type CopyAction,
  type MemberInfo,
  type PartitionPlan,
} from './repair-planner';

/** A copy the round's plans call for, with the partition it belongs to. */
type PlannedCopy = CopyAction & { partition: number };

export interface AntiEntropyOptions {
  replicas: number;
  intervalMs: number;
  concurrency: number;
  tombstoneGraceMs: number;
  /** Whether this node's own rows can be trusted yet (caught up with its peers, see CatchUp). */
  active: () => boolean;
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

const MAX_PARTITIONS_PER_ROUND = 512;
/**
 * Files a round plans for, at most: it holds every plan (each file's record and its sources)
 * until it has carried them all out. 512 partitions of a node that lost a million files are
 * 62,000 files, and the nodes doing the repair peaked at 236-243 MiB of RSS; a round stops
 * taking partitions once it has this many files to act on (always one partition at least).
 */
const MAX_FILES_PER_ROUND = 16_384;

/**
 * Anti-entropy, repair and rebalance, with no coordinator.
 *
 * Every partition has a leader: the first live member of its placement order. Each round, a node
 * asks every live member for its digests of the partitions it leads (one request per member; a
 * digest is the XOR of hashes of a partition's rows) and compares them; only the partitions that
 * differ are read row by row from the members involved, planned by the repair planner (whose
 * header states the rules), and carried out here: tombstones first, then copies across all
 * partitions with the files that have the fewest copies first, then surplus drops. Because only
 * the leader acts on a partition, survivors do not all copy the same file at once.
 */
export class AntiEntropy {
  private readonly runner: BackgroundWorker;
  private readonly underReplicated = new Map<number, number>();
  private readonly pendingBytes = new Map<number, number>();
  /** When the last round held back rebalance moves: the time its view settles; 0 otherwise. */
  private deferredUntil = 0;
  private readonly counters = { copiesMade: 0, surplusDropped: 0, tombstonesSpread: 0 };
  private lastRoundAt: string | null = null;
  private signal: AbortSignal | undefined;

  constructor(
    private readonly options: AntiEntropyOptions,
    private readonly membership: Membership,
    private readonly nodes: Nodes,
    private readonly metadata: MetadataStore,
    private readonly fetcher: CopyFetcher,
    private readonly log: Logger,
  ) {
    const { intervalMs } = options;
    this.runner = new BackgroundWorker(
      { name: 'anti-entropy', work: (signal) => this.work(signal) },
      {
        firstMs: Math.min(1_000, intervalMs),
        // While there is work, go again soon; an idle cluster costs one digest call per member per
        // interval. Moves held back for a settled view go as soon as it has settled.
        busyMs: Math.min(200, intervalMs),
        idleMs: () =>
          this.deferredUntil > 0
            ? Math.min(intervalMs, Math.max(50, this.deferredUntil - Date.now()))
            : intervalMs,
        backoffMs: intervalMs,
        maxBackoffMs: intervalMs,
      },
      log,
    );
  }

  start(): void {
    this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  snapshot(): RepairStatus {
    let files = 0;
    for (const n of this.underReplicated.values()) files += n;
    let bytes = 0;
    for (const n of this.pendingBytes.values()) bytes += n;
    return {
      ...this.counters,
      bytesReceived: this.fetcher.bytesReceived,
      lastRoundAt: this.lastRoundAt,
      underReplicatedFiles: files,
      underReplicatedPartitions: this.underReplicated.size,
      pendingBytes: bytes,
    };
  }

  private async work(signal: AbortSignal): Promise<WorkResult> {
    this.signal = signal;
    // A leader that has not caught up would plan from stale rows: bring back what was deleted.
    if (!this.options.active()) return 'idle';
    // Busy only when something was done: a partition that cannot be fixed yet (a home member
    // unreachable) is retried at the normal interval, not in a tight loop.
    return (await this.round()) ? 'busy' : 'idle';
  }

  /** One anti-entropy round over the partitions this node leads. Returns whether it did anything. */
  async round(): Promise<boolean> {
    const table = this.membership.placement();
    const settledAt = this.membership.settledAt();
    const selfId = this.nodes.self.id;
    const members = this.nodes.live();
    const led: number[] = [];
    const bitmap = Buffer.alloc(PARTITION_COUNT / 8);
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if (table.orderFor(p)[0] === selfId) {
        led.push(p);
        bitmap[p >> 3]! |= 1 << (p & 7);
      }
    }
    const others = members.filter((m) => m.id !== selfId);
    const answers = await callQuorum(others, (peer) => peer.digests(bitmap), { quorum: 0 });
    for (const { target, error } of answers.failed) {
      this.log.debug({ peer: target.id, err: errorText(error) }, 'no digests from member this round');
    }
    const digests = new Map(answers.succeeded.map((a) => [a.target.id, a.value]));
    const outOfSync = partitionsOutOfSync({
      led,
      homeOf: (p) => table.orderFor(p).slice(0, this.options.replicas),
      mine: (p) => this.metadata.digest(p),
      theirs: digests,
      withExpiredTombstones: this.metadata.partitionsWithTombstonesBefore(
        new Date(Date.now() - this.options.tombstoneGraceMs).toISOString(),
      ),
    });
    const outOfSyncSet = new Set(outOfSync);
    for (const p of led) {
      if (!outOfSyncSet.has(p)) {
        this.underReplicated.delete(p);
        this.pendingBytes.delete(p);
      }
    }
    this.lastRoundAt = new Date().toISOString();
    if (outOfSync.length === 0) {
      this.deferredUntil = 0;
      return false;
    }
    this.log.debug({ partitions: outOfSync.length }, 'partitions out of sync');
    const flags = new Map<string, MemberInfo>(
      this.membership
        .view()
        .filter((m) => m.state !== 'dead')
        .map((m) => [m.id, { id: m.id, full: m.full, leaving: m.leaving }]),
    );
    const placed = new Set(table.members);
    const target = Math.min(this.options.replicas, table.members.length);
    const settled = Date.now() >= settledAt;
    const deadMembersRetired = this.membership.deadWithin(this.options.tombstoneGraceMs).length === 0;
    const plans: PartitionPlan[] = [];
    let planned = 0;
    for (const partition of outOfSync.slice(0, MAX_PARTITIONS_PER_ROUND)) {
      if (this.signal?.aborted || planned >= MAX_FILES_PER_ROUND) break;
      const home = table.orderFor(partition).slice(0, this.options.replicas);
      // Involved: this node, every home, and anyone holding rows of the partition.
      const involved = members.filter(
        (m) => m.id === selfId || home.includes(m.id) || digests.get(m.id)?.[String(partition)] !== undefined,
      );
      const rows = await this.readRows(partition, involved);
      const plan = planPartition({
        partition,
        home,
        target,
        placed,
        members: flags,
        rows,
        settled,
        now: Date.now(),
        tombstoneGraceMs: this.options.tombstoneGraceMs,
        deadMembersRetired,
      });
      if (plan.underReplicated > 0) this.underReplicated.set(partition, plan.underReplicated);
      else this.underReplicated.delete(partition);
      this.pendingBytes.set(partition, plan.pendingBytes);
      plans.push(plan);
      planned += plan.copies.length + plan.tombstones.length + plan.forgets.length;
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
    return plans.some((p) => p.tombstones.length + p.copies.length + p.forgets.length > 0);
  }

  private async readRows(partition: number, involved: Peer[]): Promise<Map<string, FileRecord[]>> {
    const result = await callQuorum(involved, (peer) => peer.partitionRecords(partition), { quorum: 0 });
    for (const { target, error } of result.failed) {
      this.log.debug({ peer: target.id, partition, err: errorText(error) }, 'could not read partition rows');
    }
    if (result.failed.length > 0)
      this.log.debug({ partition }, 'some members did not answer; partial repair');
    return new Map(result.succeeded.map((s) => [s.target.id, s.value]));
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
          await this.peer(t.member).delete(t.id, t.deletedAt, { force: true });
          this.counters.tombstonesSpread++;
        }),
      ),
    );
    const copies = plans
      .flatMap((plan) => plan.copies.map((c) => ({ ...c, partition: plan.partition })))
      .sort((a, b) => a.copiesNow - b.copiesNow);
    await this.runLimited(this.copyTasks(copies));
    await this.runLimited(
      plans.flatMap((plan) =>
        plan.forgets.map((f) => async () => {
          if (await this.peer(f.member).forget(f.id, f.sha256)) {
            this.counters.surplusDropped++;
            this.log.info({ fileId: f.id, peer: f.member }, 'surplus copy dropped');
          }
        }),
      ),
    );
  }

  private async copyOne(action: PlannedCopy, to: string): Promise<void> {
    const bytes = await copyTo(
      this.peer(to),
      action.meta,
      action.from.map((id) => this.peer(id)),
    );
    this.copyMade(action, to, bytes, 'pull');
  }

  private copyMade(action: PlannedCopy, to: string, bytes: number, via: 'batch' | 'pull'): void {
    this.pendingBytes.set(
      action.partition,
      Math.max(0, (this.pendingBytes.get(action.partition) ?? 0) - action.meta.size),
    );
    this.counters.copiesMade++;
    this.log.info(
      {
        fileId: action.meta.id,
        peer: to,
        bytes,
        copiesBefore: action.copiesNow,
        reason: action.restores ? 'restore' : 'rebalance',
        via,
      },
      'copy made',
    );
  }

  /**
   * The round's copies as tasks, in the round's order (fewest copies first). A small file this node
   * holds goes to each receiver in a batch, bytes and all: one request, one transaction and one
   * flush there for up to MAX_BATCH_COPIES files, instead of a pull request and a fetch for each.
   * Small files this node must receive itself are fetched in batches from one holder each.
   * Everything else (large files, files this node neither holds nor receives) is pulled by the
   * receiver from a holder, as is any file of a batch that is not kept inline where it was looked
   * for, that the receiver refuses, or whose batch fails. Bytes are read only when a batch goes.
   */
  private copyTasks(copies: PlannedCopy[]): Array<() => Promise<void>> {
    const selfId = this.nodes.self.id;
    const tasks: Array<() => Promise<void>> = [];
    const open = new Map<string, { actions: PlannedCopy[]; bytes: number }>();
    /** Adds a copy to the open batch under `key`, starting one (and its task) when it is full. */
    const addTo = (
      key: string,
      action: PlannedCopy,
      run: (actions: PlannedCopy[]) => Promise<void>,
    ): void => {
      let batch = open.get(key);
      if (
        !batch ||
        batch.actions.length >= MAX_BATCH_COPIES ||
        batch.bytes + action.meta.size > MAX_BATCH_BYTES
      ) {
        const fresh = { actions: [] as PlannedCopy[], bytes: 0 };
        tasks.push(() => run(fresh.actions));
        open.set(key, fresh);
        batch = fresh;
      }
      batch.actions.push(action);
      batch.bytes += action.meta.size;
    };
    for (const action of copies) {
      const small = action.meta.size <= MAX_BATCHED_COPY_BYTES;
      const holding = action.from.includes(selfId);
      for (const to of action.to) {
        if (small && holding && to !== selfId) {
          addTo(`to ${to}`, action, (actions) => this.copyBatch(to, actions));
        } else if (small && to === selfId && action.from[0] !== undefined) {
          // This node must receive the file itself: it fetches a batch from one holder.
          const holder = action.from[0];
          addTo(`from ${holder}`, action, (actions) => this.fetchBatch(holder, actions));
        } else {
          tasks.push(() => this.copyOne(action, to));
        }
      }
    }
    return tasks;
  }

  /**
   * Fetches small copies this node must hold itself from one holder in one request, and stores
   * those whose bytes are the planned file's (size and sha256, checked by the store); the rest are
   * pulled one by one from any holder.
   */
  private async fetchBatch(holder: string, actions: PlannedCopy[]): Promise<void> {
    const self = this.nodes.self;
    const fetched = await this.peer(holder)
      .readCopies(actions.map((a) => a.meta.id))
      .catch((err: unknown) => {
        this.log.warn({ peer: holder, files: actions.length, err: errorText(err) }, 'batch of copies failed');
        return [];
      });
    const bytes = new Map(fetched.map((c) => [c.id, c.data]));
    const items = actions.flatMap((action) => {
      const data = bytes.get(action.meta.id);
      return data ? [{ action, copy: { meta: action.meta, heldFor: null, data } }] : [];
    });
    const results =
      items.length === 0 ? [] : await self.storeCopies(items.map((i) => i.copy)).catch(() => []);
    const rest = actions.filter((a) => !bytes.has(a.meta.id));
    await this.settleBatch(self.id, items, results, rest);
  }

  private async copyBatch(to: string, actions: PlannedCopy[]): Promise<void> {
    const items: Array<{ action: PlannedCopy; copy: CopyToStore }> = [];
    const rest: PlannedCopy[] = [];
    for (const action of actions) {
      const data = this.ownInlineBytes(action.meta);
      if (data) items.push({ action, copy: { meta: action.meta, heldFor: null, data } });
      else rest.push(action);
    }
    const results =
      items.length === 0
        ? []
        : await this.peer(to)
            .storeCopies(items.map((i) => i.copy))
            .catch((err: unknown) => {
              this.log.warn({ peer: to, files: items.length, err: errorText(err) }, 'batch of copies failed');
              return [];
            });
    await this.settleBatch(to, items, results, rest);
  }

  /**
   * Counts the copies of a batch that `to` stored, then has `to` pull, one by one from any holder,
   * the ones it did not (`rest`: left out of the batch before it went, or refused by `to`).
   */
  private async settleBatch(
    to: string,
    items: Array<{ action: PlannedCopy; copy: CopyToStore }>,
    results: CopyResult[],
    rest: PlannedCopy[],
  ): Promise<void> {
    items.forEach(({ action, copy }, i) => {
      const result = results[i]?.result;
      if (result === 'stored' || result === 'already-stored')
        this.copyMade(action, to, result === 'stored' ? copy.data.length : 0, 'batch');
      else rest.push(action);
    });
    for (const action of rest) {
      if (this.signal?.aborted) return;
      await this.copyOne(action, to).catch((err: unknown) =>
        this.log.warn({ fileId: action.meta.id, peer: to, err: errorText(err) }, 'repair step failed'),
      );
    }
  }

  /** This node's copy of a small file, when it keeps it inline and it is the file's (by its row). */
  private ownInlineBytes(meta: FileMeta): Buffer | undefined {
    const copy = this.metadata.copyOf(meta.id);
    if (copy?.record.state !== 'live' || copy.record.sha256 !== meta.sha256) return undefined;
    return copy.data?.length === meta.size ? copy.data : undefined;
  }

  private peer(id: string): Peer {
    const peer = this.nodes.get(id);
    if (!peer) throw new Error(`member ${id} is not known any more`);
    return peer;
  }

  private async runLimited(tasks: Array<() => Promise<void>>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < tasks.length && !this.signal?.aborted) {
        const task = tasks[next++]!;
        await task().catch((err: unknown) => this.log.warn({ err: errorText(err) }, 'repair step failed'));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.options.concurrency) }, worker));
  }
}

/** Has `to` pull a copy of the file from one of `from` (itself excluded); returns the bytes copied. */
export async function copyTo(
  to: Peer,
  meta: FileMeta,
  from: readonly Peer[],
  heldFor: string | null = null,
): Promise<number> {
  const sources = from.filter((m) => m.id !== to.id).map((m) => m.url);
  return (await to.pull(meta, sources, heldFor)).bytes;
}
