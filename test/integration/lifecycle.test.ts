import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
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
    // SIGTERM once the node is streaming the upload to a replica (a temp copy appears there), not
    // after a fixed pause: on a loaded machine the request may not have reached the node yet, and
    // a connection with no request on it yet is one that a stopping node closes.
    const receiving = () => [0, 1].some((i) => readdirSync(join(cluster.node(i).dataDir, 'tmp')).length > 0);
    let answered = false;
    void inFlight.finally(() => (answered = true));
    const deadline = Date.now() + 10_000;
    while (!answered && !receiving() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    const exitCode = cluster.kill(2, 'SIGTERM');
    const res = await inFlight;
    expect(res.status).toBe(201);
    expect(await exitCode).toBe(0);
    const back = await download(cluster.url(0), res.body.id);
    expect(sha256(back.data)).toBe(sha256(data));
  });

  it('on SIGTERM ends busy keep-alive connections after their answer instead of waiting for the grace', async () => {
    await cluster.restart(2);
    const stored = await upload(cluster.url(0), randomBytes(1024 * 1024), 'busy.bin');
    expect(stored.status).toBe(201);
    // Clients (or peers) that never let their keep-alive connections rest: four at a time, each
    // request taking the node a moment.
    const agent = new Agent({ connections: 4, keepAliveTimeout: 60_000 });
    let busy = true;
    const statuses: number[] = [];
    const hammers = Array.from({ length: 4 }, async () => {
      while (busy) {
        try {
          const res = await request(`${cluster.url(2)}/files/${stored.body.id}`, { dispatcher: agent });
          await res.body.dump({ limit: 2 * 1024 * 1024 });
          statuses.push(res.statusCode);
        } catch {
          return; // the node has closed its port: a client goes elsewhere
        }
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    const code = await cluster.kill(2, 'SIGTERM');
    const took = Date.now() - started;
    busy = false;
    await Promise.all(hammers);
    await agent.close();
    expect(code).toBe(0);
    // The node's grace for in-flight requests is 25 s; requests that were answered must not
    // keep it waiting that long.
    expect(took).toBeLessThan(10_000);
    // Answered in full before the SIGTERM; after it, a clear 503 (the client retries elsewhere).
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 200 && s !== 503)).toEqual([]);
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
