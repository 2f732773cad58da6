import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { upload } from '../helpers/client';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Log lines at pino's error level or above. */
function errorLines(log: string): string[] {
  return log.split('\n').filter((l) => /"level":(5|6)0/.test(l));
}

/** Starts an upload of `total` bytes on a raw socket and hangs up after sending `sent` of them. */
function abandonedUpload(port: number, total: number, sent: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        'POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n' +
          `Content-Length: ${total}\r\n\r\n--b\r\n` +
          'Content-Disposition: form-data; name="file"; filename="abandoned.bin"\r\n\r\n',
      );
      socket.write(randomBytes(sent), () => setTimeout(() => socket.destroy(), 200));
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
  });
}

/**
 * Two of three nodes die (SIGKILL) and an upload arrives at the third at once, long before
 * gossip declares them dead: the coordinator still trusts them, starts streaming to them and
 * finds out mid-upload. The client must get 503 quorum_unavailable, as the contract says, never a
 * 500, and nothing of the refused upload may turn up once the nodes are back.
 */
describe('uploads when most nodes just died', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    // A long gossip interval keeps the dead nodes trusted (heard from within three rounds) for
    // a while, and a long failure timeout keeps them from being declared dead during the test.
    cluster = await TestCluster.start({ nodes: 3, gossipIntervalMs: 1_000, failureTimeoutMs: 60_000 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('logs a client that hangs up mid-upload as an everyday event, not an error', async () => {
    await abandonedUpload(cluster.node(0).port, 64 * MiB, 4 * MiB);
    // The coordinator gives up on its replicas' uploads, which the peers see as a client going away.
    await waitFor(
      () => [1, 2].every((i) => /client went away|unexpected error/.test(cluster.log(i))),
      10_000,
      'the peers to log the coordinator hanging up',
    );
    expect(cluster.nodes.map((_n, i) => errorLines(cluster.log(i)))).toEqual([[], [], []]);
    for (const i of [1, 2])
      expect(cluster.log(i)).toMatch(/"level":30,.*"client went away before the answer"/);
  });

  it('refuses an upload with 503 quorum_unavailable and leaves nothing behind', async () => {
    const kept = await upload(cluster.url(0), randomBytes(1000), 'kept.bin');
    expect(kept.status).toBe(201);

    await Promise.all([cluster.kill(1, 'SIGKILL'), cluster.kill(2, 'SIGKILL')]);
    const sizes = [5, 16 * KiB, MiB, 8 * MiB];
    const answers = await Promise.all(
      sizes.map(async (size) => {
        const res = await upload(cluster.url(0), randomBytes(size), `refused-${size}.bin`);
        return { size, status: res.status, code: res.body.error?.code };
      }),
    );
    expect(answers).toEqual(sizes.map((size) => ({ size, status: 503, code: 'quorum_unavailable' })));
    // The node that refused them keeps taking requests.
    expect((await fetch(`${cluster.url(0)}/healthz`)).status).toBe(200);

    await cluster.restart(1);
    await cluster.restart(2);
    await cluster.waitForConvergence();
    for (const n of cluster.nodes) {
      const list = await getJson<{ files: Array<{ name: string }> }>(`${n.url}/files`);
      expect({ node: n.id, files: list?.files.map((f) => f.name) }).toEqual({
        node: n.id,
        files: ['kept.bin'],
      });
      const temp = readdirSync(join(n.dataDir, 'tmp')).filter((f) => f !== '.write-probe');
      expect({ node: n.id, temp }).toEqual({ node: n.id, temp: [] });
    }
    expect(errorLines(cluster.log(0))).toEqual([]);
  });
});
