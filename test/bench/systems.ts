import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { request, type Dispatcher } from 'undici';
import { freePort, type TestCluster } from '../helpers/cluster';
import { sleep, stopChild, withDescendants, type ProcessGroup } from './bench-kit';
import { S3Signer, objectPath, type S3Credentials } from './s3-signer';

/**
 * The systems `npm run bench` puts side by side, behind one interface: Shoal (3 real nodes),
 * Shoal's S3 API (the same nodes, through their S3 listeners), bare3 (baseline-server.ts: 3
 * fsync'd copies, nothing else), OpenStack Swift all-in-one (3 replicas) and nginx (serving
 * bare3's copies from disk; downloads only).
 */

export type SystemName = 'shoal' | 's3' | 'bare3' | 'swift' | 'nginx';

export interface Uploaded {
  id: string;
  via: number;
  sha256: string;
  size: number;
}

export interface SourceFile {
  path: string;
  size: number;
  sha256: string;
  md5: string;
}

export interface SystemUnderTest {
  readonly name: SystemName;
  /** nginx only serves what bare3 stored. */
  readonly takesUploads: boolean;
  /** Base URLs (http://host:port); `via` picks one. */
  readonly endpoints: readonly string[];
  /** Sent with every request (Swift's token). */
  readonly headers: Readonly<Record<string, string>>;
  processGroups(): ProcessGroup[];
  /** The large file, uploaded by curl straight from disk. */
  uploadFile(file: SourceFile, via: number): Promise<TimedUpload>;
  uploadBuffer(data: Buffer, via: number): Promise<Uploaded>;
  /** The URL path a GET of `id` from endpoint `via` goes to (S3: a presigned one, per host). */
  pathOf(id: string, via: number): string;
  /** Resolves once every copy of `id` is in place; false if that did not happen in time. */
  waitForAllCopies(id: string, via: number, timeoutMs: number): Promise<boolean>;
}

export const BIG_TIMEOUTS = { headersTimeout: 120_000, bodyTimeout: 120_000 };
export const SMALL_TIMEOUTS = { headersTimeout: 30_000, bodyTimeout: 30_000 };

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

async function expectStatus(res: Dispatcher.ResponseData, status: number, what: string): Promise<string> {
  const text = await res.body.text();
  if (res.statusCode !== status) throw new Error(`${what} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return text;
}

/** GET `url`; counts (and with `hash`, sha256s) the body. */
export async function download(
  url: string,
  dispatcher: Dispatcher,
  opts: { headers?: Record<string, string>; hash: boolean; big: boolean },
): Promise<{ bytes: number; sha256: string | undefined }> {
  const res = await request(url, {
    dispatcher,
    headers: opts.headers ?? {},
    ...(opts.big ? BIG_TIMEOUTS : SMALL_TIMEOUTS),
  });
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '');
    throw new Error(`GET ${new URL(url).pathname} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  }
  const hash = opts.hash ? createHash('sha256') : undefined;
  let bytes = 0;
  for await (const chunk of res.body) {
    hash?.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash?.digest('hex') };
}

/**
 * One large transfer by curl, a lean C client: undici reaches about 700 MiB/s here against nginx,
 * curl over 2,000, so a Node client would be what limits the large download ceiling. Times are
 * curl's own (connect to last byte).
 */
export async function curl(
  args: string[],
): Promise<{ status: number; body: string; seconds: number; downloaded: number; uploaded: number }> {
  const marker = '\n--curl-figures--';
  const out = await new Promise<string>((resolve, reject) => {
    // -H 'Expect:': no 100-continue round trip before the body (curl asks for one above 1 MiB).
    const proc = spawn(
      'curl',
      [
        '-sS',
        '-H',
        'Expect:',
        '-w',
        `${marker} %{http_code} %{time_total} %{size_download} %{size_upload}`,
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.once('error', reject);
    proc.once('close', (code) =>
      code === 0
        ? resolve(stdout)
        : reject(new Error(`curl exited with ${code}: ${stderr.trim().slice(0, 300)}`)),
    );
  });
  const at = out.lastIndexOf(marker);
  const [status, seconds, downloaded, uploaded] = out
    .slice(at + marker.length)
    .trim()
    .split(' ')
    .map(Number);
  return {
    status: status ?? 0,
    body: out.slice(0, at),
    seconds: seconds ?? NaN,
    downloaded: downloaded ?? 0,
    uploaded: uploaded ?? 0,
  };
}

export function curlAvailable(): boolean {
  return spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;
}

function headerArgs(headers: Readonly<Record<string, string>>): string[] {
  return Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
}

/** A timed GET of a large file by curl, the body thrown away. */
export async function curlDownload(
  url: string,
  headers: Readonly<Record<string, string>>,
): Promise<{ bytes: number; seconds: number }> {
  const r = await curl(['-o', '/dev/null', ...headerArgs(headers), url]);
  if (r.status !== 200) throw new Error(`GET ${new URL(url).pathname} answered ${r.status}`);
  return { bytes: r.downloaded, seconds: r.seconds };
}

export interface TimedUpload {
  uploaded: Uploaded;
  /** curl's time from connect to the last byte of the answer. */
  seconds: number;
}

// ---------------------------------------------------------------------------------------------
// Shoal

function multipartFrame(filename: string): { head: Buffer; tail: Buffer; contentType: string } {
  const boundary = `----shoal-bench-${randomUUID()}`;
  const head = Buffer.from(
    `--${boundary}\r\n` +
      `Content-Disposition: form-data; name="file"; filename="${filename}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { head, tail, contentType: `multipart/form-data; boundary=${boundary}` };
}

/** One process group per node: native and S3 share the nodes, and their labels. */
function nodeGroups(cluster: TestCluster): ProcessGroup[] {
  return cluster.nodes.map((n) => ({ label: n.id, pids: () => (n.proc?.pid ? [n.proc.pid] : []) }));
}

export class ShoalSystem implements SystemUnderTest {
  readonly name = 'shoal';
  readonly takesUploads = true;
  readonly headers = {};
  readonly endpoints: string[];

  constructor(
    readonly cluster: TestCluster,
    private readonly dispatcher: Dispatcher,
  ) {
    this.endpoints = cluster.nodes.map((n) => n.url);
  }

  processGroups(): ProcessGroup[] {
    return nodeGroups(this.cluster);
  }

  private url(via: number): string {
    return this.endpoints[via % this.endpoints.length]!;
  }

  async uploadFile(file: SourceFile, via: number): Promise<TimedUpload> {
    // curl streams the file part from disk; nothing holds it in memory.
    const r = await curl([
      '-F',
      `file=@${file.path};filename=big.bin;type=application/octet-stream`,
      `${this.url(via)}/files`,
    ]);
    return { uploaded: this.checkBody(r.status, r.body, via, file.sha256, file.size), seconds: r.seconds };
  }

  async uploadBuffer(data: Buffer, via: number): Promise<Uploaded> {
    const { head, tail, contentType } = multipartFrame('small.bin');
    const res = await request(`${this.url(via)}/files`, {
      method: 'POST',
      dispatcher: this.dispatcher,
      headers: { 'content-type': contentType },
      body: Buffer.concat([head, data, tail]),
      ...SMALL_TIMEOUTS,
    });
    return this.checkCreated(res, via, sha256Hex(data), data.length);
  }

  private async checkCreated(
    res: Dispatcher.ResponseData,
    via: number,
    sha256: string,
    size: number,
  ): Promise<Uploaded> {
    return this.checkBody(res.statusCode, await res.body.text(), via, sha256, size);
  }

  private checkBody(status: number, text: string, via: number, sha256: string, size: number): Uploaded {
    if (status !== 201) throw new Error(`POST /files answered ${status}: ${text.slice(0, 300)}`);
    const meta = JSON.parse(text) as { id?: unknown; sha256?: unknown; size?: unknown };
    if (typeof meta.id !== 'string')
      throw new Error(`POST /files answered without an id: ${text.slice(0, 300)}`);
    if (meta.sha256 !== sha256 || meta.size !== size) {
      throw new Error(
        `POST /files acknowledged ${String(meta.size)} bytes, sha256 ${String(meta.sha256)}; sent ${size}, ${sha256}`,
      );
    }
    return { id: meta.id, via, sha256, size };
  }

  pathOf(id: string): string {
    return `/files/${id}`;
  }

  async waitForAllCopies(id: string, via: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        const res = await request(`${this.url(via)}/files/${id}/info`, {
          dispatcher: this.dispatcher,
          ...SMALL_TIMEOUTS,
        });
        const text = await res.body.text();
        if (res.statusCode === 200) {
          const replicas = (JSON.parse(text) as { replicas?: Array<{ state?: string }> }).replicas ?? [];
          if (replicas.length >= this.endpoints.length && replicas.every((r) => r.state === 'ok'))
            return true;
        }
      } catch {
        // Not there yet, or the node is busy: ask again until the deadline.
      }
      await sleep(200);
    }
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Shoal's S3 API: the same cluster, through every node's S3 listener (--s3-port)

/** Presigned GETs stay valid this long: S3's longest, more than any run takes. */
const PRESIGN_SECONDS = 604_800;
const BUCKET = 'shoal-bench';

export class S3System implements SystemUnderTest {
  readonly name = 's3';
  readonly takesUploads = true;
  /** Uploads sign their own headers and downloads carry their signature in the URL. */
  readonly headers = {};
  readonly endpoints: string[];
  private readonly hosts: string[];
  private counter = 0;

  private constructor(
    readonly cluster: TestCluster,
    private readonly signer: S3Signer,
    private readonly dispatcher: Dispatcher,
  ) {
    this.endpoints = cluster.nodes.map((n) => {
      if (!n.s3Url) throw new Error(`${n.id} has no S3 listener`);
      return n.s3Url;
    });
    this.hosts = this.endpoints.map((u) => new URL(u).host);
  }

  /**
   * Makes an access key through node 1's admin API and the bench's bucket with it, then waits
   * until every node knows both (they spread through the cluster registry).
   */
  static async start(cluster: TestCluster, dispatcher: Dispatcher): Promise<S3System> {
    const res = await request(`${cluster.url(0)}/admin/s3/keys`, {
      method: 'POST',
      dispatcher,
      headers: { ...cluster.authHeaders(), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench' }),
      ...SMALL_TIMEOUTS,
    });
    const key = JSON.parse(await expectStatus(res, 201, 'POST /admin/s3/keys')) as S3Credentials;
    const system = new S3System(cluster, new S3Signer(key), dispatcher);
    await system.signer.selfCheck(system.hosts[0]!, objectPath(BUCKET, 'o0'));
    const created = await system.send('PUT', 0, `/${BUCKET}`);
    await expectStatus(created, 200, `S3 PUT /${BUCKET}`);
    const deadline = Date.now() + 10_000;
    for (let via = 0; via < system.endpoints.length; via++) {
      for (;;) {
        const head = await system.send('HEAD', via, `/${BUCKET}`);
        await head.body.text();
        if (head.statusCode === 200) break;
        if (Date.now() > deadline)
          throw new Error(
            `${cluster.nodes[via]!.id} does not know the bucket (HEAD answered ${head.statusCode})`,
          );
        await sleep(100);
      }
    }
    return system;
  }

  processGroups(): ProcessGroup[] {
    return nodeGroups(this.cluster);
  }

  /** A request signed in its headers, its body (if any) unsigned. */
  private send(method: string, via: number, path: string, body?: Buffer): Promise<Dispatcher.ResponseData> {
    const i = via % this.endpoints.length;
    return request(`${this.endpoints[i]}${path}`, {
      method: method as Dispatcher.HttpMethod,
      dispatcher: this.dispatcher,
      headers: this.signer.headers(method, this.hosts[i]!, path),
      ...(body ? { body } : {}),
      ...SMALL_TIMEOUTS,
    });
  }

  async uploadFile(file: SourceFile, via: number): Promise<TimedUpload> {
    const key = this.newKey();
    const i = via % this.endpoints.length;
    const path = objectPath(BUCKET, key);
    const headerFile = `${file.path}.s3-headers`;
    // PutObject, the body streamed from disk by curl: a raw PUT with a Content-Length.
    const r = await curl([
      '-T',
      file.path,
      '-D',
      headerFile,
      ...headerArgs(this.signer.headers('PUT', this.hosts[i]!, path)),
      `${this.endpoints[i]}${path}`,
    ]);
    if (r.status !== 200) throw new Error(`S3 PUT answered ${r.status}: ${r.body.slice(0, 300)}`);
    const etag = /^etag:\s*"?([0-9a-f]+)"?/im.exec(readFileSync(headerFile, 'utf8'))?.[1];
    if (etag !== file.md5) throw new Error(`S3 PUT stored md5 ${etag}, sent ${file.md5}`);
    return { uploaded: { id: key, via, sha256: file.sha256, size: file.size }, seconds: r.seconds };
  }

  async uploadBuffer(data: Buffer, via: number): Promise<Uploaded> {
    const key = this.newKey();
    const res = await this.send('PUT', via, objectPath(BUCKET, key), data);
    await expectStatus(res, 200, 'S3 PUT');
    // The ETag is the MD5 of what the node stored, as the client's check of a PutObject.
    const etag = String(res.headers['etag'] ?? '').replace(/"/g, '');
    if (etag !== md5Hex(data)) throw new Error(`S3 PUT stored md5 ${etag}, sent ${md5Hex(data)}`);
    return { id: key, via, sha256: sha256Hex(data), size: data.length };
  }

  /** A presigned GetObject for endpoint `via`: wrk and curl fetch it as a plain GET. */
  pathOf(key: string, via: number): string {
    return this.signer.presignedPath(
      'GET',
      this.hosts[via % this.hosts.length]!,
      objectPath(BUCKET, key),
      PRESIGN_SECONDS,
    );
  }

  /**
   * The S3 API does not say where an object's copies are, and the native /files/<id>/info does
   * not serve the files that hold objects: each node's own metadata (SQLite, in WAL mode, so a
   * reader does not get in the node's way; test/helpers/copies.ts reads it the same way) says
   * whether it has a live copy of the key's version.
   */
  async waitForAllCopies(key: string, _via: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const missing = new Set(this.cluster.nodes.map((n) => n.dataDir));
    while (Date.now() < deadline) {
      for (const dataDir of [...missing]) {
        const db = new Database(join(dataDir, 'metadata.sqlite'), { readonly: true, fileMustExist: true });
        try {
          // Object files have ids 'O...' (shared/ids.ts objectFileId) and the key as their name.
          const row = db
            .prepare<[string], { id: string }>(
              `SELECT id FROM files WHERE id >= 'O' AND id < 'P' AND name = ? AND state = 'live' LIMIT 1`,
            )
            .get(key);
          if (row) missing.delete(dataDir);
        } finally {
          db.close();
        }
      }
      if (missing.size === 0) return true;
      await sleep(200);
    }
    return false;
  }

  private newKey(): string {
    return `o${this.counter++}`;
  }
}

// ---------------------------------------------------------------------------------------------
// bare3

export class Bare3System implements SystemUnderTest {
  readonly name = 'bare3';
  readonly takesUploads = true;
  readonly headers = {};
  readonly endpoints: string[];
  private counter = 0;

  private constructor(
    private readonly proc: ChildProcess,
    url: string,
    /** Where GET serves from (nginx serves the same dir). */
    readonly servedDir: string,
    private readonly dispatcher: Dispatcher,
  ) {
    this.endpoints = [url];
  }

  static async start(dataDir: string, dispatcher: Dispatcher): Promise<Bare3System> {
    const script = join(__dirname, 'baseline-server.js');
    const proc = spawn(process.execPath, [script, dataDir, '--copies', '3'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: proc.stdout! });
    const hello = await new Promise<{ port: number; dirs: string[] }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bare3 did not start within 10 s')), 10_000);
      proc.once('exit', (code) => reject(new Error(`bare3 exited with ${code} before listening`)));
      lines.once('line', (line) => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(line) as { port: number; dirs: string[] });
        } catch {
          reject(new Error(`bare3 said ${JSON.stringify(line)}`));
        }
      });
    });
    // Keep draining its stdout so it can never block on a full pipe.
    lines.on('line', () => undefined);
    return new Bare3System(proc, `http://127.0.0.1:${hello.port}`, hello.dirs[0]!, dispatcher);
  }

  processGroups(): ProcessGroup[] {
    return [{ label: 'bare3', pids: () => (this.proc.pid ? [this.proc.pid] : []) }];
  }

  async uploadFile(file: SourceFile, via: number): Promise<TimedUpload> {
    const id = this.newId();
    const r = await curl(['-T', file.path, `${this.endpoints[0]}/files/${id}`]);
    if (r.status !== 201) throw new Error(`bare3 PUT answered ${r.status}: ${r.body.slice(0, 300)}`);
    this.checkMeta(r.body, file.size);
    return { uploaded: { id, via, sha256: file.sha256, size: file.size }, seconds: r.seconds };
  }

  async uploadBuffer(data: Buffer, via: number): Promise<Uploaded> {
    const id = this.newId();
    const res = await request(`${this.endpoints[0]}/files/${id}`, {
      method: 'PUT',
      dispatcher: this.dispatcher,
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
      ...SMALL_TIMEOUTS,
    });
    await this.checkCreated(res, data.length);
    return { id, via, sha256: sha256Hex(data), size: data.length };
  }

  private async checkCreated(res: Dispatcher.ResponseData, size: number): Promise<void> {
    this.checkMeta(await expectStatus(res, 201, 'bare3 PUT'), size);
  }

  private checkMeta(text: string, size: number): void {
    const meta = JSON.parse(text) as { size?: unknown; copies?: unknown };
    if (meta.size !== size || meta.copies !== 3)
      throw new Error(`bare3 stored ${String(meta.size)} bytes x ${String(meta.copies)}, sent ${size} x 3`);
  }

  pathOf(id: string): string {
    return `/files/${id}`;
  }

  async waitForAllCopies(): Promise<boolean> {
    return true;
  }

  stop(): Promise<void> {
    return stopChild(this.proc);
  }

  private newId(): string {
    return `f${process.pid}-${this.counter++}`;
  }
}

// ---------------------------------------------------------------------------------------------
// nginx: the download ceiling, serving bare3's copies from the same disk

export function nginxAvailable(): string | undefined {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (existsSync(p)) return p;
  return spawnSync('nginx', ['-v'], { stdio: 'ignore' }).error === undefined ? 'nginx' : undefined;
}

export class NginxSystem implements SystemUnderTest {
  readonly name = 'nginx';
  readonly takesUploads = false;
  readonly headers = {};
  readonly endpoints: string[];

  private constructor(
    private readonly proc: ChildProcess,
    url: string,
  ) {
    this.endpoints = [url];
  }

  /**
   * A temp nginx.conf of our own on a free port: 2 workers (auto, one per CPU), sendfile, no
   * access log, keep-alive connections never recycled (wrk would reconnect otherwise), serving
   * `dir` under /files/ exactly as bare3 does.
   */
  static async start(binary: string, workDir: string, dir: string): Promise<NginxSystem> {
    mkdirSync(workDir, { recursive: true });
    const port = await freePort();
    const conf = join(workDir, 'nginx.conf');
    writeFileSync(
      conf,
      [
        'worker_processes auto;',
        'daemon off;',
        'master_process on;',
        // The run's temp dirs are 0700 and root's; workers must be able to read them.
        'user root;',
        `pid ${workDir}/nginx.pid;`,
        `error_log ${workDir}/error.log warn;`,
        'events { worker_connections 1024; }',
        'http {',
        '  access_log off;',
        '  sendfile on;',
        '  tcp_nopush on;',
        '  keepalive_requests 10000000;',
        '  keepalive_timeout 65;',
        '  default_type application/octet-stream;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
          (t) => `  ${t}_temp_path ${workDir}/${t}-temp;`,
        ),
        '  server {',
        `    listen 127.0.0.1:${port};`,
        `    location /files/ { alias ${dir}/; }`,
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    const proc = spawn(binary, ['-p', workDir, '-c', conf, '-e', join(workDir, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) {
        const log = existsSync(join(workDir, 'error.log'))
          ? readFileSync(join(workDir, 'error.log'), 'utf8')
          : '';
        throw new Error(`nginx exited with ${proc.exitCode}: ${(stderr + log).trim().slice(0, 500)}`);
      }
      const res = await fetch(`${url}/files/none`).catch(() => undefined);
      if (res) {
        await res.arrayBuffer();
        break;
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error('nginx did not answer within 10 s');
      }
      await sleep(100);
    }
    return new NginxSystem(proc, url);
  }

  processGroups(): ProcessGroup[] {
    return [{ label: 'nginx', pids: () => (this.proc.pid ? withDescendants([this.proc.pid]) : []) }];
  }

  uploadFile(): Promise<TimedUpload> {
    throw new Error('nginx takes no uploads here');
  }

  uploadBuffer(): Promise<Uploaded> {
    throw new Error('nginx takes no uploads here');
  }

  pathOf(id: string): string {
    return `/files/${id}`;
  }

  async waitForAllCopies(): Promise<boolean> {
    return true;
  }

  stop(): Promise<void> {
    // SIGQUIT is nginx's graceful stop; SIGTERM its fast one. Either way the workers go with it.
    return stopChild(this.proc);
  }
}

// ---------------------------------------------------------------------------------------------
// OpenStack Swift all-in-one (/work/shared/tools/swift/setup.sh)

export const DEFAULT_SWIFT_SETUP = '/work/shared/tools/swift/setup.sh';

interface SwiftAccess {
  token: string;
  storageUrl: string;
}

export class SwiftSystem implements SystemUnderTest {
  readonly name = 'swift';
  readonly takesUploads = true;
  readonly endpoints: string[];
  readonly headers: Record<string, string>;
  private readonly container = `shoal-bench-${process.pid}-${Date.now()}`;
  private readonly containerPath: string;
  private readonly created: string[] = [];
  private counter = 0;

  private constructor(
    private readonly access: SwiftAccess,
    private readonly baseDir: string,
    private readonly stopScript: string | undefined,
    private readonly dispatcher: Dispatcher,
  ) {
    const u = new URL(access.storageUrl);
    this.endpoints = [u.origin];
    this.containerPath = `${u.pathname}/${this.container}`;
    this.headers = { 'x-auth-token': access.token };
  }

  /**
   * Uses a Swift already answering on the proxy port, or starts one with `setupScript`; in that
   * case it is stopped again at the end (stop.sh beside it). Throws, with the reason to print,
   * when neither works.
   */
  static async start(
    setupScript: string,
    dispatcher: Dispatcher,
    log: (m: string) => void,
    keep: boolean,
  ): Promise<SwiftSystem> {
    const baseDir = process.env.SWIFT_PEER_DIR ?? '/tmp/swift-peer';
    const proxy = `http://127.0.0.1:${process.env.SWIFT_PROXY_PORT ?? '28080'}`;
    const healthy = async (): Promise<boolean> => {
      const res = await fetch(`${proxy}/healthcheck`, { signal: AbortSignal.timeout(2_000) }).catch(
        () => undefined,
      );
      if (res) await res.arrayBuffer();
      return res?.status === 200;
    };
    let stopScript: string | undefined;
    if (!(await healthy())) {
      if (!existsSync(setupScript))
        throw new Error(`no Swift answering on ${proxy} and no setup script at ${setupScript}`);
      log(`starting Swift with ${setupScript}`);
      const run = spawnSync('bash', [setupScript], { encoding: 'utf8', timeout: 600_000 });
      if (run.status !== 0)
        throw new Error(`${setupScript} exited with ${run.status}: ${(run.stderr ?? '').trim().slice(-500)}`);
      if (!(await healthy())) throw new Error(`${setupScript} ran, but nothing answers on ${proxy}`);
      const stop = join(dirname(setupScript), 'stop.sh');
      if (!keep && existsSync(stop)) stopScript = stop;
    } else log(`using the Swift already running on ${proxy} (left running afterwards)`);

    const auth = await request(`${proxy}/auth/v1.0`, {
      dispatcher,
      headers: { 'x-storage-user': 'test:tester', 'x-storage-pass': 'testing' },
    });
    await auth.body.text();
    const token = auth.headers['x-auth-token'];
    const storageUrl = auth.headers['x-storage-url'];
    if (auth.statusCode !== 200 || typeof token !== 'string' || typeof storageUrl !== 'string')
      throw new Error(`Swift tempauth answered ${auth.statusCode} without a token`);
    const system = new SwiftSystem({ token, storageUrl }, baseDir, stopScript, dispatcher);
    const res = await request(`${storageUrl}/${system.container}`, {
      method: 'PUT',
      dispatcher,
      headers: system.headers,
    });
    await res.body.text();
    if (res.statusCode !== 201 && res.statusCode !== 202)
      throw new Error(`creating a Swift container answered ${res.statusCode}`);
    return system;
  }

  processGroups(): ProcessGroup[] {
    const runDir = join(this.baseDir, 'run');
    return [
      {
        label: 'swift',
        pids: () => {
          const roots: number[] = [];
          for (const f of existsSync(runDir) ? readdirSync(runDir) : []) {
            if (!f.endsWith('.pid')) continue;
            const pid = Number(readFileSync(join(runDir, f), 'utf8').trim());
            if (Number.isInteger(pid) && pid > 0) roots.push(pid);
          }
          return withDescendants(roots);
        },
      },
    ];
  }

  async uploadFile(file: SourceFile, via: number): Promise<TimedUpload> {
    const id = this.newId();
    const headerFile = `${file.path}.swift-headers`;
    const r = await curl([
      '-T',
      file.path,
      '-D',
      headerFile,
      ...headerArgs(this.headers),
      `${this.endpoints[0]}${this.pathOf(id)}`,
    ]);
    if (r.status !== 201) throw new Error(`Swift PUT answered ${r.status}: ${r.body.slice(0, 300)}`);
    const etag = /^etag:\s*"?([0-9a-f]+)"?/im.exec(readFileSync(headerFile, 'utf8'))?.[1];
    if (etag !== file.md5) throw new Error(`Swift stored md5 ${etag}, sent ${file.md5}`);
    return { uploaded: { id, via, sha256: file.sha256, size: file.size }, seconds: r.seconds };
  }

  async uploadBuffer(data: Buffer, via: number): Promise<Uploaded> {
    const id = this.newId();
    const res = await request(`${this.endpoints[0]}${this.pathOf(id)}`, {
      method: 'PUT',
      dispatcher: this.dispatcher,
      headers: { ...this.headers, 'content-type': 'application/octet-stream' },
      body: data,
      ...SMALL_TIMEOUTS,
    });
    this.checkCreated(res, await expectStatus(res, 201, 'Swift PUT'), md5Hex(data));
    return { id, via, sha256: sha256Hex(data), size: data.length };
  }

  private checkCreated(res: Dispatcher.ResponseData, _text: string, md5: string): void {
    const etag = String(res.headers['etag'] ?? '').replace(/"/g, '');
    if (etag !== md5) throw new Error(`Swift stored md5 ${etag}, sent ${md5}`);
  }

  pathOf(id: string): string {
    return `${this.containerPath}/${id}`;
  }

  /** The proxy answers 201 once a quorum (2 of 3) of object servers has the object. */
  async waitForAllCopies(): Promise<boolean> {
    return true;
  }

  /** Deletes what this run stored (bulk delete, 10,000 at a time); stops Swift if we started it. */
  async stop(log: (m: string) => void): Promise<void> {
    try {
      const paths = [...this.created.map((id) => this.pathOf(id)), this.containerPath].map((p) =>
        decodeURIComponent(p.replace(/^\/v1\/[^/]+/, '')),
      );
      for (let i = 0; i < paths.length; i += 10_000) {
        const res = await request(
          `${this.endpoints[0]}${this.containerPath.replace(/\/[^/]+$/, '')}?bulk-delete`,
          {
            method: 'POST',
            dispatcher: this.dispatcher,
            headers: { ...this.headers, 'content-type': 'text/plain', accept: 'application/json' },
            body: paths.slice(i, i + 10_000).join('\n'),
            headersTimeout: 300_000,
            bodyTimeout: 300_000,
          },
        );
        await res.body.text();
      }
    } catch (error) {
      log(
        `could not delete the bench's Swift objects: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (this.stopScript) {
      log(`stopping Swift (${this.stopScript})`);
      spawnSync('bash', [this.stopScript], { stdio: 'ignore', timeout: 60_000 });
    }
  }

  private newId(): string {
    const id = `o${this.counter++}`;
    this.created.push(id);
    return id;
  }
}
