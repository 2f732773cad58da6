import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getJson, repoRoot, waitFor } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';
import { StatefulSetSim } from '../helpers/k8s-sim';
import { PeerClient, type PeerError } from '../../services/storage-node/src/peers/peer-client';
import { kustomize, Rendering } from '../helpers/kustomize';
import { NETLAB_NEEDS, NetLab } from '../helpers/netlab';
import { systemDescribe } from '../helpers/requirements';

/**
 * What Kubernetes does to Shoal, with real node processes configured exactly as the manifests
 * configure pods (test/helpers/k8s-sim.ts): deploy the dev overlay's three pods, scale 3 -> 5 (the
 * new pods find the cluster through the headless Service's DNS name and receive their share), rotate
 * the API keys through the mounted Secret, roll every pod one at a time under reads and writes
 * (nothing unreadable, nothing copied that did not need copying), then drain and remove two pods
 * (5 -> 3) with no moment where any file has fewer copies, and nothing lost.
 */
const describeSystem = systemDescribe({ needs: NETLAB_NEEDS, optOut: 'SHOAL_SKIP_NETNS' });

interface FileInfo {
  replicas: Array<{ nodeId: string; state: string }>;
}
interface Listing {
  files: Array<{ id: string; replicas: string[] }>;
}
interface LogLine {
  msg?: string;
  fileId?: string;
  peer?: string;
  bytes?: number;
}

describeSystem('Shoal on a simulated Kubernetes', () => {
  let root: string;
  let lab: NetLab;
  let sim: StatefulSetSim;
  let key: string;
  let replicas: number;
  let writeQuorum: number;
  /** The pods' node-to-node port (SHOAL_INTERNAL_PORT). */
  let internalPort: number;
  /** Every acknowledged file: id -> sha256. */
  const files = new Map<string, string>();

  const auth = (): Record<string, string> => ({ authorization: `Bearer ${key}` });

  const json = <T>(url: string): Promise<T | undefined> => getJson<T>(url, auth());

  async function put(tag: string, bytes: number): Promise<{ id: string; status: number }> {
    const data = randomBytes(bytes);
    const res = await upload(sim.serviceUrl(), data, `${tag}.bin`, auth());
    if (res.status === 201) files.set(res.body.id, sha256(data));
    return { id: res.body.id, status: res.status };
  }

  /** Per pod: the files it holds a copy of (from the cluster-wide listing). */
  async function holders(): Promise<Map<string, string[]> | undefined> {
    const list = await json<Listing>(`${sim.serviceUrl()}/files?limit=1000`);
    if (!list || list.files.length !== files.size) return undefined;
    return new Map(list.files.map((f) => [f.id, f.replicas]));
  }

  /** True when every file has exactly its home copies (GET /files/<id>/info: home members first). */
  let unsettled = '';
  async function settled(): Promise<boolean> {
    for (const id of files.keys()) {
      const url = sim.serviceUrl();
      const info = await json<FileInfo>(`${url}/files/${id}/info`);
      if (!info || info.replicas.length !== replicas || !info.replicas.every((r) => r.state === 'ok')) {
        unsettled = `${id} via ${url}: ${JSON.stringify(info?.replicas)}`;
        return false;
      }
    }
    return true;
  }
  /** Waits until settled(), and says which file was not when it times out. */
  async function waitSettled(timeoutMs: number, what: string): Promise<void> {
    try {
      await waitFor(settled, timeoutMs, what);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last unsettled: ${unsettled}`, { cause: err });
    }
  }

  async function converged(count: number): Promise<boolean> {
    for (const p of sim.pods.values()) {
      const view = await json<{ nodes: Array<{ id: string; state: string }> }>(
        `${sim.url(p.ordinal)}/cluster`,
      );
      const alive = view?.nodes.filter((n) => n.state === 'alive').map((n) => n.id) ?? [];
      if (alive.length !== count) return false;
    }
    return true;
  }

  /** Log lines every pod wrote after `since` (byte offsets per log file). */
  function logSince(since: Map<string, number>): LogLine[] {
    const lines: LogLine[] = [];
    for (const [file, offset] of since) {
      const text = readFileSync(file).subarray(offset).toString('utf8');
      for (const line of text.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(line) as LogLine);
        } catch {
          // a line cut by a SIGKILL
        }
      }
    }
    return lines;
  }

  function logOffsets(): Map<string, number> {
    return new Map(
      Array.from({ length: 5 }, (_, i) => join(root, `shoal-${i}.log`)).map((f) => [
        f,
        statSync(f, { throwIfNoEntry: false })?.size ?? 0,
      ]),
    );
  }

  /** Reads every acknowledged file in turn through the Service until stopped; counts failures. */
  function reader(): { stop: () => Promise<{ reads: number; failures: string[] }> } {
    let running = true;
    let reads = 0;
    const failures: string[] = [];
    const done = (async () => {
      while (running) {
        for (const [id, sum] of [...files]) {
          if (!running) break;
          const url = sim.serviceUrl();
          const res = await download(url, id, auth()).catch((err: Error) => ({ status: 0, err }));
          reads++;
          if (res.status !== 200 || !('data' in res) || sha256(res.data) !== sum) {
            failures.push(`${id} via ${url}: ${res.status}`);
          }
        }
      }
    })();
    return {
      stop: async () => {
        running = false;
        await done;
        return { reads, failures };
      },
    };
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'shoal-k8s-sim-'));
    // Deployed the way a user deploys: an overlay on the dev overlay that replaces the placeholder
    // secrets (docs/kubernetes.md, "Secrets"; with them the pods refuse to start). It also shortens
    // the repair round and the gossip period, so the test takes a minute rather than five.
    const overlay = join(root, 'overlay');
    mkdirSync(overlay);
    writeFileSync(join(overlay, 'cluster-secret.txt'), `${randomBytes(32).toString('hex')}\n`);
    // An admin key: the scale-down below drains pods, which only an admin key may do.
    writeFileSync(join(overlay, 'api-keys.txt'), `# the test\nadmin:${randomBytes(24).toString('hex')}\n`);
    writeFileSync(
      join(overlay, 'kustomization.yaml'),
      [
        'resources:',
        `  - ${join(repoRoot(), 'k8s/overlays/dev')}`,
        'configMapGenerator:',
        '  - name: shoal-config',
        '    behavior: merge',
        '    literals:',
        '      - SHOAL_REPAIR_INTERVAL_MS=1000',
        '      - SHOAL_GOSSIP_INTERVAL_MS=250',
        'secretGenerator:',
        '  - name: shoal-cluster-secret',
        '    behavior: replace',
        '    files:',
        '      - secret=cluster-secret.txt',
        '    options:',
        '      disableNameSuffixHash: true',
        '  - name: shoal-api-keys',
        '    behavior: replace',
        '    files:',
        '      - keys=api-keys.txt',
        '    options:',
        '      disableNameSuffixHash: true',
        '',
      ].join('\n'),
    );
    const r = new Rendering(kustomize(overlay), 'shoal-dev');
    const config = r.config('shoal-0');
    replicas = config.replicas;
    writeQuorum = config.writeQuorum;
    internalPort = config.internalPort ?? config.port;
    key =
      (r.secretData('shoal-api-keys').keys ?? '')
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l !== '' && !l.startsWith('#'))
        ?.replace(/^admin:/, '') ?? '';
    lab = NetLab.create(7);
    sim = new StatefulSetSim(r, lab, root);
    await sim.scale(r.statefulSet.spec?.replicas ?? 3);
    await waitFor(() => converged(3), 30_000, 'three pods to see each other');
  }, 90_000);

  afterAll(async () => {
    await sim?.stopAll();
    lab?.destroy();
    if (process.env.SHOAL_KEEP_TEST_DATA) process.stdout.write(`kept pod volumes and logs in ${root}\n`);
    else if (root) rmSync(root, { recursive: true, force: true });
  });

  it('starts the three pods of the manifests, which find each other through the headless Service', async () => {
    expect(sim.pods.size).toBe(3);
    for (let i = 0; i < 30; i++) expect((await put(`first-${i}`, 8_000 + i * 6_000)).status).toBe(201);
    for (let i = 0; i < 2; i++) expect((await put(`big-${i}`, 3 * 1024 * 1024)).status).toBe(201);
    await waitSettled(30_000, 'three copies of every file');
  }, 90_000);

  it('scales 3 -> 5: the new pods join through DNS and receive their share, and only they', async () => {
    const since = logOffsets();
    const started = Date.now();
    await sim.scale(5);
    await waitFor(() => converged(5), 30_000, 'five pods to see each other');
    await waitSettled(60_000, 'every file to have exactly its home copies on five pods');
    const seconds = (Date.now() - started) / 1000;

    const held = await holders();
    const share = (pod: string) => [...(held?.values() ?? [])].filter((h) => h.includes(pod)).length;
    const ideal = (files.size * replicas) / 5;
    process.stdout.write(
      `scale 3->5 settled in ${seconds.toFixed(1)} s; copies per pod ${[0, 1, 2, 3, 4]
        .map((i) => share(`shoal-${i}`))
        .join('/')} (ideal ${ideal.toFixed(1)})\n`,
    );
    expect(share('shoal-3')).toBeGreaterThan(ideal / 3);
    expect(share('shoal-4')).toBeGreaterThan(ideal / 3);
    // Adding pods moves copies to them, never between the pods that were already there, and each
    // copy once: files that already have their copies move only once a leader's view has stopped
    // growing for a settle period, so a leader that knows one new pod but not yet the other does
    // not copy a file to the first that the second then takes over (ARCHITECTURE.md, anti-entropy).
    const copies = logSince(since).filter((l) => l.msg === 'copy made' && (l.bytes ?? 0) > 0);
    process.stdout.write(
      `scale 3->5: ${copies.length} copies made for a final share of ${share('shoal-3') + share('shoal-4')}\n`,
    );
    expect(copies.length).toBe(share('shoal-3') + share('shoal-4'));
    expect(new Set(copies.map((c) => c.peer))).toEqual(new Set(['shoal-3', 'shoal-4']));
  }, 120_000);

  it('rotates the API keys through the mounted Secret, on every pod, without a restart', async () => {
    const old = key;
    const pids = [...sim.pods.values()].map((p) => p.proc.pid);
    const fresh = `rotated-${randomBytes(12).toString('hex')}`;
    sim.updateSecret('shoal-api-keys', { keys: `# rotated by the test\nadmin:${fresh}\n` });
    const status = async (url: string, k: string) =>
      (await fetch(`${url}/cluster`, { headers: { authorization: `Bearer ${k}` } })).status;
    await waitFor(
      async () => {
        for (const p of sim.pods.values()) {
          if ((await status(sim.url(p.ordinal), fresh)) !== 200) return false;
          if ((await status(sim.url(p.ordinal), old)) !== 401) return false;
        }
        return true;
      },
      15_000,
      'every pod to take the new key and refuse the old one',
    );
    key = fresh;
    expect([...sim.pods.values()].map((p) => p.proc.pid)).toEqual(pids);
    expect(sim.exits).toEqual([]);
  }, 30_000);

  it('rotates the cluster secret through the mounted Secret in three applies: no restart, no refused copy', async () => {
    const pids = [...sim.pods.values()].map((p) => p.proc.pid);
    const old = (sim.r.secretData('shoal-cluster-secret').secret ?? '').trim();
    const fresh = randomBytes(32).toString('hex');
    const loads = (logFile: string) =>
      readFileSync(logFile, 'utf8').split('cluster secrets loaded from file').length - 1;
    const before = new Map([...sim.pods.values()].map((p) => [p.logFile, loads(p.logFile)]));
    // docs/kubernetes.md: every pod accepts the new secret, then every pod signs with it, then the
    // old one goes. Each apply reaches every pod before the next.
    const steps = [`${old}\n${fresh}\n`, `${fresh}\n${old}\n`, `${fresh}\n`];
    for (const [i, text] of steps.entries()) {
      sim.updateSecret('shoal-cluster-secret', { secret: text });
      await waitFor(
        () => [...sim.pods.values()].every((p) => loads(p.logFile) === (before.get(p.logFile) ?? 0) + i + 1),
        15_000,
        `every pod to load step ${i + 1} of the rotation`,
      );
      const res = await put(`secret-rotation-${i}`, 20_000);
      expect(res.status).toBe(201);
      const info = await json<FileInfo>(`${sim.serviceUrl()}/files/${res.id}/info`);
      expect(info?.replicas.map((r) => r.state)).toEqual(Array(replicas).fill('ok'));
    }
    // The old secret opens nothing any more.
    const pod = [...sim.pods.values()][0]!;
    const peerUrl = sim.url(pod.ordinal).replace(/:\d+$/, `:${internalPort}`);
    for (const [secret, expected] of [
      [old, 401],
      [fresh, 200],
    ] as const) {
      const client = new PeerClient({ nodeId: 'shoal-9', secret });
      const answer = await client.status(peerUrl, 5_000).then(
        () => 200,
        (err: PeerError) => err.status,
      );
      await client.close();
      expect(answer).toBe(expected);
    }
    expect([...sim.pods.values()].map((p) => p.proc.pid)).toEqual(pids);
    expect(sim.exits).toEqual([]);
  }, 60_000);

  it('rolls every pod one at a time: nothing unreadable, every write taken, nothing copied needlessly', async () => {
    const before = await holders();
    expect(before).toBeDefined();
    const existing = new Set(files.keys());
    const since = logOffsets();
    const reads = reader();
    let writing = true;
    const writeFailures: string[] = [];
    const written: string[] = [];
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const res = await put(`rolling-${i}`, 4_000 + i * 100).catch(() => ({ id: '', status: 0 }));
        if (res.status === 201) written.push(res.id);
        else writeFailures.push(`rolling-${i}: ${res.status}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();

    const restarted: string[] = [];
    await sim.rollingRestart(async (pod) => {
      restarted.push(pod.name);
    });
    writing = false;
    await writer;
    const { reads: count, failures } = await reads.stop();

    expect(restarted).toEqual(['shoal-4', 'shoal-3', 'shoal-2', 'shoal-1', 'shoal-0']);
    expect(sim.exits).toEqual(restarted.map((pod) => ({ pod, code: 0 })));
    expect(failures).toEqual([]);
    expect(writeFailures).toEqual([]);
    expect(written.length).toBeGreaterThan(5);
    expect(count).toBeGreaterThan(files.size);

    // The files that were there before the roll kept exactly their copies: no pod was ever
    // declared dead, so none was copied or dropped.
    const after = await holders();
    for (const id of existing) expect(after?.get(id)).toEqual(before?.get(id));
    const moved = logSince(since).filter(
      (l) => (l.msg === 'copy made' || l.msg === 'surplus copy dropped') && existing.has(l.fileId ?? ''),
    );
    expect(moved).toEqual([]);
    // Files written while a pod was away end up on their home pods, with the stand-ins' extra
    // copies dropped.
    await waitSettled(60_000, 'files written during the roll to reach their home pods');
    process.stdout.write(
      `rolling restart: ${count} reads, ${written.length} uploads, 0 failures; ` +
        `${logSince(since).filter((l) => l.msg === 'copy made').length} copies made, all for files written during the roll\n`,
    );
  }, 240_000);

  it('scales 5 -> 3 by draining each removed pod first: never fewer copies, nothing lost', async () => {
    let fewest = Infinity;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const held = await holders();
        for (const h of held?.values() ?? []) fewest = Math.min(fewest, h.length);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const reads = reader();
    // docs/kubernetes.md, "Scale down with a drain": for each pod, highest first, drain it from
    // inside the pod, then scale past it.
    const timings: string[] = [];
    for (const n of [4, 3]) {
      const started = Date.now();
      const drained = await sim.exec(n, [
        'drain',
        '--wait',
        '--json',
        '--to',
        `http://127.0.0.1:${sim.port}`,
        '--api-key',
        key,
      ]);
      expect({ code: drained.code, stderr: drained.stderr }).toEqual({ code: 0, stderr: '' });
      expect(JSON.parse(drained.stdout)).toMatchObject({ node: `shoal-${n}`, files: 0, done: true });
      const drainedAt = Date.now();
      await sim.scale(n);
      timings.push(
        `shoal-${n} drained in ${((drainedAt - started) / 1000).toFixed(1)} s, ` +
          `gone ${((Date.now() - drainedAt) / 1000).toFixed(1)} s later`,
      );
    }
    watching = false;
    await watcher;
    const { failures } = await reads.stop();

    process.stdout.write(`scale 5->3: ${timings.join('; ')}; fewest copies seen ${fewest}\n`);
    expect(fewest).toBeGreaterThanOrEqual(replicas);
    expect(fewest).toBeGreaterThanOrEqual(writeQuorum);
    expect(failures).toEqual([]);
    expect(sim.exits.slice(-2)).toEqual([
      { pod: 'shoal-4', code: 0 },
      { pod: 'shoal-3', code: 0 },
    ]);
    // Nothing lost: every acknowledged file, read through the Service, with all its copies on
    // the three pods that are left.
    for (const [id, sum] of files) {
      const res = await download(sim.serviceUrl(), id, auth());
      expect({ id, status: res.status, sha256: sha256(res.data) }).toEqual({ id, status: 200, sha256: sum });
    }
    const held = await holders();
    for (const h of held?.values() ?? []) expect([...h].sort()).toEqual(['shoal-0', 'shoal-1', 'shoal-2']);
    expect(held?.size).toBe(files.size);
  }, 180_000);
});
