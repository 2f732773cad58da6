import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster, waitFor } from '../helpers/cluster';
import { download, sha256, upload, type StoredFile } from '../helpers/client';
import { FILE_BACKED_MIN, inlineBytes } from '../helpers/copies';

/** Every copy this node holds, as the file names under blobs/. */
function blobCount(dataDir: string): number {
  return readdirSync(join(dataDir, 'blobs'), { recursive: true, withFileTypes: true }).filter((e) =>
    e.isFile(),
  ).length;
}

/**
 * Never delete what you cannot explain: a node whose metadata.sqlite is lost (a bad restore, an
 * operator's mistake) must not wipe its blobs at start. They are set aside in quarantine/, the
 * node is reported as missing those copies, and repair takes them back from its own disk rather
 * than copying them over the network. Small copies, which lived in the lost database itself, are
 * copied back from the other nodes.
 */
describe('a node that lost its database', () => {
  let cluster: TestCluster;
  const stored: Array<{ file: StoredFile; data: Buffer }> = [];
  const small: Array<{ file: StoredFile; data: Buffer }> = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, args: ['--repair-interval-ms', '500'] });
    for (let i = 0; i < 10; i++) {
      const data = randomBytes(FILE_BACKED_MIN + i * 4_099);
      const res = await upload(cluster.url(i % 3), data, `kept-${i}.bin`);
      expect(res.status).toBe(201);
      stored.push({ file: res.body, data });
    }
    for (let i = 0; i < 5; i++) {
      const data = randomBytes(1_000 + i * 7_001);
      const res = await upload(cluster.url(i % 3), data, `small-${i}.bin`);
      expect(res.status).toBe(201);
      small.push({ file: res.body, data });
    }
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('keeps its blobs, reports them, and adopts them back', async () => {
    const node = cluster.node(1);
    expect(blobCount(node.dataDir)).toBe(stored.length);
    await cluster.kill(1, 'SIGKILL');
    for (const f of ['metadata.sqlite', 'metadata.sqlite-wal', 'metadata.sqlite-shm']) {
      rmSync(join(node.dataDir, f), { force: true });
    }
    await cluster.restart(1);
    // The start-up check runs in the background once the node serves; it deletes nothing.
    await waitFor(() => /"orphanBlobs":10/.test(cluster.log(1)), 10_000, 'the start-up check to report');

    // Repair gives the node its copies back, from its own quarantine: a copy fetched over the
    // network instead logs no adoption. The log is written asynchronously, so its lines may land
    // after the blobs do.
    const adopted = (): number =>
      cluster
        .log(1)
        .split('\n')
        .filter((l) => l.includes('adopted a quarantined copy')).length;
    await waitFor(
      () => blobCount(node.dataDir) === stored.length && adopted() === stored.length,
      30_000,
      'the copies to be back, adopted from quarantine',
    );
    expect(readdirSync(join(node.dataDir, 'quarantine'))).toEqual([]);
    await waitFor(
      () => small.every(({ file, data }) => inlineBytes(node.dataDir, file.id)?.equals(data) === true),
      30_000,
      'the small copies to be copied back',
    );
    for (const { file, data } of [...stored, ...small]) {
      const got = await download(node.url, file.id);
      expect(got.status).toBe(200);
      expect(sha256(got.data)).toBe(sha256(data));
    }
  });
});
