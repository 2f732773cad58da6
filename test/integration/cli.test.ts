import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { CLI, freePort, repoRoot, TestCluster } from '../helpers/cluster';

/**
 * The client half of the `shoal` bin, run as a user runs it: the built bin as a child process
 * against real nodes, with stdout and stderr as pipes (not a terminal). Asserts what a user or a
 * script sees: bytes, printed ids, JSON that parses, tables, and the exit codes.
 */

// The bin under test; SHOAL_TEST_CLI can point at another build of the same commands.
const BIN = process.env.SHOAL_TEST_CLI ?? CLI;
const MiB = 1024 * 1024;

interface Run {
  code: number | null;
  stdout: Buffer;
  out: string;
  err: string;
}

/** The file package.json names as the `shoal` bin: what `npx shoal` runs, by its #! line. */
const PACKAGE_BIN = join(
  repoRoot(),
  (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { bin: { shoal: string } }).bin
    .shoal,
);

/**
 * Runs the bin with a clean environment (no SHOAL_URL/SHOAL_API_KEY from the caller): through
 * node, or `asInstalled`, the package's bin file itself, as `npx shoal` starts it.
 */
function shoal(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; asInstalled?: boolean } = {},
): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('SHOAL_')) env[k] = v;
  // `#!/usr/bin/env node` finds the node this test runs on first.
  env.PATH = `${dirname(process.execPath)}${delimiter}${env.PATH ?? ''}`;
  const [command, argv] = options.asInstalled ? [PACKAGE_BIN, args] : [process.execPath, [BIN, ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, {
      cwd: options.cwd,
      env: { ...env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out);
      resolve({ code, stdout, out: stdout.toString('utf8'), err: Buffer.concat(err).toString('utf8') });
    });
  });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** No cursor movement, colours or carriage returns: what a progress bar would leave in a log. */
function expectPlain(run: Run): void {
  for (const text of [run.out, run.err]) {
    expect(text).not.toContain('\u001b');
    expect(text).not.toContain('\r');
  }
}

interface FileJson {
  id: string;
  name: string;
  size: number;
  sha256: string;
  replicas: string[];
}

describe('shoal client commands', () => {
  let cluster: TestCluster;
  let dir: string;
  let to: string[];
  let big: Buffer;
  let bigId: string;
  const unicodeName = 'ünïcödé ✓ 文件 "q".txt';
  const unicodeBytes = Buffer.from('hello from a file with a unicode name\n');
  let unicodeId: string;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    dir = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
    to = ['--to', cluster.url(0)];
    big = randomBytes(3 * MiB + 12_345);
    writeFileSync(join(dir, 'big.bin'), big);
    writeFileSync(join(dir, unicodeName), unicodeBytes);
  });

  afterAll(async () => {
    await cluster?.stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('put prints the id of a ~3 MiB file; get from another node writes the same bytes', async () => {
    const put = await shoal(['put', join(dir, 'big.bin'), ...to]);
    expect(put.err).toBe('');
    expect(put.code).toBe(0);
    expectPlain(put);
    bigId = put.out.trim();
    expect(bigId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);

    const target = join(dir, 'big-back.bin');
    const get = await shoal(['get', bigId, '-o', target, '--to', cluster.url(2)]);
    expect(get.code).toBe(0);
    expectPlain(get);
    expect(get.out.trim()).toBe(target);
    expect(sha256(readFileSync(target))).toBe(sha256(big));
    // Nothing is left beside the target.
    expect(readdirSync(dir).filter((f) => f.endsWith('.shoal-part'))).toEqual([]);
  });

  it('round-trips a file with a unicode name, saved under that name by default', async () => {
    const put = await shoal(['put', join(dir, unicodeName), ...to]);
    expect(put.code).toBe(0);
    unicodeId = put.out.trim();

    const into = join(dir, 'downloads');
    mkdirSync(into);
    const get = await shoal(['get', unicodeId, ...to], { cwd: into });
    expect(get.code).toBe(0);
    expect(get.out.trim()).toBe(unicodeName);
    expect(readFileSync(join(into, unicodeName))).toEqual(unicodeBytes);
  });

  it('get -o - streams the bytes to stdout', async () => {
    const get = await shoal(['get', bigId, '-o', '-', ...to]);
    expect(get.code).toBe(0);
    expect(get.err).toBe('');
    expect(get.stdout.length).toBe(big.length);
    expect(sha256(get.stdout)).toBe(sha256(big));
  });

  it('get refuses to overwrite an existing file unless --force', async () => {
    const target = join(dir, 'existing.bin');
    writeFileSync(target, 'keep me');
    const refused = await shoal(['get', unicodeId, '-o', target, ...to]);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/^shoal: .*already exists/);
    expect(readFileSync(target, 'utf8')).toBe('keep me');

    const forced = await shoal(['get', unicodeId, '-o', target, '--force', ...to]);
    expect(forced.code).toBe(0);
    expect(readFileSync(target)).toEqual(unicodeBytes);
  });

  it('--json prints what the server answered, and an array for several files', async () => {
    const one = await shoal(['put', '--json', join(dir, 'big.bin'), ...to]);
    expect(one.code).toBe(0);
    const stored = JSON.parse(one.out) as FileJson;
    expect(stored).toMatchObject({ name: 'big.bin', size: big.length, sha256: sha256(big) });
    expect(stored.replicas).toHaveLength(3);

    const several = await shoal(['put', '--json', join(dir, 'big.bin'), join(dir, unicodeName), ...to]);
    expect(several.code).toBe(0);
    const files = JSON.parse(several.out) as FileJson[];
    expect(files.map((f) => f.name)).toEqual(['big.bin', unicodeName]);

    const plain = await shoal(['put', join(dir, 'big.bin'), join(dir, unicodeName), ...to]);
    expect(plain.out.trim().split('\n')).toHaveLength(2);

    const get = await shoal(['get', '--json', stored.id, '-o', join(dir, 'json.bin'), ...to]);
    expect(get.code).toBe(0);
    expect(JSON.parse(get.out)).toMatchObject({ id: stored.id, sha256: sha256(big), size: big.length });
  });

  it('ls lists the files put, as a table and as JSON, across pages', async () => {
    const table = await shoal(['ls', ...to]);
    expect(table.code).toBe(0);
    expectPlain(table);
    const lines = table.out.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+SIZE\s+CREATED\s+COPIES\s+NAME$/);
    expect(lines.find((l) => l.startsWith(bigId))).toMatch(/3\.0 MiB .* 3 {2}big\.bin$/);
    expect(lines.find((l) => l.startsWith(unicodeId))).toContain(unicodeName);

    const json = await shoal(['ls', '--json', '--page-size', '2', ...to]);
    expect(json.code).toBe(0);
    const files = JSON.parse(json.out) as FileJson[];
    const ids = files.map((f) => f.id);
    expect(ids).toEqual(expect.arrayContaining([bigId, unicodeId]));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(files.length).toBeGreaterThan(2);

    const limited = await shoal(['ls', '--json', '--limit', '1', ...to]);
    expect(JSON.parse(limited.out)).toHaveLength(1);
  });

  it('info shows the file and its 3 copies', async () => {
    const info = await shoal(['info', bigId, ...to]);
    expect(info.code).toBe(0);
    expect(info.out).toContain('3 of 3 ok');
    for (const n of cluster.nodes) expect(info.out).toMatch(new RegExp(`${n.id}\\s+${n.url}\\s+ok`));

    const json = await shoal(['info', '--json', bigId, ...to]);
    const parsed = JSON.parse(json.out) as { replicas: Array<{ state: string }> };
    expect(parsed.replicas.map((r) => r.state)).toEqual(['ok', 'ok', 'ok']);
  });

  it('status shows 3 alive nodes', async () => {
    const status = await shoal(['status', ...to]);
    expect(status.code).toBe(0);
    expect(status.out).toContain('3 (3 alive)');
    for (const n of cluster.nodes) expect(status.out).toMatch(new RegExp(`${n.id}\\s+alive`));

    const json = await shoal(['status', '--json', '--to', cluster.url(1)]);
    const view = JSON.parse(json.out) as { self: string; nodes: Array<{ state: string }> };
    expect(view.self).toBe(cluster.node(1).id);
    expect(view.nodes.filter((n) => n.state === 'alive')).toHaveLength(3);
  });

  it('runs as npx runs it: the package bin, built executable, started by its #! line', async () => {
    const status = await shoal(['status', '--json', ...to], { asInstalled: true });
    expect(status.err).toBe('');
    expect(status.code).toBe(0);
    expect((JSON.parse(status.out) as { nodes: unknown[] }).nodes).toHaveLength(3);
  });

  it('SHOAL_URL picks the node when --to is absent', async () => {
    const status = await shoal(['status', '--json'], { env: { SHOAL_URL: cluster.url(2) } });
    expect(status.code).toBe(0);
    expect((JSON.parse(status.out) as { self: string }).self).toBe(cluster.node(2).id);
  });

  it('rm deletes the file; get and rm of it then exit 3', async () => {
    const put = await shoal(['put', join(dir, unicodeName), ...to]);
    const id = put.out.trim();
    const rm = await shoal(['rm', id, ...to]);
    expect(rm.code).toBe(0);
    const get = await shoal(['get', id, '-o', join(dir, 'deleted.txt'), '--to', cluster.url(1)]);
    expect(get.code).toBe(3);
    expect(get.err).toMatch(/^shoal: /);
    expect(existsSync(join(dir, 'deleted.txt'))).toBe(false);
    expect((await shoal(['rm', id, ...to])).code).toBe(3);
  });

  it('exits 2 for a malformed id or a usage error, 3 for an id never stored', async () => {
    const bad = await shoal(['get', '../etc', ...to]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^shoal: not a file id/);
    expect((await shoal(['info', 'x'.repeat(65), ...to])).code).toBe(2);
    expect((await shoal(['get', ...to])).code).toBe(2);
    expect((await shoal(['put', join(dir, 'no-such-file'), ...to])).code).toBe(2);
    expect((await shoal(['ls', '--limit', 'zero', ...to])).code).toBe(2);

    const unknown = await shoal(['info', 'never-stored_0123456789', ...to]);
    expect(unknown.code).toBe(3);
    expect((await shoal(['get', 'never-stored_0123456789', '-o', '-', ...to])).code).toBe(3);
  });

  it('exits 5 when no node answers at the URL', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const status = await shoal(['status', '--to', dead]);
    expect(status.code).toBe(5);
    expect(status.err).toMatch(/^shoal: cannot reach .*connection refused/);
    expect((await shoal(['put', join(dir, 'big.bin'), '--to', dead])).code).toBe(5);
  });
});

describe('shoal client commands with API keys', () => {
  let cluster: TestCluster;
  let dir: string;
  let file: string;
  const KEY = 'k1';

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1, replicas: 1, writeQuorum: 1, apiKeys: [KEY] });
    dir = mkdtempSync(join(tmpdir(), 'shoal-cli-key-'));
    file = join(dir, 'secret.bin');
    writeFileSync(file, randomBytes(256 * 1024));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exits 4 without a key or with a wrong one, and never prints the key', async () => {
    const none = await shoal(['put', file, '--to', cluster.url(0)]);
    expect(none.code).toBe(4);
    expect(none.err).toMatch(/^shoal: /);
    expect((await shoal(['ls', '--to', cluster.url(0)])).code).toBe(4);

    const wrongKey = 'wrong-key-that-must-not-be-echoed';
    const wrong = await shoal(['status', '--to', cluster.url(0), '--api-key', wrongKey]);
    expect(wrong.code).toBe(4);
    expect(wrong.out + wrong.err).not.toContain(wrongKey);
  });

  it('accepts the key from --api-key and from SHOAL_API_KEY', async () => {
    const put = await shoal(['put', file, '--to', cluster.url(0), '--api-key', KEY]);
    expect(put.code).toBe(0);
    const id = put.out.trim();
    expect(put.out + put.err).not.toContain(`Bearer ${KEY}`);

    const get = await shoal(['get', id, '-o', '-', '--to', cluster.url(0)], { env: { SHOAL_API_KEY: KEY } });
    expect(get.code).toBe(0);
    expect(sha256(get.stdout)).toBe(sha256(readFileSync(file)));

    const ls = await shoal(['ls', '--json'], { env: { SHOAL_API_KEY: KEY, SHOAL_URL: cluster.url(0) } });
    expect(ls.code).toBe(0);
    expect((JSON.parse(ls.out) as FileJson[]).map((f) => f.id)).toContain(id);
  });
});

/**
 * A stand-in node that lies: what it sends does not match its ETag, or the connection drops
 * half-way. Real nodes refuse to serve such bytes, so only a fake can show what the client does.
 */
describe('shoal get against a node that sends bad bytes', () => {
  let server: Server;
  let url: string;
  let dir: string;
  const body = randomBytes(256 * 1024);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-cli-bad-'));
    server = createServer((req, res) => {
      const headers = {
        'content-type': 'application/octet-stream',
        'content-disposition': `attachment; filename="bad.bin"; filename*=UTF-8''bad.bin`,
        'content-length': String(body.length),
      };
      if (req.url === '/files/corrupt') {
        res.writeHead(200, { ...headers, etag: `"${sha256(Buffer.from('other bytes'))}"` });
        res.end(body);
      } else if (req.url === '/files/truncated') {
        res.writeHead(200, { ...headers, etag: `"${sha256(body)}"` });
        res.write(body.subarray(0, body.length / 2), () => res.destroy());
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'not_found', message: 'no such file' } }));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fails a download whose sha256 does not match the ETag and keeps nothing of it', async () => {
    const explicit = await shoal(['get', 'corrupt', '-o', join(dir, 'out.bin'), '--to', url]);
    expect(explicit.code).toBe(1);
    expect(explicit.err).toMatch(/^shoal: .*failed verification/);
    const byName = await shoal(['get', 'corrupt', '--to', url], { cwd: dir });
    expect(byName.code).toBe(1);
    expect(readdirSync(dir)).toEqual([]);

    const toStdout = await shoal(['get', 'corrupt', '-o', '-', '--to', url]);
    expect(toStdout.code).toBe(1);
    expect(toStdout.err).toMatch(/failed verification/);
  });

  it('fails a download cut off half-way and keeps nothing of it', async () => {
    const run = await shoal(['get', 'truncated', '-o', join(dir, 'out.bin'), '--to', url]);
    expect(run.code).not.toBe(0);
    expect(run.err).toMatch(/^shoal: /);
    expect(readdirSync(dir)).toEqual([]);
  });
});
