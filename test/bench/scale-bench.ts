import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { checksumsOf } from '../../shared/blocks';
import { PeerClient } from '../../services/storage-node/src/peers/peer-client';
import { CLI, SECRET, freePort, repoRoot } from '../helpers/cluster';
import {
  MiB,
  attempt,
  killPids,
  logger,
  machineCpuSeconds,
  mib,
  ownChildPids,
  readProcStats,
  round,
  sleep,
  table,
  type Outcome,
} from './bench-kit';
import { summariseProfiles, type PhaseWindow } from './cpuprofile-summary';
import { scaleFile } from './fill-store';

/**
 * `npm run bench:scale`: Shoal with a million small files.
 *
 *  1. Fill. One node's data dir is filled while it is stopped, by fill-store.ts, through the
 *     node's own BlobStore and MetadataStore (the replica write path without its two HTTP
 *     requests; see there). The other nodes' data dirs are copies of it (`cp -a`): in a 3-node
 *     cluster with N=3 every node holds every file, and a replica's data dir is the same bytes.
 *     A sample also goes through the internal replica route (PUT /internal/v1/blobs/:id and its
 *     commit, signed) of a running node, to compare the two ways in.
 *  2. One node holding them all, alone: time from spawn to /readyz 200; RSS when idle against an
 *     empty node's; every file listed through GET /files (pages of 1000), files/s and RSS.
 *  3. Repair: the three nodes up; node-3 loses its disk (SIGKILL, data dir wiped, restarted empty
 *     under the same id, the only loss a 3-node N=3 cluster can rebuild). Watched through
 *     GET /cluster until no node reports under-replicated files and node-3 holds every file:
 *     files/s, and per surviving node (the two that serve the copies).
 *
 * Flags (`npm run bench:scale -- --files 100000`):
 *   --files N            files on the node, default 1,000,000
 *   --file-bytes B       size of each, default 1024
 *   --data-dir DIR       keep the filled data dir there and reuse it in later runs (the fill of a
 *                        million files takes a while); default: a temp dir, removed at the end
 *   --no-fsync-fill      fill under eatmydata (fsync made a no-op, one sync at the end): the same
 *                        data dir, sooner; the fill rate printed is then not the write path's
 *   --repair-timeout-s S give up watching repair after S seconds (default 3600), report the rate
 *   --skip-repair        only steps 1 and 2
 *   --profile            nodes under --cpu-prof; profiles cut into start-up, listing and repair,
 *                        summarised into .bench/scale-profile-<time>/
 * Figures go to stdout and .bench/scale.json (plus a timestamped copy).
 */

const log = logger('bench:scale');
const ROUTE_SAMPLE = 5_000;
const LIST_PAGE = 1000;
const REPLICAS = 3;
const WRITE_QUORUM = 2;
const IDLE_SAMPLE_MS = 10_000;
const GOALS = { readyMs: 10_000, listFilesPerSec: 50_000, repairFilesPerSecPerNode: 1_000 };

interface Options {
  files: number;
  fileBytes: number;
  dataDir: string | undefined;
  fsyncFill: boolean;
  repairTimeoutS: number;
  skipRepair: boolean;
  profile: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    files: 1_000_000,
    fileBytes: 1024,
    dataDir: undefined,
    fsyncFill: true,
    repairTimeoutS: 3600,
    skipRepair: false,
    profile: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const int = (): number => {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 0) throw new Error(`${arg} needs a whole number`);
      return n;
    };
    if (arg === '--files') o.files = int();
    else if (arg === '--file-bytes') o.fileBytes = int();
    else if (arg === '--data-dir') o.dataDir = next();
    else if (arg === '--no-fsync-fill') o.fsyncFill = false;
    else if (arg === '--repair-timeout-s') o.repairTimeoutS = int();
    else if (arg === '--skip-repair') o.skipRepair = true;
    else if (arg === '--profile') o.profile = true;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (o.files < 1) throw new Error('--files must be at least 1');
  return o;
}

// ---------------------------------------------------------------------------------------------
// Nodes, spawned here (not TestCluster): each on a data dir this bench owns and keeps

class NodeProc {
  proc: ChildProcess | undefined;
  exit: Promise<number | null> | undefined;
  spawnedAt = 0;
  spawnedUs = 0;
  readonly url: string;

  constructor(
    readonly id: string,
    readonly port: number,
    readonly dataDir: string,
    readonly logFile: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** `label` names its CPU profile, when it runs under --cpu-prof. */
  start(seeds: string[], runtimeFlags: string[], label = this.id): void {
    const args = [
      ...runtimeFlags,
      CLI,
      'node',
      ...['--host', '127.0.0.1', '--port', String(this.port), '--node-id', this.id],
      ...['--data-dir', this.dataDir, '--advertise-url', this.url, '--cluster-secret', SECRET],
      ...['--replicas', String(REPLICAS), '--write-quorum', String(WRITE_QUORUM)],
      ...(seeds.length ? ['--seeds', seeds.join(',')] : []),
    ];
    const fd = openSync(this.logFile, 'a');
    this.spawnedAt = performance.now();
    this.spawnedUs = Number(process.hrtime.bigint() / 1000n);
    const proc = spawn(process.execPath, args, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, SHOAL_LOG_LEVEL: process.env.SHOAL_LOG_LEVEL ?? 'info' },
    });
    closeSync(fd);
    if (proc.pid !== undefined && runtimeFlags.length > 0) profiled.set(proc.pid, label);
    this.proc = proc;
    this.exit = new Promise((res) => proc.once('exit', (code) => res(code)));
  }

  /** Milliseconds from spawn to the first /readyz 200 (polled every 20 ms). */
  async waitReady(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const proc = this.proc;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(
          `${this.id} exited (${proc?.exitCode ?? proc?.signalCode ?? 'stopped'}): ${this.tail()}`,
        );
      const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(
        () => undefined,
      );
      if (res) await res.arrayBuffer().catch(() => undefined);
      if (res?.status === 200) return performance.now() - this.spawnedAt;
      if (performance.now() > deadline) throw new Error(`${this.id} not ready within ${timeoutMs / 1000} s`);
      await sleep(20);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.proc || !this.exit) return;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc?.kill('SIGKILL'), 60_000);
    await this.exit;
    clearTimeout(timer);
    this.proc = undefined;
    this.exit = undefined;
  }

  tail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  }
}

/** Pid -> name of each node process started under --cpu-prof, to name its profile. */
const profiled = new Map<number, string>();

/** RSS of some processes, sampled every 200 ms while running. */
class RssSampler {
  private readonly timer: NodeJS.Timeout;
  readonly peak = new Map<string, number>();
  readonly last = new Map<string, number>();

  constructor(private readonly nodes: NodeProc[]) {
    this.timer = setInterval(() => this.sample(), 200);
    this.sample();
  }

  sample(): void {
    for (const n of this.nodes) {
      if (!n.pid) continue;
      const rss = readProcStats(n.pid).rssBytes;
      if (rss === undefined) continue;
      this.last.set(n.id, rss);
      this.peak.set(n.id, Math.max(this.peak.get(n.id) ?? 0, rss));
    }
  }

  stop(): Record<string, { peakMiB: number | undefined; lastMiB: number | undefined }> {
    this.sample();
    clearInterval(this.timer);
    return Object.fromEntries(
      this.nodes.map((n) => [n.id, { peakMiB: mib(this.peak.get(n.id)), lastMiB: mib(this.last.get(n.id)) }]),
    );
  }
}

function cpuOf(nodes: NodeProc[]): Record<string, number> {
  return Object.fromEntries(nodes.map((n) => [n.id, n.pid ? (readProcStats(n.pid).cpuSeconds ?? 0) : 0]));
}

function cpuDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, round(v - (before[k] ?? 0), 2)]));
}

// ---------------------------------------------------------------------------------------------
// Steps

interface FillResult {
  files: number;
  seconds: number;
  filesPerSec: number;
  fsync: boolean;
  reused: boolean;
  copySeconds?: number;
  routeSample?: { files: number; seconds: number; filesPerSec: number };
}

/** Runs fill-store.js on `dataDir` (under eatmydata when asked), streaming its progress. */
async function fillStore(dataDir: string, o: Options): Promise<{ seconds: number }> {
  const script = join(__dirname, 'fill-store.js');
  const args = [
    script,
    dataDir,
    '--files',
    String(o.files),
    '--file-bytes',
    String(o.fileBytes),
    '--concurrency',
    '64',
  ];
  const useEatmydata = !o.fsyncFill;
  if (useEatmydata && spawnSync('eatmydata', ['true']).status !== 0)
    throw new Error('--no-fsync-fill needs eatmydata (apt-get install eatmydata)');
  const [command, ...rest] = useEatmydata
    ? ['eatmydata', process.execPath, ...args]
    : [process.execPath, ...args];
  const proc = spawn(command!, rest, {
    stdio: ['ignore', 'pipe', 'inherit'],
    // More threads for the fs calls of many files at once (the node itself runs with libuv's 4).
    env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
  });
  let seconds = NaN;
  for await (const line of createInterface({ input: proc.stdout! })) {
    const m = JSON.parse(line) as { progress?: number; done?: number; seconds: number };
    if (m.progress !== undefined)
      log(
        `fill: ${m.progress} files in ${m.seconds} s (${Math.round(m.progress / Math.max(1, m.seconds))}/s)`,
      );
    if (m.done !== undefined) seconds = m.seconds;
  }
  const code = await new Promise<number | null>((res) =>
    proc.exitCode !== null ? res(proc.exitCode) : proc.once('exit', res),
  );
  if (code !== 0) throw new Error(`fill-store exited with ${code}`);
  if (useEatmydata) spawnSync('sync');
  return { seconds };
}

/** How many live files a stopped node's data dir holds, read from its SQLite. */
function filesIn(dataDir: string): number {
  if (!existsSync(join(dataDir, 'metadata.sqlite'))) return 0;
  // better-sqlite3 is a dependency already; opened read-only, never while a node runs on it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3') as typeof import('better-sqlite3');
  const db = new Database(join(dataDir, 'metadata.sqlite'), { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM files WHERE state = 'live'").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** The internal replica route of a running node: PUT the bytes, then commit, as a peer does. */
async function routeSample(
  dir: string,
  o: Options,
): Promise<{ files: number; seconds: number; filesPerSec: number }> {
  const node = new NodeProc(
    'route-sample',
    await freePort(),
    join(dir, 'route-sample'),
    join(dir, 'route-sample.log'),
  );
  node.start([], []);
  try {
    await node.waitReady(60_000);
    const peers = new PeerClient({ nodeId: 'bench', secret: SECRET });
    let next = 0;
    const start = performance.now();
    const worker = async (): Promise<void> => {
      while (next < ROUTE_SAMPLE) {
        const { meta, data } = scaleFile('route-sample', next++, o.fileBytes);
        const prepared = await peers.prepareUpload(node.url, meta.id, Readable.from([data]));
        await peers.commitUpload(node.url, meta.id, {
          token: prepared.token,
          meta,
          heldFor: null,
          checksums: checksumsOf(data).toString('base64'),
        });
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const seconds = (performance.now() - start) / 1000;
    await peers.close();
    return { files: ROUTE_SAMPLE, seconds: round(seconds, 1), filesPerSec: round(ROUTE_SAMPLE / seconds, 0) };
  } finally {
    await node.stop();
    rmSync(node.dataDir, { recursive: true, force: true });
  }
}

interface SingleNodeResult {
  empty: { readyMs: number; idleRssMiB: { peakMiB: number | undefined; lastMiB: number | undefined } };
  full: {
    readyMs: number;
    startupPeakRssMiB: number | undefined;
    idleRssMiB: { peakMiB: number | undefined; lastMiB: number | undefined };
    idleCpuSeconds: number;
  };
  listing: {
    files: number;
    pages: number;
    seconds: number;
    filesPerSec: number;
    peakRssMiB: number | undefined;
    cpuSeconds: number;
    afterRssMiB: number | undefined;
  };
  windows: PhaseWindow[];
}

async function idleRss(
  node: NodeProc,
): Promise<{ peakMiB: number | undefined; lastMiB: number | undefined }> {
  const rss = new RssSampler([node]);
  await sleep(IDLE_SAMPLE_MS);
  return rss.stop()[node.id]!;
}

async function singleNode(
  dir: string,
  fullDir: string,
  o: Options,
  runtimeFlags: string[],
): Promise<SingleNodeResult> {
  const windows: PhaseWindow[] = [];
  const empty = new NodeProc(
    'node-1',
    await freePort(),
    join(dir, 'empty-node'),
    join(dir, 'empty-node.log'),
  );
  log('an empty node alone: start-up and idle RSS');
  empty.start([], []);
  const emptyReady = await empty.waitReady(60_000);
  const emptyIdle = await idleRss(empty);
  await empty.stop();

  const node = new NodeProc('node-1', await freePort(), fullDir, join(dir, 'node-1-alone.log'));
  log(`node-1 alone with ${o.files} files: start-up`);
  const label = 'node-1 alone';
  node.start([], runtimeFlags, label);
  const readyMs = await node.waitReady(30 * 60_000);
  windows.push({
    name: 'start-up (spawn -> ready)',
    startUs: node.spawnedUs,
    endUs: node.spawnedUs + readyMs * 1000,
  });
  const startupPeak = readProcStats(node.pid!).hwmBytes;
  log(`ready after ${round(readyMs, 0)} ms; idle RSS for ${IDLE_SAMPLE_MS / 1000} s`);
  const cpu0 = cpuOf([node]);
  const idleStartUs = Number(process.hrtime.bigint() / 1000n);
  const idle = await idleRss(node);
  const idleCpu = cpuDelta(cpu0, cpuOf([node]))[node.id] ?? 0;
  windows.push({
    name: `idle ${IDLE_SAMPLE_MS / 1000} s after ready`,
    startUs: idleStartUs,
    endUs: Number(process.hrtime.bigint() / 1000n),
    processCpuSeconds: { [label]: idleCpu },
  });

  log('listing every file through GET /files');
  const dispatcher = new Agent({ connections: 2, headersTimeout: 120_000, bodyTimeout: 120_000 });
  const rss = new RssSampler([node]);
  const cpu1 = cpuOf([node]);
  const listStartUs = Number(process.hrtime.bigint() / 1000n);
  const start = performance.now();
  let after = '';
  let files = 0;
  let pages = 0;
  let lastId = '';
  for (;;) {
    const res = await request(`${node.url}/files?limit=${LIST_PAGE}${after ? `&after=${after}` : ''}`, {
      dispatcher,
    });
    const page = (await res.body.json()) as { files: Array<{ id: string }>; next: string | null };
    if (res.statusCode !== 200) throw new Error(`GET /files answered ${res.statusCode}`);
    for (const f of page.files) {
      if (f.id <= lastId) throw new Error(`GET /files listed ${f.id} after ${lastId}`);
      lastId = f.id;
    }
    files += page.files.length;
    pages++;
    if (pages % 100 === 0) log(`listed ${files} files in ${round((performance.now() - start) / 1000, 1)} s`);
    if (!page.next) break;
    after = page.next;
  }
  const seconds = (performance.now() - start) / 1000;
  const listCpu = cpuDelta(cpu1, cpuOf([node]))[node.id] ?? 0;
  windows.push({
    name: 'listing (GET /files, every page)',
    startUs: listStartUs,
    endUs: Number(process.hrtime.bigint() / 1000n),
    processCpuSeconds: { [label]: listCpu },
  });
  const listRss = rss.stop()[node.id]!;
  await dispatcher.close();
  if (files !== o.files) throw new Error(`GET /files listed ${files} files, the node holds ${o.files}`);
  const afterRss = await idleRss(node);
  await node.stop();
  return {
    empty: { readyMs: round(emptyReady, 0), idleRssMiB: emptyIdle },
    full: {
      readyMs: round(readyMs, 0),
      startupPeakRssMiB: mib(startupPeak),
      idleRssMiB: idle,
      idleCpuSeconds: idleCpu,
    },
    listing: {
      files,
      pages,
      seconds: round(seconds, 2),
      filesPerSec: round(files / seconds, 0),
      peakRssMiB: listRss.peakMiB,
      cpuSeconds: listCpu,
      afterRssMiB: afterRss.lastMiB,
    },
    windows,
  };
}

interface ClusterView {
  underReplicatedFiles: number;
  nodes: Array<{
    id: string;
    state: string;
    files?: number;
    copiesMade?: number;
    repairBytesReceived?: number;
    underReplicatedFiles?: number;
  }>;
}

async function clusterView(url: string): Promise<ClusterView | undefined> {
  try {
    const res = await fetch(`${url}/cluster`, { signal: AbortSignal.timeout(10_000) });
    return res.ok ? ((await res.json()) as ClusterView) : undefined;
  } catch {
    return undefined;
  }
}

interface RepairSample {
  s: number;
  node3Files: number | null;
  underReplicatedFiles: number | null;
  answered: number;
}

interface RepairResult {
  clusterReadyMs: number;
  lostNodeReadyMs: number;
  complete: boolean;
  /** From the restart of the emptied node to full redundancy (or to the timeout). */
  seconds: number;
  filesCopied: number;
  filesPerSec: number;
  filesPerSecPerSurvivor: number;
  /** From the first copy seen to the last poll: the copying alone. */
  copyWindowFilesPerSec: number | null;
  copiesMadeByLeader: Record<string, number>;
  cpuSeconds: Record<string, number>;
  peakRssMiB: Record<string, number | undefined>;
  samples: RepairSample[];
  windows: PhaseWindow[];
}

async function repair(
  dir: string,
  template: string,
  replicaDirs: string[],
  o: Options,
  runtimeFlags: string[],
): Promise<RepairResult> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const nodes = [1, 2, 3].map(
    (i) =>
      new NodeProc(
        `node-${i}`,
        ports[i - 1]!,
        i === 1 ? template : replicaDirs[i - 2]!,
        join(dir, `node-${i}.log`),
      ),
  );
  for (const n of nodes.slice(1)) {
    if (filesIn(n.dataDir) === o.files) continue;
    log(`copying the filled data dir to ${n.id} (cp -a)`);
    rmSync(n.dataDir, { recursive: true, force: true });
    const cp = spawnSync('cp', ['-a', template, n.dataDir]);
    if (cp.status !== 0) throw new Error(`cp -a failed: ${cp.stderr?.toString()}`);
    // The one thing a replica's data dir does not share: its identity (the node refuses another's).
    rmSync(join(n.dataDir, 'node-id'), { force: true });
  }
  const seedsOf = (n: NodeProc): string[] => nodes.filter((m) => m !== n).map((m) => m.url);
  log(`starting ${nodes.length} nodes holding ${o.files} files each`);
  const t0 = performance.now();
  for (const n of nodes) n.start(seedsOf(n), runtimeFlags, `${n.id} cluster`);
  try {
    await Promise.all(nodes.map((n) => n.waitReady(30 * 60_000)));
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    throw error;
  }
  const clusterReadyMs = performance.now() - t0;
  // In sync before the loss: every node answers and none reports a file short of copies.
  for (const deadline = performance.now() + 10 * 60_000; ;) {
    const v = await clusterView(nodes[0]!.url);
    if (
      v &&
      v.underReplicatedFiles === 0 &&
      v.nodes.filter((m) => m.state === 'alive' && m.files === o.files).length === 3
    )
      break;
    if (performance.now() > deadline)
      throw new Error('the 3 nodes did not agree they are in sync within 10 minutes');
    await sleep(1_000);
  }

  const lost = nodes[2]!;
  log(`${lost.id} loses its disk: SIGKILL, data dir wiped, restarted empty`);
  await lost.stop('SIGKILL');
  rmSync(lost.dataDir, { recursive: true, force: true });
  const rss = new RssSampler(nodes);
  const machine0 = machineCpuSeconds();
  // The SIGKILLed process wrote no profile; the restarted one's covers the repair.
  lost.start(seedsOf(lost), runtimeFlags, `${lost.id} restarted empty`);
  const repairStartUs = lost.spawnedUs;
  const start = performance.now();
  const lostReadyMs = await lost.waitReady(60_000);
  const cpu0 = cpuOf(nodes.slice(0, 2));
  const cpu0Lost = cpuOf([lost]);
  const samples: RepairSample[] = [];
  let complete = false;
  let lastLog = 0;
  for (;;) {
    const v = await clusterView(nodes[0]!.url);
    const s = (performance.now() - start) / 1000;
    const node3 = v?.nodes.find((m) => m.id === lost.id);
    const answered = v?.nodes.filter((m) => m.files !== undefined).length ?? 0;
    samples.push({
      s: round(s, 1),
      node3Files: node3?.files ?? null,
      underReplicatedFiles: v?.underReplicatedFiles ?? null,
      answered,
    });
    if (v && answered === 3 && v.underReplicatedFiles === 0 && node3?.files === o.files) {
      complete = true;
      break;
    }
    if (s - lastLog >= 30) {
      lastLog = s;
      log(
        `repair: ${node3?.files ?? '?'} of ${o.files} files on ${lost.id} after ${round(s, 0)} s (underReplicatedFiles ${v?.underReplicatedFiles ?? '?'})`,
      );
    }
    if (s > o.repairTimeoutS) break;
    await sleep(2_000);
  }
  const seconds = (performance.now() - start) / 1000;
  const endUs = Number(process.hrtime.bigint() / 1000n);
  const machine1 = machineCpuSeconds();
  const cpu = { ...cpuDelta(cpu0, cpuOf(nodes.slice(0, 2))), ...cpuDelta(cpu0Lost, cpuOf([lost])) };
  const peak = rss.stop();
  const views = await clusterView(nodes[0]!.url);
  const copied = [...samples].reverse().find((x) => x.node3Files !== null)?.node3Files ?? 0;
  const firstCopy = samples.find((x) => (x.node3Files ?? 0) > 0);
  const last = [...samples].reverse().find((x) => x.node3Files !== null);
  const windowRate =
    firstCopy && last && last.s > firstCopy.s
      ? round(((last.node3Files ?? 0) - (firstCopy.node3Files ?? 0)) / (last.s - firstCopy.s), 0)
      : null;
  for (const n of nodes) await n.stop();
  log(
    `machine CPU busy during repair: ${machine0 && machine1 ? round(machine1.busy - machine0.busy, 0) : '?'} s of ${round(seconds * cpus().length, 0)} s`,
  );
  return {
    clusterReadyMs: round(clusterReadyMs, 0),
    lostNodeReadyMs: round(lostReadyMs, 0),
    complete,
    seconds: round(seconds, 1),
    filesCopied: copied,
    filesPerSec: round(copied / seconds, 0),
    filesPerSecPerSurvivor: round(copied / seconds / 2, 0),
    copyWindowFilesPerSec: windowRate,
    copiesMadeByLeader: Object.fromEntries((views?.nodes ?? []).map((m) => [m.id, m.copiesMade ?? 0])),
    cpuSeconds: cpu,
    peakRssMiB: Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, v.peakMiB])),
    samples,
    windows: [
      {
        name: 'repair (restart of the emptied node -> full redundancy)',
        startUs: repairStartUs,
        endUs,
        processCpuSeconds: {
          'node-1 cluster': cpu['node-1'] ?? 0,
          'node-2 cluster': cpu['node-2'] ?? 0,
          'node-3 restarted empty': cpu['node-3'] ?? 0,
        },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const root = mkdtempSync(join(tmpdir(), 'shoal-scale-'));
  const keep = o.dataDir !== undefined;
  const template = o.dataDir ?? join(root, 'node-1');
  const profileDir = o.profile ? join(repoRoot(), '.bench', `scale-profile-${stamp}`) : undefined;
  const rawProfiles = profileDir ? join(profileDir, 'raw') : undefined;
  const runtimeFlags = rawProfiles ? ['--cpu-prof', `--cpu-prof-dir=${rawProfiles}`] : [];
  if (rawProfiles) mkdirSync(rawProfiles, { recursive: true });
  const cleanup = (): void => {
    killPids(ownChildPids());
    rmSync(root, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      log(`${signal}: cleaning up`);
      cleanup();
      process.exit(130);
    });

  try {
    process.env.TMPDIR = root;
    log(
      `load average ${loadavg()
        .map((l) => round(l, 2))
        .join(' ')}; ${o.files} files of ${o.fileBytes} bytes`,
    );

    // 1. Fill.
    let fill: Outcome<FillResult>;
    const have = filesIn(template);
    if (have === o.files) {
      log(`reusing ${template}: it holds ${have} files already`);
      fill = {
        ok: true,
        value: { files: have, seconds: 0, filesPerSec: 0, fsync: o.fsyncFill, reused: true },
      };
    } else {
      if (have > o.files) throw new Error(`${template} holds ${have} files, more than --files ${o.files}`);
      log(`filling ${template} through BlobStore/MetadataStore${o.fsyncFill ? '' : ' under eatmydata'}`);
      fill = await attempt(async () => {
        const { seconds } = await fillStore(template, o);
        return {
          files: o.files - have,
          seconds,
          filesPerSec: round((o.files - have) / seconds, 0),
          fsync: o.fsyncFill,
          reused: false,
        };
      });
      if (!fill.ok) throw new Error(`fill failed: ${fill.error}`);
    }
    log('the internal replica route, for comparison: a sample into a fresh node');
    const route = await attempt(() => routeSample(root, o));
    if (route.ok) fill.value.routeSample = route.value;

    // 2. One node alone.
    const single = await attempt(() => singleNode(root, template, o, runtimeFlags));
    if (!single.ok) log(`single node: ${single.error}`);

    // 3. Repair.
    // With --data-dir, the other nodes' copies are kept beside it too (node-3's refilled by repair).
    const replicaDirs = [2, 3].map((i) => (keep ? `${template}-node-${i}` : join(root, `node-${i}`)));
    const rep = o.skipRepair
      ? undefined
      : await attempt(() => repair(root, template, replicaDirs, o, runtimeFlags));
    if (rep && !rep.ok) log(`repair: ${rep.error}`);

    let profile: string | undefined;
    if (profileDir && rawProfiles)
      profile = writeProfiles(profileDir, rawProfiles, [
        ...(single.ok ? single.value.windows : []),
        ...(rep?.ok ? rep.value.windows : []),
      ]);

    const report = renderReport(o, fill, single, rep);
    process.stdout.write(report);
    const json = {
      startedAt: startedAt.toISOString(),
      durationSeconds: round((Date.now() - startedAt.getTime()) / 1000, 1),
      command: `npm run bench:scale -- ${process.argv.slice(2).join(' ')}`.trim(),
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model,
        totalMemMiB: Math.round(totalmem() / MiB),
        node: process.version,
        loadAverageAtEnd: loadavg().map((l) => round(l, 2)),
      },
      options: o,
      goals: GOALS,
      fill,
      singleNode: single,
      repair: rep ?? null,
      profile: profile ?? null,
    };
    const outDir = join(repoRoot(), '.bench');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'scale.json'), JSON.stringify(json, null, 2) + '\n');
    writeFileSync(join(outDir, `scale-${stamp}.json`), JSON.stringify(json, null, 2) + '\n');
    log(`figures written to ${join(outDir, 'scale.json')}`);
    return single.ok && (rep === undefined || rep.ok) ? 0 : 1;
  } finally {
    if (keep) log(`kept the filled data dir in ${template}`);
    cleanup();
  }
}

function writeProfiles(dir: string, raw: string, windows: PhaseWindow[]): string | undefined {
  const files: Record<string, string> = {};
  for (const f of readdirSync(raw)) {
    const label = profiled.get(Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(f)?.[1]));
    if (!label) continue;
    const dest = join(dir, `${label.replace(/ /g, '_')}.cpuprofile`);
    renameSync(join(raw, f), dest);
    files[label] = dest;
  }
  rmSync(raw, { recursive: true, force: true });
  if (Object.keys(files).length === 0) return undefined;
  writeFileSync(join(dir, 'phases.json'), JSON.stringify(windows, null, 2) + '\n');
  const summary = summariseProfiles(files, windows);
  writeFileSync(join(dir, 'summary.md'), summary.markdown);
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary.json, null, 2) + '\n');
  log(`CPU profiles and their summary in ${dir}`);
  return dir;
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS';
}

function renderReport(
  o: Options,
  fill: Outcome<FillResult>,
  single: Outcome<SingleNodeResult>,
  rep: Outcome<RepairResult> | undefined,
): string {
  const out = [
    '',
    `Shoal scale bench, ${new Date().toISOString()}: ${o.files} files of ${o.fileBytes} bytes; ${cpus().length} CPUs, Node ${process.version}`,
    '',
  ];
  if (fill.ok) {
    const f = fill.value;
    out.push(
      f.reused
        ? `Fill: reused a data dir that already held ${f.files} files.`
        : `Fill: ${f.files} files in ${f.seconds} s (${f.filesPerSec} files/s) through BlobStore.receive + commit in-process${f.fsync ? ', every fsync made' : ', under eatmydata (no fsync; one sync after)'}; the other nodes' data dirs are cp -a copies.`,
    );
    if (f.routeSample)
      out.push(
        `      The internal replica route (PUT /internal/v1/blobs/:id + commit, 32 at once) took ${f.routeSample.files} files at ${f.routeSample.filesPerSec} files/s.`,
      );
  }
  out.push('');
  const rows: string[][] = [['figure', 'value', 'goal', '']];
  if (single.ok) {
    const s = single.value;
    const emptyRss = s.empty.idleRssMiB.lastMiB;
    const fullRss = s.full.idleRssMiB.lastMiB;
    rows.push(
      ['empty node: spawn -> /readyz 200', `${s.empty.readyMs} ms`, '', ''],
      [
        'empty node: idle RSS (last / peak over 10 s)',
        `${emptyRss} / ${s.empty.idleRssMiB.peakMiB} MiB`,
        '',
        '',
      ],
      [
        `node with ${o.files} files: spawn -> /readyz 200`,
        `${s.full.readyMs} ms`,
        `< ${GOALS.readyMs / 1000} s`,
        verdict(s.full.readyMs < GOALS.readyMs),
      ],
      ['  peak RSS during start-up (VmHWM at ready)', `${s.full.startupPeakRssMiB} MiB`, '', ''],
      [
        '  idle RSS (last / peak over 10 s after ready)',
        `${fullRss} / ${s.full.idleRssMiB.peakMiB} MiB`,
        'as an empty node',
        verdict(fullRss !== undefined && emptyRss !== undefined ? fullRss <= emptyRss * 1.1 : undefined),
      ],
      ['  idle CPU in those 10 s', `${s.full.idleCpuSeconds} s`, '', ''],
      [
        '  GET /files, every page of 1000',
        `${s.listing.files} files in ${s.listing.seconds} s = ${s.listing.filesPerSec} files/s`,
        `>= ${GOALS.listFilesPerSec} files/s`,
        verdict(s.listing.filesPerSec >= GOALS.listFilesPerSec),
      ],
      [
        '  RSS while listing (peak) / after',
        `${s.listing.peakRssMiB} / ${s.listing.afterRssMiB} MiB`,
        'as an empty node',
        verdict(
          s.listing.peakRssMiB !== undefined && emptyRss !== undefined
            ? s.listing.peakRssMiB <= emptyRss * 1.1
            : undefined,
        ),
      ],
      [
        '  node CPU while listing',
        `${s.listing.cpuSeconds} s (${round((s.listing.cpuSeconds * 1e6) / s.listing.files, 1)} us/file)`,
        '',
        '',
      ],
    );
  } else rows.push(['single node', `FAILED: ${single.error}`, '', '']);
  if (rep) {
    if (rep.ok) {
      const r = rep.value;
      rows.push(
        ['3 nodes with the files each: spawn -> all ready', `${r.clusterReadyMs} ms`, '', ''],
        ['node-3 wiped and restarted: spawn -> ready', `${r.lostNodeReadyMs} ms`, '', ''],
        [
          r.complete ? 'restart -> full redundancy' : `restart -> gave up after ${o.repairTimeoutS} s`,
          `${r.seconds} s, ${r.filesCopied} files copied`,
          '',
          r.complete ? '' : 'INCOMPLETE',
        ],
        [
          'repair rate (files copied / that time)',
          `${r.filesPerSec} files/s = ${r.filesPerSecPerSurvivor} per surviving node`,
          `>= ${GOALS.repairFilesPerSecPerNode}/s per surviving node`,
          verdict(r.filesPerSecPerSurvivor >= GOALS.repairFilesPerSecPerNode),
        ],
        [
          '  while copies were arriving',
          r.copyWindowFilesPerSec === null ? 'n/a' : `${r.copyWindowFilesPerSec} files/s`,
          '',
          '',
        ],
        [
          '  node CPU during repair',
          Object.entries(r.cpuSeconds)
            .map(([k, v]) => `${k} ${v} s`)
            .join(', '),
          '',
          '',
        ],
        [
          '  peak RSS during repair',
          Object.entries(r.peakRssMiB)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ') + ' MiB',
          '< 200 MiB',
          verdict(Object.values(r.peakRssMiB).every((v) => v !== undefined && v < 200)),
        ],
        [
          '  copies made, by partition leader',
          Object.entries(r.copiesMadeByLeader)
            .map(([k, v]) => `${k} ${v}`)
            .join(', '),
          '',
          '',
        ],
      );
      if (!r.complete && r.filesPerSec > 0)
        rows.push([
          '  at that rate, full redundancy after',
          `${round(o.files / r.filesPerSec / 60, 0)} min`,
          '',
          '',
        ]);
    } else rows.push(['repair', `FAILED: ${rep.error}`, '', '']);
  }
  out.push(table(rows), '');
  out.push(
    'Notes:',
    '- Nodes run with the product defaults (repair every 10 s, 4 copies at once, 100 MiB/s; presence walk 5,000 stats/s), N=3, W=2, logs at info to a file.',
    '- Idle RSS is sampled every 200 ms for 10 s; "as an empty node" allows 10% over the empty node\'s last sample.',
    '- Full redundancy: GET /cluster on node-1 with all 3 nodes answering, underReplicatedFiles 0 and node-3 holding every file; polled every 2 s.',
    `- Load average at the end: ${loadavg()
      .map((l) => round(l, 2))
      .join(' ')}.`,
  );
  return out.join('\n') + '\n';
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
