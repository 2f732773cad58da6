import { randomBytes } from 'node:crypto';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, sha256, upload, type StoredFile } from '../helpers/client';

const del = (base: string, id: string): Promise<Response> =>
  fetch(`${base}/files/${id}`, { method: 'DELETE' });

async function tombstones(base: string): Promise<number> {
  const view = await getJson<{ nodes: Array<{ state: string; tombstones?: number }> }>(`${base}/cluster`);
  return (view?.nodes ?? [])
    .filter((n) => n.state === 'alive')
    .reduce((sum, n) => sum + (n.tombstones ?? 0), 0);
}

async function listed(base: string, id: string): Promise<boolean> {
  const list = await getJson<{ files: Array<{ id: string }> }>(`${base}/files?limit=1000`);
  return list?.files.some((f) => f.id === id) ?? false;
}

/**
 * Catch up before serving: a node's own rows may hold files deleted while it was away, so it
 * serves none of them until it has learned what it missed from its peers; a node away longer
 * than the tombstone grace must not bring back what it cannot prove live.
 */
describe('catching up before serving', () => {
  describe('restarts', () => {
    let cluster: TestCluster;
    const kept: Array<{ file: StoredFile; data: Buffer }> = [];

    beforeAll(async () => {
      cluster = await TestCluster.start({ nodes: 3, failureTimeoutMs: 60_000 });
      for (let i = 0; i < 4; i++) {
        const data = randomBytes(4_000 + i);
        const res = await upload(cluster.url(i % 3), data);
        kept.push({ file: res.body, data });
      }
    });

    afterAll(async () => {
      for (const n of cluster?.nodes ?? []) if (n.proc) n.proc.kill('SIGCONT');
      await cluster?.stopAll();
    });

    it('serves nothing while its peers are frozen, and catches up on the deletes it missed once they are back', async () => {
      const gone = (await upload(cluster.url(0), randomBytes(3_000))).body;
      await cluster.kill(2);
      expect((await del(cluster.url(0), gone.id)).status).toBe(204);
      cluster.node(0).proc!.kill('SIGSTOP');
      cluster.node(1).proc!.kill('SIGSTOP');
      try {
        await cluster.restart(2, { ready: false });
        await new Promise((r) => setTimeout(r, 3_000));
        const ready = await fetch(`${cluster.url(2)}/readyz`);
        expect(ready.status).toBe(503);
        expect(((await ready.json()) as { reason: string }).reason).toMatch(/catching up/);
        // Neither the deleted file nor any other is served from its own rows meanwhile.
        expect((await download(cluster.url(2), gone.id)).status).toBe(503);
        expect((await download(cluster.url(2), kept[0]!.file.id)).status).toBe(503);
      } finally {
        cluster.node(0).proc!.kill('SIGCONT');
        cluster.node(1).proc!.kill('SIGCONT');
      }
      await waitFor(
        async () => (await fetch(`${cluster.url(2)}/readyz`)).status === 200,
        20_000,
        'node 3 to catch up',
      );
      expect((await download(cluster.url(2), gone.id)).status).toBe(404);
      for (const { file, data } of kept) {
        const got = await download(cluster.url(2), file.id);
        expect(got.status).toBe(200);
        expect(sha256(got.data)).toBe(sha256(data));
      }
    });

    it('comes up by itself when the whole cluster restarts at once', async () => {
      const gone = (await upload(cluster.url(1), randomBytes(2_000))).body;
      expect((await del(cluster.url(1), gone.id)).status).toBe(204);
      await Promise.all([0, 1, 2].map((i) => cluster.kill(i)));
      await Promise.all([0, 1, 2].map((i) => cluster.restart(i)));
      for (let i = 0; i < 3; i++) {
        expect((await download(cluster.url(i), gone.id)).status).toBe(404);
        for (const { file, data } of kept)
          expect(sha256((await download(cluster.url(i), file.id)).data)).toBe(sha256(data));
      }
    });
  });

  describe('an absence longer than the tombstone grace', () => {
    let cluster: TestCluster;

    beforeAll(async () => {
      cluster = await TestCluster.start({
        nodes: 3,
        failureTimeoutMs: 1_000,
        args: ['--tombstone-grace-ms', '4000', '--repair-interval-ms', '300'],
      });
    });

    afterAll(async () => {
      await cluster?.stopAll();
    });

    it('does not bring back a file deleted meanwhile once its tombstones are forgotten', async () => {
      const deleted = (await upload(cluster.url(0), randomBytes(5_000))).body;
      const keptData = randomBytes(6_000);
      const kept = (await upload(cluster.url(0), keptData)).body;
      await cluster.kill(2);
      expect((await del(cluster.url(0), deleted.id)).status).toBe(204);
      // The survivors forget the tombstone once the grace is over and node 3 has been dead as long.
      await waitFor(
        async () => (await tombstones(cluster.url(0))) === 0,
        40_000,
        'the tombstone to be forgotten',
      );

      await cluster.restart(2);
      // A few repair rounds: the file stays gone everywhere, and what was not deleted is served.
      await new Promise((r) => setTimeout(r, 2_000));
      for (let i = 0; i < 3; i++) {
        expect([i, (await download(cluster.url(i), deleted.id)).status]).toEqual([i, 404]);
        expect(await listed(cluster.url(i), deleted.id)).toBe(false);
      }
      const got = await download(cluster.url(2), kept.id);
      expect(got.status).toBe(200);
      expect(sha256(got.data)).toBe(sha256(keptData));
      expect(cluster.log(2)).toMatch(/away longer than the tombstone grace/);
    });
  });
});
