import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { download, sha256, upload } from '../helpers/client';
import { TestCluster } from '../helpers/cluster';

/**
 * What a hostile web page can make a browser do to a node without API keys (the dev cluster on
 * 127.0.0.1): submit a form or fetch() to it, frame its console, or rebind a name of its own to
 * 127.0.0.1 to read files. Each is refused by headers or by the node itself; tools are unaffected.
 */
describe('a node without API keys, against a hostile web page', () => {
  let cluster: TestCluster;
  let base = '';

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1, replicas: 1, writeQuorum: 1 });
    base = cluster.url(0);
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  const count = async (): Promise<number> =>
    ((await (await fetch(`${base}/files`)).json()) as { files: unknown[] }).files.length;

  it('refuses an upload or a delete sent from another site, and stores or deletes nothing', async () => {
    const before = await count();
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('<script>alert(1)</script>')]), 'evil.html');
    const res = await fetch(`${base}/files`, {
      method: 'POST',
      body: form,
      headers: { origin: 'https://evil.example' },
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toEqual({
      code: 'forbidden',
      message: 'cross-site requests are refused',
    });
    expect(await count()).toBe(before);

    const data = randomBytes(2000);
    const stored = await upload(base, data, 'mine.bin', { origin: base });
    expect(stored.status).toBe(201);
    const del = await fetch(`${base}/files/${stored.body.id}`, {
      method: 'DELETE',
      headers: { origin: 'null' },
    });
    expect(del.status).toBe(403);
    const still = await download(base, stored.body.id);
    expect(sha256(still.data)).toBe(sha256(data));
    // The console's own requests, and tools that send no Origin, go through.
    expect(
      (await fetch(`${base}/files/${stored.body.id}`, { method: 'DELETE', headers: { origin: base } }))
        .status,
    ).toBe(204);
  });

  it('answers no other host name while it listens on loopback (DNS rebinding)', async () => {
    const port = new URL(base).port;
    const stored = await upload(base, Buffer.from('private'), 'private.txt');
    // The listing, and a file's bytes (which take a way of their own past express: read-lane.ts).
    for (const path of ['/files', `/files/${stored.body.id}`]) {
      const as = async (host: string) => (await request(`${base}${path}`, { headers: { host } })).statusCode;
      expect(await as(`rebound.evil.example:${port}`)).toBe(403);
      expect(await as(`localhost:${port}`)).toBe(200);
      expect(await as(`127.0.0.1:${port}`)).toBe(200);
    }
  });

  it('sends its security headers as headers: the console cannot be framed, a file cannot run script', async () => {
    const page = await fetch(`${base}/`);
    expect(page.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'sha256-/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const stored = await upload(base, Buffer.from('<script>alert(1)</script>'), 'page.html', {
      origin: base,
    });
    const file = await fetch(`${base}/files/${stored.body.id}`);
    expect(file.headers.get('content-security-policy')).toBe(
      "default-src 'none'; frame-ancestors 'none'; sandbox",
    );
    expect(file.headers.get('x-content-type-options')).toBe('nosniff');
    expect(file.headers.get('content-disposition')).toMatch(/^attachment/);
  });
});
