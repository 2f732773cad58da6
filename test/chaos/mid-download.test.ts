import { createHash, randomBytes } from 'node:crypto';
import { request } from 'undici';
import { TestCluster, getJson } from '../helpers/cluster';
import { upload } from '../helpers/client';

/**
 * The copy being streamed dies in the middle of a download (SIGKILL of the peer serving it):
 * the node the client talks to fetches the rest from another copy, and the client receives one
 * whole, byte-identical body.
 */
describe('a serving peer killed in the middle of a download', () => {
  let cluster: TestCluster;

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('is resumed from another copy without the client noticing', async () => {
    cluster = await TestCluster.start({ nodes: 4, failureTimeoutMs: 30_000 });
    const data = randomBytes(48 * 1024 * 1024);
    const stored = await upload(cluster.url(0), data, 'long.bin');
    expect(stored.status).toBe(201);
    // Ask the one node without a copy, so the bytes come from a peer.
    const ids = cluster.nodes.map((n) => n.id);
    const outsider = ids.findIndex((id) => !stored.body.replicas.includes(id));
    expect(outsider).toBeGreaterThanOrEqual(0);
    const info = await getJson<{ replicas: Array<{ nodeId: string }> }>(
      `${cluster.url(outsider)}/files/${stored.body.id}/info`,
    );
    // The outsider tries copies in placement order: the first home member serves it.
    const server = ids.indexOf(info!.replicas[0]!.nodeId);

    const res = await request(`${cluster.url(outsider)}/files/${stored.body.id}`);
    expect(res.statusCode).toBe(200);
    const hash = createHash('sha256');
    let received = 0;
    let killed = false;
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      received += (chunk as Buffer).length;
      if (!killed && received > 8 * 1024 * 1024) {
        killed = true;
        await cluster.kill(server, 'SIGKILL');
      }
    }
    expect(killed).toBe(true);
    expect(received).toBe(data.length);
    expect(hash.digest('hex')).toBe(stored.body.sha256);
    expect(cluster.log(outsider)).toMatch(/copy failed mid-download; resuming from another/);
  });
});
