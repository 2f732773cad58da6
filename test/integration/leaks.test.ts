import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { TestCluster, waitFor } from '../helpers/cluster';
import { rssOf, upload } from '../helpers/client';

const MiB = 1024 * 1024;

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Sends a raw request and then stops reading (or hangs up) after `holdMs`. */
function stallingClient(port: number, request: string, holdMs: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(request);
      socket.pause(); // read nothing: the node's writes back up
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, holdMs);
    });
    socket.on('error', () => resolve());
  });
}

/**
 * Clients that stop reading a download, or hang up in the middle of an upload, must leave no
 * file descriptor, socket or temp file behind, and no memory growth.
 */
describe('abandoned transfers', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('leak nothing on the node, whether downloads stall or uploads break off', async () => {
    const big = await upload(cluster.url(0), randomBytes(24 * MiB), 'big.bin');
    expect(big.status).toBe(201);
    const node = cluster.node(1);
    const pid = node.proc!.pid!;
    await new Promise((r) => setTimeout(r, 500));
    const fdsBefore = openFds(pid);

    const downloads = Array.from({ length: 20 }, () =>
      stallingClient(node.port, `GET /files/${big.body.id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 1_500),
    );
    const uploads = Array.from({ length: 20 }, (_v, i) =>
      stallingClient(
        node.port,
        'POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n' +
          `Content-Length: ${50 * MiB}\r\n\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="cut-${i}.bin"\r\n\r\n` +
          'x'.repeat(256 * 1024),
        1_000,
      ),
    );
    await Promise.all([...downloads, ...uploads]);
    const peakRss = rssOf(pid);

    const trace: number[] = [];
    await waitFor(
      () => {
        trace.push(openFds(pid));
        return openFds(pid) <= fdsBefore + 2;
      },
      30_000,
      'file descriptors to come back to where they were',
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}: ${fdsBefore} before, then ${trace.filter((_v, i) => i % 10 === 0).join(' ')}`,
      );
    });
    for (const n of cluster.nodes) {
      await waitFor(
        () => readdirSync(join(n.dataDir, 'tmp')).filter((f) => f !== '.write-probe').length === 0,
        15_000,
        `no temp files left on ${n.id}`,
      );
    }
    process.stdout.write(
      `abandoned transfers: fds ${fdsBefore} -> ${openFds(pid)}, peak RSS ${(peakRss / MiB).toFixed(0)} MiB\n`,
    );
    expect(peakRss).toBeLessThan(200 * MiB);
    const list = (await (await fetch(`${cluster.url(0)}/files`)).json()) as {
      files: Array<{ name: string }>;
    };
    expect(list.files.map((f) => f.name)).toEqual(['big.bin']);
  });
});
