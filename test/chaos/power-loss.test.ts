import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster, getJson } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';
import { LossyFs, lossyFsNeeds, type Discarded } from '../helpers/lossy-fs';
import { systemDescribe } from '../helpers/requirements';

/**
 * Power loss under a node's data dir: an acknowledged upload must survive losing every write
 * that was not made durable. The node's data dir is a lossy-fs mount (test/helpers/lossy-fs.py:
 * unsynced bytes and name changes live only in the FUSE daemon's memory). The test uploads
 * files of several sizes, and as soon as the 201s are in, cuts the power: SIGKILL of the node
 * and of the file system in the same instant, so everything not fsync'd is gone, as after a real
 * power cut. It mounts the same backing dir again, restarts the node on it, and every file that
 * was acknowledged must come back from that disk byte for byte, from a node that starts cleanly.
 *
 * test/chaos/lossy-fs.test.ts shows that the tool does lose what is not durable, so that a pass
 * here means something; the canary below shows it did so in this very run.
 */
const KiB = 1024;
const MiB = 1024 * KiB;
/** Empty, a byte, under and over a page, exactly one 1 MiB block, a block and a bit, several blocks. */
const SIZES = [0, 1, 4095, 64 * KiB + 1, MiB, MiB + 17, 3 * MiB + 5];

const describeSystem = systemDescribe({ needs: lossyFsNeeds, optOut: 'SHOAL_SKIP_ROOT_TESTS' });

interface Acknowledged {
  id: string;
  sha256: string;
  size: number;
}

/** Log lines at pino's error level or above. */
function errorLines(log: string): string[] {
  return log.split('\n').filter((l) => /"level":(5|6)0/.test(l));
}

describeSystem('power loss under a node (lossy-fs: every unsynced write lost)', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'shoal-power-loss-'));
  const clusters: TestCluster[] = [];
  const mounts: LossyFs[] = [];

  afterAll(async () => {
    // Nodes first (they hold files on the mounts), then the mounts, then the dirs under them.
    for (const c of clusters) for (let i = 0; i < c.nodes.length; i++) await c.kill(i).catch(() => null);
    for (const m of mounts) await m.cleanup();
    for (const c of clusters) await c.stopAll().catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Starts a cluster whose node `lossy` keeps its data dir on a fresh lossy-fs. */
  async function startCluster(options: {
    nodes: number;
    replicas: number;
    writeQuorum: number;
    lossy: number;
  }): Promise<{ cluster: TestCluster; fs: LossyFs }> {
    let fs: LossyFs | undefined;
    const cluster = await TestCluster.start({
      nodes: options.nodes,
      replicas: options.replicas,
      writeQuorum: options.writeQuorum,
      // No anti-entropy pass during the test: a copy the lossy node lost must not be quietly
      // fetched back from a peer before the test looks for it.
      args: ['--repair-interval-ms', String(3_600_000)],
      prepareDataDir: async (dir, i) => {
        if (i !== options.lossy) return;
        fs = new LossyFs(join(scratch, `backing-${mounts.length}`), dir);
        mounts.push(fs);
        await fs.mount();
      },
    });
    clusters.push(cluster);
    return { cluster, fs: fs! };
  }

  /** Uploads one file of every size, round-robin through `via`; every one must be a 201. */
  async function uploadAll(
    cluster: TestCluster,
    via: number[],
  ): Promise<Array<Acknowledged & { replicas: string[] }>> {
    const acked: Array<Acknowledged & { replicas: string[] }> = [];
    for (const [k, size] of SIZES.entries()) {
      const data = randomBytes(size);
      const res = await upload(cluster.url(via[k % via.length]!), data, `file-${size}.bin`);
      expect(res.status).toBe(201);
      acked.push({ id: res.body.id, sha256: sha256(data), size, replicas: res.body.replicas });
    }
    return acked;
  }

  /**
   * The power cut: SIGKILL of the node and the file system's crash are sent in the same tick, so
   * the node gets no chance to make anything durable after the last 201. A file the test wrote
   * into the data dir without fsync must be gone afterwards: proof that this cut did lose data.
   */
  async function cutPower(cluster: TestCluster, i: number, fs: LossyFs): Promise<Discarded> {
    const canary = join(cluster.node(i).dataDir, 'unsynced-canary');
    writeFileSync(canary, 'written, never fsynced');
    const [, discarded] = await Promise.all([cluster.kill(i, 'SIGKILL'), fs.crash()]);
    await fs.mount();
    expect(existsSync(canary)).toBe(false);
    // The data dir keeps its identity: a node started on it without --node-id takes it from here.
    expect(readFileSync(join(cluster.node(i).dataDir, 'node-id'), 'utf8')).toBe(`${cluster.node(i).id}\n`);
    return discarded;
  }

  /** Restarts node i on its data dir and returns what it logged while starting. */
  async function restart(cluster: TestCluster, i: number): Promise<string> {
    const before = cluster.log(i).length;
    const started = Date.now();
    await cluster.restart(i);
    const log = cluster.log(i).slice(before);
    process.stdout.write(
      `power loss: ${cluster.node(i).id} ready again ${Date.now() - started} ms after start\n`,
    );
    return log;
  }

  /** A start that is clean: no error logged, and no live row found without its blob. */
  function expectCleanStart(log: string): void {
    expect(errorLines(log)).toEqual([]);
    for (const line of log.split('\n').filter((l) => l.includes('start-up check'))) {
      expect((JSON.parse(line) as { missingBlobs: number }).missingBlobs).toBe(0);
    }
  }

  async function expectIntact(url: string, files: Acknowledged[]): Promise<void> {
    for (const f of files) {
      const res = await download(url, f.id);
      expect({ id: f.id, size: f.size, status: res.status }).toEqual({ id: f.id, size: f.size, status: 200 });
      expect(sha256(res.data)).toBe(f.sha256);
    }
  }

  it('a lone node (N=1, W=1), whose one disk is all an acknowledgement rests on, loses nothing it acknowledged', async () => {
    const t0 = Date.now();
    const { cluster, fs } = await startCluster({ nodes: 1, replicas: 1, writeQuorum: 1, lossy: 0 });
    const uploaded = await uploadAll(cluster, [0]);
    // An acknowledged delete must hold as well: the file must not come back after the cut.
    const deleted = uploaded[3]!;
    expect((await fetch(`${cluster.url(0)}/files/${deleted.id}`, { method: 'DELETE' })).status).toBe(204);
    const acked = uploaded.filter((f) => f !== deleted);

    const discarded = await cutPower(cluster, 0, fs);
    process.stdout.write(`power loss (N=1): the cut discarded ${JSON.stringify(discarded)}\n`);
    const log = await restart(cluster, 0);
    await expectIntact(cluster.url(0), acked);
    expectCleanStart(log);
    expect((await download(cluster.url(0), deleted.id)).status).toBe(404);
    const list = await getJson<{ files: Array<{ id: string }> }>(`${cluster.url(0)}/files?limit=100`);
    expect(new Set(list?.files.map((f) => f.id))).toEqual(new Set(acked.map((f) => f.id)));
    expect(cluster.node(0).proc?.exitCode).toBeNull();
    process.stdout.write(`power loss (N=1): ${Date.now() - t0} ms\n`);
  });

  it('a node of three (N=3, W=2) keeps every copy it had committed when the 201 went out', async () => {
    const t0 = Date.now();
    const { cluster, fs } = await startCluster({ nodes: 3, replicas: 3, writeQuorum: 2, lossy: 2 });
    const lossyId = cluster.node(2).id;
    // Through every node, the lossy one included (as coordinator it writes its own copy too).
    const acked = await uploadAll(cluster, [0, 1, 2]);
    // A commit is awaited on every replica before the 201, so with three healthy nodes each
    // acknowledgement names the lossy node, and its copy is what this test is about.
    for (const f of acked) expect(f.replicas).toContain(lossyId);

    const discarded = await cutPower(cluster, 2, fs);
    process.stdout.write(`power loss (N=3): the cut discarded ${JSON.stringify(discarded)}\n`);
    const log = await restart(cluster, 2);
    // Only its own disk can answer now: the other two are gone, and no repair ran meanwhile.
    await Promise.all([cluster.kill(0), cluster.kill(1)]);
    await expectIntact(cluster.url(2), acked);
    expectCleanStart(log);
    expect(cluster.node(2).proc?.exitCode).toBeNull();
    process.stdout.write(`power loss (N=3): ${Date.now() - t0} ms\n`);
  });
});
