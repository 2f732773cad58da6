import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { STREAMED_BODY, signRequest } from '../../services/storage-node/src/peers/auth';
import { download, sha256, upload } from '../helpers/client';
import { SECRET, TestCluster } from '../helpers/cluster';

/**
 * An attacker who can read node-to-node traffic (plain HTTP) holds every header the nodes send.
 * Each header is good for one request with one body, from the node named in it: sent again, or
 * with another body, or claiming another node, it is refused, and the cluster carries on.
 */
describe('node-to-node requests an attacker replays or alters', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 2, replicas: 2, writeQuorum: 2 });
    await cluster.waitForConvergence();
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  /** Gossip that would add the attacker's own "member", which would then receive replicas. */
  const evilGossip = JSON.stringify({
    from: 'node-1',
    members: [{ id: 'evil', url: 'http://127.0.0.1:9', incarnation: Date.now(), state: 'alive' }],
  });
  const harmlessGossip = JSON.stringify({ from: 'node-1', members: [] });

  async function send(
    header: string,
    body: string | undefined,
    {
      path = '/internal/v1/gossip',
      method = 'POST',
      node,
    }: { path?: string; method?: string; node?: string } = {},
  ): Promise<{ status: number; code?: string; message?: string }> {
    const headers: Record<string, string> = { 'x-shoal-auth': header };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (node) headers['x-shoal-node'] = node;
    const res = await request(`${cluster.url(0)}${path}`, { method: method as 'POST', headers, body });
    const json = (await res.body.json().catch(() => ({}))) as { error?: { code: string; message: string } };
    return { status: res.statusCode, code: json.error?.code, message: json.error?.message };
  }

  const sign = (body: string | undefined, nodeId = 'node-1', path = '/internal/v1/gossip', method = 'POST') =>
    signRequest(SECRET, { method, path, nodeId, body });

  async function evilIsMember(): Promise<boolean> {
    const res = await request(`${cluster.url(0)}/cluster`);
    const view = (await res.body.json()) as { nodes: Array<{ id: string }> };
    return view.nodes.some((n) => n.id === 'evil');
  }

  it('refuses a header sent again, with the same body or another', async () => {
    const sniffed = sign(harmlessGossip);
    expect((await send(sniffed, harmlessGossip)).status).toBe(200);
    expect(await send(sniffed, harmlessGossip)).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(await send(sniffed, evilGossip)).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(await evilIsMember()).toBe(false);
  });

  it('refuses a fresh header sent with a body other than the one it was made for', async () => {
    const res = await send(sign(harmlessGossip), evilGossip);
    expect(res).toMatchObject({ status: 401, message: 'the body is not the one the node signed' });
    // Nor may a header that says "no body" or "streamed" carry one.
    expect((await send(sign(undefined), evilGossip)).status).toBe(401);
    expect(
      (
        await send(
          signRequest(SECRET, {
            method: 'POST',
            path: '/internal/v1/gossip',
            nodeId: 'node-1',
            body: STREAMED_BODY,
          }),
          evilGossip,
        )
      ).status,
    ).toBe(401);
    expect(await evilIsMember()).toBe(false);
  });

  it('refuses a header for another path or method, or one naming another node than the sender', async () => {
    expect((await send(sign(evilGossip, 'node-1', '/internal/v1/probe'), evilGossip)).status).toBe(401);
    expect((await send(sign(evilGossip, 'node-1', '/internal/v1/gossip', 'PUT'), evilGossip)).status).toBe(
      401,
    );
    expect(await send(sign(evilGossip, 'node-1'), evilGossip, { node: 'node-2' })).toMatchObject({
      status: 401,
      message: 'x-shoal-node is not the node that signed',
    });
    // A GET's query is signed too: a captured listing header cannot be pointed at other pages.
    const listing = '/internal/v1/records?after=&limit=1';
    const header = signRequest(SECRET, { method: 'GET', path: listing, nodeId: 'node-1' });
    expect(
      (await send(header, undefined, { method: 'GET', path: '/internal/v1/records?after=&limit=1000' }))
        .status,
    ).toBe(401);
    expect((await send(header, undefined, { method: 'GET', path: listing })).status).toBe(200);
    expect(await evilIsMember()).toBe(false);
  });

  it('refuses a header signed with another secret, or an unsigned one', async () => {
    const other = signRequest('not-the-cluster-secret-000000', {
      method: 'POST',
      path: '/internal/v1/gossip',
      nodeId: 'node-1',
      body: evilGossip,
    });
    expect((await send(other, evilGossip)).status).toBe(401);
    expect((await send(`t=${Date.now()},sig=${'0'.repeat(64)}`, evilGossip)).status).toBe(401);
    expect(await evilIsMember()).toBe(false);
  });

  it('still replicates and serves real traffic after all that', async () => {
    const data = randomBytes(200_000);
    const res = await upload(cluster.url(1), data, 'after.bin');
    expect(res.status).toBe(201);
    expect(res.body.replicas).toHaveLength(2);
    const got = await download(cluster.url(0), res.body.id);
    expect(sha256(got.data)).toBe(sha256(data));
  });
});
