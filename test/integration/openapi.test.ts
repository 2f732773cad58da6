import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { TestCluster, resolveFromRoot } from '../helpers/cluster';

/**
 * docs/openapi.yaml against a real node, both ways:
 * - every operation in the document is sent for real, in the situations that give each of its
 *   status codes; the route must exist, the status must be the one expected and documented, the
 *   documented headers must be there and a JSON body must match the documented schema;
 * - every public route the node serves (the contract's table, and whatever app.ts and
 *   public-routes.ts register) must be in the document.
 * The sample Grafana dashboard is checked against the same node: it may only query metrics that
 * /metrics exports.
 */

// ---------------------------------------------------------------------------------------------
// The document, and a validator for the part of JSON Schema it uses

interface Schema {
  $ref?: string;
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  nullable?: boolean;
  pattern?: string;
  minimum?: number;
  maximum?: number;
}

interface HeaderSpec {
  $ref?: string;
  required?: boolean;
}

interface ResponseSpec {
  $ref?: string;
  description: string;
  headers?: Record<string, HeaderSpec>;
  content?: Record<string, { schema?: Schema }>;
}

interface Operation {
  operationId: string;
  responses: Record<string, ResponseSpec>;
}

interface OpenApiDoc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: Record<string, Record<string, unknown>>;
}

const doc = parseYaml(readFileSync(resolveFromRoot('docs/openapi.yaml'), 'utf8')) as OpenApiDoc;
const HTTP_METHODS = ['get', 'head', 'post', 'put', 'delete', 'patch', 'options'];

function deref<T extends { $ref?: string }>(node: T): T {
  let current = node;
  for (let hops = 0; current.$ref !== undefined; hops++) {
    const match = /^#\/components\/([^/]+)\/([^/]+)$/.exec(current.$ref);
    const target = match ? doc.components[match[1]!]?.[match[2]!] : undefined;
    if (!target || hops > 10) throw new Error(`unresolvable $ref ${current.$ref}`);
    current = target as T;
  }
  return current;
}

function validate(schemaOrRef: Schema, value: unknown, at = '$'): string[] {
  const schema = deref(schemaOrRef);
  if (value === null) return schema.nullable ? [] : [`${at} is null`];
  if (schema.enum && !schema.enum.includes(value))
    return [`${at} = ${JSON.stringify(value)} is not in the enum`];
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) return [`${at} is not an object`];
      const obj = value as Record<string, unknown>;
      const problems = (schema.required ?? []).filter((k) => !(k in obj)).map((k) => `${at}.${k} is missing`);
      for (const [key, sub] of Object.entries(schema.properties ?? {})) {
        if (key in obj) problems.push(...validate(sub, obj[key], `${at}.${key}`));
      }
      return problems;
    }
    case 'array':
      if (!Array.isArray(value)) return [`${at} is not an array`];
      return schema.items ? value.flatMap((v, i) => validate(schema.items!, v, `${at}[${i}]`)) : [];
    case 'string':
      if (typeof value !== 'string') return [`${at} is not a string`];
      if (schema.pattern && !new RegExp(schema.pattern).test(value))
        return [`${at} does not match ${schema.pattern}`];
      return [];
    case 'integer':
    case 'number':
      if (typeof value !== 'number' || (schema.type === 'integer' && !Number.isInteger(value)))
        return [`${at} is not an ${schema.type}`];
      if (schema.minimum !== undefined && value < schema.minimum) return [`${at} < ${schema.minimum}`];
      if (schema.maximum !== undefined && value > schema.maximum) return [`${at} > ${schema.maximum}`];
      return [];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at} is not a boolean`];
    default:
      return [];
  }
}

/** "GET /files/{id}" for every operation in the document. */
function documentedOperations(): string[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((m) => HTTP_METHODS.includes(m))
      .map((m) => `${m.toUpperCase()} ${path}`),
  );
}

function operation(key: string): Operation {
  const [method, path] = key.split(' ') as [string, string];
  const op = doc.paths[path]?.[method.toLowerCase()];
  if (!op) throw new Error(`${key} is not in docs/openapi.yaml`);
  return op;
}

// ---------------------------------------------------------------------------------------------
// Requests as the document describes them

const KEY = 'openapi-test-' + randomBytes(6).toString('hex');
/** A key whose role only reads: the 403 answers of the routes that write or drain. */
const READ_KEY = 'openapi-read-' + randomBytes(6).toString('hex');
const MAX_FILE_SIZE = 64 * 1024;
const NEVER_STORED = 'never-stored_0123456789';
const NO_SUCH_ROUTE = 'no such route';

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

interface Case {
  /** What the case provokes, for the test's name. */
  why: string;
  key: string;
  status: number;
  url: () => string;
  init?: () => RequestInit;
  /** Send without the API key. */
  anonymous?: boolean;
  /** Send with the read-only key instead of the admin one. */
  readOnly?: boolean;
  after?: (reply: Reply) => void;
}

const GRANT_BUCKET = 'openapi-grants';

/** A grant of read access to an S3 key, as `shoal bucket allow --read` sends it. */
function grantBody(accessKeyId: string): RequestInit {
  return {
    method: 'POST',
    body: JSON.stringify({ accessKeyId, read: true, write: false }),
    headers: { 'content-type': 'application/json' },
  };
}

/** The same link with one character of its signature changed. */
function tamper(path: string): string {
  return path.replace(/sig=(.)/, (_m, c: string) => `sig=${c === '0' ? '1' : '0'}`);
}

function multipart(data: Buffer, name: string): FormData {
  const form = new FormData();
  form.append('file', new Blob([data], { type: 'application/octet-stream' }), name);
  return form;
}

describe('docs/openapi.yaml matches the routes a node serves', () => {
  let cluster: TestCluster;
  let base = '';
  const seen = new Map<string, Set<number>>();
  const file = { id: '', sha256: '', data: randomBytes(1000) };
  let linkPath = '';
  let s3KeyId = '';

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 1,
      writeQuorum: 1,
      replicas: 1,
      apiKeys: [`admin:${KEY}`, `read:${READ_KEY}`],
      maxFileSize: MAX_FILE_SIZE,
      s3: true,
    });
    base = cluster.url(0);
    // A bucket to grant access to: made through the S3 listener by a key of its own.
    const made = await fetch(`${base}/admin/s3/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bucket owner' }),
    });
    const owner = (await made.json()) as { accessKeyId: string; secretAccessKey: string };
    const s3 = new S3Client({
      endpoint: cluster.node(0).s3Url,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: owner,
    });
    await s3.send(new CreateBucketCommand({ Bucket: GRANT_BUCKET }));
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('is an OpenAPI 3 document whose references all resolve and whose errors are the error schema', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    const ids = new Set<string>();
    for (const key of documentedOperations()) {
      const op = operation(key);
      expect(ids.has(op.operationId)).toBe(false);
      ids.add(op.operationId);
      for (const [status, responseOrRef] of Object.entries(op.responses)) {
        const response = deref(responseOrRef);
        for (const header of Object.values(response.headers ?? {})) deref(header);
        const json = response.content?.['application/json']?.schema;
        // /readyz answers 503 with its usual body: not ready is its answer, not an error.
        if (Number(status) >= 400 && json && key !== 'GET /readyz') {
          expect({ [`${key} ${status}`]: json.$ref }).toEqual({
            [`${key} ${status}`]: '#/components/schemas/Error',
          });
        }
      }
    }
    // Node-to-node routes are signed with the cluster secret and no business of clients.
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/internal'))).toEqual([]);
  });

  const cases: Case[] = [
    {
      why: 'the console page, without a key',
      key: 'GET /',
      status: 200,
      url: () => `${base}/`,
      anonymous: true,
    },
    { why: 'alive', key: 'GET /healthz', status: 200, url: () => `${base}/healthz`, anonymous: true },
    { why: 'ready', key: 'GET /readyz', status: 200, url: () => `${base}/readyz`, anonymous: true },
    {
      why: 'Prometheus text',
      key: 'GET /metrics',
      status: 200,
      url: () => `${base}/metrics`,
      anonymous: true,
    },

    {
      why: 'an upload',
      key: 'POST /files',
      status: 201,
      url: () => `${base}/files`,
      init: () => ({ method: 'POST', body: multipart(file.data, 'doc.bin') }),
      after: (reply) => {
        const stored = JSON.parse(reply.text) as { id: string; sha256: string };
        file.id = stored.id;
        file.sha256 = stored.sha256;
        expect(reply.headers.get('location')).toBe(`/files/${stored.id}`);
      },
    },
    {
      why: 'no key',
      key: 'POST /files',
      status: 401,
      url: () => `${base}/files`,
      init: () => ({ method: 'POST', body: multipart(file.data, 'doc.bin') }),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'POST /files',
      status: 403,
      url: () => `${base}/files`,
      init: () => ({ method: 'POST', body: multipart(file.data, 'doc.bin') }),
      readOnly: true,
    },
    {
      why: 'not multipart',
      key: 'POST /files',
      status: 400,
      url: () => `${base}/files`,
      init: () => ({ method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }),
    },
    {
      why: 'over --max-file-size',
      key: 'POST /files',
      status: 413,
      url: () => `${base}/files`,
      init: () => ({ method: 'POST', body: multipart(randomBytes(MAX_FILE_SIZE * 2), 'big.bin') }),
    },

    {
      why: 'a signed link',
      key: 'POST /files/{id}/links',
      status: 201,
      url: () => `${base}/files/${file.id}/links`,
      init: () => ({
        method: 'POST',
        body: JSON.stringify({ expiresInSeconds: 600 }),
        headers: { 'content-type': 'application/json' },
      }),
      after: (reply) => {
        linkPath = (JSON.parse(reply.text) as { path: string }).path;
      },
    },
    { why: 'a page', key: 'GET /files', status: 200, url: () => `${base}/files?limit=10` },
    {
      why: 'the next page',
      key: 'GET /files',
      status: 200,
      url: () => `${base}/files?limit=1&after=${file.id}`,
    },
    { why: 'limit out of range', key: 'GET /files', status: 400, url: () => `${base}/files?limit=0` },
    { why: 'no key', key: 'GET /files', status: 401, url: () => `${base}/files`, anonymous: true },

    ...(['GET', 'HEAD'] as const).flatMap((method): Case[] => {
      const key = `${method} /files/{id}`;
      const init =
        (headers: Record<string, string> = {}) =>
        () => ({ method, headers });
      return [
        { why: 'the file', key, status: 200, url: () => `${base}/files/${file.id}`, init: init() },
        {
          why: 'a range',
          key,
          status: 206,
          url: () => `${base}/files/${file.id}`,
          init: init({ range: 'bytes=10-19' }),
        },
        {
          why: 'the ETag held',
          key,
          status: 304,
          url: () => `${base}/files/${file.id}`,
          init: () => ({ method, headers: { 'if-none-match': `"${file.sha256}"` } }),
        },
        { why: 'a malformed id', key, status: 400, url: () => `${base}/files/not.an.id`, init: init() },
        {
          why: 'no key',
          key,
          status: 401,
          url: () => `${base}/files/${file.id}`,
          init: init(),
          anonymous: true,
        },
        {
          why: 'a tampered signed link',
          key,
          status: 403,
          url: () => `${base}${tamper(linkPath)}`,
          init: init(),
          anonymous: true,
        },
        {
          why: 'a file never stored',
          key,
          status: 404,
          url: () => `${base}/files/${NEVER_STORED}`,
          init: init(),
        },
        {
          why: 'a range past the end',
          key,
          status: 416,
          url: () => `${base}/files/${file.id}`,
          init: init({ range: 'bytes=5000-6000' }),
        },
      ];
    }),

    {
      why: 'the copies',
      key: 'GET /files/{id}/info',
      status: 200,
      url: () => `${base}/files/${file.id}/info`,
    },
    { why: 'a malformed id', key: 'GET /files/{id}/info', status: 400, url: () => `${base}/files/a.b/info` },
    {
      why: 'no key',
      key: 'GET /files/{id}/info',
      status: 401,
      url: () => `${base}/files/${file.id}/info`,
      anonymous: true,
    },
    {
      why: 'a file never stored',
      key: 'GET /files/{id}/info',
      status: 404,
      url: () => `${base}/files/${NEVER_STORED}/info`,
    },

    {
      why: 'a lifetime out of range',
      key: 'POST /files/{id}/links',
      status: 400,
      url: () => `${base}/files/${file.id}/links`,
      init: () => ({
        method: 'POST',
        body: JSON.stringify({ expiresInSeconds: 0 }),
        headers: { 'content-type': 'application/json' },
      }),
    },
    {
      why: 'no key',
      key: 'POST /files/{id}/links',
      status: 401,
      url: () => `${base}/files/${file.id}/links`,
      init: () => ({ method: 'POST' }),
      anonymous: true,
    },
    {
      why: 'a file never stored',
      key: 'POST /files/{id}/links',
      status: 404,
      url: () => `${base}/files/${NEVER_STORED}/links`,
      init: () => ({ method: 'POST' }),
    },
    {
      why: 'the signed link, without a key',
      key: 'GET /files/{id}',
      status: 200,
      url: () => `${base}${linkPath}`,
      anonymous: true,
    },

    { why: 'the members', key: 'GET /cluster', status: 200, url: () => `${base}/cluster` },
    { why: 'no key', key: 'GET /cluster', status: 401, url: () => `${base}/cluster`, anonymous: true },

    {
      why: 'no key',
      key: 'DELETE /files/{id}',
      status: 401,
      url: () => `${base}/files/${file.id}`,
      init: () => ({ method: 'DELETE' }),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'DELETE /files/{id}',
      status: 403,
      url: () => `${base}/files/${file.id}`,
      init: () => ({ method: 'DELETE' }),
      readOnly: true,
    },
    {
      why: 'a malformed id',
      key: 'DELETE /files/{id}',
      status: 400,
      url: () => `${base}/files/a.b`,
      init: () => ({ method: 'DELETE' }),
    },
    {
      why: 'the file',
      key: 'DELETE /files/{id}',
      status: 204,
      url: () => `${base}/files/${file.id}`,
      init: () => ({ method: 'DELETE' }),
    },
    {
      why: 'a file already deleted',
      key: 'DELETE /files/{id}',
      status: 404,
      url: () => `${base}/files/${file.id}`,
      init: () => ({ method: 'DELETE' }),
    },
    {
      why: 'a key',
      key: 'POST /admin/s3/keys',
      status: 201,
      url: () => `${base}/admin/s3/keys`,
      init: () => ({
        method: 'POST',
        body: JSON.stringify({ name: 'openapi' }),
        headers: { 'content-type': 'application/json' },
      }),
      after: (reply) => {
        s3KeyId = (JSON.parse(reply.text) as { accessKeyId: string }).accessKeyId;
      },
    },
    {
      why: 'no name',
      key: 'POST /admin/s3/keys',
      status: 400,
      url: () => `${base}/admin/s3/keys`,
      init: () => ({ method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }),
    },
    {
      why: 'no key',
      key: 'POST /admin/s3/keys',
      status: 401,
      url: () => `${base}/admin/s3/keys`,
      init: () => ({ method: 'POST', body: '{"name":"x"}', headers: { 'content-type': 'application/json' } }),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'POST /admin/s3/keys',
      status: 403,
      url: () => `${base}/admin/s3/keys`,
      init: () => ({ method: 'POST', body: '{"name":"x"}', headers: { 'content-type': 'application/json' } }),
      readOnly: true,
    },
    {
      why: 'read access',
      key: 'POST /admin/s3/buckets/{bucket}/grants',
      status: 200,
      url: () => `${base}/admin/s3/buckets/${GRANT_BUCKET}/grants`,
      init: () => grantBody(s3KeyId),
    },
    {
      why: 'a key and no bucket',
      key: 'POST /admin/s3/buckets/{bucket}/grants',
      status: 404,
      url: () => `${base}/admin/s3/buckets/no-such-bucket/grants`,
      init: () => grantBody(s3KeyId),
    },
    {
      why: 'no rights',
      key: 'POST /admin/s3/buckets/{bucket}/grants',
      status: 400,
      url: () => `${base}/admin/s3/buckets/no-such-bucket/grants`,
      init: () => ({
        method: 'POST',
        body: JSON.stringify({ accessKeyId: s3KeyId, read: false, write: false }),
        headers: { 'content-type': 'application/json' },
      }),
    },
    {
      why: 'no key',
      key: 'POST /admin/s3/buckets/{bucket}/grants',
      status: 401,
      url: () => `${base}/admin/s3/buckets/no-such-bucket/grants`,
      init: () => grantBody(s3KeyId),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'POST /admin/s3/buckets/{bucket}/grants',
      status: 403,
      url: () => `${base}/admin/s3/buckets/no-such-bucket/grants`,
      init: () => grantBody(s3KeyId),
      readOnly: true,
    },
    { why: 'the keys', key: 'GET /admin/s3/keys', status: 200, url: () => `${base}/admin/s3/keys` },
    {
      why: 'no key',
      key: 'GET /admin/s3/keys',
      status: 401,
      url: () => `${base}/admin/s3/keys`,
      anonymous: true,
    },
    {
      why: 'no key',
      key: 'DELETE /admin/s3/keys/{accessKeyId}',
      status: 401,
      url: () => `${base}/admin/s3/keys/${s3KeyId}`,
      init: () => ({ method: 'DELETE' }),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'DELETE /admin/s3/keys/{accessKeyId}',
      status: 403,
      url: () => `${base}/admin/s3/keys/${s3KeyId}`,
      init: () => ({ method: 'DELETE' }),
      readOnly: true,
    },
    {
      why: 'the key',
      key: 'DELETE /admin/s3/keys/{accessKeyId}',
      status: 204,
      url: () => `${base}/admin/s3/keys/${s3KeyId}`,
      init: () => ({ method: 'DELETE' }),
    },
    {
      why: 'a key already revoked',
      key: 'DELETE /admin/s3/keys/{accessKeyId}',
      status: 404,
      url: () => `${base}/admin/s3/keys/${s3KeyId}`,
      init: () => ({ method: 'DELETE' }),
    },
    // Last: a draining node takes no new copies.
    { why: 'not draining', key: 'GET /admin/drain', status: 200, url: () => `${base}/admin/drain` },
    {
      why: 'no key',
      key: 'GET /admin/drain',
      status: 401,
      url: () => `${base}/admin/drain`,
      anonymous: true,
    },
    {
      why: 'no key',
      key: 'POST /admin/drain',
      status: 401,
      url: () => `${base}/admin/drain`,
      init: () => ({ method: 'POST' }),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'POST /admin/drain',
      status: 403,
      url: () => `${base}/admin/drain`,
      init: () => ({ method: 'POST' }),
      readOnly: true,
    },
    {
      why: 'start',
      key: 'POST /admin/drain',
      status: 202,
      url: () => `${base}/admin/drain`,
      init: () => ({ method: 'POST' }),
    },
    {
      why: 'no key',
      key: 'DELETE /admin/drain',
      status: 401,
      url: () => `${base}/admin/drain`,
      init: () => ({ method: 'DELETE' }),
      anonymous: true,
    },
    {
      why: 'a read-only key',
      key: 'DELETE /admin/drain',
      status: 403,
      url: () => `${base}/admin/drain`,
      init: () => ({ method: 'DELETE' }),
      readOnly: true,
    },
    {
      why: 'cancel',
      key: 'DELETE /admin/drain',
      status: 200,
      url: () => `${base}/admin/drain`,
      init: () => ({ method: 'DELETE' }),
    },
  ];

  for (const c of cases) {
    it(`${c.key} -> ${c.status} (${c.why})`, async () => {
      const op = operation(c.key);
      const init = c.init?.() ?? {};
      const headers = new Headers(init.headers);
      if (!c.anonymous) headers.set('authorization', `Bearer ${c.readOnly ? READ_KEY : KEY}`);
      headers.set('accept-encoding', 'identity');
      const res = await fetch(c.url(), {
        ...init,
        headers,
        redirect: 'manual',
        signal: AbortSignal.timeout(30_000),
      });
      const reply: Reply = { status: res.status, headers: res.headers, text: await res.text() };
      (seen.get(c.key) ?? seen.set(c.key, new Set()).get(c.key)!).add(reply.status);

      // The route exists: an unknown one is the app's JSON 404 "no such route".
      expect(reply.text).not.toContain(NO_SUCH_ROUTE);
      expect({ status: reply.status, body: reply.text.slice(0, 300) }).toMatchObject({ status: c.status });
      // State for later cases (the new id, the signed link) first, so one wrong schema fails one case.
      c.after?.(reply);

      const documented = op.responses[String(reply.status)];
      if (!documented) throw new Error(`${c.key} answered ${reply.status}, which the document does not list`);
      const response = deref(documented);
      for (const [name, header] of Object.entries(response.headers ?? {})) {
        if (deref(header).required) expect({ [name]: reply.headers.get(name) }).not.toEqual({ [name]: null });
      }

      const type = reply.headers.get('content-type') ?? '';
      const content = response.content ?? {};
      if (c.key.startsWith('HEAD ') || Object.keys(content).length === 0) {
        expect(reply.text).toBe('');
        return;
      }
      const media = Object.keys(content).find(
        (m) =>
          m === '*/*' ||
          type.split(';')[0]!.trim() === m ||
          (m.endsWith('/*') && type.startsWith(m.slice(0, -1))),
      );
      if (!media)
        throw new Error(
          `${c.key} ${reply.status} answered ${type}; the document has ${Object.keys(content)}`,
        );
      const schema = content[media]?.schema;
      if (media === 'application/json' && schema) {
        expect(validate(schema, JSON.parse(reply.text))).toEqual([]);
      }
    });
  }

  it('every documented operation was exercised, in every status a test can provoke', () => {
    // Statuses a healthy single node cannot be driven into from outside: an unexpected error, a
    // node not ready or short of replicas, a full disk. The chaos and hardening tests cover them.
    const unprovoked = new Set(['500', '503', '507']);
    const missing: string[] = [];
    for (const key of documentedOperations()) {
      const statuses = seen.get(key);
      if (!statuses) {
        missing.push(`${key}: never sent`);
        continue;
      }
      for (const status of Object.keys(operation(key).responses)) {
        if (!statuses.has(Number(status)) && !unprovoked.has(status)) missing.push(`${key} ${status}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('documents every public route of the contract and of the app', () => {
    // The contract's table (/work/shared/CONTRACT.md), by hand.
    const contract = [
      'POST /files',
      'GET /files/{id}',
      'HEAD /files/{id}',
      'GET /files/{id}/info',
      'DELETE /files/{id}',
      'GET /files',
      'GET /cluster',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
      'GET /',
    ];
    // And whatever the app registers today, so a new route cannot go undocumented.
    const registered = [
      'services/storage-node/src/http/app.ts',
      'services/storage-node/src/http/public-routes.ts',
    ]
      .map((file) => readFileSync(resolveFromRoot(file), 'utf8'))
      .flatMap((source) =>
        [...source.matchAll(/\b(?:app|router)\.(get|post|put|delete|patch|head)\(\s*'([^']+)'/g)].map(
          ([, method, path]) => `${method!.toUpperCase()} ${path!.replace(/:(\w+)/g, '{$1}')}`,
        ),
      );
    expect(registered.length).toBeGreaterThanOrEqual(9);
    const documented = new Set(documentedOperations());
    const undocumented = [...new Set([...contract, ...registered])].filter((route) => !documented.has(route));
    expect(undocumented).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('docs/grafana-dashboard.json', () => {
  interface Panel {
    title?: string;
    targets?: Array<{ expr?: string }>;
    panels?: Panel[];
  }
  const dashboard = JSON.parse(readFileSync(resolveFromRoot('docs/grafana-dashboard.json'), 'utf8')) as {
    panels: Panel[];
    templating?: { list: Array<{ query?: string | { query?: string } }> };
  };
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1, writeQuorum: 1, replicas: 1 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('queries only metrics the node exports', async () => {
    const text = await (await fetch(`${cluster.url(0)}/metrics`)).text();
    // Names from the samples, and from the TYPE lines, so a counter that has not counted yet
    // (uploads on a fresh node) or a histogram that has no observation yet still counts.
    const exported = new Set<string>();
    for (const line of text.split('\n')) {
      const type = /^# TYPE (\S+) (\S+)/.exec(line);
      if (type) {
        const [, name, kind] = type as unknown as [string, string, string];
        exported.add(name);
        if (kind === 'histogram' || kind === 'summary')
          for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name + suffix);
      } else if (line !== '' && !line.startsWith('#')) {
        exported.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? '');
      }
    }
    const panels = (list: Panel[]): Panel[] => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
    const queries = [
      ...panels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
      ...(dashboard.templating?.list ?? []).map((v) =>
        typeof v.query === 'string' ? v.query : (v.query?.query ?? ''),
      ),
    ];
    const used = new Set(queries.flatMap((q) => q.match(/\bshoal_[a-z0-9_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(15);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });
});
