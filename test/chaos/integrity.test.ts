import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster, waitFor } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';
import {
  FILE_BACKED_MIN as FILE_BACKED,
  blobPath,
  flipByte,
  flipInlineByte,
  inlineBytes,
} from '../helpers/copies';

const FAST = { failureTimeoutMs: 3_000, gossipIntervalMs: 200 };

function fileSha(path: string): string | undefined {
  return existsSync(path) ? sha256(readFileSync(path)) : undefined;
}

describe('bitrot', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 3,
      ...FAST,
      args: ['--repair-interval-ms', '500', '--scrub-interval-ms', '1500'],
    });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('never serves a damaged copy, and replaces it with a good one', async () => {
    const data = randomBytes(FILE_BACKED);
    const res = await upload(cluster.url(0), data, 'rot.bin');
    expect(res.status).toBe(201);
    const path = blobPath(cluster.node(0).dataDir, res.body.id);
    flipByte(path, 1234);
    expect(fileSha(path)).not.toBe(sha256(data));

    for (let i = 0; i < 3; i++) {
      const back = await download(cluster.url(0), res.body.id);
      expect(back.status).toBe(200);
      expect(sha256(back.data)).toBe(sha256(data));
    }
    await waitFor(() => fileSha(path) === sha256(data), 20_000, 'the damaged copy to be replaced');
    const quarantined = readdirSync(join(cluster.node(0).dataDir, 'quarantine'));
    expect(quarantined.some((name) => name.startsWith(res.body.id))).toBe(true);
  });

  it('never serves a damaged small copy kept in SQLite, and replaces it with a good one', async () => {
    const data = randomBytes(20_000);
    const res = await upload(cluster.url(0), data, 'small-rot.bin');
    expect(res.status).toBe(201);
    const dir = cluster.node(0).dataDir;
    expect(inlineBytes(dir, res.body.id)?.equals(data)).toBe(true);
    flipInlineByte(dir, res.body.id, 17_000);

    for (let i = 0; i < 3; i++) {
      const back = await download(cluster.url(0), res.body.id);
      expect(back.status).toBe(200);
      expect(sha256(back.data)).toBe(sha256(data));
    }
    await waitFor(
      () => inlineBytes(dir, res.body.id)?.equals(data) === true,
      20_000,
      'the damaged small copy to be replaced',
    );
    const quarantined = readdirSync(join(dir, 'quarantine')).filter((n) => n.startsWith(res.body.id));
    expect(quarantined.map((n) => sha256(readFileSync(join(dir, 'quarantine', n))))).not.toContain(
      sha256(data),
    );
    expect(quarantined.length).toBeGreaterThan(0);
  });

  it('finds damage with the scrubber alone, without any read', async () => {
    const data = randomBytes(FILE_BACKED + 32 * 1024);
    const res = await upload(cluster.url(1), data, 'scrubbed.bin');
    const path = blobPath(cluster.node(2).dataDir, res.body.id);
    flipByte(path, 0);
    await waitFor(() => fileSha(path) === sha256(data), 20_000, 'the scrubber to find and replace the copy');
  });

  it('cuts a large download off rather than complete it from a damaged copy', async () => {
    const data = randomBytes(20 * 1024 * 1024);
    const res = await upload(cluster.url(0), data, 'large-rot.bin');
    const path = blobPath(cluster.node(1).dataDir, res.body.id);
    flipByte(path, 5_000_000);
    const back = await download(cluster.url(1), res.body.id).catch(() => undefined);
    // Either the transfer fails (the client can tell), or it is whole and correct; never whole and wrong.
    if (back && back.status === 200 && back.data.length === data.length) {
      expect(sha256(back.data)).toBe(sha256(data));
    }
    await waitFor(() => fileSha(path) === sha256(data), 30_000, 'the large copy to be replaced');
  });
});

describe('crash safety', () => {
  let cluster: TestCluster;

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('after SIGKILL and restart: temp files gone, stray blobs gone, missing blobs fetched again', async () => {
    cluster = await TestCluster.start({ nodes: 3, ...FAST, args: ['--repair-interval-ms', '500'] });
    const sums = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      const data = randomBytes(FILE_BACKED + i);
      const res = await upload(cluster.url(0), data, `c-${i}.bin`);
      sums.set(res.body.id, sha256(data));
    }
    const node = cluster.node(1);
    await cluster.kill(1, 'SIGKILL');
    const [lostId] = [...sums.keys()];
    const lostPath = blobPath(node.dataDir, lostId!);
    writeFileSync(lostPath, ''); // a row whose blob is gone (truncated)
    const strayPath = blobPath(node.dataDir, 'strayblobwithoutarow');
    writeFileSync(strayPath, 'left by an upload that never committed');
    writeFileSync(join(node.dataDir, 'tmp', '0123456789abcdef0123456789abcdef'), 'half an upload');

    await cluster.restart(1);
    // The node serves (and may already be pulling the lost copy into tmp/) as soon as it is ready,
    // so tmp/ need not be empty now; the half upload left by the killed process must be.
    expect(readdirSync(join(node.dataDir, 'tmp'))).not.toContain('0123456789abcdef0123456789abcdef');
    // The start-up check sets strays aside in the background, once the node serves.
    await waitFor(() => !existsSync(strayPath), 10_000, 'the stray blob to be set aside');
    await waitFor(
      () => fileSha(lostPath) === sums.get(lostId!),
      20_000,
      'the missing blob to be fetched again',
    );
    for (const [id, sum] of sums) {
      const back = await download(cluster.url(1), id);
      expect(sha256(back.data)).toBe(sum);
    }
    // Once repair has settled, nothing it received is left behind in tmp/.
    await waitFor(() => readdirSync(join(node.dataDir, 'tmp')).length === 0, 10_000, 'tmp/ to be empty');
  });
});

describe('load while a node is killed and restarted', () => {
  let cluster: TestCluster;

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('loses zero acknowledged uploads', async () => {
    cluster = await TestCluster.start({ nodes: 3, ...FAST, args: ['--repair-interval-ms', '500'] });
    const acknowledged = new Map<string, string>();
    let refused = 0;
    let downloads = 0;
    let downloadFailures = 0;
    // Work goes on until the kill and the restart are both behind us and enough was written,
    // whatever the machine's speed (bounded by a hard cap).
    let chaosDone = false;
    const hardStop = Date.now() + 60_000;
    const keepGoing = (): boolean => Date.now() < hardStop && (!chaosDone || acknowledged.size < 60);
    const uploader = async (node: number): Promise<void> => {
      for (let i = 0; keepGoing() && i < 2000; i++) {
        const data = randomBytes(16 * 1024 + ((i * 131) % 50_000));
        const res = await upload(cluster.url(node), data, `load-${i}.bin`).catch(() => undefined);
        if (res?.status === 201) acknowledged.set(res.body.id, sha256(data));
        else refused++;
      }
    };
    const downloader = async (node: number): Promise<void> => {
      for (let i = 0; keepGoing() && i < 5000; i++) {
        const ids = [...acknowledged.keys()];
        if (ids.length === 0) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const id = ids[(i * 7) % ids.length]!;
        const res = await download(cluster.url(node), id).catch(() => undefined);
        downloads++;
        if (res?.status !== 200 || sha256(res.data) !== acknowledged.get(id)) downloadFailures++;
      }
    };
    const chaos = (async () => {
      await new Promise((r) => setTimeout(r, 2_000));
      await cluster.kill(2, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 2_000));
      await cluster.restart(2);
      chaosDone = true;
    })();
    await Promise.all([uploader(0), uploader(1), uploader(0), downloader(0), downloader(1), chaos]);
    process.stdout.write(
      `load: ${acknowledged.size} acknowledged, ${refused} refused, ${downloads} downloads, ${downloadFailures} failed\n`,
    );
    expect(chaosDone).toBe(true);
    expect(acknowledged.size).toBeGreaterThanOrEqual(60);
    expect(downloadFailures).toBe(0);
    let lost = 0;
    for (const [id, sum] of acknowledged) {
      for (const n of [0, 1, 2]) {
        const back = await download(cluster.url(n), id);
        if (back.status !== 200 || sha256(back.data) !== sum) lost++;
      }
    }
    expect(lost).toBe(0);
  });
});
