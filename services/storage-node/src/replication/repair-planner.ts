import { metaOf, type FileMeta, type FileRecord } from '../../../../shared/protocol';

/**
 * The decisions of anti-entropy, apart from any I/O: what the leader of a partition should do
 * given the rows every involved member holds. Pure functions of their input, so each rule is
 * unit-tested in milliseconds (test/unit/repair-planner.test.ts); the loop that fetches rows and
 * carries out the plan is replication/anti-entropy.ts.
 *
 * The rules, in the order they apply to one file id:
 *  1. Deletes win. A tombstone anywhere goes to every home member and every member still holding
 *     a live copy; no copy of a deleted file is ever made.
 *  2. Tombstones go only when they can no longer matter: a non-home member's once every home
 *     member holds one and no live copy is left anywhere; the home members' own once, in
 *     addition, the grace period since the delete is over and no member that might come back with
 *     a copy is still merely dead: a member dead for less than the grace may return with the rows
 *     it had, and the tombstone is what deletes them then. One dead for longer has to prove its
 *     rows before it counts as a holder again (replication/catch-up.ts).
 *  3. The bytes a file should have are the sha256 most holders agree on; a copy with other bytes
 *     is dropped.
 *  4. Every home member without a good copy gets one pulled from a holder that has it, unless its
 *     disk is full (a stand-in keeps holding the copy meanwhile). A copy that restores redundancy
 *     goes at once; one that only moves a file that has its copies waits for a settled view.
 *  5. Surplus goes last, and only once every home member answered and holds a good copy: the
 *     copies of non-home members (stand-ins, old homes, draining members) are dropped then, so a
 *     file never has fewer good copies than before, and the last good copy is never dropped.
 */

export interface MemberInfo {
  id: string;
  /** Reported its disk full (or failing): takes no new copies. */
  full: boolean;
  /** Being drained: its copies must move away. */
  leaving: boolean;
}

export interface PartitionInput {
  partition: number;
  /** The partition's home members (the first N of its placement order). */
  home: readonly string[];
  /** Copies a file should have: min(N, members in placement). */
  target: number;
  /** Members in placement (not dead, not draining). */
  placed: ReadonlySet<string>;
  /** Every member not declared dead, with its flags. */
  members: ReadonlyMap<string, MemberInfo>;
  /** The partition's rows as each member that answered holds them; members that did not answer are absent. */
  rows: ReadonlyMap<string, readonly FileRecord[]>;
  /** Whether the leader's view has settled: no member entered placement for a settle period. */
  settled: boolean;
  now: number;
  tombstoneGraceMs: number;
  /**
   * False while some member has been dead for less than the grace: it may come back with copies
   * of files deleted while it was away, so home members' tombstones must stay (rule 2).
   */
  deadMembersRetired: boolean;
}

export interface CopyAction {
  meta: FileMeta;
  /** Home members to receive a copy. */
  to: string[];
  /** Members holding a good copy, to pull from. */
  from: string[];
  copiesNow: number;
  /** Restores redundancy (false: only moves a file that has its copies onto a home member). */
  restores: boolean;
}

export interface PartitionPlan {
  partition: number;
  tombstones: Array<{ member: string; id: string; deletedAt: string }>;
  copies: CopyAction[];
  forgets: Array<{ member: string; id: string; sha256: string | null }>;
  /** Files whose copies only rebalance and wait for a settled view. */
  deferred: number;
  /** Files with fewer than `target` good copies on members that answered. */
  underReplicated: number;
  /** Bytes of copies still to make (including deferred moves). */
  pendingBytes: number;
}

interface IdState {
  live: Map<string, FileRecord>;
  tombstones: Map<string, FileRecord>;
}

export function planPartition(input: PartitionInput): PartitionPlan {
  const { home, rows } = input;
  const homesAnswered = home.filter((id) => rows.has(id));
  const allHomesAnswered = homesAnswered.length === home.length;
  const plan: PartitionPlan = {
    partition: input.partition,
    tombstones: [],
    copies: [],
    forgets: [],
    deferred: 0,
    underReplicated: 0,
    pendingBytes: 0,
  };

  const ids = new Map<string, IdState>();
  for (const [member, records] of rows) {
    for (const r of records) {
      const state = ids.get(r.id) ?? { live: new Map(), tombstones: new Map() };
      (r.state === 'live' ? state.live : state.tombstones).set(member, r);
      ids.set(r.id, state);
    }
  }

  for (const [id, state] of ids) {
    if (state.tombstones.size > 0) planDeleted(input, id, state, homesAnswered, allHomesAnswered, plan);
    else planLive(input, id, state, homesAnswered, allHomesAnswered, plan);
  }
  return plan;
}

/** Rules 1 and 2: spread the tombstone, and forget it once it cannot matter. */
function planDeleted(
  input: PartitionInput,
  id: string,
  state: IdState,
  homesAnswered: readonly string[],
  allHomesAnswered: boolean,
  plan: PartitionPlan,
): void {
  const { home } = input;
  const deletedAt = [...state.tombstones.values()][0]!.deletedAt ?? new Date(input.now).toISOString();
  for (const h of homesAnswered) {
    if (!state.tombstones.has(h)) plan.tombstones.push({ member: h, id, deletedAt });
  }
  for (const holder of state.live.keys()) {
    if (!home.includes(holder)) plan.tombstones.push({ member: holder, id, deletedAt });
  }
  const homesHaveIt = allHomesAnswered && home.every((h) => state.tombstones.has(h));
  if (!homesHaveIt || state.live.size > 0) return;
  for (const holder of state.tombstones.keys()) {
    if (!home.includes(holder)) plan.forgets.push({ member: holder, id, sha256: null });
  }
  if (input.deadMembersRetired && input.now - Date.parse(deletedAt) > input.tombstoneGraceMs) {
    for (const h of home) plan.forgets.push({ member: h, id, sha256: null });
  }
}

/** Rules 3 to 5: agree on the bytes, copy to home members that lack them, then drop surplus. */
function planLive(
  input: PartitionInput,
  id: string,
  state: IdState,
  homesAnswered: readonly string[],
  allHomesAnswered: boolean,
  plan: PartitionPlan,
): void {
  const { home, members } = input;
  const votes = new Map<string, number>();
  for (const r of state.live.values()) votes.set(r.sha256, (votes.get(r.sha256) ?? 0) + 1);
  const sha256 = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  const good = [...state.live.entries()].filter(([, r]) => r.sha256 === sha256).map(([m]) => m);
  for (const [m, r] of state.live) {
    if (r.sha256 !== sha256) plan.forgets.push({ member: m, id, sha256: r.sha256 });
  }
  const meta = [...state.live.values()].find((r) => r.sha256 === sha256)!;
  const lacking = homesAnswered.filter((h) => !good.includes(h));
  const missing = lacking.filter((h) => members.get(h)?.full !== true);
  if (good.length < input.target) plan.underReplicated++;
  const restores = missing.length > 0 && isRestore(input, good);
  if (missing.length > 0 && !restores && !input.settled) {
    // The file has its copies; the move waits until no newcomer can still take the place of the
    // member it would go to. Surplus is not dropped meanwhile: a home member lacks it.
    plan.deferred++;
    plan.pendingBytes += meta.size * missing.length;
  } else if (missing.length > 0) {
    plan.copies.push({
      meta: metaOf({ ...meta, id, sha256 }),
      to: missing,
      from: good,
      copiesNow: good.length,
      restores,
    });
    plan.pendingBytes += meta.size * missing.length;
  } else if (allHomesAnswered && lacking.length === 0) {
    // Surplus goes only once every home member, full ones included, holds a verified copy.
    for (const holder of good) {
      if (!home.includes(holder)) plan.forgets.push({ member: holder, id, sha256 });
    }
  }
}

/**
 * Whether copying a file to the home members that lack it restores redundancy, rather than only
 * moving a file that already has its copies. It restores when fewer than `target` good copies sit
 * on members in placement (a dead member's rows are not read, so its copy does not count; a
 * draining member is out of placement), or when a holder is draining (its copy must move).
 * Otherwise every missing copy goes to a member that is home only because the member set grew
 * (or back to a returning home, which a stand-in covers meanwhile): a pure rebalance move, which
 * waits for a settled view. Copying it while a leader knows one newcomer but not yet another
 * would send some files to the first only for the second to take them over moments later.
 */
export function isRestore(
  input: Pick<PartitionInput, 'placed' | 'target' | 'members'>,
  good: readonly string[],
): boolean {
  const onPlaced = good.filter((m) => input.placed.has(m)).length;
  return onPlaced < input.target || good.some((m) => input.members.get(m)?.leaving === true);
}

/**
 * The partitions this node leads that need a row-by-row look: those whose digest differs on a
 * home member that answered, or that a non-home member holds rows of, plus those holding
 * tombstones past their grace (to forget them). Members that did not answer are left out.
 */
export function partitionsOutOfSync(input: {
  led: readonly number[];
  homeOf: (partition: number) => readonly string[];
  mine: (partition: number) => string | undefined;
  /** Per member that answered: its digest of each led partition it holds rows of. */
  theirs: ReadonlyMap<string, Readonly<Record<string, string>>>;
  withExpiredTombstones: ReadonlySet<number>;
}): number[] {
  const out: number[] = [];
  for (const p of input.led) {
    if (input.withExpiredTombstones.has(p)) {
      out.push(p);
      continue;
    }
    const homes = input.homeOf(p);
    const mine = input.mine(p);
    for (const [member, digests] of input.theirs) {
      const d = digests[String(p)];
      if (homes.includes(member) ? d !== mine : d !== undefined) {
        out.push(p);
        break;
      }
    }
  }
  return out;
}
