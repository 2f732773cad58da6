import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';
import { command, root, systemDescribe } from '../helpers/requirements';

/**
 * A node on a small dedicated file system (a tmpfs the test mounts, as root) that fills up:
 * it reports itself full, new copies go elsewhere, nothing it stored is damaged, and it takes
 * copies again once space is freed.
 */
const MiB = 1024 * 1024;
const describeSystem = systemDescribe({
  needs: [root('CAP_SYS_ADMIN'), command('mount', 'mount')],
  optOut: 'SHOAL_SKIP_ROOT_TESTS',
});

interface View {
  nodes: Array<{ id: string; full?: boolean; diskFreeBytes?: number }>;
}

describeSystem('a node whose disk fills up', () => {
  let cluster: TestCluster;
  let mount: string | undefined;

  afterAll(async () => {
    await cluster?.stopAll().catch(() => undefined);
    if (mount) {
      try {
        execFileSync('umount', ['-l', mount]);
      } catch {
        // already gone
      }
      rmSync(mount, { recursive: true, force: true });
    }
  });

  it('reports itself full, sends new copies elsewhere, keeps what it has, and recovers', async () => {
    cluster = await TestCluster.start({
      nodes: 4,
      args: ['--min-free-bytes', String(16 * MiB)],
      prepareDataDir: (dir, i) => {
        if (i !== 2) return;
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', dir]);
        mount = dir;
      },
    });
    const before = new Map<string, string>();
    for (let i = 0; i < 8; i++) {
      const data = randomBytes(200 * 1024 + i);
      const res = await upload(cluster.url(i % 4), data, `before-${i}.bin`);
      expect(res.status).toBe(201);
      before.set(res.body.id, sha256(data));
    }
    const filler = join(mount!, 'filler');
    // Leave about 8 MiB free: below the 16 MiB floor.
    const free = Number(execFileSync('df', ['-B1', '--output=avail', mount!]).toString().split('\n')[1]);
    writeFileSync(filler, Buffer.alloc(Math.max(0, free - 8 * MiB)));

    await waitFor(
      async () =>
        (await getJson<View>(`${cluster.url(0)}/cluster`))?.nodes.find((n) => n.id === 'node-3')?.full ===
        true,
      10_000,
      'node-3 to be reported full',
    );
    const during: string[] = [];
    for (let i = 0; i < 8; i++) {
      const data = randomBytes(300 * 1024 + i);
      // Through every node, the full one included: it coordinates, but stores nothing itself.
      const res = await upload(cluster.url(i % 4), data, `during-${i}.bin`);
      expect(res.status).toBe(201);
      expect(res.body.replicas).not.toContain('node-3');
      during.push(res.body.id);
    }
    // Each has its 3 copies on the nodes with room (a node that had not yet heard node-3 was full
    // may have acknowledged with W=2 and handed the third copy to a stand-in right after).
    await waitFor(
      async () => {
        const list = await getJson<{ files: Array<{ id: string; replicas: string[] }> }>(
          `${cluster.url(0)}/files?limit=100`,
        );
        const mine = list?.files.filter((f) => during.includes(f.id)) ?? [];
        return (
          mine.length === 8 && mine.every((f) => f.replicas.length === 3 && !f.replicas.includes('node-3'))
        );
      },
      15_000,
      'three copies of every new file, none on the full node',
    );
    for (const [id, sum] of before) {
      const res = await download(cluster.url(2), id);
      expect(res.status).toBe(200);
      expect(sha256(res.data)).toBe(sum);
    }

    rmSync(filler);
    await waitFor(
      async () =>
        (await getJson<View>(`${cluster.url(0)}/cluster`))?.nodes.find((n) => n.id === 'node-3')?.full ===
        false,
      10_000,
      'node-3 to have room again',
    );
    // /cluster shows each node's own word; the writers' membership hears it by gossip (200 ms).
    await new Promise((r) => setTimeout(r, 1_000));
    let tookOne = false;
    for (let i = 0; i < 12 && !tookOne; i++) {
      const res = await upload(cluster.url(0), randomBytes(1000 + i), `after-${i}.bin`);
      expect(res.status).toBe(201);
      tookOne = res.body.replicas.includes('node-3');
    }
    expect(tookOne).toBe(true);
  });
});
