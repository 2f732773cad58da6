import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { TestCluster } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

/**
 * Thousands of random requests (methods, paths, headers, bodies, multipart included) against a
 * running node. Whatever arrives: no 5xx but the documented 503 and 507, the node stays up, and
 * every file stored before is still intact.
 */
const RUNS = 2_000;

const methods = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS');
const idish = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
  fc.string({ maxLength: 80 }),
  fc.constantFrom(
    '..',
    '%2e%2e%2f',
    '%2e%2e%2fetc%2fpasswd',
    'a%00b',
    '%00',
    '%ff%fe',
    '..%2f..%2f',
    'x'.repeat(65),
    '%E2%82%AC',
  ),
);
const paths = fc.oneof(
  idish.map((id) => `/files/${id}`),
  idish.map((id) => `/files/${id}/info`),
  idish.map((id) => `/files/${id}/links`),
  fc
    .tuple(fc.string({ maxLength: 12 }), idish)
    .map(([l, a]) => `/files?limit=${encodeURIComponent(l)}&after=${a}`),
  fc.constantFrom(
    '/files',
    '/cluster',
    '/healthz',
    '/readyz',
    '/metrics',
    '/',
    '/internal/v1/gossip',
    '/internal/v1/blobs/x',
  ),
  fc.webPath(),
);
const headerValue = fc.oneof(
  fc.string({ maxLength: 40 }).filter((v) => /^[\x20-\x7e]*$/.test(v)),
  fc.constantFrom(
    'bytes=0-10',
    'bytes=-5',
    'bytes=99999999-',
    'bytes=abc',
    'bytes=0-1,2-3',
    '*',
    'W/"x"',
    'Bearer nope',
  ),
);
const headers = fc.dictionary(
  fc.constantFrom(
    'range',
    'if-none-match',
    'authorization',
    'content-type',
    'x-request-id',
    'x-shoal-auth',
    'accept',
  ),
  headerValue,
  { maxKeys: 4 },
);
const multipart = fc
  .tuple(
    fc.constantFrom('file', 'other', ''),
    fc.string({ maxLength: 30 }),
    fc.uint8Array({ maxLength: 2048 }),
    fc.boolean(),
  )
  .map(([field, name, bytes, close]) => {
    const b = 'fuzzboundary';
    const head = `--${b}\r\nContent-Disposition: form-data; name="${field}"; filename="${name.replace(/["\r\n]/g, '')}"\r\n\r\n`;
    return {
      contentType: `multipart/form-data; boundary=${b}`,
      body: Buffer.concat([
        Buffer.from(head),
        Buffer.from(bytes),
        Buffer.from(close ? `\r\n--${b}--\r\n` : ''),
      ]),
    };
  });
const bodies = fc.oneof(
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 1024 }).map((b) => ({ contentType: undefined, body: Buffer.from(b) })),
  multipart,
);

describe('fuzzing a running node', () => {
  let cluster: TestCluster;
  const stored = new Map<string, string>();
  let sent = 0;
  const statuses = new Map<number, number>();

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, maxFileSize: 64 * 1024 });
    for (let i = 0; i < 5; i++) {
      const data = randomBytes(5000 + i);
      const res = await upload(cluster.url(i % 3), data, `keep-${i}.bin`);
      stored.set(res.body.id, sha256(data));
    }
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it(`answers ${RUNS} random requests without an undocumented 5xx and loses nothing`, async () => {
    await fc.assert(
      fc.asyncProperty(methods, paths, headers, bodies, async (method, path, hdrs, body) => {
        const h: Record<string, string> = { ...hdrs };
        if (body?.contentType) h['content-type'] = body.contentType;
        const withBody = body && method !== 'GET' && method !== 'HEAD';
        let status: number;
        try {
          const res = await request(`${cluster.url(0)}${path.startsWith('/') ? path : '/' + path}`, {
            method: method as 'GET',
            headers: h,
            body: withBody ? body.body : undefined,
            headersTimeout: 15_000,
            bodyTimeout: 15_000,
          });
          status = res.statusCode;
          await res.body.dump();
        } catch (err) {
          // A URL undici itself refuses to send is not the node's doing.
          if ((err as { code?: string }).code === 'UND_ERR_INVALID_ARG' || err instanceof TypeError)
            return true;
          throw err;
        }
        sent++;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        return status < 500 || status === 503 || status === 507;
      }),
      { numRuns: RUNS },
    );
    process.stdout.write(
      `fuzz: ${sent} requests sent; statuses ${JSON.stringify(Object.fromEntries(statuses))}\n`,
    );
    expect(sent).toBeGreaterThan(RUNS / 2);
    expect(cluster.node(0).proc?.exitCode).toBeNull();
    expect((await fetch(`${cluster.url(0)}/healthz`)).status).toBe(200);
    for (const [id, sum] of stored) {
      const res = await download(cluster.url(0), id);
      expect(res.status).toBe(200);
      expect(sha256(res.data)).toBe(sum);
    }
  });
});
