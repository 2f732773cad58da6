import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fetch as undiciFetch, type Dispatcher } from 'undici';

/**
 * A real Shoal cluster for tests: every node is its own `node dist/.../cli.js node` process with
 * its own data dir, port and log file on 127.0.0.1. Tests kill them for real.
 */

export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above ' + __dirname);
    dir = parent;
  }
  return dir;
}

export const CLI = join(repoRoot(), 'dist/services/storage-node/src/cli.js');
export const SECRET = 'test-cluster-secret-0123456789';

/** Ports this process has handed out: the kernel may offer a port again as soon as it is closed. */
const handedOut = new Set<number>();

/**
 * A port free now on 127.0.0.1, and never one this process handed out before: two nodes of one
 * cluster once got the same port, and the second could not listen (EADDRINUSE).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((res, rej) => {
      const srv = createServer();
      srv.unref();
      srv.on('error', rej);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

export interface NodeHandle {
  id: string;
  port: number;
  address: string;
  /** Command prefix (e.g. `ip netns exec <ns>`) or empty. */
  wrap: string[];
  url: string;
  /** Where peers reach it: `url`, or its internal listener (ClusterOptions.internalPorts). */
  peerUrl: string;
  /** Its S3 listener (ClusterOptions.s3). */
  s3Url: string | undefined;
  dataDir: string;
  logFile: string;
  proc: ChildProcess | undefined;
  exit: Promise<number | null> | undefined;
}

export interface ClusterOptions {
  nodes: number;
  replicas?: number;
  writeQuorum?: number;
  failureTimeoutMs?: number;
  gossipIntervalMs?: number;
  apiKeys?: string[];
  maxFileSize?: number;
  /** Extra flags for every node. */
  args?: string[];
  /** Called with a node's data dir before its first start (to mount a file system there, say). */
  prepareDataDir?: (dir: string, index: number) => void | Promise<void>;
  /** Run node i (0-based) on its own network host: address and command prefix. */
  host?: (i: number) => { address: string; wrap: string[] };
  env?: Record<string, string>;
  /** Flags for the node runtime itself (V8 and Node options), before the script. */
  runtimeFlags?: string[];
  /** HTTPS: the CA and node i's certificate (--tls-ca, --tls-cert, --tls-key; --mutual-tls too). */
  tls?: { ca: string; cert: (i: number) => { cert: string; key: string }; mutual?: boolean };
  /** How this test process reaches the nodes (an undici Agent that trusts the test CA). */
  dispatcher?: Dispatcher;
  /** Node-to-node routes on a port of their own (--internal-port); seeds name those ports. */
  internalPorts?: boolean;
  /** An S3 listener on every node (--s3-port), at NodeHandle.s3Url. */
  s3?: boolean;
  /** How long a node may take to answer /readyz after it is spawned (default 20 s). */
  startTimeoutMs?: number;
}

export class TestCluster {
  readonly nodes: NodeHandle[] = [];
  readonly root: string;

  private constructor(private readonly options: ClusterOptions) {
    this.root = mkdtempSync(join(tmpdir(), 'shoal-test-'));
  }

  static async start(options: ClusterOptions): Promise<TestCluster> {
    const cluster = new TestCluster(options);
    try {
      for (let i = 0; i < options.nodes; i++) await cluster.createNode();
      await Promise.all(cluster.nodes.map((n) => cluster.launch(n)));
      await cluster.waitForConvergence();
    } catch (err) {
      // The caller gets no cluster to stop: the nodes that did start must not outlive the test
      // (jest then waits for them and never exits).
      await cluster.stopAll().catch(() => undefined);
      throw err;
    }
    return cluster;
  }

  url(i: number): string {
    return this.node(i).url;
  }

  node(i: number): NodeHandle {
    const n = this.nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  /** Adds and starts a new node that joins through the first running node. */
  async addNode(): Promise<NodeHandle> {
    const n = await this.createNode();
    await this.launch(n);
    return n;
  }

  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const n = this.node(i);
    if (!n.proc || !n.exit) return null;
    n.proc.kill(signal);
    const code = await n.exit;
    n.proc = undefined;
    n.exit = undefined;
    return code;
  }

  /**
   * Starts node i again on its data dir (SIGKILLing it first if it runs) and waits until it is
   * ready, or, with `{ ready: false }`, only until it answers /healthz (a node that cannot catch
   * up with its peers stays not ready).
   */
  async restart(i: number, { ready = true }: { ready?: boolean } = {}): Promise<void> {
    const n = this.node(i);
    if (n.proc) await this.kill(i, 'SIGKILL');
    await this.launch(n, ready ? '/readyz' : '/healthz');
  }

  running(): NodeHandle[] {
    return this.nodes.filter((n) => n.proc !== undefined);
  }

  /** Waits until every running node sees every running node as alive. */
  async waitForConvergence(timeoutMs = 20_000): Promise<void> {
    const running = this.running();
    await waitFor(
      async () => {
        for (const n of running) {
          const view = await getJson<{ nodes: Array<{ id: string; state: string }> }>(
            `${n.url}/cluster`,
            this.authHeaders(),
            this.options.dispatcher,
          );
          if (!view) return false;
          for (const other of running) {
            if (!view.nodes.some((m) => m.id === other.id && m.state === 'alive')) return false;
          }
        }
        return true;
      },
      timeoutMs,
      'cluster views to converge',
    );
  }

  /** Waits until `viewer` sees node `id` in `state`. */
  async waitForState(viewer: number, id: string, state: string, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      async () => {
        const view = await getJson<{ nodes: Array<{ id: string; state: string }> }>(
          `${this.url(viewer)}/cluster`,
          this.authHeaders(),
          this.options.dispatcher,
        );
        return view?.nodes.some((m) => m.id === id && m.state === state) ?? false;
      },
      timeoutMs,
      `node ${id} to be ${state}`,
    );
  }

  authHeaders(): Record<string, string> {
    // A key may be given with its role (admin:KEY); clients send the key alone.
    const key = this.options.apiKeys?.[0]?.replace(/^(read|write|admin):/, '');
    return key ? { authorization: `Bearer ${key}` } : {};
  }

  log(i: number): string {
    try {
      return readFileSync(this.node(i).logFile, 'utf8');
    } catch {
      return '';
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((n, i) => (n.proc ? this.kill(i, 'SIGKILL') : Promise.resolve(null))));
    // SHOAL_KEEP_TEST_DATA=1 keeps data dirs and logs for a post-mortem.
    if (process.env.SHOAL_KEEP_TEST_DATA) process.stdout.write(`kept test cluster data in ${this.root}\n`);
    else rmSync(this.root, { recursive: true, force: true });
  }

  private async createNode(): Promise<NodeHandle> {
    const index = this.nodes.length + 1;
    const host = this.options.host?.(index - 1);
    const port = host ? 7000 : await freePort();
    const internalPort = this.options.internalPorts ? (host ? 7100 : await freePort()) : undefined;
    const s3Port = this.options.s3 ? (host ? 7200 : await freePort()) : undefined;
    const dataDir = join(this.root, `node-${index}`);
    const base = `${this.options.tls ? 'https' : 'http'}://${host?.address ?? '127.0.0.1'}`;
    const n: NodeHandle = {
      id: `node-${index}`,
      port,
      address: host?.address ?? '127.0.0.1',
      wrap: host?.wrap ?? [],
      url: `${base}:${port}`,
      peerUrl: `${base}:${internalPort ?? port}`,
      s3Url: s3Port === undefined ? undefined : `${base}:${s3Port}`,
      dataDir,
      logFile: join(this.root, `node-${index}.log`),
      proc: undefined,
      exit: undefined,
    };
    this.nodes.push(n);
    return n;
  }

  private async launch(n: NodeHandle, until: '/readyz' | '/healthz' = '/readyz'): Promise<void> {
    const o = this.options;
    const seeds = this.nodes.filter((m) => m !== n).map((m) => m.peerUrl);
    const index = this.nodes.indexOf(n);
    const tls = o.tls && { ...o.tls.cert(index), ca: o.tls.ca };
    const args = [
      ...(o.runtimeFlags ?? []),
      CLI,
      'node',
      '--host',
      n.address,
      '--port',
      String(n.port),
      '--node-id',
      n.id,
      '--data-dir',
      n.dataDir,
      '--advertise-url',
      n.url,
      '--seeds',
      seeds.join(','),
      '--cluster-secret',
      SECRET,
      '--replicas',
      String(o.replicas ?? 3),
      '--write-quorum',
      String(o.writeQuorum ?? 2),
      '--failure-timeout-ms',
      String(o.failureTimeoutMs ?? 3_000),
      '--gossip-interval-ms',
      String(o.gossipIntervalMs ?? 200),
      ...(o.apiKeys ? ['--api-keys', o.apiKeys.join(',')] : []),
      ...(o.maxFileSize ? ['--max-file-size', String(o.maxFileSize)] : []),
      ...(tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key, '--tls-ca', tls.ca] : []),
      ...(tls && o.tls?.mutual ? ['--mutual-tls'] : []),
      ...(n.peerUrl === n.url ? [] : ['--internal-port', new URL(n.peerUrl).port]),
      ...(n.s3Url === undefined ? [] : ['--s3-port', new URL(n.s3Url).port]),
      ...(o.args ?? []),
    ];
    if (!existsSync(n.dataDir)) {
      mkdirSync(n.dataDir, { recursive: true });
      await o.prepareDataDir?.(n.dataDir, index);
    }
    const fd = openSync(n.logFile, 'a');
    const [command, ...prefix] = [...n.wrap, process.execPath];
    const proc = spawn(command!, [...prefix, ...args], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, SHOAL_LOG_LEVEL: process.env.SHOAL_LOG_LEVEL ?? 'info', ...o.env },
    });
    closeSync(fd);
    n.proc = proc;
    n.exit = new Promise((res) => proc.once('exit', (code) => res(code)));
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`${n.id} exited with ${proc.exitCode}:\n${this.tail(n)}`);
        const res = await httpGet(`${n.url}${until}`, {}, o.dispatcher).catch(() => undefined);
        return res?.status === 200;
      },
      o.startTimeoutMs ?? 20_000,
      `${n.id} to answer ${until}`,
    );
  }

  private tail(n: NodeHandle): string {
    try {
      return readFileSync(n.logFile, 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '';
    }
  }
}

export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A GET with the global fetch, or with undici's when the test brings its own dispatcher (a CA to trust). */
function httpGet(
  url: string,
  headers: Record<string, string>,
  dispatcher: Dispatcher | undefined,
): Promise<{ ok: boolean; status: number; json(): Promise<unknown> }> {
  const signal = AbortSignal.timeout(5_000);
  return dispatcher ? undiciFetch(url, { headers, signal, dispatcher }) : fetch(url, { headers, signal });
}

export async function getJson<T>(
  url: string,
  headers: Record<string, string> = {},
  dispatcher?: Dispatcher,
): Promise<T | undefined> {
  try {
    const res = await httpGet(url, headers, dispatcher);
    if (!res.ok) return undefined;
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

export function resolveFromRoot(...parts: string[]): string {
  return resolve(repoRoot(), ...parts);
}
