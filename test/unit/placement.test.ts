import {
  PARTITION_COUNT,
  PlacementTable,
  partitionOf,
  placeFile,
  rankMembers,
} from '../../services/storage-node/src/placement/placement';

const nodes = (n: number): string[] => Array.from({ length: n }, (_v, i) => `node-${i + 1}`);
const ids = (n: number): string[] => Array.from({ length: n }, (_v, i) => `file-${i}-${(i * 7919) % 10007}`);

describe('placement', () => {
  it('gives the same order for the same inputs, whatever order the members are listed in', () => {
    const members = nodes(7);
    const shuffled = [...members].reverse();
    for (const id of ids(200)) {
      const a = placeFile(id, members, 3);
      const b = placeFile(id, shuffled, 3);
      expect(b.order).toEqual(a.order);
      expect(a.home).toEqual(a.order.slice(0, 3));
      expect(new Set(a.order).size).toBe(7);
    }
  });

  it('maps every id into a fixed partition range', () => {
    for (const id of ids(1000)) {
      const p = partitionOf(id);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(PARTITION_COUNT);
      expect(partitionOf(id)).toBe(p);
    }
  });

  // "Data" is every copy a node holds, so the bar (10% of fair) applies to copies. First-owner
  // counts are a third of the sample: over 20 nodes the binomial spread alone is about 4.4%,
  // so they get a looser 15% bar.
  it.each([5, 20])('spreads 10,000 ids evenly over %i nodes (within 10%% of fair)', (n) => {
    const table = new PlacementTable(nodes(n), 3);
    const primary = new Map<string, number>();
    const copies = new Map<string, number>();
    for (const id of ids(10_000)) {
      const { home } = table.place(id);
      primary.set(home[0]!, (primary.get(home[0]!) ?? 0) + 1);
      for (const m of home) copies.set(m, (copies.get(m) ?? 0) + 1);
    }
    const fairPrimary = 10_000 / n;
    const fairCopies = (10_000 * 3) / n;
    for (const m of nodes(n)) {
      expect(Math.abs((primary.get(m) ?? 0) - fairPrimary) / fairPrimary).toBeLessThan(0.15);
      expect(Math.abs((copies.get(m) ?? 0) - fairCopies) / fairCopies).toBeLessThan(0.1);
    }
  });

  it.each([3, 5, 10])('adding one node to %i moves about 1/(n+1) of the partitions, and only to it', (n) => {
    const before = nodes(n);
    const after = [...before, 'newcomer'];
    let movedFirst = 0;
    let changedHomes = 0;
    for (let p = 0; p < PARTITION_COUNT; p++) {
      const oldOrder = rankMembers(p, before);
      const newOrder = rankMembers(p, after);
      // Removing the newcomer from the new order gives back the old order exactly: nobody else moved.
      expect(newOrder.filter((m) => m !== 'newcomer')).toEqual(oldOrder);
      if (newOrder[0] === 'newcomer') movedFirst++;
      const oldHome = new Set(oldOrder.slice(0, 3));
      const newHome = newOrder.slice(0, 3);
      const gained = newHome.filter((m) => !oldHome.has(m));
      // A home set changes only by taking in the newcomer.
      expect(gained.every((m) => m === 'newcomer')).toBe(true);
      if (gained.length > 0) changedHomes++;
    }
    const ideal = PARTITION_COUNT / (n + 1);
    expect(Math.abs(movedFirst - ideal) / ideal).toBeLessThan(0.1);
    // Each home set holds min(3, n+1) members, so the newcomer joins about 3/(n+1) of them.
    const idealHome = (PARTITION_COUNT * Math.min(3, n + 1)) / (n + 1);
    expect(Math.abs(changedHomes - idealHome) / idealHome).toBeLessThan(0.1);
  });

  it('caches rankings without changing them', () => {
    const table = new PlacementTable(nodes(4), 2);
    for (const id of ids(50)) {
      expect(table.place(id)).toEqual(placeFile(id, nodes(4), 2));
      expect(table.place(id)).toEqual(placeFile(id, nodes(4), 2));
    }
  });
});
