import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';
import { command, loopDevicesAndExt4, root, systemDescribe } from '../helpers/requirements';

/**
 * A node whose data dir turns read-only while it runs, the way it happens in production: ext4
 * mounted with errors=remount-ro meets an error and remounts itself read-only. The test mounts
 * a small ext4 image through a loop device as one node's data dir (as root) and makes the kernel
 * raise a real file-system error with /sys/fs/ext4/<dev>/trigger_fs_error (the same path a
 * corrupt block or a failed journal write takes). The node must say it is not ready and why,
 * announce that it takes no new copies, keep running, and nothing may be lost.
 */
const MiB = 1024 * 1024;
const describeSystem = systemDescribe({
  needs: [
    root('CAP_SYS_ADMIN'),
    loopDevicesAndExt4,
    command('mkfs.ext4', 'e2fsprogs'),
    command('losetup', 'mount'),
  ],
  optOut: 'SHOAL_SKIP_ROOT_TESTS',
});

interface View {
  nodes: Array<{ id: string; full?: boolean; ready?: boolean }>;
}

describeSystem('a node whose data dir turns read-only at runtime', () => {
  let cluster: TestCluster | undefined;
  let scratch: string | undefined;
  let loopDevice: string | undefined;
  let mountPoint: string | undefined;

  afterAll(async () => {
    // Stop the nodes first (they hold files on the mount), then unmount and free the loop device,
    // and only then remove the cluster's dirs: rm on a still-mounted read-only fs would fail.
    if (cluster) for (let i = 0; i < cluster.nodes.length; i++) await cluster.kill(i).catch(() => null);
    if (mountPoint) {
      try {
        execFileSync('umount', [mountPoint]);
      } catch {
        execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
      }
    }
    if (loopDevice) execFileSync('losetup', ['-d', loopDevice], { stdio: 'ignore' });
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    await cluster?.stopAll();
  });

  it('goes not ready with a reason, takes no new copies, keeps serving peers and loses nothing', async () => {
    scratch = mkdtempSync(join(tmpdir(), 'shoal-ro-disk-'));
    const image = join(scratch, 'ext4.img');
    cluster = await TestCluster.start({
      nodes: 3,
      // The image has about 55 MiB free: keep it above the free-space floor.
      args: ['--min-free-bytes', String(8 * MiB)],
      prepareDataDir: (dir, i) => {
        if (i !== 2) return;
        writeFileSync(image, '');
        execFileSync('truncate', ['-s', '64M', image]);
        execFileSync('mkfs.ext4', ['-q', '-F', image]);
        loopDevice = execFileSync('losetup', ['--find', '--show', image]).toString().trim();
        execFileSync('mount', ['-o', 'errors=remount-ro', loopDevice, dir]);
        mountPoint = dir;
      },
    });
    const ro = cluster.node(2);
    const trigger = `/sys/fs/ext4/${basename(loopDevice!)}/trigger_fs_error`;
    if (!existsSync(trigger))
      throw new Error(`${trigger} is missing: this kernel cannot raise an ext4 error`);

    const before = new Map<string, string>();
    for (let i = 0; i < 6; i++) {
      const data = randomBytes(100 * 1024 + i);
      const res = await upload(cluster.url(i % 3), data, `before-${i}.bin`);
      expect(res.status).toBe(201);
      expect(res.body.replicas).toContain(ro.id);
      before.set(res.body.id, sha256(data));
    }

    // The kernel's own error path: journal aborted, file system remounted read-only.
    writeFileSync(trigger, '1');
    const faultAt = Date.now();
    expect(() => writeFileSync(join(mountPoint!, 'from-the-test'), 'x')).toThrow(/EROFS/);

    let readiness: { ready?: boolean; reason?: string } = {};
    await waitFor(
      async () => {
        const res = await fetch(`${ro.url}/readyz`);
        readiness = (await res.json()) as typeof readiness;
        return res.status === 503;
      },
      10_000,
      'the read-only node to report not ready',
    );
    const notReadyAfterMs = Date.now() - faultAt;
    expect(readiness.ready).toBe(false);
    expect(readiness.reason).toMatch(/read-only/);

    // Its peers hear that it takes no new copies, like a full node.
    await waitFor(
      async () => {
        const view = await getJson<View>(`${cluster!.url(0)}/cluster`);
        const node = view?.nodes.find((n) => n.id === ro.id);
        return node?.full === true && node.ready === false;
      },
      10_000,
      'the peers to see the read-only node as taking no copies',
    );
    const announcedAfterMs = Date.now() - faultAt;
    process.stdout.write(
      `read-only disk: /readyz 503 after ${notReadyAfterMs} ms, announced to peers after ${announcedAfterMs} ms\n`,
    );

    // An upload sent to it gets a clear JSON 503; uploads sent elsewhere go to the other nodes.
    const refused = await upload(ro.url, randomBytes(1000), 'to-the-read-only-node.bin');
    expect(refused.status).toBe(503);
    expect(refused.body.error?.code).toBe('not_ready');
    expect(refused.body.error?.message).toMatch(/read-only/);
    // /cluster shows the node's own word; the peers' membership hears it by gossip (200 ms rounds).
    await new Promise((r) => setTimeout(r, 2_000));
    const during = new Map<string, string>();
    for (let i = 0; i < 6; i++) {
      const data = randomBytes(100 * 1024 + i);
      const res = await upload(cluster.url(i % 2), data, `during-${i}.bin`);
      expect(res.status).toBe(201);
      expect(res.body.replicas).not.toContain(ro.id);
      during.set(res.body.id, sha256(data));
    }
    // The writers skipped it, rather than streaming to it and being refused.
    for (const i of [0, 1]) {
      const failures = cluster
        .log(i)
        .split('\n')
        .filter((line) => line.includes('replica failed to receive'));
      for (const id of during.keys()) expect(failures.filter((line) => line.includes(id))).toEqual([]);
    }

    // Give housekeeping (every 2 s: probe, free space, last-alive stamp in SQLite) a few rounds
    // against the read-only disk: the node must still be running.
    await new Promise((r) => setTimeout(r, Math.max(0, faultAt + 7_000 - Date.now())));
    expect(ro.proc?.exitCode).toBeNull();
    expect((await fetch(`${ro.url}/healthz`)).status).toBe(200);
    expect(cluster.log(2)).toMatch(/data dir does not take writes/);

    // Nothing is lost: every file downloads whole from the healthy nodes, the list has them all,
    // and the copies on the read-only disk are still intact.
    const all = new Map([...before, ...during]);
    for (const [id, sum] of all) {
      for (const i of [0, 1]) {
        const res = await download(cluster.url(i), id);
        expect(res.status).toBe(200);
        expect(sha256(res.data)).toBe(sum);
      }
    }
    const list = await getJson<{ files: Array<{ id: string }> }>(`${cluster.url(1)}/files?limit=1000`);
    expect(new Set(list?.files.map((f) => f.id))).toEqual(new Set(all.keys()));
    for (const [id, sum] of before) {
      const shard = createHash('sha256').update(id).digest('hex').slice(0, 2);
      expect(sha256(readFileSync(join(ro.dataDir, 'blobs', shard, id)))).toBe(sum);
    }
  });
});
