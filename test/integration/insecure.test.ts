import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hmacHex } from '../../shared/hashing';
import { upload } from '../helpers/client';
import { CLI, freePort, waitFor } from '../helpers/cluster';

/**
 * `--insecure` (no cluster secret) next to API keys: the node says loudly what is off, and
 * download links, which a key derived from nothing secret would let anyone forge, are refused.
 */
describe('a node started with --insecure and API keys', () => {
  let proc: ChildProcess;
  let dir: string;
  let base = '';
  const KEY = 'insecure-test-key-0001';
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-insecure-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const fd = openSync(join(dir, 'node.log'), 'a');
    proc = spawn(
      process.execPath,
      [
        CLI,
        'node',
        ...['--insecure', '--host', '127.0.0.1', '--port', String(port), '--node-id', 'lonely'],
        ...['--data-dir', join(dir, 'data'), '--replicas', '1', '--write-quorum', '1', '--api-keys', KEY],
      ],
      {
        stdio: ['ignore', fd, fd],
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHOAL_'))),
      },
    );
    closeSync(fd);
    await waitFor(
      async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200,
      20_000,
      'the node to be ready',
    );
  });

  afterAll(async () => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('warns at start that node-to-node calls are unauthenticated and keys guard the public routes only', () => {
    const warning = readFileSync(join(dir, 'node.log'), 'utf8')
      .split('\n')
      .find((l) => l.includes('INSECURE'));
    expect(warning).toBeDefined();
    expect(warning).toMatch(/not authenticated/);
    expect(warning).toMatch(/The API keys guard the public routes only/);
  });

  it('makes no download links, and honours none forged with the key it used to derive from a constant', async () => {
    const stored = await upload(base, Buffer.from('private'), 'p.txt', auth);
    expect(stored.status).toBe(201);
    const id = stored.body.id;
    const made = await fetch(`${base}/files/${id}/links`, { method: 'POST', headers: auth });
    expect(made.status).toBe(409);
    expect(((await made.json()) as { error: { code: string } }).error.code).toBe('conflict');
    // What anyone could compute from the source before: the link key of a cluster without secret.
    const key = hmacHex('insecure-cluster', 'shoal-download-links-v1');
    const expires = Math.floor(Date.now() / 1000) + 600;
    const forged = `${base}/files/${id}?expires=${expires}&sig=${hmacHex(key, `GET\n/files/${id}\n${expires}`)}`;
    expect((await fetch(forged)).status).toBe(403);
    expect((await fetch(`${base}/files/${id}`)).status).toBe(401);
    expect((await fetch(`${base}/files/${id}`, { headers: auth })).status).toBe(200);
  });
});
