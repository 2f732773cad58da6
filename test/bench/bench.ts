import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent } from 'undici';
import { TestCluster, repoRoot } from '../helpers/cluster';
import {
  MiB,
  ProcessWatch,
  attempt,
  fmtMiB,
  killPids,
  logger,
  median,
  mib,
  noiseOf,
  ownChildPids,
  ratio,
  round,
  table,
  waitForQuiet,
  type Outcome,
  type PhaseUsage,
} from './bench-kit';
import { summariseProfiles, type PhaseWindow } from './cpuprofile-summary';
import {
  Bare3System,
  DEFAULT_SWIFT_SETUP,
  NginxSystem,
  S3System,
  ShoalSystem,
  SwiftSystem,
  curlAvailable,
  curlDownload,
  download,
  nginxAvailable,
  type SourceFile,
  type SystemName,
  type SystemUnderTest,
  type Uploaded,
} from './systems';
import { runWrk, splitConnections, wrkAvailable, type WrkResult } from './wrk';

/**
 * `npm run bench`: the workloads of the performance issue, side by side in one run on this
 * machine, against
 *   - Shoal: 3 real node processes, N=3, W=2;
 *   - s3: the same 3 nodes through their S3 listeners (PutObject and GetObject, SigV4), for the
 *     goal of an S3 API within 10% of the native one;
 *   - bare3: a bare node:http server writing 3 fsync'd copies of each upload (baseline-server.ts),
 *     the ceiling for uploads;
 *   - nginx: serving bare3's copies from the same disk, the ceiling for downloads;
 *   - OpenStack Swift all-in-one with 3 replicas, the established peer (when it can be started).
 * It prints every figure, the ratios of the issue's goals table with PASS/MISS, and keeps all of
 * it as JSON in .bench/last.json plus a timestamped copy. Figures are ratios within one run on
 * one machine; nothing here is a timed assertion of the test suite.
 *
 * Flags (`npm run bench -- --rounds 3`):
 *   --rounds N          repeat every workload N times (systems interleaved), report median and range
 *   --small-seconds S   length of each 16 KiB phase, default 10
 *   --big-mib N         size of the large file, default 256
 *   --only a,b          systems to run, of shoal, s3, bare3, nginx, swift (default: all that can start)
 *   --no-swift          skip Swift;  --keep-swift  leave a Swift this run started running
 *   --swift-setup PATH  Swift's setup.sh (or SHOAL_BENCH_SWIFT_SETUP), default /work/shared/tools/swift/setup.sh
 *   --quiet-wait S      before each system's turn, wait up to S s (default 120; 0: never) for 3 s in
 *                       which other programs use under 15% of the machine
 *   --profile           Shoal only (native and S3, or those of them --only names), every node under
 *                       `node --cpu-prof`; the profiles, cut by phase and summarised, go to
 *                       .bench/profile-<time>/ (see cpuprofile-summary.ts)
 */

const SMALL_BYTES = 16 * 1024;
const CONCURRENCY = 16;
const NODES = 3;
const REPLICAS = 3;
const WRITE_QUORUM = 2;
/** Longest wait, after an upload is acknowledged, for its third copy before the download. */
const REPLICATION_WAIT_MS = 60_000;
/** Downloads of this many small files are checked (length and sha256) before wrk runs. */
const SMALL_VERIFY = 32;
/** A small-upload phase stops at whichever comes first: its time or this many operations. */
const SMALL_MAX_OPS = 200_000;

const ALL_SYSTEMS: readonly SystemName[] = ['shoal', 's3', 'bare3', 'nginx', 'swift'];
/** The systems that run on the Shoal cluster. */
const SHOAL_SYSTEMS: readonly SystemName[] = ['shoal', 's3'];

/** The issue's goals: Shoal against Swift and against the ceiling of each workload. */
const GOALS = {
  bigUpload: { swift: 2, ceiling: 0.7, ceilingName: 'bare3' as const },
  bigDownload: { swift: 3, ceiling: 0.5, ceilingName: 'nginx' as const },
  smallUpload: { swift: 10, ceiling: 0.7, ceilingName: 'bare3' as const, cpuMsPerOp: 1 },
  smallDownload: { swift: 20, ceiling: 0.25, ceilingName: 'nginx' as const },
  rssMiB: 200,
  /** S3 PUT and GET within 10% of the native API: S3's rate over native's, in every workload. */
  s3VsNative: 0.9,
};

type Workload = 'bigUpload' | 'bigDownload' | 'smallUpload' | 'smallDownload';
const WORKLOADS: readonly Workload[] = ['bigUpload', 'bigDownload', 'smallUpload', 'smallDownload'];
const PHASE_OF: Record<Workload, string> = {
  bigUpload: 'big-upload',
  bigDownload: 'big-download',
  smallUpload: 'small-upload',
  smallDownload: 'small-download',
};

const log = logger('bench');

interface Options {
  rounds: number;
  bigBytes: number;
  smallSeconds: number;
  systems: Set<SystemName>;
  swiftSetup: string;
  keepSwift: boolean;
  profile: boolean;
  /** Longest wait for a quiet machine before each system's workloads in a round (0: none). */
  quietWaitSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    rounds: 1,
    bigBytes: 256 * MiB,
    smallSeconds: 10,
    systems: new Set(ALL_SYSTEMS),
    swiftSetup: process.env.SHOAL_BENCH_SWIFT_SETUP ?? DEFAULT_SWIFT_SETUP,
    keepSwift: false,
    profile: false,
    quietWaitSeconds: 120,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const positive = (): number => {
      const n = Number(next());
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${arg} needs a positive number`);
      return n;
    };
    if (arg === '--rounds') options.rounds = Math.round(positive());
    else if (arg === '--big-mib') options.bigBytes = Math.round(positive() * MiB);
    else if (arg === '--small-seconds') options.smallSeconds = positive();
    else if (arg === '--no-swift') options.systems.delete('swift');
    else if (arg === '--keep-swift') options.keepSwift = true;
    else if (arg === '--swift-setup') options.swiftSetup = next();
    else if (arg === '--profile') options.profile = true;
    else if (arg === '--quiet-wait') options.quietWaitSeconds = Number(next());
    else if (arg === '--only') {
      const names = next().split(',');
      for (const n of names)
        if (!ALL_SYSTEMS.includes(n as SystemName)) throw new Error(`--only: unknown system ${n}`);
      options.systems = new Set(names as SystemName[]);
    } else throw new Error(`unknown argument ${arg}`);
  }
  if (options.profile) {
    const shoal = SHOAL_SYSTEMS.filter((s) => options.systems.has(s));
    options.systems = new Set(shoal.length > 0 ? shoal : ['shoal']);
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Workloads

interface BigResult {
  bytes: number;
  seconds: number;
  mibPerSec: number;
  via: string;
}

interface SmallResult {
  ops: number;
  errors: number;
  firstError?: string;
  seconds: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

interface SystemRound {
  bigUpload?: Outcome<BigResult>;
  allCopiesSeconds?: Outcome<number | null>;
  bigDownload?: Outcome<BigResult>;
  smallUpload?: Outcome<SmallResult>;
  smallDownload?: Outcome<SmallResult & { perTarget?: WrkResult['perTarget'] }>;
}

/** Writes `size` random bytes to `path` (random, so no layer can compress or dedupe them). */
async function makeRandomFile(path: string, size: number): Promise<SourceFile> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  const fh = await open(path, 'w');
  try {
    for (let written = 0; written < size;) {
      const chunk = randomBytes(Math.min(4 * MiB, size - written));
      sha.update(chunk);
      md5.update(chunk);
      await fh.write(chunk);
      written += chunk.length;
    }
  } finally {
    await fh.close();
  }
  return { path, size, sha256: sha.digest('hex'), md5: md5.digest('hex') };
}

function bigResult(bytes: number, seconds: number, via: string): BigResult {
  return { bytes, seconds: round(seconds, 3), mibPerSec: round(bytes / MiB / seconds, 1), via };
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
    latencyMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: round(latencies.at(-1) ?? 0, 2) },
  };
}

/** A fresh 16 KiB payload per operation, so content-addressed storage could not skip any. */
function smallPayload(base: Buffer, seq: number): Buffer {
  const data = Buffer.from(base);
  data.writeUInt32BE(seq, 0);
  data.writeUInt32BE(process.pid, 4);
  data.writeDoubleBE(performance.now(), 8);
  return data;
}

interface RoundContext {
  round: number;
  watch: ProcessWatch;
  dispatcher: Agent;
  workDir: string;
  big: SourceFile;
  options: Options;
  /** What bare3 stored this round: nginx serves the same files. */
  bare3Files?: { big?: Uploaded; small: Uploaded[] };
}

/** Every workload against one system, in order: large up, large down, small up, small down. */
async function benchSystem(system: SystemUnderTest, rc: RoundContext): Promise<SystemRound> {
  const { watch, options, dispatcher } = rc;
  const phase = <T>(name: string, fn: () => Promise<T>): Promise<T> =>
    watch.phase(`${rc.round}:${system.name}:${name}`, fn);
  const out: SystemRound = {};
  const endpointName = (via: number): string =>
    SHOAL_SYSTEMS.includes(system.name) ? `node-${(via % system.endpoints.length) + 1}` : system.name;
  const uploadVia = 0;
  // Read back from a node other than the one that took the upload.
  const downloadVia = system.endpoints.length > 1 ? 1 : 0;
  const url = (via: number, id: string): string =>
    `${system.endpoints[via % system.endpoints.length]}${system.pathOf(id, via)}`;

  // Large file.
  let big: Uploaded | undefined;
  if (system.takesUploads) {
    log(`round ${rc.round}, ${system.name}: uploading ${fmtMiB(rc.big.size)} to ${endpointName(uploadVia)}`);
    out.bigUpload = await attempt(() =>
      phase('big-upload', async () => {
        const { seconds, uploaded } = await system.uploadFile(rc.big, uploadVia);
        big = uploaded;
        return bigResult(rc.big.size, seconds, endpointName(uploadVia));
      }),
    );
    if (system.name === 'bare3') rc.bare3Files = { ...(big ? { big } : {}), small: [] };
  } else big = rc.bare3Files?.big;
  const target = big;
  if (!target) out.bigDownload = { ok: false, error: 'skipped: no large file stored' };
  else {
    if (system.endpoints.length > 1) {
      log(`round ${rc.round}, ${system.name}: waiting for all ${REPLICAS} copies of the large file`);
      out.allCopiesSeconds = await attempt(() =>
        phase('big-replication-wait', async () => {
          const start = performance.now();
          const done = await system.waitForAllCopies(target.id, uploadVia, REPLICATION_WAIT_MS);
          return done ? round((performance.now() - start) / 1000, 2) : null;
        }),
      );
    }
    log(`round ${rc.round}, ${system.name}: downloading it from ${endpointName(downloadVia)}`);
    out.bigDownload = await attempt(async () => {
      // Timed: curl, the bytes counted and dropped. The sha256 check is a second, untimed read:
      // hashing in the client would cap the figure near the client's sha256 speed, below nginx's.
      const timed = await phase('big-download', () =>
        curlDownload(url(downloadVia, target.id), system.headers),
      );
      if (timed.bytes !== rc.big.size) throw new Error(`large download: got ${timed.bytes} bytes`);
      const check = await download(url(downloadVia, target.id), dispatcher, {
        headers: system.headers,
        hash: true,
        big: true,
      });
      if (check.sha256 !== rc.big.sha256) throw new Error(`large download: sha256 ${check.sha256} differs`);
      return bigResult(rc.big.size, timed.seconds, endpointName(downloadVia));
    });
  }

  // Small files.
  let small: Uploaded[];
  if (system.takesUploads) {
    const base = randomBytes(SMALL_BYTES);
    const stored: Uploaded[] = [];
    const uploadOp = async (client: number, seq: number): Promise<void> => {
      stored.push(await system.uploadBuffer(smallPayload(base, seq), client % system.endpoints.length));
    };
    log(
      `round ${rc.round}, ${system.name}: 16 KiB uploads from ${CONCURRENCY} clients for ${options.smallSeconds} s`,
    );
    // A short untimed warm-up opens the connections and lets the servers JIT their hot paths.
    await attempt(() => runClients(1, CONCURRENCY * 4, (c, seq) => uploadOp(c, 0x80000000 + seq)));
    out.smallUpload = await attempt(() =>
      phase('small-upload', () => runClients(options.smallSeconds, SMALL_MAX_OPS, uploadOp)),
    );
    small = stored;
    if (system.name === 'bare3' && rc.bare3Files) rc.bare3Files.small = stored;
  } else small = rc.bare3Files?.small ?? [];

  if (small.length === 0) out.smallDownload = { ok: false, error: 'skipped: no 16 KiB file stored' };
  else {
    log(
      `round ${rc.round}, ${system.name}: 16 KiB downloads, wrk, ${CONCURRENCY} connections, ${options.smallSeconds} s`,
    );
    out.smallDownload = await attempt(async () => {
      for (let i = 0; i < Math.min(SMALL_VERIFY, small.length); i++) {
        const file = small[Math.floor((i * small.length) / SMALL_VERIFY)]!;
        const via = (file.via + 1) % system.endpoints.length;
        const got = await download(url(via, file.id), dispatcher, {
          headers: system.headers,
          hash: true,
          big: false,
        });
        if (got.sha256 !== file.sha256 || got.bytes !== file.size)
          throw new Error(`16 KiB download of ${file.id}: ${got.bytes} bytes, sha256 ${got.sha256}`);
      }
      // One wrk per endpoint, the 16 connections split between them: Shoal's load is spread over
      // its 3 nodes, each walking every file (all 3 hold a copy of each) from its own offset. S3's
      // paths are presigned for the host they go to.
      const conns = splitConnections(CONCURRENCY, system.endpoints.length);
      const targets = system.endpoints.map((baseUrl, i) => ({
        baseUrl,
        paths: small.map((f) => system.pathOf(f.id, i)),
        connections: conns[i]!,
        threads: system.endpoints.length > 1 ? 1 : 2,
      }));
      const dir = join(rc.workDir, `wrk-${rc.round}-${system.name}`);
      mkdirSync(dir, { recursive: true });
      await runWrk(dir, targets, 1, system.headers); // warm-up
      const r = await phase('small-download', () =>
        runWrk(dir, targets, options.smallSeconds, system.headers),
      );
      return r;
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Figures across rounds

interface Figure {
  /** Median over the rounds that succeeded. */
  median: number | undefined;
  min: number | undefined;
  max: number | undefined;
  values: number[];
}

function figure(values: number[]): Figure {
  return {
    median: median(values),
    min: values.length ? Math.min(...values) : undefined,
    max: values.length ? Math.max(...values) : undefined,
    values,
  };
}

interface WorkloadFigures {
  /** MiB/s for the large file, ops/s for the small ones. */
  rate: Figure;
  /** Server CPU (all processes of the system) per operation in ms; for large files, per MiB. */
  cpuMsPerUnit: Figure;
  /** Highest RSS of each process group in this workload over all rounds, MiB. */
  peakRssMiB: Record<string, number>;
  /** The anonymous part of that peak (heap, buffers, malloc; the rest is code and libraries). */
  peakRssAnonMiB: Record<string, number>;
  latencyMs?: { p50: number; p99: number };
  clientCpuSeconds: Figure;
  errors: string[];
}

function collectFigures(
  rounds: Array<Partial<Record<SystemName, SystemRound>>>,
  phases: Record<string, PhaseUsage>,
  system: SystemName,
  workload: Workload,
  serverGroups: string[],
): WorkloadFigures | undefined {
  const rates: number[] = [];
  const cpu: number[] = [];
  const client: number[] = [];
  const peak: Record<string, number> = {};
  const peakAnon: Record<string, number> = {};
  const errors: string[] = [];
  let latency: { p50: number; p99: number } | undefined;
  let any = false;
  rounds.forEach((r, i) => {
    const o = r[system]?.[workload];
    if (!o) return;
    any = true;
    if (!o.ok) {
      errors.push(`round ${i + 1}: ${o.error}`);
      return;
    }
    const v = o.value as BigResult | SmallResult;
    const usage = phases[`${i + 1}:${system}:${PHASE_OF[workload]}`];
    const serverCpu = usage ? serverGroups.reduce((s, g) => s + (usage.cpuSeconds[g] ?? 0), 0) : undefined;
    if ('mibPerSec' in v) {
      rates.push(v.mibPerSec);
      if (serverCpu !== undefined) cpu.push(round((serverCpu * 1000) / (v.bytes / MiB), 3));
    } else {
      if (v.errors > 0) errors.push(`round ${i + 1}: ${v.errors} failed operations, first: ${v.firstError}`);
      rates.push(v.opsPerSec);
      if (serverCpu !== undefined && v.ops > 0) cpu.push(round((serverCpu * 1000) / v.ops, 3));
      latency = { p50: v.latencyMs.p50, p99: v.latencyMs.p99 };
    }
    if (usage) {
      client.push(usage.clientCpuSeconds);
      for (const g of serverGroups) {
        const p = mib(usage.peakRssBytes[g]);
        if (p !== undefined && p > (peak[g] ?? 0)) {
          peak[g] = p;
          const split = usage.peakRssSplit?.[g];
          if (split) peakAnon[g] = mib(split.anonBytes) ?? 0;
        }
      }
    }
  });
  if (!any) return undefined;
  return {
    rate: figure(rates),
    cpuMsPerUnit: figure(cpu),
    peakRssMiB: peak,
    peakRssAnonMiB: peakAnon,
    ...(latency ? { latencyMs: latency } : {}),
    clientCpuSeconds: figure(client),
    errors,
  };
}

function fmtFigure(f: Figure | undefined, digits = 1): string {
  if (!f || f.median === undefined) return 'n/a';
  const m = round(f.median, digits);
  if (f.values.length < 2) return String(m);
  return `${m} (${round(f.min!, digits)}-${round(f.max!, digits)})`;
}

interface GoalCheck {
  label: string;
  shoal: number | undefined;
  swift: number | undefined;
  ceiling: number | undefined;
  ceilingName: string;
  vsSwift: number | undefined;
  vsCeiling: number | undefined;
  goal: string;
  verdict: 'PASS' | 'MISS' | 'n/a';
  why: string[];
}

function goalChecks(
  figs: Record<SystemName, Partial<Record<Workload, WorkloadFigures>>>,
  bigLabel: string,
): GoalCheck[] {
  const checks: GoalCheck[] = [];
  const row = (
    workload: Workload,
    label: string,
    goal: { swift: number; ceiling: number; ceilingName: 'bare3' | 'nginx'; cpuMsPerOp?: number },
  ): void => {
    const r1 = (n: number | undefined): number | undefined => (n === undefined ? undefined : round(n, 1));
    const shoal = r1(figs.shoal[workload]?.rate.median);
    const swift = r1(figs.swift[workload]?.rate.median);
    const ceiling = r1(figs[goal.ceilingName][workload]?.rate.median);
    const vsSwift = ratio(shoal, swift);
    const vsCeiling = ratio(shoal, ceiling);
    const why: string[] = [];
    const parts = [`>= ${goal.swift}x Swift`, `>= ${goal.ceiling}x ${goal.ceilingName}`];
    let pass = true;
    let known = 0;
    const miss = (text: string): void => {
      pass = false;
      why.push(text);
    };
    if (vsSwift !== undefined) {
      known++;
      if (vsSwift < goal.swift) miss(`${vsSwift}x Swift`);
    } else why.push('Swift not measured');
    if (vsCeiling !== undefined) {
      known++;
      if (vsCeiling < goal.ceiling) miss(`${vsCeiling}x ${goal.ceilingName}`);
    } else why.push(`${goal.ceilingName} not measured`);
    if (goal.cpuMsPerOp !== undefined) {
      parts.push(`< ${goal.cpuMsPerOp} ms server CPU/op`);
      const cpu = figs.shoal[workload]?.cpuMsPerUnit.median;
      if (cpu !== undefined) {
        known++;
        if (cpu >= goal.cpuMsPerOp) miss(`${round(cpu, 2)} ms CPU/op`);
      }
    }
    checks.push({
      label,
      shoal,
      swift,
      ceiling,
      ceilingName: goal.ceilingName,
      vsSwift,
      vsCeiling,
      goal: parts.join(', '),
      verdict: shoal === undefined || known === 0 ? 'n/a' : pass ? 'PASS' : 'MISS',
      why,
    });
  };
  row('bigUpload', `${bigLabel} upload, MiB/s`, GOALS.bigUpload);
  row('bigDownload', `${bigLabel} download, MiB/s`, GOALS.bigDownload);
  row('smallUpload', `16 KiB uploads, ${CONCURRENCY} clients, ops/s`, GOALS.smallUpload);
  row('smallDownload', `16 KiB downloads, ${CONCURRENCY} conns (wrk), ops/s`, GOALS.smallDownload);
  return checks;
}

interface S3Check {
  label: string;
  native: number | undefined;
  s3: number | undefined;
  /** S3's median rate over native's. */
  vsNative: number | undefined;
  /** The same ratio round by round (the two run back to back in a round, on the same nodes). */
  perRound: number[];
  /** Server CPU in ms per `cpuUnit` (an operation, or a MiB of the large file), and S3's over native's. */
  cpuUnit: 'op' | 'MiB';
  nativeCpu: number | undefined;
  s3Cpu: number | undefined;
  cpuVsNative: number | undefined;
  verdict: 'PASS' | 'MISS' | 'n/a';
}

function rateOf(o: Outcome<BigResult | SmallResult> | undefined): number | undefined {
  if (!o?.ok) return undefined;
  return 'mibPerSec' in o.value ? o.value.mibPerSec : o.value.opsPerSec;
}

/** The goal of the S3 API: PUT and GET at 0.9x the native API's rate or better, in every workload. */
function s3Checks(
  figs: Record<SystemName, Partial<Record<Workload, WorkloadFigures>>>,
  rounds: Array<Partial<Record<SystemName, SystemRound>>>,
  bigLabel: string,
): S3Check[] {
  const labels: Record<Workload, string> = {
    bigUpload: `${bigLabel} PUT (upload), MiB/s`,
    bigDownload: `${bigLabel} GET (download), MiB/s`,
    smallUpload: `16 KiB PUTs, ${CONCURRENCY} clients, ops/s`,
    smallDownload: `16 KiB GETs, ${CONCURRENCY} conns (wrk), ops/s`,
  };
  const r1 = (n: number | undefined): number | undefined => (n === undefined ? undefined : round(n, 1));
  const r3 = (n: number | undefined): number | undefined => (n === undefined ? undefined : round(n, 3));
  return WORKLOADS.map((w) => {
    const native = r1(figs.shoal[w]?.rate.median);
    const s3 = r1(figs.s3[w]?.rate.median);
    const vsNative = ratio(s3, native);
    const perRound = rounds.flatMap((r) => {
      const x = ratio(rateOf(r.s3?.[w]), rateOf(r.shoal?.[w]));
      return x === undefined ? [] : [x];
    });
    const nativeCpu = r3(figs.shoal[w]?.cpuMsPerUnit.median);
    const s3Cpu = r3(figs.s3[w]?.cpuMsPerUnit.median);
    return {
      label: labels[w],
      native,
      s3,
      vsNative,
      perRound,
      cpuUnit: w.startsWith('big') ? 'MiB' : 'op',
      nativeCpu,
      s3Cpu,
      cpuVsNative: ratio(s3Cpu, nativeCpu),
      verdict: vsNative === undefined ? 'n/a' : vsNative >= GOALS.s3VsNative ? 'PASS' : 'MISS',
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Running it

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const root = mkdtempSync(join(tmpdir(), 'shoal-bench-'));
  const dispatcher = new Agent({ connections: CONCURRENCY * 2, keepAliveTimeout: 10_000 });
  const watch = new ProcessWatch();
  const profileDir = options.profile ? join(repoRoot(), '.bench', `profile-${stamp}`) : undefined;
  const systems: Partial<Record<SystemName, SystemUnderTest>> = {};
  const skipped: Partial<Record<SystemName, string>> = {};
  /** The Shoal cluster: the native API and the S3 API are two ways into the same nodes. */
  let cluster: TestCluster | undefined;
  let cleanedUp = false;
  let abandoned = false;

  const cleanup = async (): Promise<void> => {
    if (cleanedUp) return;
    cleanedUp = true;
    watch.stop();
    await (systems.swift as SwiftSystem | undefined)?.stop(log).catch(() => undefined);
    await dispatcher.close().catch(() => undefined);
    if (cluster) await cluster.stopAll().catch(() => undefined);
    await (systems.nginx as NginxSystem | undefined)?.stop().catch(() => undefined);
    await (systems.bare3 as Bare3System | undefined)?.stop().catch(() => undefined);
    killPids(ownChildPids());
    rmSync(root, { recursive: true, force: true });
  };
  process.once('exit', () => {
    killPids(ownChildPids());
    rmSync(root, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      abandoned = true;
      log(`${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  // Bounds a hung run: generous for what the flags ask, cleaned up whatever state it is in.
  const watchdogMs =
    (300 + options.rounds * ALL_SYSTEMS.length * (2 * options.smallSeconds + 90 + options.quietWaitSeconds)) *
    1000;
  const watchdog = setTimeout(() => {
    abandoned = true;
    log(`still running after ${watchdogMs / 1000} s: giving up`);
    void cleanup().finally(() => process.exit(1));
  }, watchdogMs);
  watchdog.unref();

  try {
    // Every temp file of the run, the nodes' own included (they inherit TMPDIR), lives under
    // `root`, so one rm removes them all whatever happened.
    process.env.TMPDIR = root;
    const big = await makeRandomFile(join(root, 'big.bin'), options.bigBytes);
    log(
      `wrote a ${fmtMiB(options.bigBytes)} random file; load average ${loadavg()
        .map((l) => round(l, 2))
        .join(' ')}`,
    );
    if (!wrkAvailable()) throw new Error('wrk is needed for the small downloads: apt-get install wrk');
    if (!curlAvailable()) throw new Error('curl is needed for the large transfers: apt-get install curl');

    if (options.systems.has('bare3') || options.systems.has('nginx')) {
      const bare3 = await Bare3System.start(join(root, 'bare3-data'), dispatcher);
      systems.bare3 = bare3;
      if (options.systems.has('nginx')) {
        const binary = nginxAvailable();
        if (!binary) skipped.nginx = 'nginx is not installed (apt-get install nginx-light)';
        else {
          const started = await attempt(() =>
            NginxSystem.start(binary, join(root, 'nginx'), bare3.servedDir),
          );
          if (started.ok) systems.nginx = started.value;
          else skipped.nginx = started.error;
        }
      }
    }
    const shoalSystems = SHOAL_SYSTEMS.filter((s) => options.systems.has(s));
    if (shoalSystems.length > 0) {
      log(
        `starting a ${NODES}-node Shoal cluster (N=${REPLICAS}, W=${WRITE_QUORUM})${options.systems.has('s3') ? ' with S3 listeners' : ''}${options.profile ? ' under --cpu-prof' : ''}`,
      );
      if (profileDir) mkdirSync(join(profileDir, 'raw'), { recursive: true });
      const started = await attempt(() =>
        TestCluster.start({
          nodes: NODES,
          replicas: REPLICAS,
          writeQuorum: WRITE_QUORUM,
          failureTimeoutMs: 10_000,
          gossipIntervalMs: 500,
          s3: options.systems.has('s3'),
          ...(profileDir
            ? { runtimeFlags: ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, 'raw')}`] }
            : {}),
        }),
      );
      if (started.ok) {
        const nodes = started.value;
        cluster = nodes;
        if (options.systems.has('shoal')) systems.shoal = new ShoalSystem(nodes, dispatcher);
        if (options.systems.has('s3')) {
          const s3 = await attempt(() => S3System.start(nodes, dispatcher));
          if (s3.ok) systems.s3 = s3.value;
          else skipped.s3 = `no S3 key or bucket: ${s3.error}`;
        }
      } else {
        for (const s of shoalSystems) skipped[s] = `the cluster did not start: ${started.error}`;
        // Nodes that did start are children of ours; the others carry on.
        const keep = new Set(
          Object.values(systems).flatMap((s) => s.processGroups().flatMap((g) => g.pids())),
        );
        killPids(ownChildPids().filter((p) => !keep.has(p)));
      }
    }
    if (options.systems.has('swift')) {
      const started = await attempt(() =>
        SwiftSystem.start(options.swiftSetup, dispatcher, log, options.keepSwift),
      );
      if (started.ok) systems.swift = started.value;
      else skipped.swift = started.error;
    }
    for (const [name, why] of Object.entries(skipped)) log(`${name} skipped: ${why}`);
    for (const s of Object.values(systems)) for (const g of s.processGroups()) watch.watch(g);

    // Rounds: every system once per round, the order rotated so that a noisy stretch of the
    // machine does not always land on the same one. nginx follows bare3 (it serves bare3's files).
    // Native and S3 run back to back on their shared nodes, so that their ratio compares like
    // with like; which of them goes first alternates, so neither always finds the other's files.
    const rounds: Array<Partial<Record<SystemName, SystemRound>>> = [];
    const quietWaits: Array<{ round: number; system: string; waitedSeconds: number; othersShare: number }> =
      [];
    const units: SystemName[][] = [['shoal', 's3'], ['bare3', 'nginx'], ['swift']];
    for (let r = 1; r <= options.rounds && !abandoned; r++) {
      const rc: RoundContext = { round: r, watch, dispatcher, workDir: root, big, options };
      const results: Partial<Record<SystemName, SystemRound>> = {};
      const order = [...units.slice((r - 1) % units.length), ...units.slice(0, (r - 1) % units.length)];
      for (const unit of order) {
        const names = unit[0] === 'shoal' && r % 2 === 0 ? [...unit].reverse() : unit;
        for (const name of names) {
          const system = systems[name];
          if (!system) continue;
          if (options.quietWaitSeconds > 0) {
            const own = (): number[] =>
              Object.values(systems).flatMap((x) => x.processGroups().flatMap((g) => g.pids()));
            const q = await waitForQuiet(options.quietWaitSeconds, own);
            quietWaits.push({ round: r, system: name, ...q });
            if (q.waitedSeconds > 3)
              log(
                `waited ${q.waitedSeconds} s for a quieter machine (others at ${Math.round(q.othersShare * 100)}%)`,
              );
          }
          results[name] = await benchSystem(system, rc);
        }
      }
      rounds.push(results);
    }
    if (abandoned) return 1;

    let profile: unknown;
    if (profileDir && cluster) profile = await finishProfiles(cluster, profileDir, watch.phases);

    const groupsOf = (name: SystemName): string[] => systems[name]?.processGroups().map((g) => g.label) ?? [];
    const figs = Object.fromEntries(
      ALL_SYSTEMS.map((s) => [
        s,
        Object.fromEntries(
          WORKLOADS.flatMap((w) => {
            const f = collectFigures(rounds, watch.phases, s, w, groupsOf(s));
            return f ? [[w, f]] : [];
          }),
        ),
      ]),
    ) as Record<SystemName, Partial<Record<Workload, WorkloadFigures>>>;
    const bigLabel = fmtMiB(options.bigBytes).replace('.0 ', ' ');
    const checks = goalChecks(figs, bigLabel);
    const s3 = s3Checks(figs, rounds, bigLabel);
    const nodeLabels = cluster?.nodes.map((n) => n.id) ?? [];
    const nodeRss = Object.fromEntries(
      nodeLabels.map((n) => [
        n,
        Object.fromEntries(WORKLOADS.map((w) => [w, figs.shoal[w]?.peakRssMiB[n]])) as Record<
          Workload,
          number | undefined
        >,
      ]),
    );
    const rssPeak = Math.max(
      0,
      ...Object.values(nodeRss).flatMap((r) => Object.values(r).filter((v) => v !== undefined)),
    );
    const failures = [
      ...Object.entries(skipped)
        .filter(([n]) => SHOAL_SYSTEMS.includes(n as SystemName))
        .map(([n, w]) => `${n}: ${w}`),
      ...ALL_SYSTEMS.flatMap((s) =>
        WORKLOADS.flatMap((w) => (figs[s][w]?.errors ?? []).map((e) => `${s} ${w}: ${e}`)),
      ),
    ];
    const run = {
      options,
      startedAt,
      skipped,
      rounds,
      phases: watch.phases,
      figs,
      checks,
      s3Checks: s3,
      nodeRss,
      rssPeak,
      failures,
      profile,
      quietWaits,
    };
    process.stdout.write(renderReport(run, bigLabel));

    const outDir = join(repoRoot(), '.bench');
    mkdirSync(outDir, { recursive: true });
    const json = JSON.stringify(toJson(run), null, 2) + '\n';
    const name = options.profile ? `profile-run-${stamp}.json` : `bench-${stamp}.json`;
    writeFileSync(join(outDir, name), json);
    if (!options.profile) writeFileSync(join(outDir, 'last.json'), json);
    log(
      `figures written to ${join(outDir, options.profile ? name : 'last.json')}${options.profile ? '' : ` and ${name}`}`,
    );
    return failures.length > 0 ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

/**
 * Stops the nodes with SIGTERM (V8 writes a --cpu-prof profile only on a clean exit), names each
 * profile after its node and summarises them phase by phase.
 */
async function finishProfiles(
  cluster: TestCluster,
  dir: string,
  phases: Record<string, PhaseUsage>,
): Promise<unknown> {
  const pidToNode = new Map(cluster.nodes.map((n) => [n.proc?.pid, n.id]));
  await Promise.all(cluster.nodes.map((_n, i) => cluster.kill(i, 'SIGTERM')));
  const raw = join(dir, 'raw');
  const files: Record<string, string> = {};
  for (const f of readdirSync(raw)) {
    const pid = Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(f)?.[1]);
    const node = pidToNode.get(pid);
    if (!node) continue;
    const dest = join(dir, `${node}.cpuprofile`);
    copyFileSync(join(raw, f), dest);
    files[node] = dest;
  }
  rmSync(raw, { recursive: true, force: true });
  if (Object.keys(files).length === 0) {
    log('no CPU profiles were written');
    return undefined;
  }
  const windows: PhaseWindow[] = Object.entries(phases)
    .filter(([name]) => /:(big-upload|big-download|small-upload|small-download)$/.test(name))
    .map(([name, u]) => ({
      name,
      startUs: u.monotonicUs.start,
      endUs: u.monotonicUs.end,
      processCpuSeconds: u.cpuSeconds,
      threadCpuSeconds: u.threadCpuSeconds,
    }));
  writeFileSync(join(dir, 'phases.json'), JSON.stringify(windows, null, 2) + '\n');
  const summary = summariseProfiles(files, windows);
  writeFileSync(join(dir, 'summary.md'), summary.markdown);
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary.json, null, 2) + '\n');
  log(`CPU profiles and their summary in ${dir} (summary.md)`);
  return { dir, files: Object.keys(files) };
}

// ---------------------------------------------------------------------------------------------
// Output

interface Run {
  options: Options;
  startedAt: Date;
  skipped: Partial<Record<SystemName, string>>;
  rounds: Array<Partial<Record<SystemName, SystemRound>>>;
  phases: Record<string, PhaseUsage>;
  figs: Record<SystemName, Partial<Record<Workload, WorkloadFigures>>>;
  checks: GoalCheck[];
  s3Checks: S3Check[];
  nodeRss: Record<string, Record<Workload, number | undefined>>;
  rssPeak: number;
  failures: string[];
  profile: unknown;
  quietWaits: Array<{ round: number; system: string; waitedSeconds: number; othersShare: number }>;
}

function renderReport(run: Run, bigLabel: string): string {
  const { options, figs } = run;
  const cell = (n: number | undefined, suffix = ''): string => (n === undefined ? 'n/a' : `${n}${suffix}`);
  const out: string[] = [
    '',
    `Shoal bench, ${run.startedAt.toISOString()}: ${options.rounds} round(s); ${cpus().length} CPUs, Node ${process.version}` +
      `${options.profile ? '; PROFILED RUN (nodes under --cpu-prof): figures are not comparable' : ''}`,
    `Shoal: ${NODES} local nodes, N=${REPLICAS}, W=${WRITE_QUORUM}. s3: the same nodes, S3 API. bare3: node:http, 3 fsync'd copies. ` +
      "nginx: bare3's files from disk. Swift: all-in-one, 3 replicas.",
  ];
  for (const [name, why] of Object.entries(run.skipped)) out.push(`SKIPPED ${name}: ${why}`);
  out.push('', 'Goals (median over rounds):');
  const goalRows: string[][] = [
    ['workload', 'Shoal', 'Swift', 'ceiling', 'Shoal/Swift', 'Shoal/ceiling', 'goal', ''],
  ];
  for (const c of run.checks) {
    goalRows.push([
      c.label,
      cell(c.shoal),
      cell(c.swift),
      `${c.ceilingName} ${cell(c.ceiling)}`,
      cell(c.vsSwift, 'x'),
      cell(c.vsCeiling, 'x'),
      c.goal,
      c.verdict === 'MISS'
        ? `MISS (${c.why.join(', ')})`
        : c.verdict === 'PASS' && c.why.length
          ? `PASS (${c.why.join(', ')})`
          : c.verdict,
    ]);
  }
  const rssVerdict = run.rssPeak === 0 ? 'n/a' : run.rssPeak < GOALS.rssMiB ? 'PASS' : 'MISS';
  goalRows.push([
    'node RSS, peak of any node in any workload, MiB',
    cell(run.rssPeak || undefined),
    '',
    '',
    '',
    '',
    `< ${GOALS.rssMiB} MiB in every workload`,
    rssVerdict,
  ]);
  out.push(table(goalRows));

  if (run.s3Checks.some((c) => c.native !== undefined || c.s3 !== undefined)) {
    out.push(
      '',
      `S3 API against the native API, same nodes (median over rounds; goal: S3 >= ${GOALS.s3VsNative}x native in every workload):`,
    );
    const s3Rows: string[][] = [
      ['workload', 'native', 'S3', 'S3/native', 'per round', 'server CPU native', 'S3', 'CPU S3/native', ''],
    ];
    for (const c of run.s3Checks) {
      const cpuUnit = ` ms/${c.cpuUnit}`;
      s3Rows.push([
        c.label,
        cell(c.native),
        cell(c.s3),
        cell(c.vsNative, 'x'),
        c.perRound.length > 1 ? c.perRound.map((x) => `${x}x`).join(' ') : '',
        cell(c.nativeCpu, cpuUnit),
        cell(c.s3Cpu, cpuUnit),
        cell(c.cpuVsNative, 'x'),
        c.verdict,
      ]);
    }
    out.push(table(s3Rows));
  }

  out.push('', 'Every figure (median, with the range over rounds when there are several):');
  const rows: string[][] = [
    ['workload', 'system', 'rate', 'server CPU', 'peak RSS, MiB', 'latency p50/p99 ms', 'client CPU s'],
  ];
  for (const w of WORKLOADS) {
    for (const s of ALL_SYSTEMS) {
      const f = figs[s][w];
      if (!f) continue;
      const unit = w.startsWith('big') ? 'MiB/s' : 'ops/s';
      const cpuUnit = w.startsWith('big') ? 'ms/MiB' : 'ms/op';
      rows.push([
        {
          bigUpload: `${bigLabel} upload`,
          bigDownload: `${bigLabel} download`,
          smallUpload: '16 KiB uploads',
          smallDownload: '16 KiB downloads',
        }[w],
        s,
        f.rate.median === undefined ? 'FAILED' : `${fmtFigure(f.rate)} ${unit}`,
        f.cpuMsPerUnit.median === undefined ? 'n/a' : `${fmtFigure(f.cpuMsPerUnit, 3)} ${cpuUnit}`,
        Object.entries(f.peakRssMiB)
          .map(([g, v]) =>
            SHOAL_SYSTEMS.includes(s)
              ? `${g.replace('node-', 'n')} ${v} (anon ${f.peakRssAnonMiB[g] ?? '?'})`
              : String(v),
          )
          .join(', ') || 'n/a',
        f.latencyMs ? `${f.latencyMs.p50} / ${f.latencyMs.p99}` : '',
        fmtFigure(f.clientCpuSeconds, 2),
      ]);
    }
  }
  out.push(table(rows));

  // Where Shoal's CPU went, by thread: a CPU profile sees only the JavaScript thread.
  const nodeLabels = Object.keys(run.nodeRss);
  if (nodeLabels.length > 0) {
    const threadRows: string[][] = [
      [
        'Shoal CPU by thread (all nodes, median)',
        'JS main',
        'threadpool (fs)',
        'V8 helpers (GC, JIT)',
        'other',
      ],
    ];
    // Native and S3 one above the other, workload by workload.
    for (const [w, system] of WORKLOADS.flatMap((x) => SHOAL_SYSTEMS.map((y) => [x, y] as const))) {
      const perRound = run.rounds
        .map((_r, i) => run.phases[`${i + 1}:${system}:${PHASE_OF[w]}`]?.threadCpuSeconds)
        .filter((t): t is Record<string, Record<string, number>> => t !== undefined)
        .map((t) => {
          const sum: Record<string, number> = { main: 0, threadpool: 0, v8: 0, other: 0 };
          for (const n of nodeLabels)
            for (const [k, v] of Object.entries(t[n] ?? {})) sum[k] = (sum[k] ?? 0) + v;
          return sum;
        });
      if (perRound.length === 0) continue;
      const total = (k: string): number => median(perRound.map((r) => r[k] ?? 0)) ?? 0;
      const all = total('main') + total('threadpool') + total('v8') + total('other');
      const cellOf = (k: string): string =>
        `${round(total(k), 2)} s (${all > 0 ? Math.round((100 * total(k)) / all) : 0}%)`;
      threadRows.push([
        system === 'shoal' ? w : `${w} (S3)`,
        cellOf('main'),
        cellOf('threadpool'),
        cellOf('v8'),
        cellOf('other'),
      ]);
    }
    if (threadRows.length > 1) out.push('', table(threadRows));
  }

  // Noise: how much of the machine others took while each phase ran. Kernel threads (jbd2, kworkers,
  // ksoftirqd) mostly work for the system under test (fsyncs, loopback traffic); other programs
  // (other test runs on this machine) compete with it.
  const measured = Object.entries(run.phases).filter(
    ([name, u]) => u.wallSeconds >= 0.5 && /:(big|small)-(upload|download)$/.test(name),
  );
  const pct = (x: number): string => `${Math.round(x * 100)}%`;
  const noiseRows: string[][] = [
    ['phase', 'wall s', 'other programs', 'kernel threads', 'steal', 'load 1m', 'busiest other program'],
  ];
  for (const [name, u] of measured) {
    const n = noiseOf(u);
    const busiest = u.otherProcesses[0];
    noiseRows.push([
      name,
      String(round(u.wallSeconds, 1)),
      pct(n.programs),
      pct(n.kernel),
      pct(n.steal),
      String(u.loadAverage1m),
      busiest ? `${busiest.comm} (pid ${busiest.pid}) ${busiest.cpuSeconds} s` : '',
    ]);
  }
  const worst = Math.max(0, ...measured.map(([, u]) => noiseOf(u).programs));
  const worstSteal = Math.max(0, ...measured.map(([, u]) => noiseOf(u).steal));
  out.push(
    '',
    `Machine noise per phase (share of the ${cpus().length} CPUs; "other programs" compete with the bench, kernel threads mostly do its I/O):`,
    table(noiseRows),
    '',
    'Notes:',
    `- Other programs took up to ${pct(worst)} and the VM host (steal) up to ${pct(worstSteal)} of the machine during a measured phase${worst > 0.1 || worstSteal > 0.05 ? ': treat the figures of those phases as noisy' : ''}.`,
  );
  out.push(
    `- Shoal uploads are multipart POST /files, counted until the 201 (W=${WRITE_QUORUM} copies fsync'd and sha256-checked); bare3 and Swift take a raw PUT body. Large downloads read from a node other than the uploader's, after all ${REPLICAS} copies are in place; they are timed without hashing, then read again and sha256-checked.`,
    `- s3: the same nodes through their S3 listeners, one bucket. Uploads are PutObject, a raw body with its Content-Length, signed (SigV4) in the Authorization header with x-amz-content-sha256: UNSIGNED-PAYLOAD, counted until the 200, its ETag checked against the MD5 sent. Downloads are GetObject through presigned URLs (presigned per node: the host is signed), which curl and wrk fetch as plain GETs. Native and S3 run back to back in each round, the first of them alternating.`,
    `- 16 KiB uploads: ${CONCURRENCY} concurrent clients in this process (undici), ${options.smallSeconds} s after a 1 s warm-up, a fresh payload each. 16 KiB downloads: wrk, ${CONCURRENCY} keep-alive connections (Shoal and s3: one wrk per node, 6/5/5 connections), ${options.smallSeconds} s after a 1 s warm-up, over the files just uploaded; ${SMALL_VERIFY} of them are sha256-checked first.`,
    '- Peak RSS of a node is shown with its anonymous part (JavaScript heap, buffers, SQLite and malloc); the rest is file-backed (the node binary and libraries, about 55 MiB).',
    '- Server CPU: utime+stime from /proc of every process of the system over the phase (Shoal and s3: the 3 nodes; Swift: proxy, 3 object servers, account, container, memcached and their workers; nginx: master and workers), divided by operations (or MiB). Peak RSS: highest VmRSS sampled every 100 ms in the phase (Shoal and s3: per node; others: the sum of their processes).',
    '- MiB/s is 2^20 bytes per second.',
  );
  if (run.failures.length > 0) out.push('', 'Failures:', ...run.failures.map((f) => `- ${f}`));
  return out.join('\n') + '\n';
}

function toJson(run: Run): unknown {
  return {
    startedAt: run.startedAt.toISOString(),
    durationSeconds: round((Date.now() - run.startedAt.getTime()) / 1000, 1),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      totalMemMiB: Math.round(totalmem() / MiB),
      node: process.version,
      platform: process.platform,
      loadAverageAtEnd: loadavg().map((l) => round(l, 2)),
    },
    config: {
      nodes: NODES,
      replicas: REPLICAS,
      writeQuorum: WRITE_QUORUM,
      bigBytes: run.options.bigBytes,
      smallBytes: SMALL_BYTES,
      concurrency: CONCURRENCY,
      smallSeconds: run.options.smallSeconds,
      rounds: run.options.rounds,
      profile: run.options.profile,
      systems: [...run.options.systems],
    },
    skipped: run.skipped,
    goals: GOALS,
    checks: run.checks,
    s3Checks: run.s3Checks,
    nodeRssMiB: run.nodeRss,
    rssPeakMiB: run.rssPeak,
    figures: run.figs,
    rounds: run.rounds,
    phases: run.phases,
    profile: run.profile ?? null,
    quietWaits: run.quietWaits,
    failures: run.failures,
  };
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
