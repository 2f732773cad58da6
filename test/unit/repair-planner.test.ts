import type { FileRecord } from '../../shared/protocol';
import {
  isRestore,
  partitionsOutOfSync,
  planPartition,
  type MemberInfo,
  type PartitionInput,
} from '../../services/storage-node/src/replication/repair-planner';

const NOW = Date.parse('2026-11-26T12:00:00Z');
const SHA = 'a'.repeat(64);
const OTHER_SHA = 'b'.repeat(64);

function live(id: string, sha256 = SHA, heldFor: string | null = null): FileRecord {
  return {
    id,
    name: `${id}.bin`,
    size: 100,
    sha256,
    contentType: 'application/octet-stream',
    createdAt: '2026-11-26T10:00:00.000Z',
    state: 'live',
    deletedAt: null,
    heldFor,
  };
}

function tombstone(id: string, deletedAt = '2026-11-26T11:00:00.000Z'): FileRecord {
  return { ...live(id), name: '', size: 0, sha256: '', state: 'deleted', deletedAt };
}

/**
 * A partition whose home is a, b, c (N = 3) among members a..e, all placed and alive, settled,
 * with a 1-hour tombstone grace; `rows` says what each member that answered holds.
 */
function input(rows: Record<string, FileRecord[]>, over: Partial<PartitionInput> = {}): PartitionInput {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  return {
    partition: 7,
    home: ['a', 'b', 'c'],
    target: 3,
    placed: new Set(ids),
    members: new Map<string, MemberInfo>(ids.map((id) => [id, { id, full: false, leaving: false }])),
    rows: new Map(Object.entries(rows)),
    settled: true,
    now: NOW,
    tombstoneGraceMs: 3_600_000,
    deadMembersRetired: true,
    ...over,
  };
}

function flags(over: Record<string, Partial<MemberInfo>>): Map<string, MemberInfo> {
  return new Map(
    ['a', 'b', 'c', 'd', 'e'].map((id) => [id, { id, full: false, leaving: false, ...over[id] }]),
  );
}

describe('repair planner: deletes win', () => {
  it('spreads a tombstone to every home that lacks it and every holder, and copies nothing', () => {
    const plan = planPartition(input({ a: [tombstone('f')], b: [live('f')], c: [], d: [live('f')] }));
    expect(plan.tombstones.map((t) => t.member).sort()).toEqual(['b', 'c', 'd']);
    expect(plan.tombstones.every((t) => t.deletedAt === '2026-11-26T11:00:00.000Z')).toBe(true);
    expect(plan.copies).toEqual([]);
    expect(plan.forgets).toEqual([]);
  });

  it('keeps every tombstone while a live copy remains anywhere', () => {
    const plan = planPartition(
      input({ a: [tombstone('f')], b: [tombstone('f')], c: [tombstone('f')], d: [live('f')] }),
    );
    expect(plan.tombstones).toEqual([{ member: 'd', id: 'f', deletedAt: '2026-11-26T11:00:00.000Z' }]);
    expect(plan.forgets).toEqual([]);
  });

  it("forgets a non-home member's tombstone once every home holds one, the homes' own only after the grace", () => {
    const rows = { a: [tombstone('f')], b: [tombstone('f')], c: [tombstone('f')], e: [tombstone('f')] };
    expect(planPartition(input(rows)).forgets).toEqual([{ member: 'e', id: 'f', sha256: null }]);
    const later = planPartition(input(rows, { now: NOW + 2 * 3_600_000 }));
    expect(later.forgets.map((f) => f.member).sort()).toEqual(['a', 'b', 'c', 'e']);
  });

  it("keeps the homes' tombstones past the grace while a member that may come back is merely dead", () => {
    const rows = { a: [tombstone('f')], b: [tombstone('f')], c: [tombstone('f')] };
    const plan = planPartition(input(rows, { now: NOW + 2 * 3_600_000, deadMembersRetired: false }));
    expect(plan.forgets).toEqual([]);
  });

  it('forgets no tombstone while a home member has not answered', () => {
    const plan = planPartition(
      input({ a: [tombstone('f')], b: [tombstone('f')], e: [tombstone('f')] }, { now: NOW + 10 * 3_600_000 }),
    );
    expect(plan.forgets).toEqual([]);
    expect(plan.tombstones).toEqual([]);
  });
});

describe('repair planner: copies', () => {
  it('never drops the last good copy: a file held only by a stand-in is copied to its homes first', () => {
    const plan = planPartition(input({ a: [], b: [], c: [], d: [live('f', SHA, 'a')] }));
    expect(plan.copies).toHaveLength(1);
    expect(plan.copies[0]).toMatchObject({ to: ['a', 'b', 'c'], from: ['d'], copiesNow: 1, restores: true });
    expect(plan.forgets).toEqual([]);
    expect(plan.underReplicated).toBe(1);
    expect(plan.pendingBytes).toBe(300);
  });

  it('drops surplus only once every home member answered and holds a good copy', () => {
    const all = { a: [live('f')], b: [live('f')], c: [live('f')], d: [live('f', SHA, 'c')] };
    expect(planPartition(input(all)).forgets).toEqual([{ member: 'd', id: 'f', sha256: SHA }]);
    const { c: _c, ...withoutC } = all;
    expect(planPartition(input(withoutC)).forgets).toEqual([]);
    expect(planPartition(input(withoutC)).copies).toEqual([]);
  });

  it('keeps the bytes most holders agree on and drops a copy with other bytes', () => {
    const plan = planPartition(input({ a: [live('f')], b: [live('f', OTHER_SHA)], c: [live('f')] }));
    expect(plan.forgets).toEqual([{ member: 'b', id: 'f', sha256: OTHER_SHA }]);
    expect(plan.copies).toEqual([
      expect.objectContaining({ to: ['b'], from: ['a', 'c'], copiesNow: 2, restores: true }),
    ]);
  });

  it('gives a full home member no copy, and keeps the stand-in that covers it', () => {
    const plan = planPartition(
      input(
        { a: [live('f')], b: [live('f')], c: [], d: [live('f', SHA, 'c')] },
        { members: flags({ c: { full: true } }) },
      ),
    );
    expect(plan.copies).toEqual([]);
    expect(plan.forgets).toEqual([]);
  });
});

describe('repair planner: moves wait for a settled view, repairs do not', () => {
  // d and e joined and outrank c: home is now a, b, d; the file has its 3 copies on a, b, c.
  const moved = { home: ['a', 'b', 'd'] };
  const rows = { a: [live('f')], b: [live('f')], c: [live('f')], d: [] };

  it('holds back a move while the view has not settled, without dropping anything', () => {
    const plan = planPartition(input(rows, { ...moved, settled: false }));
    expect(plan.copies).toEqual([]);
    expect(plan.forgets).toEqual([]);
    expect(plan.deferred).toBe(1);
    expect(plan.pendingBytes).toBe(100);
  });

  it('makes the move once settled, and drops the old copy only in a later round, after the new home has it', () => {
    const plan = planPartition(input(rows, moved));
    expect(plan.copies).toEqual([expect.objectContaining({ to: ['d'], restores: false })]);
    expect(plan.forgets).toEqual([]);
    const after = planPartition(input({ ...rows, d: [live('f')] }, moved));
    expect(after.forgets).toEqual([{ member: 'c', id: 'f', sha256: SHA }]);
  });

  it('copies at once when a holder died, settled or not', () => {
    // c died: out of placement, its rows unread. Home is now a, b, d.
    const plan = planPartition(
      input(
        { a: [live('f')], b: [live('f')], d: [] },
        { ...moved, settled: false, placed: new Set(['a', 'b', 'd', 'e']) },
      ),
    );
    expect(plan.copies).toEqual([expect.objectContaining({ to: ['d'], restores: true })]);
    expect(plan.deferred).toBe(0);
  });

  it('copies at once when a holder is draining', () => {
    const plan = planPartition(
      input(rows, {
        ...moved,
        settled: false,
        placed: new Set(['a', 'b', 'd', 'e']),
        members: flags({ c: { leaving: true } }),
      }),
    );
    expect(plan.copies).toEqual([expect.objectContaining({ to: ['d'], restores: true })]);
  });

  it('hands a stand-in copy back to its returning home, then drops the stand-in', () => {
    const back = { a: [live('f')], b: [live('f')], c: [], d: [live('f', SHA, 'c')] };
    const plan = planPartition(input(back));
    expect(plan.copies).toEqual([
      expect.objectContaining({ to: ['c'], from: ['a', 'b', 'd'], restores: false }),
    ]);
    const handedBack = planPartition(input({ ...back, c: [live('f')] }));
    expect(handedBack.forgets).toEqual([{ member: 'd', id: 'f', sha256: SHA }]);
  });

  it('isRestore counts only copies on placed members', () => {
    const base = { placed: new Set(['a', 'b', 'c']), target: 3, members: flags({}) };
    expect(isRestore(base, ['a', 'b', 'c'])).toBe(false);
    expect(isRestore(base, ['a', 'b', 'd'])).toBe(true);
  });
});

describe('partitionsOutOfSync', () => {
  it('flags partitions whose home digests differ or that others hold rows of, and those with old tombstones', () => {
    const out = partitionsOutOfSync({
      led: [1, 2, 3, 4, 5],
      homeOf: () => ['self', 'b', 'c'],
      mine: (p) => (p === 5 ? undefined : `d${p}`),
      theirs: new Map<string, Record<string, string>>([
        ['b', { '1': 'd1', '2': 'other', '3': 'd3' }],
        ['c', { '1': 'd1', '2': 'd2', '3': 'd3' }],
        ['x', { '3': 'stray' }],
      ]),
      withExpiredTombstones: new Set([4]),
    });
    // 1 in sync; 2 differs on b; 3 has rows on x, which is not home; 4 has old tombstones; 5 has
    // no rows anywhere.
    expect(out).toEqual([2, 3, 4]);
  });
});
