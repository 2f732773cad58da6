import { randomBytes } from 'node:crypto';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';
import { NETLAB_NEEDS, NetLab } from '../helpers/netlab';
import { systemDescribe } from '../helpers/requirements';

/**
 * A network partition between real hosts (network namespaces): the cluster splits 2 | 3, both
 * sides keep taking writes (each has W=2 nodes), and when the network heals the views merge back
 * into one, every acknowledged file is readable everywhere, and copies settle back to N.
 */
const describeSystem = systemDescribe({ needs: NETLAB_NEEDS, optOut: 'SHOAL_SKIP_NETNS' });

describeSystem('a network partition that heals', () => {
  let lab: NetLab;
  let cluster: TestCluster;

  beforeAll(async () => {
    lab = NetLab.create(5);
    cluster = await TestCluster.start({
      nodes: 5,
      failureTimeoutMs: 2_000,
      gossipIntervalMs: 200,
      args: ['--repair-interval-ms', '500'],
      host: (i) => ({ address: lab.address(i + 1), wrap: lab.wrap(i + 1) }),
    });
  });

  afterAll(async () => {
    await cluster?.stopAll();
    lab?.destroy();
  });

  async function states(viewer: number): Promise<Record<string, string>> {
    const view = await getJson<{ nodes: Array<{ id: string; state: string }> }>(
      `${cluster.url(viewer)}/cluster`,
    );
    return Object.fromEntries((view?.nodes ?? []).map((n) => [n.id, n.state]));
  }

  it('keeps acknowledged files through split and heal, and converges to one view', async () => {
    const acked = new Map<string, string>();
    const put = async (node: number, tag: string): Promise<void> => {
      const data = randomBytes(20_000 + acked.size);
      const res = await upload(cluster.url(node), data, `${tag}.bin`);
      expect(res.status).toBe(201);
      acked.set(res.body.id, sha256(data));
    };
    for (let i = 0; i < 10; i++) await put(i % 5, `before-${i}`);

    lab.partition([1, 2], [3, 4, 5]);
    await waitFor(
      async () => {
        const minority = await states(0);
        const majority = await states(2);
        return (
          minority['node-3'] === 'dead' &&
          minority['node-4'] === 'dead' &&
          minority['node-5'] === 'dead' &&
          majority['node-1'] === 'dead' &&
          majority['node-2'] === 'dead'
        );
      },
      20_000,
      'each side to declare the other dead',
    );
    // Both sides still have W=2 nodes, so both keep taking writes.
    for (let i = 0; i < 4; i++) await put(i % 2, `minority-${i}`);
    for (let i = 0; i < 4; i++) await put(2 + (i % 3), `majority-${i}`);

    lab.heal();
    const healedAt = Date.now();
    await waitFor(
      async () => {
        for (let viewer = 0; viewer < 5; viewer++) {
          const s = await states(viewer);
          if (Object.keys(s).length !== 5 || !Object.values(s).every((state) => state === 'alive'))
            return false;
        }
        return true;
      },
      30_000,
      'every node to see every node alive again',
    );
    process.stdout.write(`partition healed into one view in ${Date.now() - healedAt} ms\n`);

    for (const [id, sum] of acked) {
      for (let n = 0; n < 5; n++) {
        const res = await download(cluster.url(n), id);
        expect(res.status).toBe(200);
        expect(sha256(res.data)).toBe(sum);
      }
    }
    await waitFor(
      async () => {
        const list = await getJson<{ files: Array<{ id: string; replicas: string[] }> }>(
          `${cluster.url(0)}/files?limit=100`,
        );
        return list?.files.length === acked.size && list.files.every((f) => f.replicas.length === 3);
      },
      60_000,
      'copies to settle back to 3 per file',
    );
  });
});
