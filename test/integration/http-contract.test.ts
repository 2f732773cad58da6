import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { TestCluster, waitFor } from '../helpers/cluster';

/**
 * The outside contract's HTTP table (/work/shared/CONTRACT.md), driven through real node processes
 * exactly as an outside client would: global fetch for ordinary requests, node:http where a request
 * must go on the wire verbatim (encoded traversal, broken multipart, a body that streams on).
 */

// ---------------------------------------------------------------------------------------------
// Client helpers

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

interface FileJson {
  id: string;
  name: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAt: string;
  replicas: string[];
}

interface InfoJson extends Omit<FileJson, 'replicas'> {
  replicas: Array<{ nodeId: string; url: string; state: string }>;
}

interface ListJson {
  files: FileJson[];
  next: string | null;
}

interface ClusterJson {
  self: string;
  replicas: number;
  writeQuorum: number;
  nodes: Array<{ id: string; url: string; state: string }>;
}

interface ErrorJson {
  error: { code: string; message: string };
}

type Headers = Record<string, string>;

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** A valid id (contract grammar) that no node ever minted. */
const NEVER_STORED_ID = 'never-stored_0123456789abcdefXYZ';
/** Unique per run, so names from one run can be searched for in listings. */
const RUN = randomBytes(4).toString('hex');

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** fetch, with the whole body read. Identity encoding so Content-Length describes the bytes we get. */
async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, {
    ...init,
    headers: { 'accept-encoding': 'identity', ...(init.headers as Headers | undefined) },
    redirect: 'manual',
    signal: AbortSignal.timeout(30_000),
  });
  const body = Buffer.from(await res.arrayBuffer());
  const headers: Headers = {};
  res.headers.forEach((value, key) => {
    headers[key] = value;
  });
  return { status: res.status, headers, body };
}

function json<T>(r: Reply): T {
  return JSON.parse(r.body.toString('utf8')) as T;
}

/** On failure the diff shows the body too, which usually says why. */
function expectStatus(r: Reply, status: number): void {
  expect({ status: r.status, body: r.body.toString('utf8').slice(0, 500) }).toMatchObject({ status });
}

function expectStatusIn(r: Reply, statuses: number[]): void {
  const status = statuses.includes(r.status) ? r.status : `one of ${statuses.join(', ')}`;
  expect({ status: r.status, body: r.body.toString('utf8').slice(0, 500) }).toMatchObject({ status });
}

function expectJson(r: Reply): void {
  expect(r.headers['content-type'] ?? '').toMatch(/^application\/(problem\+)?json/);
}

/** The contract's error shape: JSON `{error: {code, message}}` with the given status. */
function expectJsonError(r: Reply, status: number): ErrorJson['error'] {
  expectStatus(r, status);
  expectJson(r);
  const body = json<ErrorJson>(r);
  expect(body).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
  expect(body.error.code.length).toBeGreaterThan(0);
  return body.error;
}

async function upload(
  base: string,
  bytes: Buffer,
  name: string,
  contentType = 'application/octet-stream',
  headers: Headers = {},
  field = 'file',
): Promise<Reply> {
  const form = new FormData();
  form.append(field, new Blob([new Uint8Array(bytes)], { type: contentType }), name);
  return call(`${base}/files`, { method: 'POST', body: form, headers });
}

async function uploadOk(base: string, bytes: Buffer, name: string, contentType?: string, headers?: Headers) {
  const r = await upload(base, bytes, name, contentType, headers);
  expectStatus(r, 201);
  return json<FileJson>(r);
}

interface RawRequest {
  method?: string;
  /** Sent on the wire exactly as given. */
  path: string;
  headers?: Headers;
  /** Several chunks are written one by one (chunked unless Content-Length is given). */
  body?: Buffer | string | Iterable<Buffer>;
  /** Destroy the connection after writing the body instead of finishing the request. */
  abort?: boolean;
}

/** node:http, for requests fetch would normalise or refuse to send. Stops writing once answered. */
function raw(base: string, o: RawRequest): Promise<Reply> {
  const { hostname, port } = new URL(base);
  return new Promise<Reply>((resolve, reject) => {
    let answered = false;
    const req = http.request(
      { host: hostname, port, method: o.method ?? 'GET', path: o.path, headers: o.headers, agent: false },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const headers: Headers = {};
          for (const [k, v] of Object.entries(res.headers)) {
            if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
          }
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
          req.destroy();
        });
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer to ${o.method ?? 'GET'} ${o.path}`)));
    // Once the node has answered (say 413 mid-stream), a reset while we still write is expected.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const chunks: Iterable<Buffer | string> =
      o.body === undefined ? [] : typeof o.body === 'string' || Buffer.isBuffer(o.body) ? [o.body] : o.body;
    void (async () => {
      for (const chunk of chunks) {
        if (answered || req.destroyed) return;
        if (!req.write(chunk)) {
          await new Promise<void>((r) => {
            const done = (): void => {
              req.off('drain', done);
              req.off('close', done);
              r();
            };
            req.on('drain', done);
            req.on('close', done);
          });
        }
      }
      if (answered || req.destroyed) return;
      if (o.abort) {
        // Give the bytes a moment to reach the node, then vanish like a client that crashed.
        await new Promise((r) => setTimeout(r, 200));
        req.destroy();
        resolve({ status: 0, headers: {}, body: Buffer.alloc(0) });
      } else {
        req.end();
      }
    })();
  });
}

interface Part {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer | string;
}

function multipartHead(boundary: string, p: Omit<Part, 'data'>): string {
  const disposition =
    `form-data; name="${p.name}"` + (p.filename !== undefined ? `; filename="${p.filename}"` : '');
  return (
    `--${boundary}\r\nContent-Disposition: ${disposition}\r\n` +
    (p.contentType ? `Content-Type: ${p.contentType}\r\n` : '') +
    '\r\n'
  );
}

function multipart(boundary: string, parts: Part[], close = true): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    out.push(Buffer.from(multipartHead(boundary, p)), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  if (close) out.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(out);
}

/** The name a browser would save the download under: filename* (RFC 6266/8187) wins over filename. */
function dispositionFilename(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const star = /filename\*\s*=\s*([A-Za-z0-9_-]*)'[^']*'([^;\s]+)/i.exec(header);
  if (star?.[2] !== undefined) return decodeURIComponent(star[2]);
  const quoted = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header);
  if (quoted?.[1] !== undefined) return quoted[1].replace(/\\(.)/g, '$1');
  return /filename\s*=\s*([^;\s]+)/i.exec(header)?.[1];
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Pages through GET /files, asking node nodes[p % nodes.length] for page p. */
async function listAll(
  cluster: TestCluster,
  limit: number,
  nodes: number[],
  headers: Headers = {},
): Promise<{ pages: FileJson[][]; files: FileJson[] }> {
  const pages: FileJson[][] = [];
  let after: string | null = null;
  const seenCursors = new Set<string>();
  for (let p = 0; ; p++) {
    if (p > 500) throw new Error('listing never ended');
    const base = cluster.url(nodes[p % nodes.length] ?? 0);
    const query = `limit=${limit}` + (after === null ? '' : `&after=${encodeURIComponent(after)}`);
    const r = await call(`${base}/files?${query}`, { headers });
    expectStatus(r, 200);
    expectJson(r);
    const page = json<ListJson>(r);
    expect(Array.isArray(page.files)).toBe(true);
    expect(page).toHaveProperty('next');
    expect(page.files.length).toBeLessThanOrEqual(limit);
    pages.push(page.files);
    if (page.next === null) break;
    expect(typeof page.next).toBe('string');
    // A cursor that does not move would page forever.
    expect(seenCursors.has(page.next)).toBe(false);
    seenCursors.add(page.next);
    after = page.next;
  }
  return { pages, files: pages.flat() };
}

async function listNames(cluster: TestCluster, node: number, headers: Headers = {}): Promise<string[]> {
  const { files } = await listAll(cluster, 100, [node], headers);
  return files.map((f) => f.name);
}

function expectDescribes(
  f: FileJson,
  bytes: Buffer,
  name: string,
  contentType: string,
  nodeIds: string[],
): void {
  expect(f.id).toMatch(ID_PATTERN);
  expect(f.name).toBe(name);
  expect(f.size).toBe(bytes.length);
  expect(f.sha256.toLowerCase()).toBe(sha256(bytes));
  expect(f.contentType).toBe(contentType);
  const created = Date.parse(f.createdAt);
  expect(Number.isNaN(created)).toBe(false);
  expect(Math.abs(Date.now() - created)).toBeLessThan(10 * 60_000);
  expect(Array.isArray(f.replicas)).toBe(true);
  expect(new Set(f.replicas).size).toBe(f.replicas.length);
  for (const r of f.replicas) expect(nodeIds).toContain(r);
}

// ---------------------------------------------------------------------------------------------

const MAX_FILE_SIZE = 4 * 1024 * 1024;

describe('HTTP contract on a 3-node cluster', () => {
  let cluster: TestCluster;
  let nodeIds: string[];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, maxFileSize: MAX_FILE_SIZE });
    nodeIds = cluster.nodes.map((n) => n.id);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stopAll();
  });

  describe('an uploaded file', () => {
    const bytes = randomBytes(200_000);
    const name = `quarterly report ${RUN}.bin`;
    const contentType = 'application/x-shoal-test';
    let created: Reply;
    let file: FileJson;

    beforeAll(async () => {
      created = await upload(cluster.url(0), bytes, name, contentType);
      file = json<FileJson>(created);
    });

    it('POST /files answers 201, Location /files/<id> and the description, on 3 distinct nodes', () => {
      expectStatus(created, 201);
      expectJson(created);
      expectDescribes(file, bytes, name, contentType, nodeIds);
      expect(file.replicas).toHaveLength(3);
      expect(new Set(file.replicas)).toEqual(new Set(nodeIds));
      const location = created.headers['location'];
      expect(location).toBeDefined();
      expect(new URL(location ?? '', cluster.url(0)).pathname).toBe(`/files/${file.id}`);
    });

    it('GET from every node returns the same bytes with the contract headers', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await call(`${cluster.url(i)}/files/${file.id}`);
        expectStatus(r, 200);
        expect(r.body.equals(bytes)).toBe(true);
        expect(r.headers['content-length']).toBe(String(bytes.length));
        expect(r.headers['content-type']).toMatch(new RegExp(`^${contentType.replace(/[/.+-]/g, '\\$&')}`));
        expect(r.headers['etag']).toBe(`"${file.sha256}"`);
        expect(r.headers['accept-ranges']).toBe('bytes');
        expect(dispositionFilename(r.headers['content-disposition'])).toBe(name);
      }
    });

    it('HEAD answers the headers of the GET and no body', async () => {
      const get = await call(`${cluster.url(1)}/files/${file.id}`);
      const head = await raw(cluster.url(1), { method: 'HEAD', path: `/files/${file.id}` });
      expectStatus(head, 200);
      expect(head.body.length).toBe(0);
      for (const h of ['content-length', 'content-type', 'etag', 'accept-ranges', 'content-disposition']) {
        expect([h, head.headers[h]]).toEqual([h, get.headers[h]]);
      }
      expect(head.headers['content-length']).toBe(String(bytes.length));
    });

    it.each([
      ['bytes=0-9', 0, 9],
      ['bytes=10-', 10, 199_999],
      ['bytes=-5', 199_995, 199_999],
      ['bytes=199990-300000', 199_990, 199_999],
    ])('Range %s answers 206 with Content-Range and that slice', async (range, first, last) => {
      const r = await call(`${cluster.url(2)}/files/${file.id}`, { headers: { range } });
      expectStatus(r, 206);
      expect(r.headers['content-range']).toBe(`bytes ${first}-${last}/${bytes.length}`);
      expect(r.headers['content-length']).toBe(String(last - first + 1));
      expect(r.body.equals(bytes.subarray(first, last + 1))).toBe(true);
    });

    it.each(['bytes=200000-', 'bytes=200000-200010', 'bytes=999999-'])(
      'an unsatisfiable Range %s answers 416 with a JSON error',
      async (range) => {
        const r = await call(`${cluster.url(1)}/files/${file.id}`, { headers: { range } });
        expectJsonError(r, 416);
      },
    );

    it.each(['bytes=abc', 'items=0-1', 'bytes=--5', 'bytes=9-3', 'bytes 0-9'])(
      'a malformed Range header %j is ignored: 200 and the whole file',
      async (range) => {
        const r = await call(`${cluster.url(2)}/files/${file.id}`, { headers: { range } });
        expectStatus(r, 200);
        expect(r.headers['content-length']).toBe(String(bytes.length));
        expect(r.body.equals(bytes)).toBe(true);
      },
    );

    it('If-None-Match with the ETag answers 304 without a body; another ETag answers 200', async () => {
      const etag = `"${file.sha256}"`;
      for (const inm of [etag, `"0000", ${etag}`]) {
        const r = await raw(cluster.url(2), { path: `/files/${file.id}`, headers: { 'if-none-match': inm } });
        expectStatus(r, 304);
        expect(r.body.length).toBe(0);
        expect(r.headers['etag']).toBe(etag);
      }
      const other = await call(`${cluster.url(2)}/files/${file.id}`, {
        headers: { 'if-none-match': `"${'0'.repeat(64)}"` },
      });
      expectStatus(other, 200);
      expect(other.body.equals(bytes)).toBe(true);
    });

    it('GET /files/<id>/info describes the file and its 3 copies, all ok', async () => {
      const urlOf = new Map(cluster.nodes.map((n) => [n.id, n.url]));
      const first = await call(`${cluster.url(1)}/files/${file.id}/info`);
      expectStatus(first, 200);
      expectJson(first);
      const info = json<InfoJson>(first);
      expect(info).toMatchObject({
        id: file.id,
        name,
        size: bytes.length,
        sha256: file.sha256,
        contentType,
        createdAt: file.createdAt,
      });
      expect(info.replicas.map((r) => r.nodeId).sort()).toEqual([...file.replicas].sort());
      for (const r of info.replicas) {
        expect(r.url).toBe(urlOf.get(r.nodeId));
        expect(['ok', 'missing', 'unreachable']).toContain(r.state);
      }
      // W = 2 copies were durable when the upload was acknowledged; the third follows.
      expect(info.replicas.filter((r) => r.state === 'ok').length).toBeGreaterThanOrEqual(2);
      let last: InfoJson = info;
      await waitFor(
        async () => {
          last = json<InfoJson>(await call(`${cluster.url(2)}/files/${file.id}/info`));
          return last.replicas.length === 3 && last.replicas.every((r) => r.state === 'ok');
        },
        10_000,
        'all three copies to be ok',
      ).catch(() => undefined);
      expect(last.replicas.map((r) => r.state)).toEqual(['ok', 'ok', 'ok']);
    });
  });

  describe('files move between nodes byte for byte', () => {
    it('a 3 MiB file uploaded to node A downloads identically from nodes B and C', async () => {
      const bytes = randomBytes(3 * 1024 * 1024);
      const f = await uploadOk(cluster.url(0), bytes, `big-${RUN}.dat`);
      expectDescribes(f, bytes, `big-${RUN}.dat`, 'application/octet-stream', nodeIds);
      for (const i of [2, 1]) {
        const r = await call(`${cluster.url(i)}/files/${f.id}`);
        expectStatus(r, 200);
        expect(r.headers['content-length']).toBe(String(bytes.length));
        expect(sha256(r.body)).toBe(sha256(bytes));
      }
    });

    it('an empty file round-trips: size 0, the empty sha256, an empty 200 body', async () => {
      const f = await uploadOk(cluster.url(1), Buffer.alloc(0), `empty-${RUN}.txt`, 'text/plain');
      expect(f.size).toBe(0);
      expect(f.sha256.toLowerCase()).toBe(EMPTY_SHA256);
      const r = await call(`${cluster.url(2)}/files/${f.id}`);
      expectStatus(r, 200);
      expect(r.body.length).toBe(0);
      expect(r.headers['content-length']).toBe('0');
      expect(r.headers['etag']).toBe(`"${f.sha256}"`);
      // Nothing of a zero-length file can be addressed by a range starting at 0.
      expectJsonError(
        await call(`${cluster.url(0)}/files/${f.id}`, { headers: { range: 'bytes=0-0' } }),
        416,
      );
    });

    it('a file with a unicode name keeps its name in the answer, the info, the listing and the download', async () => {
      const name = `Überraschung – 日本語 🐟 ${RUN}.txt`;
      const bytes = Buffer.from('grüße aus dem schwarm\n', 'utf8');
      const f = await uploadOk(cluster.url(0), bytes, name, 'text/plain');
      expect(f.name).toBe(name);
      const r = await call(`${cluster.url(2)}/files/${f.id}`);
      expectStatus(r, 200);
      expect(r.body.equals(bytes)).toBe(true);
      expect(dispositionFilename(r.headers['content-disposition'])).toBe(name);
      expect(json<InfoJson>(await call(`${cluster.url(1)}/files/${f.id}/info`)).name).toBe(name);
      expect(await listNames(cluster, 2)).toContain(name);
    });
  });

  describe('DELETE /files/<id>', () => {
    it('answers 204, then every node answers 404 and a second DELETE answers 404', async () => {
      const name = `doomed-${RUN}.txt`;
      const f = await uploadOk(cluster.url(0), Buffer.from('short-lived'), name, 'text/plain');
      const del = await call(`${cluster.url(1)}/files/${f.id}`, { method: 'DELETE' });
      expectStatus(del, 204);
      expect(del.body.length).toBe(0);
      for (let i = 0; i < 3; i++) {
        expectJsonError(await call(`${cluster.url(i)}/files/${f.id}`), 404);
        expectJsonError(await call(`${cluster.url(i)}/files/${f.id}/info`), 404);
        const head = await raw(cluster.url(i), { method: 'HEAD', path: `/files/${f.id}` });
        expectStatus(head, 404);
        expect(await listNames(cluster, i)).not.toContain(name);
      }
      expectJsonError(await call(`${cluster.url(2)}/files/${f.id}`, { method: 'DELETE' }), 404);
    });

    it('answers 404 for a valid id that was never stored', async () => {
      expectJsonError(await call(`${cluster.url(0)}/files/${NEVER_STORED_ID}`, { method: 'DELETE' }), 404);
    });
  });

  describe('GET /files', () => {
    it('pages through the whole cluster, each file once, in byte order of id, next null at the end', async () => {
      const uploaded: FileJson[] = [];
      for (let k = 0; k < 7; k++) {
        const bytes = Buffer.from(`listed file ${k} of run ${RUN}`);
        uploaded.push(await uploadOk(cluster.url(k % 3), bytes, `listed-${RUN}-${k}.txt`, 'text/plain'));
      }

      const plain = await call(`${cluster.url(0)}/files`);
      expectStatus(plain, 200);
      expect(json<ListJson>(plain)).toMatchObject({ files: expect.any(Array) });

      const { pages, files } = await listAll(cluster, 3, [0, 1, 2]);
      expect(pages.length).toBeGreaterThanOrEqual(3);
      const ids = files.map((f) => f.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort(byteOrder)).toEqual(ids);
      for (const u of uploaded) {
        const listed = files.filter((f) => f.id === u.id);
        expect(listed).toHaveLength(1);
        const [l] = listed;
        expect({ ...l, replicas: [...(l?.replicas ?? [])].sort() }).toEqual({
          ...u,
          replicas: [...u.replicas].sort(),
        });
      }

      // Past the last id there is nothing more.
      const lastId = ids[ids.length - 1] ?? '';
      const end = await call(`${cluster.url(1)}/files?limit=3&after=${encodeURIComponent(lastId)}`);
      expectStatus(end, 200);
      expect(json<ListJson>(end)).toEqual({ files: [], next: null });

      // Deleted files leave the listing on every node.
      const [gone1, gone2] = [uploaded[1], uploaded[5]];
      expectStatus(await call(`${cluster.url(2)}/files/${gone1?.id}`, { method: 'DELETE' }), 204);
      expectStatus(await call(`${cluster.url(0)}/files/${gone2?.id}`, { method: 'DELETE' }), 204);
      const again = await listAll(cluster, 2, [2, 0, 1]);
      const idsAgain = again.files.map((f) => f.id);
      expect(new Set(idsAgain).size).toBe(idsAgain.length);
      expect([...idsAgain].sort(byteOrder)).toEqual(idsAgain);
      expect(idsAgain).not.toContain(gone1?.id);
      expect(idsAgain).not.toContain(gone2?.id);
      for (const u of uploaded.filter((u) => u !== gone1 && u !== gone2)) expect(idsAgain).toContain(u.id);
    });

    it.each(['0', '-1', 'abc', '3abc'])('limit=%s answers 400 with a JSON error', async (limit) => {
      expectJsonError(await call(`${cluster.url(1)}/files?limit=${limit}`), 400);
    });

    it.each(['limit=1000000000', 'limit=99999999999999999999999', 'after=bad.id', 'after=%00'])(
      '%s is clamped or refused, never a server error',
      async (query) => {
        const r = await call(`${cluster.url(2)}/files?${query}`);
        expectStatusIn(r, [200, 400]);
        expectJson(r);
        if (r.status === 400) expectJsonError(r, 400);
        else expect(json<ListJson>(r)).toMatchObject({ files: expect.any(Array) });
      },
    );
  });

  describe('cluster and health endpoints', () => {
    it('GET /cluster on each node names itself, N=3, W=2 and all three nodes alive', async () => {
      const expected = cluster.nodes.map((n) => ({ id: n.id, url: n.url, state: 'alive' }));
      for (let i = 0; i < 3; i++) {
        const r = await call(`${cluster.url(i)}/cluster`);
        expectStatus(r, 200);
        expectJson(r);
        const view = json<ClusterJson>(r);
        expect(view).toMatchObject({ self: cluster.node(i).id, replicas: 3, writeQuorum: 2 });
        const nodes = view.nodes.map((n) => ({ id: n.id, url: n.url, state: n.state }));
        expect(nodes.sort((a, b) => byteOrder(a.id, b.id))).toEqual(expected);
      }
    });

    it('/healthz and /readyz answer 200 and /metrics serves Prometheus text on every node', async () => {
      for (let i = 0; i < 3; i++) {
        expectStatus(await call(`${cluster.url(i)}/healthz`), 200);
        expectStatus(await call(`${cluster.url(i)}/readyz`), 200);
        const m = await call(`${cluster.url(i)}/metrics`);
        expectStatus(m, 200);
        expect(m.headers['content-type']).toMatch(/^text\/plain/);
        expect(m.body.toString('utf8')).toMatch(/^# HELP \S+ /m);
        expect(m.body.toString('utf8')).toMatch(/^# TYPE \S+ (counter|gauge|histogram|summary|untyped)$/m);
      }
    });

    it('counts each download in /metrics, under its route and status, with the bytes it sent', async () => {
      const data = randomBytes(3000);
      const stored = await uploadOk(cluster.url(0), data, `${RUN}-counted.bin`);
      const base = cluster.url(1);
      const figure = async (pattern: RegExp): Promise<number> => {
        const text = (await call(`${base}/metrics`)).body.toString('utf8');
        return Number(pattern.exec(text)?.[1] ?? 0);
      };
      const gets = (status: number) =>
        new RegExp(
          `^shoal_http_request_duration_seconds_count\\{[^}]*method="GET",route="/files/:id",status="${status}"\\} (\\d+)$`,
          'm',
        );
      const bytesOut = /^shoal_bytes_out_total\{[^}]*\} (\d+)$/m;
      const before = {
        ok: await figure(gets(200)),
        missing: await figure(gets(404)),
        bytes: await figure(bytesOut),
      };
      expectStatus(await call(`${base}/files/${stored.id}`), 200);
      expectStatus(await call(`${base}/files/${stored.id}`), 200);
      expectStatus(await call(`${base}/files/${NEVER_STORED_ID}`), 404);
      expect(await figure(gets(200))).toBe(before.ok + 2);
      expect(await figure(gets(404))).toBe(before.missing + 1);
      expect(await figure(bytesOut)).toBe(before.bytes + 2 * data.length);
    });

    it('every node serves the web console at /', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await call(`${cluster.url(i)}/`);
        expectStatus(r, 200);
        expect(r.headers['content-type']).toMatch(/^text\/html/);
      }
    });
  });

  describe('errors', () => {
    it.each<[string, Headers, string]>([
      ['JSON', { 'content-type': 'application/json' }, '{"file":"x"}'],
      ['text/plain', { 'content-type': 'text/plain' }, 'just some text'],
      ['no content type', {}, 'bytes without a type'],
      ['multipart without a boundary', { 'content-type': 'multipart/form-data' }, 'x'],
    ])('POST /files with %s answers 400', async (_what, headers, body) => {
      const r = await raw(cluster.url(0), {
        method: 'POST',
        path: '/files',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        body,
      });
      expectJsonError(r, 400);
    });

    it('multipart without a file part named "file" answers 400 and stores nothing', async () => {
      const name = `misnamed-${RUN}.txt`;
      const fieldsOnly = new FormData();
      fieldsOnly.append('note', 'hello');
      const fileAsText = new FormData();
      fileAsText.append('file', 'text in a plain field, not a file part');
      const otherField = new FormData();
      otherField.append('upload', new Blob(['misfiled'], { type: 'text/plain' }), name);
      for (const body of [fieldsOnly, fileAsText, otherField]) {
        expectJsonError(await call(`${cluster.url(1)}/files`, { method: 'POST', body }), 400);
      }
      const empty = await raw(cluster.url(1), {
        method: 'POST',
        path: '/files',
        headers: { 'content-type': 'multipart/form-data; boundary=EMPTY', 'content-length': '10' },
        body: '--EMPTY--\r\n',
      });
      expect(empty.status).not.toBe(201);
      expectStatusIn(empty, [400]);
      expect(await listNames(cluster, 1)).not.toContain(name);
    });

    it('a multipart body whose boundary never closes answers 400 and the node keeps serving', async () => {
      const name = `truncated-${RUN}.txt`;
      const body = multipart(
        'NEVERCLOSED',
        [
          {
            name: 'file',
            filename: name,
            contentType: 'text/plain',
            data: 'hello world, the end never comes',
          },
        ],
        false,
      );
      const r = await raw(cluster.url(2), {
        method: 'POST',
        path: '/files',
        headers: {
          'content-type': 'multipart/form-data; boundary=NEVERCLOSED',
          'content-length': String(body.length),
        },
        body,
      });
      expectJsonError(r, 400);
      expectStatus(await call(`${cluster.url(2)}/healthz`), 200);
      const after = await uploadOk(cluster.url(2), Buffer.from('still fine'), `after-truncated-${RUN}.txt`);
      expectStatus(await call(`${cluster.url(2)}/files/${after.id}`), 200);
      expect(await listNames(cluster, 2)).not.toContain(name);
    });

    it('an upload whose client vanishes mid-body leaves nothing visible and the node keeps serving', async () => {
      const name = `vanished-${RUN}.bin`;
      const head = multipartHead('VANISH', {
        name: 'file',
        filename: name,
        contentType: 'application/octet-stream',
      });
      await raw(cluster.url(0), {
        method: 'POST',
        path: '/files',
        headers: {
          'content-type': 'multipart/form-data; boundary=VANISH',
          'content-length': String(1024 * 1024),
        },
        body: [Buffer.from(head), randomBytes(100_000)],
        abort: true,
      });
      await new Promise((r) => setTimeout(r, 500));
      expectStatus(await call(`${cluster.url(0)}/healthz`), 200);
      for (let i = 0; i < 3; i++) expect(await listNames(cluster, i)).not.toContain(name);
    });

    it('an upload over --max-file-size is refused with 413 while it streams, and nothing is stored', async () => {
      const name = `too-big-${RUN}.bin`;
      const boundary = 'TOOBIG';
      const chunk = randomBytes(256 * 1024);
      function* body(): Iterable<Buffer> {
        yield Buffer.from(multipartHead(boundary, { name: 'file', filename: name }));
        for (let sent = 0; sent < MAX_FILE_SIZE + 2 * 1024 * 1024; sent += chunk.length) yield chunk;
        yield Buffer.from(`\r\n--${boundary}--\r\n`);
      }
      // No Content-Length: the node can only find out by counting the bytes as they stream.
      const r = await raw(cluster.url(1), {
        method: 'POST',
        path: '/files',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: body(),
      });
      expectJsonError(r, 413);
      expectStatus(await call(`${cluster.url(1)}/healthz`), 200);
      expect(await listNames(cluster, 0)).not.toContain(name);
    });

    const badIds = [
      'bad.id',
      'a'.repeat(65),
      '%2e%2e%2f%2e%2e%2fpackage.json',
      '..%2f..%2f..%2fetc%2fpasswd',
      '%2e%2e',
      'abc%00def',
      '%00',
      'abc%2fdef',
      '..%5c..%5cpackage.json',
      'has%20space',
      'abc%0d%0aX-Injected:%20yes',
      '%E0%A4%A',
      '%zz',
      '%C3%A9t%C3%A9',
    ];

    it.each(badIds)(
      'a bad id %s answers 400 or 404 with a JSON error on GET, /info and DELETE',
      async (id) => {
        for (const [method, path] of [
          ['GET', `/files/${id}`],
          ['GET', `/files/${id}/info`],
          ['DELETE', `/files/${id}`],
        ] as const) {
          const r = await raw(cluster.url(0), { method, path });
          expectStatusIn(r, [400, 404]);
          expectJsonError(r, r.status);
          expect(r.headers['x-injected']).toBeUndefined();
          expect(r.body.toString('utf8')).not.toMatch(/"name":\s*"shoal"|root:x:0:0/);
        }
        const head = await raw(cluster.url(0), { method: 'HEAD', path: `/files/${id}` });
        expectStatusIn(head, [400, 404]);
      },
    );

    it.each(['/files/../package.json', '/files/../../../../etc/passwd', '/files/%2e%2e/%2e%2e/package.json'])(
      'a raw traversal path %s never serves a file from disk',
      async (path) => {
        const r = await raw(cluster.url(1), { path });
        expectStatusIn(r, [400, 403, 404]);
        expect(r.body.toString('utf8')).not.toMatch(/"name":\s*"shoal"|root:x:0:0/);
      },
    );

    it('an unknown valid id answers 404 on GET, HEAD and /info on every node', async () => {
      for (const id of [NEVER_STORED_ID, 'z'.repeat(64)]) {
        for (let i = 0; i < 3; i++) {
          expectJsonError(await call(`${cluster.url(i)}/files/${id}`), 404);
          expectJsonError(await call(`${cluster.url(i)}/files/${id}/info`), 404);
          expectStatus(await raw(cluster.url(i), { method: 'HEAD', path: `/files/${id}` }), 404);
        }
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('uploads when the write quorum cannot be reached', () => {
  let cluster: TestCluster;
  let before: FileJson;
  const refused: string[] = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, failureTimeoutMs: 2_000 });
    before = await uploadOk(
      cluster.url(0),
      Buffer.from(`present before the failures ${RUN}`),
      `before-${RUN}.txt`,
    );
  }, 60_000);

  afterAll(async () => {
    await cluster?.stopAll();
  });

  async function listedIds(node: number): Promise<string[]> {
    return (await listAll(cluster, 100, [node])).files.map((f) => f.id).sort(byteOrder);
  }

  it('with one node of three killed, an upload still reaches W=2 and is acknowledged', async () => {
    await cluster.kill(2);
    const bytes = Buffer.from(`written with node 3 down ${RUN}`);
    const f = await uploadOk(cluster.url(0), bytes, `degraded-${RUN}.txt`, 'text/plain');
    expect(f.replicas.length).toBeGreaterThanOrEqual(2);
    const r = await call(`${cluster.url(1)}/files/${f.id}`);
    expectStatus(r, 200);
    expect(r.body.equals(bytes)).toBe(true);
  });

  it('with two nodes of three killed, an upload answers 503 and leaves nothing visible', async () => {
    await cluster.kill(2);
    const beforeIds = await listedIds(0);
    await cluster.kill(1);
    const name = `refused-${RUN}-1.txt`;
    refused.push(name);
    const r = await upload(cluster.url(0), Buffer.from('must not be acknowledged'), name, 'text/plain');
    expect(r.status).not.toBe(201);
    const err = expectJsonError(r, 503);
    expect(err.code).toMatch(/quorum|unavailable/i);
    expect(await listedIds(0)).toEqual(beforeIds);
    // The survivor still serves what it holds.
    const old = await call(`${cluster.url(0)}/files/${before.id}`);
    expectStatus(old, 200);
    expect(sha256(old.body)).toBe(before.sha256.toLowerCase());
  });

  it('still answers 503 once the lost nodes are declared dead', async () => {
    await cluster.kill(1);
    await cluster.kill(2);
    await cluster.waitForState(0, cluster.node(1).id, 'dead', 15_000);
    await cluster.waitForState(0, cluster.node(2).id, 'dead', 15_000);
    const beforeIds = await listedIds(0);
    const name = `refused-${RUN}-2.txt`;
    refused.push(name);
    const r = await upload(
      cluster.url(0),
      Buffer.from('must not be acknowledged either'),
      name,
      'text/plain',
    );
    expect(r.status).not.toBe(201);
    expectJsonError(r, 503);
    expect(await listedIds(0)).toEqual(beforeIds);
  });

  it('brings back no trace of the refused uploads when the nodes return', async () => {
    await cluster.restart(1);
    await cluster.restart(2);
    await cluster.waitForConvergence();
    await new Promise((r) => setTimeout(r, 1_000));
    for (let i = 0; i < 3; i++) {
      const names = await listNames(cluster, i);
      expect(names).toContain(`before-${RUN}.txt`);
      expect(names).toContain(`degraded-${RUN}.txt`);
      for (const name of refused) expect(names).not.toContain(name);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('API keys', () => {
  let cluster: TestCluster;
  let stored: FileJson;
  const k1: Headers = { authorization: 'Bearer k1' };
  const k2: Headers = { authorization: 'Bearer k2' };

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, apiKeys: ['k1', 'k2'] });
    expect(cluster.authHeaders()).toEqual(k1);
    stored = await uploadOk(
      cluster.url(0),
      Buffer.from(`guarded ${RUN}`),
      `guarded-${RUN}.txt`,
      'text/plain',
      k1,
    );
  }, 60_000);

  afterAll(async () => {
    await cluster?.stopAll();
  });

  const wrong: Array<[string, Headers]> = [
    ['no Authorization header', {}],
    ['an unknown key', { authorization: 'Bearer k3' }],
    ['a key in the wrong case', { authorization: 'Bearer K1' }],
    ['an empty bearer token', { authorization: 'Bearer ' }],
    ['Basic credentials', { authorization: `Basic ${Buffer.from('k1:k1').toString('base64')}` }],
    ['the bare key without a scheme', { authorization: 'k1' }],
  ];

  it.each(wrong)('with %s every API request answers 401', async (_what, headers) => {
    const base = cluster.url(1);
    const name = `unauthorised-${RUN}.txt`;
    expectJsonError(await call(`${base}/files`, { headers }), 401);
    expectJsonError(await call(`${base}/cluster`, { headers }), 401);
    expectJsonError(await call(`${base}/files/${stored.id}`, { headers }), 401);
    expectJsonError(await call(`${base}/files/${stored.id}/info`, { headers }), 401);
    expectStatus(await raw(base, { method: 'HEAD', path: `/files/${stored.id}`, headers }), 401);
    expectJsonError(await call(`${base}/files/${stored.id}`, { method: 'DELETE', headers }), 401);
    expectJsonError(await upload(base, Buffer.from('nope'), name, 'text/plain', headers), 401);
    // Nothing the refused requests asked for happened.
    expectStatus(await call(`${base}/files/${stored.id}`, { headers: k1 }), 200);
    expect(await listNames(cluster, 2, k2)).not.toContain(name);
  });

  it('either key works for every request', async () => {
    const bytes = Buffer.from(`keyed ${RUN}`);
    const f = await uploadOk(cluster.url(2), bytes, `keyed-${RUN}.txt`, 'text/plain', k2);
    const got = await call(`${cluster.url(0)}/files/${f.id}`, { headers: k1 });
    expectStatus(got, 200);
    expect(got.body.equals(bytes)).toBe(true);
    expectStatus(await raw(cluster.url(1), { method: 'HEAD', path: `/files/${f.id}`, headers: k2 }), 200);
    expectStatus(await call(`${cluster.url(1)}/files/${f.id}/info`, { headers: k1 }), 200);
    expect(json<ClusterJson>(await call(`${cluster.url(1)}/cluster`, { headers: k2 })).self).toBe(
      cluster.node(1).id,
    );
    expect(await listNames(cluster, 0, k1)).toContain(`keyed-${RUN}.txt`);
    expectStatus(await call(`${cluster.url(0)}/files/${f.id}`, { method: 'DELETE', headers: k1 }), 204);
    expectJsonError(await call(`${cluster.url(2)}/files/${f.id}`, { headers: k2 }), 404);
  });

  it('/healthz, /readyz and /metrics stay open without a key', async () => {
    for (let i = 0; i < 3; i++) {
      expectStatus(await call(`${cluster.url(i)}/healthz`), 200);
      expectStatus(await call(`${cluster.url(i)}/readyz`), 200);
      const m = await call(`${cluster.url(i)}/metrics`);
      expectStatus(m, 200);
      expect(m.body.toString('utf8')).toMatch(/^# HELP /m);
    }
  });
});
