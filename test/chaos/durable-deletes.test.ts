import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, upload, type StoredFile } from '../helpers/client';

const del = (base: string, id: string): Promise<Response> =>
  fetch(`${base}/files/${id}`, { method: 'DELETE' });

/** Tombstones held across the cluster, as /cluster reports them. */
async function tombstones(base: string): Promise<number> {
  const view = await getJson<{ nodes: Array<{ tombstones?: number }> }>(`${base}/cluster`);
  return (view?.nodes ?? []).reduce((sum, n) => sum + (n.tombstones ?? 0), 0);
}

/**
 * What 204 means for a delete: W of the file's home members (or stand-ins for those that are
 * down) hold its tombstone durably, so no later loss of a disk or return of a node brings the file
 * back. Below that, 503 and the file stays readable.
 */
describe('deletes as durable as uploads', () => {
  describe('on three nodes', () => {
    let cluster: TestCluster;

    beforeAll(async () => {
      cluster = await TestCluster.start({ nodes: 3, failureTimeoutMs: 60_000 });
    });

    afterAll(async () => {
      await cluster?.stopAll();
    });

    it('answers 503 with two of three holders down, and the file stays readable', async () => {
      const data = randomBytes(5_000);
      const put = await upload(cluster.url(0), data);
      expect(put.status).toBe(201);
      await cluster.kill(1);
      await cluster.kill(2);
      const res = await del(cluster.url(0), put.body.id);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('quorum_unavailable');
      expect((await download(cluster.url(0), put.body.id)).status).toBe(200);
      await cluster.restart(1);
      await cluster.restart(2);
    });

    it('answers 404 for an id nobody knows, and leaves no tombstone for it', async () => {
      const before = await tombstones(cluster.url(0));
      const res = await del(cluster.url(1), '0000000000neverstoredhere00');
      expect(res.status).toBe(404);
      expect(await tombstones(cluster.url(0))).toBe(before);
    });
  });

  describe('on five nodes', () => {
    let cluster: TestCluster;

    beforeAll(async () => {
      cluster = await TestCluster.start({
        nodes: 5,
        failureTimeoutMs: 60_000,
        args: ['--repair-interval-ms', '500'],
      });
    });

    afterAll(async () => {
      await cluster?.stopAll();
    });

    const indexOf = (c: TestCluster, id: string): number => c.nodes.findIndex((n) => n.id === id);

    it('answers 503, not 404, when every holder is unreachable', async () => {
      const put = await upload(cluster.url(0), randomBytes(1_000));
      const holders = put.body.replicas.map((id) => indexOf(cluster, id));
      for (const i of holders) await cluster.kill(i);
      const via = cluster.nodes.findIndex((_n, i) => !holders.includes(i));
      expect((await del(cluster.url(via), put.body.id)).status).toBe(503);
      for (const i of holders) await cluster.restart(i);
      await cluster.waitForConvergence();
      expect((await download(cluster.url(via), put.body.id)).status).toBe(200);
    });

    it('keeps a file deleted with two holders down after the third loses its disk and the two come back', async () => {
      const data = randomBytes(20_000);
      const put = await upload(cluster.url(0), data);
      const file: StoredFile = put.body;
      const [a, b, c] = file.replicas.map((id) => indexOf(cluster, id)) as [number, number, number];
      await cluster.kill(a);
      await cluster.kill(b);
      const via = cluster.nodes.findIndex((_n, i) => ![a, b, c].includes(i));
      expect((await del(cluster.url(via), file.id)).status).toBe(204);

      // The one holder that took the delete loses its disk: same node id, empty data dir.
      await cluster.kill(c);
      rmSync(cluster.node(c).dataDir, { recursive: true, force: true });
      await cluster.restart(c);
      await cluster.restart(a);
      await cluster.restart(b);
      await cluster.waitForConvergence();

      // A few repair rounds: the file stays gone everywhere.
      await new Promise((r) => setTimeout(r, 3_000));
      for (let i = 0; i < cluster.nodes.length; i++) {
        expect([i, (await download(cluster.url(i), file.id)).status]).toEqual([i, 404]);
      }
      await waitFor(
        async () => {
          const list = await getJson<{ files: Array<{ id: string }> }>(
            `${cluster.url(via)}/files?limit=1000`,
          );
          return list !== undefined && !list.files.some((f) => f.id === file.id);
        },
        10_000,
        'the file to be gone from the listing',
      );
    });
  });
});
