import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { download, sha256, streamUpload, upload } from '../helpers/client';

const MiB = 1024 * 1024;

describe('limits', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, maxFileSize: MiB });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('answers 413 while the upload is still streaming, stores nothing, and keeps serving', async () => {
    const before = await getJson<{ files: unknown[] }>(`${cluster.url(0)}/files`);
    const res = await streamUpload(cluster.url(0), 256 * MiB);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('payload_too_large');
    // The answer came long before the client had sent the 256 MiB.
    expect(res.sentBeforeAnswer).toBeLessThan(32 * MiB);
    const after = await getJson<{ files: unknown[] }>(`${cluster.url(0)}/files`);
    expect(after?.files.length).toBe(before?.files.length);
    const ok = await upload(cluster.url(0), randomBytes(1000), 'small.bin');
    expect(ok.status).toBe(201);
  });

  it('refuses file names over 1024 bytes', async () => {
    const res = await upload(cluster.url(1), randomBytes(10), 'n'.repeat(1025));
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('bad_request');
  });

  it('stores a content type of 255 characters on its replicas, and refuses a longer one', async () => {
    const send = async (type: string): Promise<Response> => {
      const form = new FormData();
      form.append('file', new Blob([randomBytes(10)], { type }), 'typed.bin');
      return fetch(`${cluster.url(2)}/files`, { method: 'POST', body: form });
    };
    const longest = `application/${'x'.repeat(243)}`;
    const stored = await send(longest);
    expect(stored.status).toBe(201);
    // At least one of the W replicas is another node, which checked it against the protocol.
    expect(((await stored.json()) as { replicas: string[] }).replicas.length).toBeGreaterThanOrEqual(2);
    const refused = await send(`${longest}x`);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('bad_request');
  });
});

describe('signed download links and key rotation', () => {
  let cluster: TestCluster;
  let keyFile: string;
  let keyDir: string;

  beforeAll(async () => {
    keyDir = mkdtempSync(join(tmpdir(), 'shoal-keys-'));
    keyFile = join(keyDir, 'keys.txt');
    writeFileSync(keyFile, 'rotating-key-1\n');
    cluster = await TestCluster.start({
      nodes: 3,
      apiKeys: ['fixed-key'],
      args: ['--api-keys-file', keyFile],
    });
  });

  afterAll(async () => {
    await cluster?.stopAll();
    rmSync(keyDir, { recursive: true, force: true });
  });

  const auth = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

  it('gives a link that downloads without a key until it expires; any change to it gives 403', async () => {
    const data = randomBytes(5000);
    const stored = await upload(cluster.url(0), data, 'shared.bin', auth('fixed-key'));
    expect(stored.status).toBe(201);
    const id = stored.body.id;

    expect((await fetch(`${cluster.url(1)}/files/${id}/links`, { method: 'POST' })).status).toBe(401);
    const made = await fetch(`${cluster.url(1)}/files/${id}/links`, {
      method: 'POST',
      headers: { ...auth('fixed-key'), 'content-type': 'application/json' },
      body: JSON.stringify({ expiresInSeconds: 2 }),
    });
    expect(made.status).toBe(201);
    const link = (await made.json()) as { path: string; expiresAt: string };

    // Works from any node, without a key.
    const viaOther = await download(cluster.url(2), link.path.replace('/files/', ''));
    expect(viaOther.status).toBe(200);
    expect(sha256(viaOther.data)).toBe(sha256(data));
    // And answers as a download with a key does: the same headers, the same values.
    const headersOf = async (res: Response) => {
      await res.arrayBuffer();
      return [...res.headers].filter(([name]) => !['date', 'x-request-id'].includes(name));
    };
    expect(await headersOf(await fetch(`${cluster.url(2)}${link.path}`))).toEqual(
      await headersOf(await fetch(`${cluster.url(2)}/files/${id}`, { headers: auth('fixed-key') })),
    );

    const url = new URL(`${cluster.url(0)}${link.path}`);
    const tampered = [
      `${url.pathname}?expires=${Number(url.searchParams.get('expires')) + 1000}&sig=${url.searchParams.get('sig')}`,
      `${url.pathname}?expires=${url.searchParams.get('expires')}&sig=${'0'.repeat(64)}`,
      // Another id: its last character changed (to x, or to y when it already was x).
      `/files/${id.slice(0, -1)}${id.endsWith('x') ? 'y' : 'x'}?expires=${url.searchParams.get('expires')}&sig=${url.searchParams.get('sig')}`,
      `${url.pathname}?expires=${url.searchParams.get('expires')}`,
    ];
    for (const path of tampered) {
      const res = await fetch(`${cluster.url(0)}${path}`);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('forbidden');
    }
    // A link is for reading that file only.
    expect((await fetch(`${cluster.url(0)}${link.path}`, { method: 'DELETE' })).status).toBe(403);

    await new Promise((r) => setTimeout(r, 3_100));
    expect((await fetch(`${cluster.url(0)}${link.path}`)).status).toBe(403);
  });

  it('refuses links for files that do not exist', async () => {
    const res = await fetch(`${cluster.url(0)}/files/nosuchfile/links`, {
      method: 'POST',
      headers: auth('fixed-key'),
    });
    expect(res.status).toBe(404);
  });

  it('picks up a rotated key file without a restart', async () => {
    expect((await fetch(`${cluster.url(0)}/cluster`, { headers: auth('rotating-key-1') })).status).toBe(200);
    writeFileSync(keyFile, 'rotating-key-2\n');
    await waitFor(
      async () =>
        (await fetch(`${cluster.url(0)}/cluster`, { headers: auth('rotating-key-2') })).status === 200,
      10_000,
      'the new key to be accepted',
    );
    expect((await fetch(`${cluster.url(0)}/cluster`, { headers: auth('rotating-key-1') })).status).toBe(401);
    expect((await fetch(`${cluster.url(0)}/cluster`, { headers: auth('fixed-key') })).status).toBe(200);
  });

  it('gives each key only the rights of its role: read, write (the default) or admin', async () => {
    writeFileSync(keyFile, '# roles\nread:reader-key-01\nadmin:admin-key-01\n');
    await waitFor(
      async () =>
        (await fetch(`${cluster.url(0)}/cluster`, { headers: auth('reader-key-01') })).status === 200,
      10_000,
      'the keys with roles to be read',
    );
    const stored = await upload(cluster.url(0), randomBytes(3000), 'roles.bin', auth('fixed-key'));
    expect(stored.status).toBe(201);
    const id = stored.body.id;
    const call = async (method: string, path: string, key: string) => {
      const res = await fetch(`${cluster.url(0)}${path}`, { method, headers: auth(key) });
      const body = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
      return { status: res.status, code: body.error?.code, message: body.error?.message };
    };

    expect((await call('GET', `/files/${id}`, 'reader-key-01')).status).toBe(200);
    expect(await call('GET', `/files/${id}`, 'no-such-key-01')).toMatchObject({
      status: 401,
      code: 'unauthorized',
    });
    expect((await fetch(`${cluster.url(0)}/files/${id}`)).status).toBe(401);
    expect((await fetch(`${cluster.url(0)}/files/${id}`, { method: 'HEAD' })).status).toBe(401);
    expect((await call('GET', '/files', 'reader-key-01')).status).toBe(200);
    expect((await call('POST', `/files/${id}/links`, 'reader-key-01')).status).toBe(201);
    expect((await upload(cluster.url(0), randomBytes(10), 'no.bin', auth('reader-key-01'))).status).toBe(403);
    expect(await call('DELETE', `/files/${id}`, 'reader-key-01')).toEqual({
      status: 403,
      code: 'forbidden',
      message: `this API key has the read role; DELETE /files/${id} needs write`,
    });
    // Draining changes the cluster: a write key may not, an admin key may.
    expect((await call('POST', '/admin/drain', 'reader-key-01')).status).toBe(403);
    expect((await call('POST', '/admin/drain', 'fixed-key')).status).toBe(403);
    expect((await call('GET', '/admin/drain', 'fixed-key')).status).toBe(200);
    expect((await call('POST', '/admin/drain', 'admin-key-01')).status).toBe(202);
    expect((await call('DELETE', '/admin/drain', 'admin-key-01')).status).toBe(200);
    expect((await call('GET', `/files/${id}`, 'admin-key-01')).status).toBe(200);
    expect((await call('DELETE', `/files/${id}`, 'fixed-key')).status).toBe(204);
  });

  it('revokes the links a key made when the key is removed, and only those', async () => {
    const data = randomBytes(4000);
    const stored = await upload(cluster.url(0), data, 'revoked.bin', auth('fixed-key'));
    const link = async (key: string): Promise<string> => {
      const res = await fetch(`${cluster.url(1)}/files/${stored.body.id}/links`, {
        method: 'POST',
        headers: auth(key),
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { path: string }).path;
    };
    const byReader = await link('reader-key-01');
    const byFixed = await link('fixed-key');
    expect(byReader).toMatch(/[?&]kid=[0-9a-f]{16}&/);
    expect((await fetch(`${cluster.url(2)}${byReader}`)).status).toBe(200);

    writeFileSync(keyFile, '# the reader is gone\nadmin:admin-key-01\n');
    await waitFor(
      async () =>
        (await fetch(`${cluster.url(2)}/cluster`, { headers: auth('reader-key-01') })).status === 401,
      10_000,
      'the reader key to be removed',
    );
    const revoked = await fetch(`${cluster.url(2)}${byReader}`);
    expect(revoked.status).toBe(403);
    expect(((await revoked.json()) as { error: { message: string } }).error.message).toBe(
      'the API key that made this link is no longer valid',
    );
    // Pointing the link at another key breaks its signature.
    const otherKid = byFixed.match(/kid=([0-9a-f]{16})/)![1];
    expect(
      (await fetch(`${cluster.url(2)}${byReader.replace(/kid=[0-9a-f]{16}/, `kid=${otherKid}`)}`)).status,
    ).toBe(403);
    const kept = await download(cluster.url(2), byFixed.replace('/files/', ''));
    expect(kept.status).toBe(200);
    expect(sha256(kept.data)).toBe(sha256(data));
  });
});

describe('a data dir that vanishes', () => {
  let cluster: TestCluster;

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('makes the node not ready with a clear error, then ready again when it is back', async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    const dir = cluster.node(2).dataDir;
    renameSync(dir, `${dir}.gone`);
    try {
      await waitFor(
        async () => (await fetch(`${cluster.url(2)}/readyz`)).status === 503,
        10_000,
        'readyz to turn 503',
      );
      const refused = await upload(cluster.url(2), randomBytes(100), 'x.bin');
      expect(refused.status).toBe(503);
      expect(refused.body.error?.code).toBe('not_ready');
      // The others route around it.
      const ok = await upload(cluster.url(0), randomBytes(100), 'y.bin');
      expect(ok.status).toBe(201);
      expect(cluster.log(2)).toMatch(/data dir does not take writes/);
    } finally {
      renameSync(`${dir}.gone`, dir);
    }
    await waitFor(
      async () => (await fetch(`${cluster.url(2)}/readyz`)).status === 200,
      10_000,
      'readyz to turn 200',
    );
    expect((await upload(cluster.url(2), randomBytes(100), 'z.bin')).status).toBe(201);
  });
});
