import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { promisify } from 'node:util';
import { Agent, FormData, fetch, request } from 'undici';
import { INTERNAL_PREFIX } from '../../shared/protocol';
import { issueCert, makeCa, servedCertificate, type TestCa, type TestCert } from '../helpers/certs';
import { CLI, TestCluster, waitFor } from '../helpers/cluster';
import { sha256 } from '../helpers/client';

const run = promisify(execFile);

/**
 * A cluster speaking HTTPS everywhere, with mutual TLS between nodes and node-to-node routes on
 * ports of their own (--tls-cert, --tls-key, --tls-ca, --mutual-tls, --internal-port): real node
 * processes, certificates made with openssl as an operator would.
 */
describe('TLS between clients and nodes, and mutual TLS between nodes', () => {
  let ca: TestCa;
  let certs: TestCert[];
  let cluster: TestCluster;
  let client: Agent;
  /** The files each node reads (--tls-cert, --tls-key): copies, so a renewal can replace them. */
  let files: TestCert[];

  beforeAll(async () => {
    ca = makeCa();
    certs = [1, 2, 3].map((i) => issueCert(ca, `node-${i}`));
    // The nodes read copies, so the test can swap one node's files for a renewal.
    const live = mkdtempSync(join(tmpdir(), 'shoal-tls-live-'));
    files = certs.map((c, i) => {
      const cert = join(live, `node-${i + 1}.pem`);
      const key = join(live, `node-${i + 1}.key`);
      copyFileSync(c.cert, cert);
      copyFileSync(c.key, key);
      return { cert, key };
    });
    client = new Agent({ connect: { ca: readFileSync(ca.caCert) } });
    cluster = await TestCluster.start({
      nodes: 3,
      tls: { ca: ca.caCert, cert: (i) => files[i]!, mutual: true },
      internalPorts: true,
      dispatcher: client,
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stopAll();
    await client?.close();
  });

  const get = (url: string, init: Parameters<typeof fetch>[1] = {}): ReturnType<typeof fetch> =>
    fetch(url, { ...init, dispatcher: client, signal: AbortSignal.timeout(10_000) });

  it('stores and serves files over HTTPS, replicated over mutual TLS, and the CLI trusts the CA it is given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-tls-cli-'));
    const data = randomBytes(300_000);
    writeFileSync(join(dir, 'secret-report.bin'), data);
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: ca.caCert };
    const put = await run(
      process.execPath,
      [CLI, 'put', join(dir, 'secret-report.bin'), '--to', cluster.url(0), '--json'],
      {
        env,
      },
    );
    const stored = JSON.parse(put.stdout) as { id: string; sha256: string; replicas: string[] };
    expect(stored.sha256).toBe(sha256(data));
    expect(stored.replicas).toHaveLength(3);

    // Every node holds a copy it received from another over the internal (mutual TLS) ports.
    for (let i = 0; i < 3; i++) {
      const res = await get(`${cluster.url(i)}/files/${stored.id}`);
      expect(res.status).toBe(200);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(stored.sha256);
    }
    const info = (await (await get(`${cluster.url(2)}/files/${stored.id}/info`)).json()) as {
      replicas: Array<{ url: string; state: string }>;
    };
    expect(info.replicas.map((r) => r.state)).toEqual(['ok', 'ok', 'ok']);
    // What a client is told is where clients go: the public https URLs, not the internal ports.
    expect(info.replicas.map((r) => r.url).sort()).toEqual([0, 1, 2].map((i) => cluster.url(i)).sort());

    await run(
      process.execPath,
      [CLI, 'get', stored.id, '-o', join(dir, 'back.bin'), '--to', cluster.url(1)],
      { env },
    );
    expect(readFileSync(join(dir, 'back.bin')).equals(data)).toBe(true);

    // Without the CA, the CLI refuses the node's certificate instead of sending anything.
    await expect(
      run(process.execPath, [CLI, 'ls', '--to', cluster.url(0)], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: '' },
      }),
    ).rejects.toMatchObject({ code: expect.any(Number) });
  }, 60_000);

  it('shows clients the public URL of each node and peers the internal one', async () => {
    const view = (await (await get(`${cluster.url(0)}/cluster`)).json()) as {
      nodes: Array<{ id: string; url: string; internalUrl?: string }>;
    };
    for (const [i, n] of cluster.nodes.entries()) {
      const member = view.nodes.find((m) => m.id === n.id);
      expect(member).toMatchObject({ url: cluster.url(i), internalUrl: n.peerUrl });
      expect(n.peerUrl).not.toBe(n.url);
    }
  });

  it('keeps node-to-node routes off the public port', async () => {
    const res = await get(`${cluster.url(0)}${INTERNAL_PREFIX}/status`);
    expect(res.status).toBe(404);
  });

  it('refuses internal calls from a client without a node certificate, or with one from another CA', async () => {
    const internal = cluster.node(0).peerUrl;
    // No certificate at all: a JSON 401 that says why.
    const bare = await get(`${internal}${INTERNAL_PREFIX}/status`);
    expect(bare.status).toBe(401);
    expect(((await bare.json()) as { error: { message: string } }).error.message).toMatch(/certificate/);

    // A certificate from a CA the cluster does not trust, even with the cluster secret's format right.
    const rogueCa = makeCa('rogue-ca');
    const rogue = issueCert(rogueCa, 'node-9');
    const rogueAgent = new Agent({
      connect: { ca: readFileSync(ca.caCert), cert: readFileSync(rogue.cert), key: readFileSync(rogue.key) },
    });
    try {
      const res = await request(`${internal}${INTERNAL_PREFIX}/status`, { dispatcher: rogueAgent });
      expect(res.statusCode).toBe(401);
      await res.body.dump();
    } finally {
      await rogueAgent.close();
    }

    // A node's own certificate gets through TLS, and then still needs the signed request.
    const mine = new Agent({
      connect: {
        ca: readFileSync(ca.caCert),
        cert: readFileSync(certs[1]!.cert),
        key: readFileSync(certs[1]!.key),
      },
    });
    try {
      const res = await request(`${internal}${INTERNAL_PREFIX}/status`, { dispatcher: mine });
      expect(res.statusCode).toBe(401);
      expect(((await res.body.json()) as { error: { message: string } }).error.message).toMatch(/signature/);
    } finally {
      await mine.close();
    }
  });

  it('refuses plain HTTP on a TLS port', async () => {
    const plain = cluster.url(0).replace('https://', 'http://');
    await expect(fetch(`${plain}/healthz`, { signal: AbortSignal.timeout(5_000) })).rejects.toThrow();
  });

  it('takes a renewed certificate without a restart, and the cluster keeps replicating', async () => {
    const before = await servedCertificate(cluster.node(0).port, ca.caCert);
    const renewed = issueCert(ca, 'node-1');
    // As the kubelet updates a mounted Secret: the files change under the running node.
    const target = files[0]!;
    writeFileSync(target.key, readFileSync(renewed.key));
    writeFileSync(target.cert, readFileSync(renewed.cert));
    let after: PeerCertificate | undefined;
    await waitFor(
      async () => {
        after = await servedCertificate(cluster.node(0).port, ca.caCert);
        return after.serialNumber !== before.serialNumber;
      },
      15_000,
      'node-1 to serve its renewed certificate',
    );
    // Internal port too, and the peers still reach it.
    expect(
      (await servedCertificate(Number(new URL(cluster.node(0).peerUrl).port), ca.caCert)).serialNumber,
    ).toBe(after!.serialNumber);
    const form = new FormData();
    form.append('file', new Blob([randomBytes(50_000)]), 'after-renewal.bin');
    const res = await get(`${cluster.url(1)}/files`, { method: 'POST', body: form });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { id: string; replicas: string[] };
    expect(body.replicas).toContain('node-1');
    expect((await get(`${cluster.url(0)}/files/${body.id}`)).status).toBe(200);
    expect(cluster.log(0)).toMatch(/TLS certificate reloaded/);
  }, 60_000);
});
