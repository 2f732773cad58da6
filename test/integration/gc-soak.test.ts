import { randomBytes } from 'node:crypto';
import { TestCluster, resolveFromRoot } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

/**
 * How long the soak runs: two cycles of burst and idle (two restarts, two idle spells) by default,
 * which keeps the whole suite within its 15 minutes; SHOAL_SOAK_MS=600000 soaks for ten minutes.
 */
const SOAK_MS = Number(process.env.SHOAL_SOAK_MS ?? 44_000);
/** Each cycle is a burst of requests, then silence long enough for V8's memory reducer to run. */
const BURST_MS = 10_000;
const IDLE_MS = 12_000;

/**
 * Native modules can crash the whole process from a finaliser. With Node 24.19+ and better-sqlite3
 * before 13, a garbage collection that finalised a prepared statement while no JavaScript was
 * running (V8's memory reducer, which runs from a platform task once a busy process goes quiet)
 * aborted the node: `Assertion failed: (env) != nullptr` in RemoveEnvironmentCleanupHook. Such a
 * crash waits for V8 to collect the right object at the right moment, so this test provokes both
 * kinds of collection: every node runs with --expose-gc and a full collection from JavaScript now
 * and then (every 5 s), and with the memory reducer enabled for small heaps, under light but varied load
 * (uploads, downloads through every node, listings, deletes) in bursts separated by idle spells,
 * for a few minutes; one node is restarted before each idle spell, since a start-up leaves native
 * objects to collect. A node may exit only when it is asked to, and then cleanly (exit 0).
 */
describe('nodes under bursts of load, with garbage collection forced', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 3,
      runtimeFlags: [
        '--expose-gc',
        '--memory-reducer-for-small-heaps',
        '--require',
        resolveFromRoot('test/helpers/force-gc.cjs'),
      ],
      // A scrub pass walks the rows with a statement iterator, a native object left for the next
      // collection: with a short interval there is always one about when a node falls idle.
      args: ['--scrub-interval-ms', '2000'],
      env: { SHOAL_FORCE_GC_MS: '5000' },
    });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it(
    'keep running until asked to stop, then exit 0',
    async () => {
      let crashed: string | undefined;
      const askedToStop = new Set<number>();
      const watch = (i: number): void => {
        void cluster.node(i).exit!.then((code) => {
          if (askedToStop.has(i)) return;
          crashed ??= `node ${i} exited with ${code}:\n${cluster.log(i).split('\n').slice(-15).join('\n')}`;
        });
      };
      cluster.nodes.forEach((_n, i) => watch(i));
      let restarts = 0;

      const kept: Array<{ id: string; sha256: string }> = [];
      let ops = 0;
      const started = Date.now();
      while (Date.now() - started < SOAK_MS && !crashed) {
        const burstEnds = Date.now() + BURST_MS;
        while (Date.now() < burstEnds && !crashed) {
          const via = cluster.url(ops % 3);
          const data = randomBytes(1 + Math.floor(Math.random() * 64 * 1024));
          const put = await upload(via, data, `soak-${ops}.bin`);
          expect(put.status).toBe(201);
          kept.push({ id: put.body.id, sha256: sha256(data) });
          const pick = kept[Math.floor(Math.random() * kept.length)]!;
          const got = await download(cluster.url((ops + 1) % 3), pick.id);
          expect(got.status).toBe(200);
          expect(sha256(got.data)).toBe(pick.sha256);
          if (ops % 10 === 0) {
            const list = await fetch(`${via}/files?limit=50`);
            expect(list.status).toBe(200);
            await list.arrayBuffer();
          }
          if (ops % 7 === 0 && kept.length > 5) {
            const gone = kept.splice(0, 1)[0]!;
            const del = await fetch(`${cluster.url((ops + 2) % 3)}/files/${gone.id}`, { method: 'DELETE' });
            expect(del.status).toBe(204);
          }
          ops++;
        }
        // A start-up leaves garbage of its own (statements, iterators) for the idle spell to collect.
        const i = restarts++ % 3;
        askedToStop.add(i);
        expect(await cluster.kill(i, 'SIGTERM')).toBe(0);
        askedToStop.delete(i);
        await cluster.restart(i);
        watch(i);
        await new Promise((r) => setTimeout(r, IDLE_MS));
      }
      process.stdout.write(
        `gc soak: ${ops} rounds of requests and ${restarts} restarts in ${Date.now() - started} ms\n`,
      );
      expect(crashed).toBeUndefined();
      // Light load, but real: on average at least one round of requests a second.
      expect(ops).toBeGreaterThan(SOAK_MS / 1000);

      // Asked to stop, every node exits 0.
      const codes = await Promise.all(cluster.nodes.map((_n, i) => cluster.kill(i, 'SIGTERM')));
      expect(codes).toEqual([0, 0, 0]);
    },
    SOAK_MS + 2 * BURST_MS + IDLE_MS + 60_000,
  );
});
