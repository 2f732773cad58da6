import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry, wins } from '../../services/storage-node/src/registry/registry';

/** The cluster registry's registers: every order of the same writes ends in the same state. */

let dir: string;
const open: Registry[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-registry-'));
});

afterEach(() => {
  for (const r of open.splice(0)) r.close();
  rmSync(dir, { recursive: true, force: true });
});

function registry(node: string, clock: () => number = Date.now): Registry {
  const r = new Registry(join(dir, `${node}.sqlite`), node, clock);
  open.push(r);
  return r;
}

describe('Registry', () => {
  it('keeps the last write, and a removal beats the value it removed wherever it arrives', () => {
    let now = 1000;
    const a = registry('node-a', () => now);
    const b = registry('node-b', () => now);
    const made = a.put('s3-key', 'AK1', { name: 'backup' });
    expect(b.merge([made])).toEqual([made]);
    expect(b.get('s3-key', 'AK1')).toEqual({ name: 'backup' });

    now = 2000;
    const removed = a.put('s3-key', 'AK1', null);
    expect(a.get('s3-key', 'AK1')).toBeUndefined();
    // b comes back with the old value and offers it: the removal stands, and b takes it.
    expect(a.merge([made])).toEqual([]);
    expect(b.merge([removed])).toEqual([removed]);
    expect(b.get('s3-key', 'AK1')).toBeUndefined();
    expect(a.digest()).toBe(b.digest());
    // Both versions in one message, newest first: the newest still wins.
    const c = registry('node-c');
    c.merge([removed, made]);
    expect(c.get('s3-key', 'AK1')).toBeUndefined();
    expect(c.digest()).toBe(a.digest());
  });

  it('orders writes at the same millisecond by node id, and moves past a clock that is behind', () => {
    const a = registry('node-a', () => 5000);
    const b = registry('node-b', () => 5000);
    const fromA = a.put('bucket', 'photos', { owner: 'AK1' });
    const fromB = b.put('bucket', 'photos', { owner: 'AK2' });
    expect(wins(fromB, fromA)).toBe(true);
    a.merge([fromB]);
    b.merge([fromA]);
    expect(a.get('bucket', 'photos')).toEqual({ owner: 'AK2' });
    expect(b.get('bucket', 'photos')).toEqual({ owner: 'AK2' });
    // a's clock has not moved: its next write still beats what it holds.
    const again = a.put('bucket', 'photos', { owner: 'AK3' });
    expect(again.time).toBe(5001);
    expect(b.merge([again])).toEqual([again]);
    expect(b.get('bucket', 'photos')).toEqual({ owner: 'AK3' });
  });

  it('converges on one state whatever order and grouping the writes arrive in', () => {
    const nodes = ['n1', 'n2', 'n3', 'n4'];
    const writers = nodes.map((n) => registry(n, () => 1000 + Math.floor(Math.random() * 50)));
    const written = [];
    for (let i = 0; i < 300; i++) {
      const w = writers[Math.floor(Math.random() * writers.length)]!;
      const name = `k${Math.floor(Math.random() * 20)}`;
      written.push(w.put('s3-key', name, Math.random() < 0.2 ? null : { i }));
    }
    const readers = ['r1', 'r2', 'r3'].map((n) => registry(n));
    for (const reader of readers) {
      const shuffled = [...written].sort(() => Math.random() - 0.5);
      while (shuffled.length > 0) reader.merge(shuffled.splice(0, 1 + Math.floor(Math.random() * 7)));
    }
    // The writers swap their states too, as the sync does.
    for (const w of writers) for (const other of writers) w.merge(other.all());
    const digests = new Set([...readers, ...writers].map((r) => r.digest()));
    expect(digests.size).toBe(1);
    const state = JSON.stringify(readers[0]!.list('s3-key'));
    for (const r of [...readers, ...writers]) expect(JSON.stringify(r.list('s3-key'))).toBe(state);
  });

  it('keeps its entries, tombstones included, across a restart', () => {
    const a = registry('node-a');
    a.put('s3-key', 'AK1', { name: 'one' });
    a.put('s3-key', 'AK2', { name: 'two' });
    a.put('s3-key', 'AK2', null);
    const digest = a.digest();
    a.close();
    open.splice(open.indexOf(a), 1);
    const again = registry('node-a');
    expect(again.digest()).toBe(digest);
    expect(again.list('s3-key')).toEqual([{ name: 'AK1', value: { name: 'one' } }]);
    expect(again.all()).toHaveLength(2);
  });

  it('tells its listeners about every change, local or merged, and about nothing else', () => {
    const a = registry('node-a');
    const b = registry('node-b');
    const seen: string[] = [];
    b.onChange((e) => seen.push(`${e.kind}:${e.name}:${JSON.stringify(e.value)}`));
    const e1 = a.put('bucket', 'b1', { owner: 'x' });
    b.merge([e1]);
    b.merge([e1]);
    b.put('bucket', 'b1', null);
    expect(seen).toEqual(['bucket:b1:{"owner":"x"}', 'bucket:b1:null']);
  });
});
