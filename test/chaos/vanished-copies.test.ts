import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, sha256, upload, type StoredFile } from '../helpers/client';
import { FILE_BACKED_MIN, blobPath } from '../helpers/copies';

function holdsGoodCopy(dataDir: string, id: string, want: string): boolean {
  const path = blobPath(dataDir, id);
  return existsSync(path) && statSync(path).isFile() && sha256(readFileSync(path)) === want;
}

interface Info {
  replicas: Array<{ nodeId: string; state: string }>;
}

/**
 * Copies that vanish under a running node (a bad sector, an fsck, an operator's rm) or turn
 * unreadable are noticed, no longer counted, and made again, so that losing the one node that
 * still had them loses nothing.
 */
describe('vanished and unreadable copies', () => {
  let cluster: TestCluster;
  const stored: Array<{ file: StoredFile; data: Buffer }> = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, args: ['--repair-interval-ms', '500'] });
    for (let i = 0; i < 6; i++) {
      // Copies with a blob file each (small ones live in SQLite, with no file to vanish).
      const data = randomBytes(FILE_BACKED_MIN + i * 10_007);
      const res = await upload(cluster.url(i % 3), data, `vanish-${i}.bin`);
      expect(res.status).toBe(201);
      stored.push({ file: res.body, data });
    }
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('restores blobs removed from two of three running nodes, and then survives losing the third', async () => {
    for (const { file } of stored) {
      rmSync(blobPath(cluster.node(1).dataDir, file.id));
      rmSync(blobPath(cluster.node(2).dataDir, file.id));
    }
    // /info stops calling the vanished copies ok once they are noticed, and then they are made again.
    await waitFor(
      () =>
        stored.every(({ file, data }) =>
          [1, 2].every((i) => holdsGoodCopy(cluster.node(i).dataDir, file.id, sha256(data))),
        ),
      60_000,
      'the removed copies to be made again',
    );
    for (const { file } of stored) {
      const info = await getJson<Info>(`${cluster.url(0)}/files/${file.id}/info`);
      expect(info?.replicas.map((r) => r.state)).toEqual(['ok', 'ok', 'ok']);
    }
    await cluster.kill(0);
    for (const { file, data } of stored) {
      for (const i of [1, 2]) {
        const got = await download(cluster.url(i), file.id);
        expect([file.id, i, got.status]).toEqual([file.id, i, 200]);
        expect(sha256(got.data)).toBe(sha256(data));
      }
    }
    await cluster.restart(0);
  });

  it('serves the right bytes from another copy when its own is unreadable, and makes a new one', async () => {
    const { file, data } = stored[0]!;
    const path = blobPath(cluster.node(1).dataDir, file.id);
    rmSync(path);
    mkdirSync(path); // reading it now fails with EISDIR, as a dying disk fails with EIO
    const got = await download(cluster.url(1), file.id);
    expect(got.status).toBe(200);
    expect(sha256(got.data)).toBe(sha256(data));
    await waitFor(() => holdsGoodCopy(cluster.node(1).dataDir, file.id, sha256(data)), 30_000, 'a new copy');
    expect(cluster.log(1)).toMatch(/copy is (unreadable|missing); no longer counted/);
  });
});
