import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { newFileId } from '../../shared/ids';
import { STREAMED_BODY, signRequest } from '../../services/storage-node/src/peers/auth';
import { SECRET, TestCluster } from '../helpers/cluster';

/**
 * A peer holding the cluster secret that sends malformed requests: every internal route checks
 * params, query and body against the protocol's schemas, answers 400 `bad_request` saying what was
 * wrong, and never fails with a 500 or lets an exception escape.
 */

const NOW = new Date().toISOString();
const SHA = 'ab'.repeat(32);
const TOKEN = 'cd'.repeat(16);

function meta(id: string): Record<string, unknown> {
  return { id, name: 'a.bin', size: 1, sha256: SHA, contentType: 'application/octet-stream', createdAt: NOW };
}

const member = (change: Record<string, unknown>): Record<string, unknown> => ({
  id: 'peer-1',
  url: 'http://127.0.0.1:9',
  incarnation: 1,
  state: 'alive',
  ...change,
});

describe('internal routes refuse malformed requests from a signed peer', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 1, replicas: 1, writeQuorum: 1 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  async function call(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<{
    status: number;
    json: { error?: { code: string; message: string } } & Record<string, unknown>;
  }> {
    const url = new URL(`/internal/v1${path}`, cluster.url(0));
    const signedPath = url.pathname + url.search;
    const headers: Record<string, string> = {};
    let payload: string | undefined;
    if (typeof body === 'string') {
      headers['content-type'] = 'application/json';
      payload = body;
    } else if (body instanceof Buffer) {
      headers['content-type'] = 'application/octet-stream';
      payload = body.toString();
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    headers['x-shoal-auth'] = signRequest(SECRET, {
      method,
      path: signedPath,
      nodeId: 'test-peer',
      body: body instanceof Buffer ? STREAMED_BODY : payload,
    });
    const res = await request(url, { method, headers, body: payload });
    const text = await res.body.text();
    return { status: res.statusCode, json: text ? JSON.parse(text) : {} };
  }

  const id = newFileId();
  it.each<[string, 'GET' | 'POST' | 'PUT' | 'DELETE', string, unknown]>([
    [
      'gossip with a javascript: member URL',
      'POST',
      '/gossip',
      { from: 'x', members: [member({ url: 'javascript:alert(1)' })] },
    ],
    [
      'gossip with an incarnation of 2^53',
      'POST',
      '/gossip',
      '{"from":"x","members":[{"id":"p","url":"http://a","incarnation":9007199254740992,"state":"alive"}]}',
    ],
    [
      'gossip with an unknown state',
      'POST',
      '/gossip',
      { from: 'x', members: [member({ state: 'zombie' })] },
    ],
    [
      'gossip with 1025 members',
      'POST',
      '/gossip',
      { from: 'x', members: Array.from({ length: 1025 }, (_, i) => member({ id: `p${i}` })) },
    ],
    ['gossip that is not JSON', 'POST', '/gossip', '{"from":'],
    ['gossip without a body', 'POST', '/gossip', undefined],
    ['a probe of a file: URL', 'POST', '/probe', { url: 'file:///etc/passwd' }],
    ['a prepare for a bad id', 'PUT', '/blobs/..%2Fmetadata.sqlite', Buffer.from('bytes')],
    [
      'a commit with a bad token',
      'POST',
      `/blobs/${id}/commit`,
      { token: 'zz', meta: meta(id), heldFor: null },
    ],
    [
      'a commit with a negative size',
      'POST',
      `/blobs/${id}/commit`,
      { token: TOKEN, meta: { ...meta(id), size: -1 }, heldFor: null },
    ],
    [
      "a commit with another file's metadata",
      'POST',
      `/blobs/${id}/commit`,
      { token: TOKEN, meta: meta(newFileId()), heldFor: null },
    ],
    ['a batch of no commits', 'POST', '/commits', { commits: [] }],
    [
      'a batch of 257 commits',
      'POST',
      '/commits',
      {
        commits: Array.from({ length: 257 }, () => ({
          id,
          token: TOKEN,
          meta: meta(id),
          heldFor: null,
          checksums: '',
        })),
      },
    ],
    [
      'a batched commit with a bad token',
      'POST',
      '/commits',
      { commits: [{ id, token: 'zz', meta: meta(id), heldFor: null, checksums: '' }] },
    ],
    ['an abort with a bad token', 'DELETE', '/uploads/not-a-token', undefined],
    ['a delete with a bad time', 'POST', `/blobs/${id}/delete`, { deletedAt: 'now', force: false }],
    ['catch-up without since', 'GET', '/catch-up?limit=10', undefined],
    ['catch-up with limit 0', 'GET', `/catch-up?since=${encodeURIComponent(NOW)}&limit=0`, undefined],
    ['catch-up with since twice', 'GET', `/catch-up?since=a&since=b&limit=1`, undefined],
    ['digests of a short bitmap', 'POST', '/digests', { partitions: 'AAAA' }],
    ['records of partition 8192', 'GET', '/partitions/8192/records', undefined],
    ['records of partition abc', 'GET', '/partitions/abc/records', undefined],
    [
      'a pull from a file: URL',
      'POST',
      `/blobs/${id}/pull`,
      { meta: meta(id), sources: ['file:///etc/passwd'], heldFor: null },
    ],
    ['a forget with a bad sha256', 'POST', `/blobs/${id}/forget`, { sha256: 'nope' }],
    ['a record of a bad id', 'GET', '/records/a%20b', undefined],
    ['a listing after a non-id', 'GET', '/records?after=%2F&limit=1', undefined],
    ['a listing over the page limit', 'GET', '/records?after=&limit=1001', undefined],
    ['a read of a bad id', 'GET', '/blobs/%00', undefined],
    ['a registry sync with a digest that is not hex', 'POST', '/registry/sync', { digest: 'zz' }],
    ['a registry merge of nothing', 'POST', '/registry/merge', { entries: [] }],
    [
      'a registry entry of an unknown kind',
      'POST',
      '/registry/merge',
      { entries: [{ kind: 'user', name: 'x', value: null, time: 1, node: 'node-1' }] },
    ],
    [
      'a registry entry with a negative time',
      'POST',
      '/registry/merge',
      { entries: [{ kind: 's3-key', name: 'x', value: null, time: -1, node: 'node-1' }] },
    ],
  ])('%s: 400 bad_request', async (_what, method, path, body) => {
    const res = await call(method, path, body);
    expect(res.status).toBe(400);
    expect(res.json.error?.code).toBe('bad_request');
    expect(res.json.error?.message.length).toBeLessThan(300);
  });

  it('names the field that was wrong', async () => {
    const res = await call('POST', '/gossip', {
      from: 'x',
      members: [member({}), member({ url: 'file:///x' })],
    });
    expect(res.json.error?.message).toMatch(/^bad gossip body: members\[1\]\.url: /);
  });

  it('still answers well-formed requests, and logged no unexpected error', async () => {
    expect(await call('GET', '/ping')).toEqual({ status: 200, json: { ready: true } });
    expect((await call('GET', '/records?after=&limit=1')).status).toBe(200);
    expect((await call('POST', '/gossip', { from: 'x', members: [] })).status).toBe(200);
    expect(readFileSync(cluster.node(0).logFile, 'utf8')).not.toContain('unexpected error');
  });
});
