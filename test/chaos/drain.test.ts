import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CLI, TestCluster, getJson } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

/**
 * Scale-down without a window of risk: `shoal drain --wait` hands every copy the node holds to
 * its next owners and returns once it holds nothing; at no moment does any file have fewer
 * copies than it had; then the node can go.
 */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('draining a node before removing it', () => {
  let cluster: TestCluster;

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('moves every copy away first, never dropping below three copies, then lets the node go', async () => {
    cluster = await TestCluster.start({ nodes: 4, args: ['--repair-interval-ms', '300'] });
    const sums = new Map<string, string>();
    for (let i = 0; i < 30; i++) {
      const data = randomBytes(20_000 + i * 1000);
      const res = await upload(cluster.url(i % 4), data, `d-${i}.bin`);
      expect(res.status).toBe(201);
      sums.set(res.body.id, sha256(data));
    }
    const view = await getJson<{ nodes: Array<{ id: string; files?: number }> }>(`${cluster.url(0)}/cluster`);
    expect(view?.nodes.find((n) => n.id === 'node-4')?.files).toBeGreaterThan(0);

    // Watch the copy count of every file the whole time the drain runs.
    let fewest = Infinity;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const list = await getJson<{ files: Array<{ replicas: string[] }> }>(
          `${cluster.url(0)}/files?limit=100`,
        );
        if (list && list.files.length === sums.size) {
          for (const f of list.files) fewest = Math.min(fewest, f.replicas.length);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const drained = await runCli(['drain', '--wait', '--json', '--to', cluster.url(3)]);
    watching = false;
    await watcher;
    expect({ code: drained.code, stderr: drained.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(drained.stdout)).toMatchObject({
      node: 'node-4',
      draining: true,
      files: 0,
      done: true,
    });
    expect(fewest).toBeGreaterThanOrEqual(3);

    // Written during the drain or after: never to the draining node.
    const late = await upload(cluster.url(3), randomBytes(5000), 'late.bin');
    expect(late.status).toBe(201);
    expect(late.body.replicas).not.toContain('node-4');

    const list = await getJson<{ files: Array<{ replicas: string[] }> }>(`${cluster.url(0)}/files?limit=100`);
    for (const f of list?.files ?? []) {
      expect(f.replicas).toHaveLength(3);
      expect(f.replicas).not.toContain('node-4');
    }
    expect(await cluster.kill(3, 'SIGTERM')).toBe(0);
    for (const [id, sum] of sums) {
      const res = await download(cluster.url(0), id);
      expect(res.status).toBe(200);
      expect(sha256(res.data)).toBe(sum);
    }
  });
});
