import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster } from '../helpers/cluster';
import { downloadToDisk, rssOf, uploadFromDisk, writeRandomFile } from '../helpers/client';

const MiB = 1024 * 1024;

/** Streams all the way: a file far larger than any buffer passes through with flat memory. */
describe('a 100 MiB file', () => {
  let cluster: TestCluster;
  let dir: string;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    dir = mkdtempSync(join(tmpdir(), 'shoal-large-'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('uploads and downloads byte-identical while every node stays under 200 MiB RSS', async () => {
    const source = join(dir, 'big.bin');
    const sum = await writeRandomFile(source, 100 * MiB);
    const peak = [0, 0, 0];
    const sampler = setInterval(() => {
      cluster.nodes.forEach((n, i) => {
        if (n.proc?.pid) peak[i] = Math.max(peak[i]!, rssOf(n.proc.pid));
      });
    }, 50);
    try {
      const up = await uploadFromDisk(cluster.url(0), source, 'big.bin');
      expect(up.status).toBe(201);
      expect(up.body.size).toBe(100 * MiB);
      expect(up.body.sha256).toBe(sum);
      const down = await downloadToDisk(cluster.url(1), up.body.id, join(dir, 'back.bin'));
      expect(down.status).toBe(200);
      expect(down.bytes).toBe(100 * MiB);
      expect(down.sha256).toBe(sum);
    } finally {
      clearInterval(sampler);
    }
    process.stdout.write(`peak RSS per node (MiB): ${peak.map((b) => (b / MiB).toFixed(0)).join(', ')}\n`);
    for (const bytes of peak) {
      expect(bytes).toBeGreaterThan(0);
      expect(bytes).toBeLessThan(200 * MiB);
    }
  });
});
