import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { TestCluster } from '../helpers/cluster';

/**
 * Slowloris: hundreds of connections that send half a request and then nothing, or trickle an
 * upload body a byte at a time. The node must keep answering /healthz promptly meanwhile.
 */
/** A small upload sent from `localAddress` (any 127.x address is this machine): another client. */
function uploadFrom(localAddress: string, port: number, text: string): Promise<number | undefined> {
  const body = `--b\r\nContent-Disposition: form-data; name="file"; filename="ok.txt"\r\n\r\n${text}\r\n--b--\r\n`;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        method: 'POST',
        path: '/files',
        headers: {
          'content-type': 'multipart/form-data; boundary=b',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

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
      s.write('GET /files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '); // headers never finish
      sockets.push(s);
    }
    const trickle: NodeJS.Timeout[] = [];
    const answers: string[] = [];
    for (let i = 0; i < 100; i++) {
      const s = await open();
      const at = answers.push('') - 1;
      s.on('data', (d: Buffer) => (answers[at] += d.toString()));
      s.write(
        'POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n',
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
    // One client address holds at most 64 uploads: the other 36 were refused at once.
    expect(answers.filter((a) => a.startsWith('HTTP/1.1 503')).length).toBe(36);
    expect(answers.filter((a) => a.includes('"too_many_uploads"')).length).toBe(36);
    // And real work from another client still goes through.
    expect(await uploadFrom('127.0.0.2', port, 'still working')).toBe(201);
  });
});
