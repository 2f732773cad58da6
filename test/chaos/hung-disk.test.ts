import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster, getJson, waitFor } from '../helpers/cluster';
import { upload } from '../helpers/client';

/**
 * A data dir whose writes stop answering (a stuck volume, an NFS server gone away) rather than
 * failing. The node's write probe (tmp/.write-probe, every 2 s) is made to block for real: the
 * test puts a FIFO with no reader at the probe's path, so the probe's open() waits in the kernel
 * like a write to a hung device. The node must notice within its hang limit (10 s), say so on
 * /readyz, announce that it takes no new copies, keep answering (no probe piles up behind the
 * first), and recover once the write returns.
 */
interface View {
  nodes: Array<{ id: string; full?: boolean; ready?: boolean }>;
}

describe('a node whose data dir writes hang', () => {
  let cluster: TestCluster;
  let fifo: string | undefined;

  afterAll(async () => {
    // Let a still-blocked probe go, so the node can stop.
    if (fifo && existsSync(fifo)) {
      closeSync(openSync(fifo, 'r+'));
      unlinkSync(fifo);
    }
    await cluster?.stopAll();
  });

  it('reports the hang, takes no new copies, keeps answering, and recovers when writes return', async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    const hung = cluster.node(2);
    fifo = join(hung.dataDir, 'tmp', '.write-probe');
    // Between two probes (each deletes its file), put the FIFO in place.
    await waitFor(
      () => {
        try {
          execFileSync('mkfifo', [fifo!], { stdio: 'ignore' });
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      'a moment between two write probes',
    );
    const hungAt = Date.now();

    let readiness: { reason?: string } = {};
    await waitFor(
      async () => {
        const res = await fetch(`${hung.url}/readyz`);
        readiness = (await res.json()) as typeof readiness;
        return res.status === 503;
      },
      20_000,
      'the node to report the hang',
    );
    const detectedAfterMs = Date.now() - hungAt;
    expect(readiness.reason).toMatch(/hang/);
    // It is not frozen: liveness answers, so an orchestrator does not kill a node peers can read.
    expect((await fetch(`${hung.url}/healthz`)).status).toBe(200);

    await waitFor(
      async () => {
        const view = await getJson<View>(`${cluster.url(0)}/cluster`);
        return view?.nodes.find((n) => n.id === hung.id)?.full === true;
      },
      10_000,
      'the peers to hear that it takes no new copies',
    );
    await new Promise((r) => setTimeout(r, 1_000));
    for (let i = 0; i < 4; i++) {
      const res = await upload(cluster.url(i % 2), randomBytes(10_000), `during-hang-${i}.bin`);
      expect(res.status).toBe(201);
      expect(res.body.replicas).not.toContain(hung.id);
    }

    // The write returns (a reader appears, the FIFO goes): the node is ready again by itself.
    closeSync(openSync(fifo, 'r+'));
    unlinkSync(fifo);
    const releasedAt = Date.now();
    await waitFor(
      async () => (await fetch(`${hung.url}/readyz`)).status === 200,
      15_000,
      'the node to be ready again',
    );
    await waitFor(
      async () => {
        const view = await getJson<View>(`${cluster.url(0)}/cluster`);
        return view?.nodes.find((n) => n.id === hung.id)?.full === false;
      },
      10_000,
      'the peers to hear that it takes copies again',
    );
    process.stdout.write(
      `hung disk: reported after ${detectedAfterMs} ms; ready again ${Date.now() - releasedAt} ms after the write returned\n`,
    );
    // /cluster shows each node's own word; the writers' membership hears it by gossip (200 ms).
    await new Promise((r) => setTimeout(r, 1_000));
    const after = await upload(cluster.url(0), randomBytes(10_000), 'after-hang.bin');
    expect(after.status).toBe(201);
    expect(after.body.replicas).toContain(hung.id);
  }, 90_000);
});
