import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, SECRET, TestCluster, freePort } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

/** Runs `shoal node` on a data dir and waits for it to exit (or gives up after `timeoutMs`). */
function runNode(
  dataDir: string,
  port: number,
  timeoutMs = 15_000,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(
      process.execPath,
      [
        CLI,
        'node',
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--data-dir',
        dataDir,
        '--node-id',
        'node-1',
      ],
      { env: { ...process.env, SHOAL_CLUSTER_SECRET: SECRET }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** One data dir belongs to one running node process. */
describe('data dir lock', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1, replicas: 1, writeQuorum: 1 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('refuses a second process on a live data dir at once, names the holder, and changes nothing', async () => {
    const node = cluster.node(0);
    const data = randomBytes(100_000);
    const put = await upload(node.url, data);
    expect(put.status).toBe(201);
    // Something in tmp/ that the running node owns: a second process used to empty it.
    const sentinel = join(node.dataDir, 'tmp', 'in-flight-upload');
    writeFileSync(sentinel, 'mine');
    const blobsBefore = readdirSync(join(node.dataDir, 'blobs'), { recursive: true }).length;

    const started = Date.now();
    const second = await runNode(node.dataDir, await freePort());
    expect(second.code).toBe(2);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(second.stderr).toContain(node.dataDir);
    expect(second.stderr).toContain(`pid ${node.proc!.pid}`);

    expect(readdirSync(join(node.dataDir, 'tmp'))).toContain('in-flight-upload');
    expect(readdirSync(join(node.dataDir, 'blobs'), { recursive: true })).toHaveLength(blobsBefore);
    const got = await download(node.url, put.body.id);
    expect(got.status).toBe(200);
    expect(sha256(got.data)).toBe(sha256(data));
    expect((await fetch(`${node.url}/readyz`)).status).toBe(200);
  });

  it('is free again the moment its holder dies, however it dies', async () => {
    const data = randomBytes(1_000);
    const put = await upload(cluster.url(0), data);
    await cluster.kill(0, 'SIGKILL');
    await cluster.restart(0);
    const got = await download(cluster.url(0), put.body.id);
    expect(got.status).toBe(200);
    expect(sha256(got.data)).toBe(sha256(data));
  });
});
