import { connect, type Socket } from 'node:net';
import { TestCluster, getJson } from '../helpers/cluster';

/**
 * Slow uploads hold node-to-node connections: each streams to its replicas as its bytes come in,
 * a byte a second. Membership must not wait behind them. With more slow uploads than a node has
 * data connections to a peer, gossip and probes still go out on their own connections, and no
 * node suspects another. (Probes wait 1 s: a busy machine alone does not make a suspect; a probe
 * queued behind the uploads' connections waits for good.)
 */
describe('slow uploads that hold every data connection to a peer', () => {
  let cluster: TestCluster;
  const sockets: Socket[] = [];
  const trickles: NodeJS.Timeout[] = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, failureTimeoutMs: 8_000, gossipIntervalMs: 1_000 });
    await cluster.waitForConvergence();
  });

  afterAll(async () => {
    trickles.forEach(clearInterval);
    for (const s of sockets) s.destroy();
    await cluster?.stopAll();
  });

  /** Every node's view of every node, as `viewer:node=state`, for those not alive. */
  async function notAlive(): Promise<string[]> {
    const found: string[] = [];
    for (let viewer = 0; viewer < 3; viewer++) {
      const view = await getJson<{ nodes: Array<{ id: string; state: string }> }>(
        `${cluster.url(viewer)}/cluster`,
      );
      if (!view) found.push(`${viewer}:unreachable`);
      for (const n of view?.nodes ?? []) if (n.state !== 'alive') found.push(`${viewer}:${n.id}=${n.state}`);
    }
    return found;
  }

  it('keeps every node alive in every view, and takes uploads, while 80 uploads trickle', async () => {
    const { port } = cluster.node(0);
    for (let i = 0; i < 80; i++) {
      // From two client addresses: one may hold at most 64 uploads on a node.
      const s = await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 2)}` }, () =>
          resolve(socket),
        );
        socket.on('error', () => undefined);
        socket.once('error', reject);
      });
      s.write(
        'POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n' +
          'Content-Length: 50000000\r\n\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n' +
          `Content-Type: application/octet-stream\r\n\r\n${'x'.repeat(300_000)}`,
      );
      trickles.push(setInterval(() => s.write('x'), 1_000));
      sockets.push(s);
    }
    // The replicas hold the uploads' streams: node 0 has more open to each peer than its 64 data
    // connections, so the last ones wait for a connection.
    const samples: string[][] = [];
    // Each node probes each other one about every 2 s.
    const until = Date.now() + 8_000;
    while (Date.now() < until) {
      samples.push(await notAlive());
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(samples.flat()).toEqual([]);
    expect(samples.length).toBeGreaterThanOrEqual(5);
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('through the crowd')]), 'ok.txt');
    expect((await fetch(`${cluster.url(1)}/files`, { method: 'POST', body: form })).status).toBe(201);
  });
});
