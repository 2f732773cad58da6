import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { TestCluster, getJson } from '../helpers/cluster';
import { download, sha256, streamUpload, upload } from '../helpers/client';

/**
 * Request heads and multipart bodies over Shoal's limits, sent byte for byte to real nodes:
 * - what Node's HTTP parser rejects before any route runs (oversized or malformed request heads)
 *   gets the same JSON error as every other refusal;
 * - multipart bodies over the part, field and part-header limits get a 4xx JSON error with their
 *   own code, even when the file part came first and was already streaming to its replicas;
 * and the nodes carry on with nothing stored, no temp file left and nothing lost.
 */

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `bytes` as they are and reads the answer until the server closes the connection (this
 * side never ends it, so an answer only comes back if the server closes by itself).
 */
function rawRequest(url: string, bytes: Buffer | string, timeoutMs = 10_000): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    // The server may cut the rest of an oversized request short; what it answered first counts.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const split = raw.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`not an HTTP response: ${JSON.stringify(raw.slice(0, 200))}`));
      const [statusLine, ...lines] = raw.slice(0, split).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0),
        headers,
        body: raw.slice(split + 4),
      });
    });
    socket.write(bytes);
  });
}

function expectJsonError(res: RawResponse, status: number, code: string): { code: string; message: string } {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['connection']).toBe('close');
  expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
  const parsed = JSON.parse(res.body) as { error: { code: string; message: string } };
  expect(parsed.error.code).toBe(code);
  expect(typeof parsed.error.message).toBe('string');
  return parsed.error;
}

describe('requests the HTTP parser refuses', () => {
  let cluster: TestCluster;
  const kept = new Map<string, string>();

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    const data = randomBytes(50_000);
    const res = await upload(cluster.url(0), data, 'kept.bin');
    expect(res.status).toBe(201);
    kept.set(res.body.id, sha256(data));
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('answers a 32 KiB header block with a JSON 431 and closes the connection', async () => {
    const secret = 'key-that-must-not-be-logged-' + randomBytes(8).toString('hex');
    const res = await rawRequest(
      cluster.url(0),
      'GET /files HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        `Authorization: Bearer ${secret}\r\n` +
        `X-Padding: ${'a'.repeat(32 * 1024)}\r\n\r\n`,
    );
    const error = expectJsonError(res, 431, 'headers_too_large');
    expect(error.message).toMatch(/16384 bytes/);
    expect(res.body).not.toContain(secret);
    expect(cluster.log(0)).not.toContain(secret);
  });

  it('answers a header block just under the limit normally', async () => {
    const res = await rawRequest(
      cluster.url(0),
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Padding: ${'a'.repeat(15 * 1024)}\r\n\r\n`,
    );
    expect(res.status).toBe(200);
  });

  it.each([
    ['a garbage request line', 'HELLO THERE\r\n\r\n'],
    ['a NUL byte in the path', 'GET /files/\0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'],
    ['a header name with a space', 'GET /files HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n'],
    ['an unknown HTTP version', 'GET /files HTTP/7.3\r\nHost: 127.0.0.1\r\n\r\n'],
    [
      'a bad chunk size in an upload',
      'POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n' +
        'Transfer-Encoding: chunked\r\n\r\nzz\r\n',
    ],
  ])('answers %s with a JSON 400', async (_what, bytes) => {
    const error = expectJsonError(await rawRequest(cluster.url(1), bytes), 400, 'bad_request');
    expect(error.message).toMatch(/^malformed HTTP request/);
  });

  it('counts the refusals, keeps serving and loses nothing', async () => {
    const metrics = await (await fetch(`${cluster.url(0)}/metrics`)).text();
    expect(metrics).toMatch(/shoal_http_parser_refusals_total\{status="431",node="node-1"\} [1-9]/);
    for (let i = 0; i < 3; i++) {
      expect((await fetch(`${cluster.url(i)}/healthz`)).status).toBe(200);
      expect(cluster.node(i).proc?.exitCode).toBeNull();
      for (const [id, sum] of kept) {
        const res = await download(cluster.url(i), id);
        expect(res.status).toBe(200);
        expect(sha256(res.data)).toBe(sum);
      }
    }
  });
});

interface Part {
  /** Raw header lines of the part, without CRLFs. */
  headers: string[];
  data: string | Buffer;
}

function filePart(data: Buffer, name = 'refused.bin'): Part {
  return {
    headers: [
      `Content-Disposition: form-data; name="file"; filename="${name}"`,
      'Content-Type: application/octet-stream',
    ],
    data,
  };
}

function field(name: string, value: string): Part {
  return { headers: [`Content-Disposition: form-data; name="${name}"`], data: value };
}

function multipartBody(boundary: string, parts: Part[]): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    out.push(Buffer.from(`--${boundary}\r\n${p.headers.map((h) => h + '\r\n').join('')}\r\n`));
    out.push(Buffer.from(p.data), Buffer.from('\r\n'));
  }
  out.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(out);
}

async function postMultipart(
  url: string,
  parts: Part[],
): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const boundary = 'limits' + randomBytes(8).toString('hex');
  const res = await fetch(`${url}/files`, {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    body: multipartBody(boundary, parts),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
}

/** Files under a data dir's blobs/ and tmp/ (the data-dir write probe aside). */
function onDisk(dataDir: string): { blobs: number; tmp: string[] } {
  const blobsDir = join(dataDir, 'blobs');
  const blobs = readdirSync(blobsDir).reduce((n, shard) => n + readdirSync(join(blobsDir, shard)).length, 0);
  const tmp = readdirSync(join(dataDir, 'tmp')).filter((f) => f !== '.write-probe');
  return { blobs, tmp };
}

describe('multipart limits', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    const res = await upload(cluster.url(0), randomBytes(10_000), 'before.bin');
    expect(res.status).toBe(201);
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  const listIds = async (): Promise<string[]> =>
    (
      (await getJson<{ files: Array<{ id: string }> }>(`${cluster.url(1)}/files?limit=1000`))?.files ?? []
    ).map((f) => f.id);

  // The file part comes first in each, so its bytes are already on their replicas (prepared)
  // when the offending part arrives: those copies must be aborted, not left behind.
  const cases: Array<[string, number, string, RegExp, () => Part[]]> = [
    [
      'a part with 3,000 header pairs',
      400,
      'malformed_part_header',
      /16384 bytes/,
      () => [
        filePart(randomBytes(200_000)),
        {
          headers: [
            'Content-Disposition: form-data; name="note"',
            ...Array.from({ length: 3000 }, (_v, i) => `X-Pair-${i}: v`),
          ],
          data: 'x',
        },
      ],
    ],
    [
      'a part with a 20 KiB header line',
      400,
      'malformed_part_header',
      /16384 bytes/,
      () => [
        filePart(randomBytes(200_000)),
        { headers: [`Content-Disposition: form-data; name="note"; x="${'a'.repeat(20 * 1024)}"`], data: 'x' },
      ],
    ],
    [
      'a file part whose own header line is 20 KiB',
      400,
      'malformed_part_header',
      /16384 bytes/,
      () => [
        {
          headers: [
            'Content-Disposition: form-data; name="file"; filename="f.bin"',
            `X-Long: ${'a'.repeat(20 * 1024)}`,
          ],
          data: randomBytes(1000),
        },
      ],
    ],
    [
      'a form with 17 fields',
      413,
      'multipart_limit',
      /at most 16 fields/,
      () => [filePart(randomBytes(200_000)), ...Array.from({ length: 17 }, (_v, i) => field(`f${i}`, 'v'))],
    ],
    [
      'a field value of 16 KiB + 1 byte',
      413,
      'multipart_limit',
      /16384 bytes/,
      () => [filePart(randomBytes(200_000)), field('note', 'v'.repeat(16 * 1024 + 1))],
    ],
    [
      'a field name of 257 characters',
      413,
      'multipart_limit',
      /256 characters/,
      () => [filePart(randomBytes(200_000)), field('n'.repeat(257), 'v')],
    ],
    [
      'a form with 21 parts',
      413,
      'multipart_limit',
      /at most 20 parts/,
      () => [
        filePart(randomBytes(200_000)),
        // Parts without a Content-Disposition are skipped, but still count as parts.
        ...Array.from({ length: 20 }, () => ({ headers: ['X-Nothing: here'], data: 'x' })),
      ],
    ],
  ];

  it.each(cases)(
    'refuses %s with %d, stores nothing and leaves no temp file',
    async (_what, status, code, message, parts) => {
      const before = await listIds();
      const disks = cluster.nodes.map((n) => onDisk(n.dataDir));
      const res = await postMultipart(cluster.url(0), parts());
      expect(res.status).toBe(status);
      expect(res.body.error?.code).toBe(code);
      expect(res.body.error?.message).toMatch(message);
      // Prepared copies are aborted before the answer goes out, so nothing is left even now.
      expect(await listIds()).toEqual(before);
      expect(cluster.nodes.map((n) => onDisk(n.dataDir))).toEqual(disks.map((d) => ({ ...d, tmp: [] })));
      // And the node takes the next upload as usual.
      expect((await upload(cluster.url(0), randomBytes(1000), 'after.bin')).status).toBe(201);
    },
  );

  // A refusal must not wait for the rest of the body: the node would read whatever the client
  // sends, gigabytes, before saying why.
  const part = (headers: string, data = 'x'): string => `--BOUNDARY\r\n${headers}\r\n\r\n${data}\r\n`;
  const early: Array<[string, number, string, string]> = [
    [
      'a form with 17 fields',
      413,
      'multipart_limit',
      Array.from({ length: 17 }, (_v, i) => part(`Content-Disposition: form-data; name="f${i}"`)).join(''),
    ],
    [
      'a part with a 20 KiB header line',
      400,
      'malformed_part_header',
      part(`Content-Disposition: form-data; name="note"; x="${'a'.repeat(20 * 1024)}"`),
    ],
    [
      'a second file part',
      400,
      'bad_request',
      part('Content-Disposition: form-data; name="file"; filename="first.bin"', 'first'),
    ],
  ];

  it.each(early)(
    'answers %s with %d while 256 MiB of body are still coming',
    async (_what, status, code, preamble) => {
      const before = await listIds();
      const res = await streamUpload(cluster.url(0), 256 * 1024 * 1024, preamble);
      expect(res.status).toBe(status);
      expect((JSON.parse(res.body) as { error: { code: string } }).error.code).toBe(code);
      expect(res.sentBeforeAnswer).toBeLessThan(32 * 1024 * 1024);
      expect(await listIds()).toEqual(before);
      expect((await upload(cluster.url(0), randomBytes(1000), 'after.bin')).status).toBe(201);
    },
  );

  it('takes a form within every limit', async () => {
    const data = randomBytes(100_000);
    const parts = [
      ...Array.from({ length: 15 }, (_v, i) => field(`f${i}`, 'v')),
      field('n'.repeat(256), 'v'.repeat(16 * 1024)),
      filePart(data, 'within.bin'),
    ];
    const res = await postMultipart(cluster.url(2), parts);
    expect(res.status).toBe(201);
    const got = await download(cluster.url(1), (res.body as { id: string }).id);
    expect(sha256(got.data)).toBe(sha256(data));
  });
});
