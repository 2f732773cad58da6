import { connect, type Socket } from 'node:net';
import { TestCluster } from '../helpers/cluster';

/**
 * Slowloris: hundreds of connections that send half a request and then nothing, or trickle an
 * upload body a byte at a time. The node must keep answering /healthz promptly meanwhile.
 */
describe('slow and idle clients', () => {
  let cluster: TestCluster;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await cluster?.stopAll();
  });

  it('keeps answering /healthz while 400 connections dawdle', async () => {
    const { port } = cluster.node(0);
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => resolve(s));
        s.on('error', () => undefined);
        s.once('error', reject);
      });
    for (let i = 0; i < 300; i++) {
      const s = await open();
      s.write('GET /files HTTP/1.1\r\nHost: shoal\r\nX-Slow: '); // headers never finish
      sockets.push(s);
    }
    const trickle: NodeJS.Timeout[] = [];
    for (let i = 0; i < 100; i++) {
      const s = await open();
      s.write(
        'POST /files HTTP/1.1\r\nHost: shoal\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n',
      );
      trickle.push(setInterval(() => s.write('x'), 200));
      sockets.push(s);
    }
    const latencies: number[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        const started = performance.now();
        const res = await fetch(`${cluster.url(0)}/healthz`, { signal: AbortSignal.timeout(5_000) });
        expect(res.status).toBe(200);
        latencies.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      trickle.forEach(clearInterval);
    }
    const worst = Math.max(...latencies);
    process.stdout.write(
      `slow clients: worst /healthz latency ${worst.toFixed(1)} ms over ${latencies.length} probes\n`,
    );
    // Generous: a hang or a starved event loop shows up as seconds, not milliseconds.
    expect(worst).toBeLessThan(1_000);
    // And real work still goes through.
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('still working')]), 'ok.txt');
    expect((await fetch(`${cluster.url(0)}/files`, { method: 'POST', body: form })).status).toBe(201);
  });
});
