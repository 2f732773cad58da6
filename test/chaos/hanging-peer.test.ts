import { randomBytes } from 'node:crypto';
import { TestCluster } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

/**
 * A peer that accepts connections and then hangs (SIGSTOP: the kernel still accepts, nothing
 * answers). Uploads and downloads must give up on it and finish with the others within a bounded
 * time, not hang on it. The bound here is generous: it catches a hang, not a slow machine.
 */
const BOUND_MS = 20_000;

describe('a peer that hangs', () => {
  let cluster: TestCluster;
  let frozenPid: number | undefined;

  afterAll(async () => {
    if (frozenPid) process.kill(frozenPid, 'SIGCONT');
    await cluster?.stopAll();
  });

  it('does not hold up uploads or downloads', async () => {
    // A long failure timeout keeps the hung node "alive" in everyone's view the whole time.
    cluster = await TestCluster.start({ nodes: 4, failureTimeoutMs: 60_000, gossipIntervalMs: 200 });
    const before = new Map<string, string>();
    for (let i = 0; i < 12; i++) {
      const data = randomBytes(256 * 1024 + i);
      const res = await upload(cluster.url(i % 4), data, `b-${i}.bin`);
      expect(res.status).toBe(201);
      before.set(res.body.id, sha256(data));
    }
    frozenPid = cluster.node(3).proc!.pid!;
    process.kill(frozenPid, 'SIGSTOP');

    for (let i = 0; i < 6; i++) {
      const data = randomBytes(2 * 1024 * 1024 + i);
      const started = Date.now();
      const res = await upload(cluster.url(i % 3), data, `during-${i}.bin`);
      expect(res.status).toBe(201);
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
      expect(res.body.replicas).not.toContain('node-4');
    }
    for (const [id, sum] of before) {
      for (const node of [0, 1, 2]) {
        const started = Date.now();
        const res = await download(cluster.url(node), id);
        expect(res.status).toBe(200);
        expect(sha256(res.data)).toBe(sum);
        expect(Date.now() - started).toBeLessThan(BOUND_MS);
      }
    }
  });
});
