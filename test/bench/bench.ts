import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { TestCluster, repoRoot } from '../helpers/cluster';
import { attempt, fmtMiB, ownChildPids, round, sleep, type Outcome } from './bench-kit';

/**
 * `npm run bench`: one run of a few workloads against a real 3-node Shoal cluster (N=3, W=2) and,
 * in the same run, against a plain node:http server that just streams to and from one disk
 * (baseline-server.ts). Every Shoal figure is printed beside the baseline's and as a ratio, so a
 * reader can tell the cost of replication and verification from the speed of this machine.
 *
 * Options (flags of bench.js, e.g. `npm run bench -- --baseline-only`):
 *   --baseline-only     skip the Shoal cluster (to check the bench and the machine)
 *   --big-mib N         size of the large file, default 256
 *   --small-seconds S   how long each 16 KiB phase runs, default 5
 */

const MiB = 1024 * 1024;
const SMALL_BYTES = 16 * 1024;
const CONCURRENCY = 16;
/** A small-file phase stops at whichever comes first: its time or this many operations. */
const SMALL_MAX_OPS = 50_000;
const NODES = 3;
const REPLICAS = 3;
const WRITE_QUORUM = 2;
/** Longest wait, after an upload is acknowledged, for its third copy before the download. */
const REPLICATION_WAIT_MS = 30_000;
/**
 * The whole run is cut off (and cleaned up) after this long, whatever state it is in. A healthy
 * run takes well under a minute; this only bounds a hung one.
 */
const WATCHDOG_MS = 180_000;
const PROC_SAMPLE_MS = 100;

interface Options {
  baselineOnly: boolean;
  bigBytes: number;
  smallSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { baselineOnly: false, bigBytes: 256 * MiB, smallSeconds: 5 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${arg} needs a positive number`);
      return n;
    };
    if (arg === '--baseline-only') options.baselineOnly = true;
    else if (arg === '--big-mib') options.bigBytes = Math.round(value() * MiB);
    else if (arg === '--small-seconds') options.smallSeconds = value();
    else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// The two systems under test, behind one interface

interface Uploaded {
  id: string;
  via: number;
  sha256: string;
  size: number;
}

interface Downloaded {
  bytes: number;
  sha256: string;
}

interface SystemUnderTest {
  readonly name: 'shoal' | 'baseline';
  /** How many distinct endpoints there are; `via` picks one of them. */
  readonly endpoints: number;
  uploadFile(path: string, size: number, sha256: string, via: number): Promise<Uploaded>;
  uploadBuffer(data: Buffer, via: number): Promise<Uploaded>;
  download(id: string, via: number): Promise<Downloaded>;
  /** `download` with the long timeouts a large file needs. */
  downloadBig(id: string, via: number): Promise<Downloaded>;
  /** Resolves once every copy of `id` is in place; returns false if that did not happen in time. */
  waitForAllCopies(id: string, via: number, timeoutMs: number): Promise<boolean>;
}

const BIG_TIMEOUTS = { headersTimeout: 90_000, bodyTimeout: 90_000 };
const SMALL_TIMEOUTS = { headersTimeout: 30_000, bodyTimeout: 30_000 };

class ShoalSystem implements SystemUnderTest {
  readonly name = 'shoal';
  readonly endpoints: number;

  constructor(
    private readonly urls: string[],
    private readonly dispatcher: Dispatcher,
  ) {
    this.endpoints = urls.length;
  }

  private url(via: number): string {
    const url = this.urls[via % this.urls.length];
    if (url === undefined) throw new Error(`no endpoint ${via}`);
    return url;
  }

  async uploadFile(path: string, size: number, sha256: string, via: number): Promise<Uploaded> {
    const { head, tail, contentType } = multipartFrame('big.bin');
    // The file is streamed from disk between the multipart frame; nothing holds it in memory.
    const body = Readable.from(
      (async function* () {
        yield head;
        yield* createReadStream(path, { highWaterMark: MiB });
        yield tail;
      })(),
      { objectMode: false },
    );
    const res = await request(`${this.url(via)}/files`, {
      method: 'POST',
      dispatcher: this.dispatcher,
      headers: { 'content-type': contentType, 'content-length': String(head.length + size + tail.length) },
      body,
      ...BIG_TIMEOUTS,
    });
    return this.checkCreated(res, via, sha256, size);
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
    const text = await res.body.text();
    if (res.statusCode !== 201)
      throw new Error(`POST /files answered ${res.statusCode}: ${text.slice(0, 300)}`);
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

  async download(id: string, via: number): Promise<Downloaded> {
    return downloadFrom(`${this.url(via)}/files/${id}`, this.dispatcher, SMALL_TIMEOUTS);
  }

  async downloadBig(id: string, via: number): Promise<Downloaded> {
    return downloadFrom(`${this.url(via)}/files/${id}`, this.dispatcher, BIG_TIMEOUTS);
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
          const info = JSON.parse(text) as { replicas?: Array<{ state?: string }> };
          const replicas = info.replicas ?? [];
          if (replicas.length >= REPLICAS && replicas.every((r) => r.state === 'ok')) return true;
        }
      } catch {
        // Not there yet, or the node is busy: ask again until the deadline.
      }
      await sleep(200);
    }
    return false;
  }
}

class BaselineSystem implements SystemUnderTest {
  readonly name = 'baseline';
  readonly endpoints = 1;
  private counter = 0;

  constructor(
    private readonly url: string,
    private readonly dispatcher: Dispatcher,
  ) {}

  async uploadFile(path: string, size: number, sha256: string, via: number): Promise<Uploaded> {
    const id = this.newId();
    const res = await request(`${this.url}/files/${id}`, {
      method: 'PUT',
      dispatcher: this.dispatcher,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: createReadStream(path, { highWaterMark: MiB }),
      ...BIG_TIMEOUTS,
    });
    await this.checkCreated(res, size);
    return { id, via, sha256, size };
  }

  async uploadBuffer(data: Buffer, via: number): Promise<Uploaded> {
    const id = this.newId();
    const res = await request(`${this.url}/files/${id}`, {
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
    const text = await res.body.text();
    if (res.statusCode !== 201)
      throw new Error(`baseline PUT answered ${res.statusCode}: ${text.slice(0, 300)}`);
    const meta = JSON.parse(text) as { size?: unknown };
    if (meta.size !== size) throw new Error(`baseline stored ${String(meta.size)} bytes, sent ${size}`);
  }

  async download(id: string): Promise<Downloaded> {
    return downloadFrom(`${this.url}/files/${id}`, this.dispatcher, SMALL_TIMEOUTS);
  }

  async downloadBig(id: string): Promise<Downloaded> {
    return downloadFrom(`${this.url}/files/${id}`, this.dispatcher, BIG_TIMEOUTS);
  }

  async waitForAllCopies(): Promise<boolean> {
    return true;
  }

  private newId(): string {
    return `f${process.pid}-${this.counter++}`;
  }
}

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

async function downloadFrom(
  url: string,
  dispatcher: Dispatcher,
  timeouts: { headersTimeout: number; bodyTimeout: number },
): Promise<Downloaded> {
  const res = await request(url, { dispatcher, ...timeouts });
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '');
    throw new Error(`GET ${new URL(url).pathname} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  }
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// What the processes under test use: peak RSS and CPU time, read from /proc

interface ProcStats {
  /** Peak resident set size over the process's whole life, from VmHWM. */
  hwmBytes: number | undefined;
  rssBytes: number | undefined;
  cpuSeconds: number | undefined;
}

/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every mainstream architecture. */
const CLOCK_TICKS = 100;

function readProcStats(pid: number): ProcStats {
  const stats: ProcStats = { hwmBytes: undefined, rssBytes: undefined, cpuSeconds: undefined };
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number | undefined => {
      const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
      return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
    };
    stats.hwmBytes = kb('VmHWM');
    stats.rssBytes = kb('VmRSS');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (Number.isFinite(utime) && Number.isFinite(stime)) stats.cpuSeconds = (utime + stime) / CLOCK_TICKS;
  } catch {
    // The process is gone; report nothing for it.
  }
  return stats;
}

interface Watched {
  label: string;
  pid: number;
}

interface PhaseUsage {
  wallSeconds: number;
  /** Highest VmRSS seen while the phase ran, sampled every PROC_SAMPLE_MS, per process. */
  peakRssBytes: Record<string, number>;
  cpuSeconds: Record<string, number>;
  /**
   * CPU time the whole machine spent outside the watched processes during the phase: anything
   * else running on this box competes with the bench, and this says how much it did.
   */
  otherCpuSeconds: number | undefined;
  /** CPU time the hypervisor gave to someone else while this VM wanted to run ("steal"). */
  stealSeconds: number | undefined;
}

/**
 * CPU seconds since boot of the whole machine, from the first line of /proc/stat: `busy` is time
 * spent running anything (user, nice, system, irq, softirq), `steal` is time a virtual machine
 * was ready to run but its host ran something else.
 */
function machineCpuSeconds(): { busy: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    const busy = [user, nice, system, irq, softirq].reduce<number>((sum, n) => sum + (n ?? 0), 0);
    if (!Number.isFinite(busy) || steal === undefined || !Number.isFinite(steal)) return undefined;
    return { busy: busy / CLOCK_TICKS, steal: steal / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

/** Samples the RSS of the processes under test and accounts CPU time to named phases. */
class ProcessWatch {
  private readonly watched: Watched[] = [];
  private current: { peak: Record<string, number> } | undefined;
  private readonly timer: NodeJS.Timeout;
  readonly phases: Record<string, PhaseUsage> = {};

  constructor() {
    this.timer = setInterval(() => this.sample(), PROC_SAMPLE_MS);
    this.timer.unref();
  }

  watch(label: string, pid: number | undefined): void {
    if (pid !== undefined) this.watched.push({ label, pid });
  }

  async phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const cpuAtStart: Record<string, number> = {};
    for (const w of this.watched) cpuAtStart[w.label] = readProcStats(w.pid).cpuSeconds ?? 0;
    const machineAtStart = machineCpuSeconds();
    const start = performance.now();
    const current: { peak: Record<string, number> } = { peak: {} };
    this.current = current;
    this.sample();
    try {
      return await fn();
    } finally {
      this.sample();
      this.current = undefined;
      const cpuSeconds: Record<string, number> = {};
      let watchedTotal = 0;
      for (const w of this.watched) {
        const now = readProcStats(w.pid).cpuSeconds;
        if (now === undefined) continue;
        const used = now - (cpuAtStart[w.label] ?? 0);
        watchedTotal += used;
        cpuSeconds[w.label] = round(used, 2);
      }
      const machineAtEnd = machineCpuSeconds();
      const both = machineAtStart !== undefined && machineAtEnd !== undefined;
      const otherCpuSeconds = both
        ? round(Math.max(0, machineAtEnd.busy - machineAtStart.busy - watchedTotal), 2)
        : undefined;
      const stealSeconds = both ? round(machineAtEnd.steal - machineAtStart.steal, 2) : undefined;
      this.phases[name] = {
        wallSeconds: round((performance.now() - start) / 1000, 3),
        peakRssBytes: current.peak,
        cpuSeconds,
        otherCpuSeconds,
        stealSeconds,
      };
    }
  }

  peaks(): Record<string, number | undefined> {
    const out: Record<string, number | undefined> = {};
    for (const w of this.watched) out[w.label] = readProcStats(w.pid).hwmBytes;
    return out;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    const current = this.current;
    if (!current) return;
    for (const w of this.watched) {
      const rss = readProcStats(w.pid).rssBytes;
      if (rss !== undefined) current.peak[w.label] = Math.max(current.peak[w.label] ?? 0, rss);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Workloads

interface BigResult {
  bytes: number;
  seconds: number;
  mbPerSec: number;
}

interface SmallResult {
  ops: number;
  errors: number;
  firstError?: string;
  seconds: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

/** Writes `size` random bytes to `path` (random, so no layer can compress or dedupe them). */
async function makeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(path, 'w');
  try {
    for (let written = 0; written < size;) {
      const chunk = randomBytes(Math.min(4 * MiB, size - written));
      hash.update(chunk);
      await fh.write(chunk);
      written += chunk.length;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

async function timeBig<T>(bytes: number, fn: () => Promise<T>): Promise<{ result: BigResult; value: T }> {
  const start = performance.now();
  const value = await fn();
  const seconds = (performance.now() - start) / 1000;
  return { result: { bytes, seconds: round(seconds, 3), mbPerSec: round(bytes / 1e6 / seconds, 1) }, value };
}

function checkDownload(got: Downloaded, want: { sha256: string; size: number }, what: string): void {
  if (got.bytes !== want.size || got.sha256 !== want.sha256) {
    throw new Error(
      `${what}: got ${got.bytes} bytes with sha256 ${got.sha256}, expected ${want.size} bytes ${want.sha256}`,
    );
  }
}

/**
 * Runs `op` from CONCURRENCY clients at once until `seconds` have passed or `maxOps` operations
 * have started. The rate counts only operations that succeeded, over the wall time until the
 * last client finished.
 */
async function runClients(
  seconds: number,
  maxOps: number,
  op: (client: number, seq: number) => Promise<void>,
): Promise<SmallResult> {
  const latencies: number[] = [];
  let started = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + seconds * 1000;
  const client = async (c: number): Promise<void> => {
    while (performance.now() < end && started < maxOps) {
      // Give up early on a system that fails most requests instead of hammering it for the full time.
      if (errors >= 50 && errors > latencies.length) return;
      const seq = started++;
      const t0 = performance.now();
      try {
        await op(c, seq);
        latencies.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_v, c) => client(c)));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0, 2);
  return {
    ops: latencies.length,
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
    seconds: round(elapsed, 3),
    opsPerSec: round(latencies.length / elapsed, 1),
    latencyMs: {
      p50: pct(0.5),
      p90: pct(0.9),
      p99: pct(0.99),
      max: round(latencies[latencies.length - 1] ?? 0, 2),
    },
  };
}

/** A fresh 16 KiB payload per operation, so content-addressed storage could not skip any. */
function smallPayload(base: Buffer, seq: number): Buffer {
  const data = Buffer.from(base);
  data.writeUInt32BE(seq, 0);
  data.writeUInt32BE(process.pid, 4);
  return data;
}

interface SystemResults {
  bigUpload: Outcome<BigResult & { via: string }>;
  allCopiesSeconds?: Outcome<number | null>;
  bigDownload: Outcome<BigResult & { via: string }>;
  smallUpload: Outcome<SmallResult>;
  smallDownload: Outcome<SmallResult>;
}

async function benchSystem(
  system: SystemUnderTest,
  watch: ProcessWatch,
  endpointName: (via: number) => string,
  big: { path: string; size: number; sha256: string },
  options: Options,
): Promise<SystemResults> {
  const phase = <T>(name: string, fn: () => Promise<T>): Promise<T> =>
    watch.phase(`${system.name}:${name}`, fn);
  const uploadVia = 0;
  // Read back from a node other than the one that took the upload.
  const downloadVia = system.endpoints > 1 ? 1 : 0;
  log(`${system.name}: uploading ${fmtMiB(big.size)} to ${endpointName(uploadVia)}`);

  let uploaded: Uploaded | undefined;
  const bigUpload = await attempt(() =>
    phase('big-upload', async () => {
      const { result, value } = await timeBig(big.size, () =>
        system.uploadFile(big.path, big.size, big.sha256, uploadVia),
      );
      uploaded = value;
      return { ...result, via: endpointName(uploadVia) };
    }),
  );

  let allCopiesSeconds: Outcome<number | null> | undefined;
  let bigDownload: Outcome<BigResult & { via: string }>;
  const target = uploaded;
  if (target === undefined) {
    bigDownload = { ok: false, error: 'skipped: the upload failed' };
  } else {
    if (system.endpoints > 1) {
      log(`${system.name}: waiting for all ${REPLICAS} copies of the large file`);
      allCopiesSeconds = await attempt(() =>
        phase('big-replication-wait', async () => {
          const start = performance.now();
          const done = await system.waitForAllCopies(target.id, uploadVia, REPLICATION_WAIT_MS);
          return done ? round((performance.now() - start) / 1000, 2) : null;
        }),
      );
    }
    log(`${system.name}: downloading it from ${endpointName(downloadVia)}`);
    bigDownload = await attempt(() =>
      phase('big-download', async () => {
        const { result, value } = await timeBig(big.size, () => system.downloadBig(target.id, downloadVia));
        checkDownload(value, big, 'large download');
        return { ...result, via: endpointName(downloadVia) };
      }),
    );
  }

  const base = randomBytes(SMALL_BYTES);
  const stored: Uploaded[] = [];
  const uploadOp = async (client: number, seq: number): Promise<void> => {
    stored.push(await system.uploadBuffer(smallPayload(base, seq), client % system.endpoints));
  };
  log(`${system.name}: 16 KiB uploads from ${CONCURRENCY} clients for ${options.smallSeconds} s`);
  // A short untimed warm-up opens the connections and lets both servers JIT their hot paths.
  await attempt(() => runClients(1, CONCURRENCY * 2, (c, seq) => uploadOp(c, 0x80000000 + seq)));
  const smallUpload = await attempt(() =>
    phase('small-upload', () => runClients(options.smallSeconds, SMALL_MAX_OPS, uploadOp)),
  );

  let smallDownload: Outcome<SmallResult>;
  if (stored.length === 0) {
    smallDownload = { ok: false, error: 'skipped: no 16 KiB upload succeeded' };
  } else {
    log(`${system.name}: 16 KiB downloads from ${CONCURRENCY} clients for ${options.smallSeconds} s`);
    smallDownload = await attempt(() =>
      phase('small-download', () =>
        runClients(options.smallSeconds, SMALL_MAX_OPS, async (_c, seq) => {
          const file = stored[seq % stored.length];
          if (!file) throw new Error('no stored file');
          const got = await system.download(file.id, (file.via + 1) % system.endpoints);
          checkDownload(got, file, `16 KiB download of ${file.id}`);
        }),
      ),
    );
  }
  return {
    bigUpload,
    ...(allCopiesSeconds ? { allCopiesSeconds } : {}),
    bigDownload,
    smallUpload,
    smallDownload,
  };
}

// ---------------------------------------------------------------------------------------------
// Processes: the baseline server, and cleanup of everything this run started

async function startBaseline(dataDir: string): Promise<{ proc: ChildProcess; url: string }> {
  const script = join(__dirname, 'baseline-server.js');
  const proc = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(proc);
  const stdout = proc.stdout;
  if (!stdout) throw new Error('baseline server has no stdout');
  const lines = createInterface({ input: stdout });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('baseline server did not start within 10 s')), 10_000);
    proc.once('exit', (code) => reject(new Error(`baseline server exited with ${code} before listening`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { port: number }).port);
      } catch {
        reject(new Error(`baseline server said ${JSON.stringify(line)}`));
      }
    });
  });
  // Keep draining its stdout so it can never block on a full pipe.
  lines.on('line', () => undefined);
  return { proc, url: `http://127.0.0.1:${port}` };
}

const children = new Set<ChildProcess>();

function killOwnChildrenNow(except: ReadonlySet<number> = new Set()): void {
  for (const proc of children) {
    if (proc.pid !== undefined && except.has(proc.pid)) continue;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
  for (const pid of ownChildPids()) {
    if (except.has(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// Output

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : round(a / b, 2);
}

function value<T>(o: Outcome<T> | undefined): T | undefined {
  return o?.ok ? o.value : undefined;
}

function cell<T>(o: Outcome<T> | undefined, pick: (v: T) => number | undefined): string {
  if (o === undefined) return 'n/a';
  if (!o.ok) return 'FAILED';
  const v = pick(o.value);
  return v === undefined ? 'n/a' : String(v);
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (row: string[]): string =>
    row.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('   ');
  const header = rows[0] ?? [];
  const rule = widths.map((w) => '-'.repeat(w)).join('   ');
  return [line(header), rule, ...rows.slice(1).map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------

interface Run {
  options: Options;
  startedAt: Date;
  loadAtStart: number;
  loadAtEnd: number;
  nodeLabels: string[];
  clusterError: string | undefined;
  shoal: SystemResults | undefined;
  baseline: SystemResults;
  /** VmHWM per watched process at the end of the run. */
  peaks: Record<string, number | undefined>;
  phases: Record<string, PhaseUsage>;
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const loadAtStart = loadavg()[0] ?? 0;
  const root = mkdtempSync(join(tmpdir(), 'shoal-bench-'));
  const dispatcher = new Agent({ connections: CONCURRENCY * 2, keepAliveTimeout: 10_000 });
  const watch = new ProcessWatch();
  let cluster: TestCluster | undefined;
  let cleanedUp = false;
  // Set on SIGINT/SIGTERM/watchdog: whatever the phases still report then is not a result.
  let abandoned = false;

  const cleanup = async (): Promise<void> => {
    if (cleanedUp) return;
    cleanedUp = true;
    watch.stop();
    await dispatcher.close().catch(() => undefined);
    if (cluster) await cluster.stopAll().catch(() => undefined);
    await Promise.all([...children].map((p) => stopChild(p).catch(() => undefined)));
    killOwnChildrenNow();
    rmSync(root, { recursive: true, force: true });
  };
  // Last resort for paths that never reach the finally below: kill by pid, remove the temp dir.
  process.once('exit', () => {
    killOwnChildrenNow();
    rmSync(root, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      abandoned = true;
      log(`${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  const watchdog = setTimeout(() => {
    abandoned = true;
    log(`still running after ${WATCHDOG_MS / 1000} s: giving up`);
    void cleanup().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();

  try {
    // Every temp file of the run, the nodes' own included (they inherit TMPDIR), lives under
    // `root`, so one rm removes them all whatever happened.
    process.env.TMPDIR = root;

    const bigPath = join(root, 'big.bin');
    log(`writing a ${fmtMiB(options.bigBytes)} random file`);
    const big = {
      path: bigPath,
      size: options.bigBytes,
      sha256: await makeRandomFile(bigPath, options.bigBytes),
    };

    // The client's own CPU time shows when the bench, not the server, was the limit.
    watch.watch('client', process.pid);
    const baselineProc = await startBaseline(join(root, 'baseline-data'));
    watch.watch('baseline', baselineProc.proc.pid);

    let shoal: ShoalSystem | undefined;
    let clusterError: string | undefined;
    if (!options.baselineOnly) {
      log(`starting a ${NODES}-node Shoal cluster (N=${REPLICAS}, W=${WRITE_QUORUM})`);
      try {
        const started = await TestCluster.start({
          nodes: NODES,
          replicas: REPLICAS,
          writeQuorum: WRITE_QUORUM,
          failureTimeoutMs: 10_000,
          gossipIntervalMs: 500,
        });
        cluster = started;
        for (const n of started.nodes) watch.watch(n.id, n.proc?.pid);
        shoal = new ShoalSystem(
          started.nodes.map((n) => n.url),
          dispatcher,
        );
      } catch (error) {
        clusterError = error instanceof Error ? error.message : String(error);
        log(`the Shoal cluster did not start: ${clusterError}`);
        // Kill the nodes that did start; the baseline server carries on.
        killOwnChildrenNow(new Set(baselineProc.proc.pid === undefined ? [] : [baselineProc.proc.pid]));
      }
    }
    const nodeLabels = cluster ? cluster.nodes.map((n) => n.id) : [];

    const baseline = new BaselineSystem(baselineProc.url, dispatcher);
    const baselineResults = await benchSystem(baseline, watch, () => 'baseline', big, options);
    const shoalResults = shoal
      ? await benchSystem(shoal, watch, (via) => nodeLabels[via] ?? `node ${via}`, big, options)
      : undefined;

    if (abandoned) return 1;
    const run: Run = {
      options,
      startedAt,
      loadAtStart,
      loadAtEnd: loadavg()[0] ?? 0,
      nodeLabels,
      clusterError,
      shoal: shoalResults,
      baseline: baselineResults,
      peaks: watch.peaks(),
      phases: watch.phases,
    };
    const failures = collectFailures(run);
    process.stdout.write(renderReport(run, failures));
    if (failures.length > 0 && cluster) {
      for (let i = 0; i < cluster.nodes.length; i++) {
        const tail = cluster.log(i).trimEnd().split('\n').slice(-15).join('\n');
        process.stderr.write(`\n--- last lines of ${cluster.node(i).id}'s log ---\n${tail}\n`);
      }
    }

    const outDir = join(repoRoot(), '.bench');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'last.json'), JSON.stringify(toJson(run, failures), null, 2) + '\n');
    log(`figures written to ${join(outDir, 'last.json')}`);
    return failures.length > 0 ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

function collectFailures(run: Run): string[] {
  const failures: string[] = [];
  if (run.clusterError) failures.push(`cluster start: ${run.clusterError}`);
  for (const [system, results] of [
    ['shoal', run.shoal],
    ['baseline', run.baseline],
  ] as const) {
    if (!results) continue;
    for (const [name, o] of Object.entries(results) as Array<[string, Outcome<unknown>]>) {
      if (!o.ok) failures.push(`${system} ${name}: ${o.error}`);
    }
    for (const name of ['smallUpload', 'smallDownload'] as const) {
      const r = value(results[name]);
      if (r && r.errors > 0)
        failures.push(`${system} ${name}: ${r.errors} failed operations, first: ${r.firstError}`);
    }
  }
  return failures;
}

function mib(n: number | undefined): number | undefined {
  return n === undefined ? undefined : round(n / MiB, 1);
}

function ratioCell(x: number | undefined, y: number | undefined): string {
  const r = ratio(x, y);
  return r === undefined ? '' : `${r}x`;
}

function renderReport(run: Run, failures: string[]): string {
  const { options, peaks, nodeLabels } = run;
  const s = run.shoal;
  const b = run.baseline;
  const baselinePeak = peaks['baseline'];
  const shoalLabel = options.baselineOnly ? 'Shoal (skipped)' : 'Shoal';
  const bigLabel = fmtMiB(options.bigBytes).replace('.0 ', ' ');

  const rows: string[][] = [['workload', shoalLabel, 'baseline', 'Shoal/baseline']];
  const throughput = <T>(
    label: string,
    pick: (r: SystemResults) => Outcome<T> | undefined,
    num: (v: T) => number,
  ): void => {
    const so = s ? pick(s) : undefined;
    const bo = pick(b);
    const sv = value(so);
    const bv = value(bo);
    rows.push([label, cell(so, num), cell(bo, num), ratioCell(sv && num(sv), bv && num(bv))]);
  };
  const upVia = value(s?.bigUpload)?.via ?? nodeLabels[0] ?? 'node-1';
  const downVia = value(s?.bigDownload)?.via ?? nodeLabels[1] ?? 'node-2';
  throughput(
    `${bigLabel} upload, MB/s (to ${upVia})`,
    (r) => r.bigUpload,
    (v) => v.mbPerSec,
  );
  throughput(
    `${bigLabel} download, MB/s (from ${downVia}, sha256 checked)`,
    (r) => r.bigDownload,
    (v) => v.mbPerSec,
  );
  throughput(
    `16 KiB upload, ops/s (${CONCURRENCY} clients)`,
    (r) => r.smallUpload,
    (v) => v.opsPerSec,
  );
  throughput(
    `16 KiB download, ops/s (${CONCURRENCY} clients)`,
    (r) => r.smallDownload,
    (v) => v.opsPerSec,
  );
  const nodeRows =
    nodeLabels.length > 0 ? nodeLabels : options.baselineOnly ? [] : ['node-1', 'node-2', 'node-3'];
  for (const label of nodeRows) {
    const peak = peaks[label];
    rows.push([
      `peak RSS, MiB (${label})`,
      String(mib(peak) ?? 'n/a'),
      String(mib(baselinePeak) ?? 'n/a'),
      ratioCell(peak, baselinePeak),
    ]);
  }
  if (options.baselineOnly) rows.push(['peak RSS, MiB', '', String(mib(baselinePeak) ?? 'n/a'), '']);

  const latency: string[][] = [['latency, ms (p50 / p99)', shoalLabel, 'baseline']];
  const lat = (o: Outcome<SmallResult> | undefined): string =>
    o === undefined ? 'n/a' : o.ok ? `${o.value.latencyMs.p50} / ${o.value.latencyMs.p99}` : 'FAILED';
  latency.push(['16 KiB upload', lat(s?.smallUpload), lat(b.smallUpload)]);
  latency.push(['16 KiB download', lat(s?.smallDownload), lat(b.smallDownload)]);

  const cpu = (system: string, phase: string, labels: string[]): string => {
    const usage = run.phases[`${system}:${phase}`];
    if (!usage) return 'n/a';
    return String(
      round(
        labels.reduce((sum, l) => sum + (usage.cpuSeconds[l] ?? 0), 0),
        2,
      ),
    );
  };
  const other = (system: string, phase: string): string =>
    String(run.phases[`${system}:${phase}`]?.otherCpuSeconds ?? 'n/a');
  const cpuRows: string[][] = [
    [
      'CPU seconds used',
      `${shoalLabel} nodes`,
      'baseline server',
      'client (Shoal)',
      'client (baseline)',
      'others (Shoal)',
      'others (baseline)',
    ],
  ];
  for (const [phase, label] of [
    ['big-upload', `${bigLabel} upload`],
    ['big-download', `${bigLabel} download`],
    ['small-upload', '16 KiB uploads'],
    ['small-download', '16 KiB downloads'],
  ] as const) {
    cpuRows.push([
      label,
      cpu('shoal', phase, nodeLabels),
      cpu('baseline', phase, ['baseline']),
      cpu('shoal', phase, ['client']),
      cpu('baseline', phase, ['client']),
      other('shoal', phase),
      other('baseline', phase),
    ]);
  }

  const copies = s?.allCopiesSeconds;
  const copiesText =
    copies === undefined
      ? 'n/a'
      : !copies.ok
        ? `failed (${copies.error})`
        : copies.value === null
          ? `not all ${REPLICAS} within ${REPLICATION_WAIT_MS / 1000} s`
          : `${copies.value} s`;
  const cpuCount = cpus().length;

  const out: string[] = [
    '',
    `Shoal bench, one run, ${run.startedAt.toISOString()}: ${NODES} local nodes (N=${REPLICAS}, W=${WRITE_QUORUM}) ` +
      `vs a plain node:http baseline; ${cpuCount} CPUs, Node ${process.version}`,
    '',
    table(rows),
    '',
    table(latency),
    '',
    table(cpuRows),
    '',
    'Notes:',
    `- Shoal upload is POST /files, multipart/form-data, streamed from disk; it counts until the 201, which comes once W=${WRITE_QUORUM} copies are fsync'd and sha256-verified.`,
    "- The baseline upload is a raw PUT body (not multipart) written to one file on one disk, fsync'd before the 201; no hashing, no metadata, no replicas.",
  ];
  if (s) {
    out.push(
      `- Before the large download, the bench waited for all ${REPLICAS} copies: ${copiesText} after the 201.`,
    );
  }
  out.push(
    `- 16 KiB phases run ${options.smallSeconds} s each (at most ${SMALL_MAX_OPS} ops) after a short warm-up; Shoal clients spread over all nodes and read each file from a node other than the one it was uploaded to. Every download's length and sha256 are checked.`,
    '- Peak RSS is VmHWM from /proc/<pid>/status at the end of the run (the baseline serves only its own phases).',
    '- "others" is CPU time the machine spent outside the bench client, the baseline server and the nodes while a phase ran (other programs, and kernel threads such as disk writeback).',
  );
  // Other work on the machine, or a host that steals this VM's CPU, skews a phase once it takes
  // more than a tenth of the machine.
  const share = (seconds: number | undefined, u: PhaseUsage): number =>
    seconds === undefined ? 0 : seconds / (u.wallSeconds * cpuCount);
  const noisy = Object.entries(run.phases)
    // A phase shorter than half a second is too short for the share to mean anything.
    .filter(([, u]) => u.wallSeconds >= 0.5)
    .filter(([, u]) => share(u.otherCpuSeconds, u) > 0.1 || share(u.stealSeconds, u) > 0.1)
    .map(
      ([name, u]) =>
        `${name} (others ${Math.round(share(u.otherCpuSeconds, u) * 100)}%, steal ${Math.round(share(u.stealSeconds, u) * 100)}%)`,
    );
  if (noisy.length > 0) {
    out.push(
      `- WARNING: this machine was not quiet; share of its ${cpuCount} CPUs taken by other processes or by the VM host during ${noisy.join(', ')}. Treat those figures as noisy.`,
    );
  }
  out.push(
    '- MB/s is 10^6 bytes per second. Ratios above 1x favour Shoal for throughput; for RSS, lower is better.',
  );
  if (failures.length > 0) out.push('', 'Failures:', ...failures.map((f) => `- ${f}`));
  return out.join('\n') + '\n';
}

function toJson(run: Run, failures: string[]): unknown {
  const s = run.shoal;
  const b = run.baseline;
  const baselinePeak = run.peaks['baseline'];
  const copies = s?.allCopiesSeconds;
  return {
    startedAt: run.startedAt.toISOString(),
    durationSeconds: round((Date.now() - run.startedAt.getTime()) / 1000, 1),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      totalMemMiB: Math.round(totalmem() / MiB),
      node: process.version,
      platform: process.platform,
      loadAverage1m: { atStart: round(run.loadAtStart, 2), atEnd: round(run.loadAtEnd, 2) },
    },
    config: {
      nodes: NODES,
      replicas: REPLICAS,
      writeQuorum: WRITE_QUORUM,
      bigBytes: run.options.bigBytes,
      smallBytes: SMALL_BYTES,
      concurrency: CONCURRENCY,
      smallSeconds: run.options.smallSeconds,
      smallMaxOps: SMALL_MAX_OPS,
      baselineOnly: run.options.baselineOnly,
      baselineUpload: 'raw PUT body, fsync before 201 (not multipart)',
    },
    figures: {
      bigUploadMBps: triple(value(s?.bigUpload)?.mbPerSec, value(b.bigUpload)?.mbPerSec),
      bigDownloadMBps: triple(value(s?.bigDownload)?.mbPerSec, value(b.bigDownload)?.mbPerSec),
      smallUploadOpsPerSec: triple(value(s?.smallUpload)?.opsPerSec, value(b.smallUpload)?.opsPerSec),
      smallDownloadOpsPerSec: triple(value(s?.smallDownload)?.opsPerSec, value(b.smallDownload)?.opsPerSec),
      peakRssMiB: Object.fromEntries(
        run.nodeLabels.map((l) => [l, triple(mib(run.peaks[l]), mib(baselinePeak))]),
      ),
      baselinePeakRssMiB: mib(baselinePeak) ?? null,
      secondsUntilAllCopies: copies?.ok ? copies.value : null,
    },
    results: { shoal: s ?? null, baseline: b },
    phases: Object.fromEntries(
      Object.entries(run.phases).map(([name, usage]) => [
        name,
        {
          wallSeconds: usage.wallSeconds,
          cpuSeconds: usage.cpuSeconds,
          otherCpuSeconds: usage.otherCpuSeconds ?? null,
          stealSeconds: usage.stealSeconds ?? null,
          peakRssMiB: Object.fromEntries(Object.entries(usage.peakRssBytes).map(([k, v]) => [k, mib(v)])),
        },
      ]),
    ),
    failures,
  };
}

function triple(
  shoal: number | undefined,
  baseline: number | undefined,
): { shoal: number | null; baseline: number | null; ratio: number | null } {
  return { shoal: shoal ?? null, baseline: baseline ?? null, ratio: ratio(shoal, baseline) ?? null };
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  },
);
