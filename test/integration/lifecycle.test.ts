import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, SECRET, TestCluster, freePort } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

describe('node lifecycle', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('on SIGTERM finishes the request in flight, then exits 0', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const inFlight = upload(cluster.url(2), data, 'in-flight.bin');
    await new Promise((r) => setTimeout(r, 30));
    const exitCode = cluster.kill(2, 'SIGTERM');
    const res = await inFlight;
    expect(res.status).toBe(201);
    expect(await exitCode).toBe(0);
    const back = await download(cluster.url(0), res.body.id);
    expect(sha256(back.data)).toBe(sha256(data));
  });

  it('comes back on the same data dir under the same identity', async () => {
    await cluster.restart(2);
    const view = (await (await fetch(`${cluster.url(2)}/cluster`)).json()) as { self: string };
    expect(view.self).toBe('node-3');
  });
});

describe('start-up refusals', () => {
  const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, 'node', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code, stderr }));
    });

  it.each([
    [['--replicas', '2', '--write-quorum', '3'], /write-quorum/],
    [['--port', 'seventy'], /port/],
    [[], /cluster-secret/],
  ])('refuses %j with a clear message and a non-zero exit', async (args, message) => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-cfg-'));
    try {
      const secret = args.length > 0 ? ['--cluster-secret', SECRET] : [];
      const res = await run([...secret, '--data-dir', dir, '--port', String(await freePort()), ...args]);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
