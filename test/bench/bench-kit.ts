import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';

/**
 * Small pieces every benchmark uses: outcomes of phases that may fail, child-process hygiene,
 * what processes cost (CPU and RSS from /proc), how busy the machine was, formatting.
 */

export const MiB = 1024 * 1024;

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

export async function attempt<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

export function value<T>(o: Outcome<T> | undefined): T | undefined {
  return o?.ok ? o.value : undefined;
}

/** Parent pid of every process, from /proc (one read per process). */
function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // Fields after the parenthesised command name: state, then ppid.
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (Number.isFinite(ppid)) parents.set(Number(entry), ppid);
      } catch {
        // It exited while we looked.
      }
    }
  } catch {
    // No /proc: nothing to find.
  }
  return parents;
}

/**
 * Children of this process, found in /proc. TestCluster.start() loses track of the nodes it has
 * already launched when a later one fails to come up, so cleanup looks them up by parent pid.
 */
export function ownChildPids(): number[] {
  return [...parentPids()].filter(([, ppid]) => ppid === process.pid).map(([pid]) => pid);
}

/** `roots` and every process descended from them (servers that fork workers: Swift, nginx). */
export function withDescendants(roots: readonly number[]): number[] {
  const parents = parentPids();
  const found = new Set(roots.filter((pid) => parents.has(pid)));
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!found.has(pid) && found.has(ppid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return [...found];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function fmtMiB(bytes: number): string {
  return `${round(bytes / MiB, 1)} MiB`;
}

export function mib(n: number | undefined): number | undefined {
  return n === undefined ? undefined : round(n / MiB, 1);
}

export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : round(a / b, 2);
}

export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

// ---------------------------------------------------------------------------------------------
// What processes use: CPU time and RSS from /proc

/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every mainstream architecture. */
const CLOCK_TICKS = 100;

export interface ProcStats {
  /** Peak resident set size over the process's whole life, from VmHWM. */
  hwmBytes: number | undefined;
  rssBytes: number | undefined;
  /** The anonymous part of RSS (JavaScript heap, buffers, malloc) and the file-backed part (code). */
  rssAnonBytes: number | undefined;
  rssFileBytes: number | undefined;
  /** utime + stime of the process itself. */
  cpuSeconds: number | undefined;
  /** cutime + cstime: children it has waited for (wrk and curl runs of the bench client). */
  childCpuSeconds: number | undefined;
}

export function readProcStats(pid: number): ProcStats {
  const stats: ProcStats = {
    hwmBytes: undefined,
    rssBytes: undefined,
    rssAnonBytes: undefined,
    rssFileBytes: undefined,
    cpuSeconds: undefined,
    childCpuSeconds: undefined,
  };
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number | undefined => {
      const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
      return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
    };
    stats.hwmBytes = kb('VmHWM');
    stats.rssBytes = kb('VmRSS');
    stats.rssAnonBytes = kb('RssAnon');
    stats.rssFileBytes = kb('RssFile');
    // Fields after the parenthesised command name; utime, stime, cutime, cstime are fields 14-17.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    const [utime, stime, cutime, cstime] = [fields[11], fields[12], fields[13], fields[14]];
    if (utime !== undefined && stime !== undefined && Number.isFinite(utime + stime))
      stats.cpuSeconds = (utime + stime) / CLOCK_TICKS;
    if (cutime !== undefined && cstime !== undefined && Number.isFinite(cutime + cstime))
      stats.childCpuSeconds = (cutime + cstime) / CLOCK_TICKS;
  } catch {
    // The process is gone; report nothing for it.
  }
  return stats;
}

/** Node's threads by name: the JavaScript thread, libuv's threadpool (fs calls), V8's helpers. */
export type ThreadClass = 'main' | 'threadpool' | 'v8' | 'other';

function classOf(comm: string): ThreadClass {
  if (comm === 'MainThread' || comm === 'node') return 'main';
  if (comm.startsWith('libuv-worker')) return 'threadpool';
  if (comm.startsWith('V8Worker') || comm.startsWith('DelayedTaskSche')) return 'v8';
  return 'other';
}

/**
 * CPU seconds of each thread class of a process. A .cpuprofile samples only the JavaScript
 * thread; this says how much went elsewhere (fs writes and fsyncs on the threadpool, concurrent
 * GC and compilation on V8's workers).
 */
export function threadCpu(pid: number): Record<ThreadClass, number> {
  const out: Record<ThreadClass, number> = { main: 0, threadpool: 0, v8: 0, other: 0 };
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        out[classOf(comm)] += (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
      } catch {
        // The thread ended while we looked.
      }
    }
  } catch {
    // The process is gone.
  }
  return out;
}

/**
 * CPU seconds since boot of the whole machine, from the first line of /proc/stat: `busy` is time
 * spent running anything (user, nice, system, irq, softirq), `steal` is time a virtual machine
 * was ready to run but its host ran something else.
 */
export function machineCpuSeconds(): { busy: number; steal: number } | undefined {
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

/**
 * CPU seconds of every process now, and whether it is a kernel thread (a child of kthreadd, pid
 * 2: jbd2 committing ext4's journal for fsyncs, kworkers flushing pages, ksoftirqd doing loopback
 * networking), so that the CPU a phase lost to "others" can be split into the kernel working for
 * the bench and other programs competing with it.
 */
function allProcessCpu(): Map<number, { cpu: number; kernel: boolean; comm: string }> {
  const out = new Map<number, { cpu: number; kernel: boolean; comm: string }>();
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const pid = Number(entry);
        const ppid = Number(f[1]);
        out.set(pid, {
          cpu: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS,
          kernel: pid === 2 || ppid === 2,
          comm,
        });
      } catch {
        // It exited while we looked.
      }
    }
  } catch {
    // No /proc.
  }
  return out;
}

/** The start of a process's command line (node threads are all called "MainThread"). */
function commandLine(pid: number): string | undefined {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return cmd ? cmd.slice(0, 80) : undefined;
  } catch {
    return undefined;
  }
}

/** A named set of processes whose CPU and memory count together (one Shoal node, all of Swift). */
export interface ProcessGroup {
  label: string;
  /** The processes now; looked up again at the start of every phase (workers come and go). */
  pids: () => number[];
}

export interface PhaseUsage {
  wallSeconds: number;
  /** process.hrtime in microseconds, the clock V8's CPU profiles use: cuts a .cpuprofile by phase. */
  monotonicUs: { start: number; end: number };
  /** Highest RSS seen while the phase ran, per group (the sum over its processes), sampled. */
  peakRssBytes: Record<string, number>;
  /** At that peak: anonymous (heap, buffers) and file-backed (code) parts. */
  peakRssSplit: Record<string, { anonBytes: number; fileBytes: number }>;
  cpuSeconds: Record<string, number>;
  /** The same CPU per thread class, for groups of one process (a Shoal node). */
  threadCpuSeconds: Record<string, Record<ThreadClass, number>>;
  /** The bench's own CPU, with the wrk and curl processes it ran and reaped during the phase. */
  clientCpuSeconds: number;
  /** CPU time the machine spent on anything but the watched groups and the client. */
  otherCpuSeconds: number | undefined;
  /** Of which: kernel threads (I/O and networking on behalf of everyone, the bench included). */
  kernelThreadCpuSeconds: number;
  /** Of which: other programs that lived through the phase, the busiest first. */
  otherProcesses: Array<{ pid: number; comm: string; cpuSeconds: number }>;
  /** CPU time the hypervisor gave to someone else while this VM wanted to run. */
  stealSeconds: number | undefined;
  loadAverage1m: number;
}

const PROC_SAMPLE_MS = 100;

function clientCpu(): number {
  const s = readProcStats(process.pid);
  return (s.cpuSeconds ?? 0) + (s.childCpuSeconds ?? 0);
}

/** Samples the RSS of the processes under test and accounts CPU time to named phases. */
export class ProcessWatch {
  private readonly groups = new Map<string, ProcessGroup>();
  private current:
    | {
        peak: Record<string, number>;
        split: Record<string, { anonBytes: number; fileBytes: number }>;
        pids: Map<string, number[]>;
      }
    | undefined;
  private readonly timer: NodeJS.Timeout;
  readonly phases: Record<string, PhaseUsage> = {};

  constructor() {
    this.timer = setInterval(() => this.sample(), PROC_SAMPLE_MS);
    this.timer.unref();
  }

  watch(group: ProcessGroup): void {
    this.groups.set(group.label, group);
  }

  unwatch(label: string): void {
    this.groups.delete(label);
  }

  async phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const pids = new Map([...this.groups.values()].map((g) => [g.label, g.pids()]));
    const cpuOf = (label: string): number =>
      (pids.get(label) ?? []).reduce((sum, pid) => sum + (readProcStats(pid).cpuSeconds ?? 0), 0);
    const cpuAtStart = new Map([...pids.keys()].map((label) => [label, cpuOf(label)]));
    const single = [...pids].filter(([, p]) => p.length === 1).map(([label, p]) => [label, p[0]!] as const);
    const threadsAtStart = new Map(single.map(([label, pid]) => [label, threadCpu(pid)]));
    const clientAtStart = clientCpu();
    const everyoneAtStart = allProcessCpu();
    const machineAtStart = machineCpuSeconds();
    const start = performance.now();
    const startUs = Number(process.hrtime.bigint() / 1000n);
    const current = {
      peak: {} as Record<string, number>,
      split: {} as Record<string, { anonBytes: number; fileBytes: number }>,
      pids,
    };
    this.current = current;
    this.sample();
    try {
      return await fn();
    } finally {
      this.sample();
      this.current = undefined;
      const endUs = Number(process.hrtime.bigint() / 1000n);
      const cpuSeconds: Record<string, number> = {};
      let watchedTotal = 0;
      for (const label of pids.keys()) {
        const used = Math.max(0, cpuOf(label) - (cpuAtStart.get(label) ?? 0));
        watchedTotal += used;
        cpuSeconds[label] = round(used, 2);
      }
      const threadCpuSeconds: Record<string, Record<ThreadClass, number>> = {};
      for (const [label, pid] of single) {
        const before = threadsAtStart.get(label);
        const now = threadCpu(pid);
        if (!before) continue;
        threadCpuSeconds[label] = {
          main: round(now.main - before.main, 2),
          threadpool: round(now.threadpool - before.threadpool, 2),
          v8: round(now.v8 - before.v8, 2),
          other: round(now.other - before.other, 2),
        };
      }
      const client = Math.max(0, clientCpu() - clientAtStart);
      const machineAtEnd = machineCpuSeconds();
      const watchedPids = new Set([process.pid, ...[...pids.values()].flat()]);
      let kernel = 0;
      const others: Array<{ pid: number; comm: string; cpuSeconds: number }> = [];
      for (const [pid, now] of allProcessCpu()) {
        const before = everyoneAtStart.get(pid);
        if (!before || watchedPids.has(pid)) continue;
        const used = now.cpu - before.cpu;
        if (used <= 0) continue;
        if (now.kernel) kernel += used;
        else others.push({ pid, comm: now.comm, cpuSeconds: round(used, 2) });
      }
      others.sort((a, b) => b.cpuSeconds - a.cpuSeconds);
      for (const o of others.slice(0, 5)) o.comm = commandLine(o.pid) ?? o.comm;
      const both = machineAtStart !== undefined && machineAtEnd !== undefined;
      this.phases[name] = {
        wallSeconds: round((performance.now() - start) / 1000, 3),
        monotonicUs: { start: startUs, end: endUs },
        peakRssBytes: current.peak,
        peakRssSplit: current.split,
        cpuSeconds,
        threadCpuSeconds,
        clientCpuSeconds: round(client, 2),
        otherCpuSeconds: both
          ? round(Math.max(0, machineAtEnd.busy - machineAtStart.busy - watchedTotal - client), 2)
          : undefined,
        kernelThreadCpuSeconds: round(kernel, 2),
        otherProcesses: others.slice(0, 5),
        stealSeconds: both ? round(machineAtEnd.steal - machineAtStart.steal, 2) : undefined,
        loadAverage1m: round(loadavg()[0] ?? 0, 2),
      };
    }
  }

  /** VmHWM per group now (the largest of its processes). */
  peaks(): Record<string, number | undefined> {
    const out: Record<string, number | undefined> = {};
    for (const g of this.groups.values()) {
      const hwms = g.pids().map((pid) => readProcStats(pid).hwmBytes ?? 0);
      out[g.label] = hwms.length > 0 ? Math.max(...hwms) : undefined;
    }
    return out;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    const current = this.current;
    if (!current) return;
    for (const [label, pids] of current.pids) {
      let rss = 0;
      let anon = 0;
      let file = 0;
      let seen = false;
      for (const pid of pids) {
        const st = readProcStats(pid);
        if (st.rssBytes !== undefined) {
          rss += st.rssBytes;
          anon += st.rssAnonBytes ?? 0;
          file += st.rssFileBytes ?? 0;
          seen = true;
        }
      }
      if (seen && rss > (current.peak[label] ?? 0)) {
        current.peak[label] = rss;
        current.split[label] = { anonBytes: anon, fileBytes: file };
      }
    }
  }
}

/**
 * Waits, up to `maxSeconds`, for a stretch of 3 s in which programs other than the bench and
 * the systems under test (`ownPids`) use less than `share` of the machine: other agents' test
 * runs come and go on this box, and a phase measured while they run says little. Returns how
 * long it waited and the share seen last.
 */
export async function waitForQuiet(
  maxSeconds: number,
  ownPids: () => number[],
  share = 0.15,
): Promise<{ waitedSeconds: number; othersShare: number }> {
  const start = performance.now();
  for (;;) {
    const pids = [process.pid, ...ownPids()];
    const own = (): number => pids.reduce((sum, pid) => sum + (readProcStats(pid).cpuSeconds ?? 0), 0);
    const m0 = machineCpuSeconds();
    const o0 = own();
    await sleep(3_000);
    const m1 = machineCpuSeconds();
    const o1 = own();
    if (!m0 || !m1) return { waitedSeconds: 0, othersShare: 0 };
    const last = Math.max(0, m1.busy - m0.busy - (o1 - o0)) / (3 * cpus().length);
    const waited = (performance.now() - start) / 1000;
    if (last < share || waited >= maxSeconds)
      return { waitedSeconds: round(waited, 0), othersShare: round(last, 2) };
  }
}

/** Share of the machine's CPUs taken by others or by the VM host during a phase, 0..1. */
export function noiseOf(u: PhaseUsage): { others: number; programs: number; kernel: number; steal: number } {
  const capacity = u.wallSeconds * cpus().length;
  if (capacity <= 0) return { others: 0, programs: 0, kernel: 0, steal: 0 };
  const others = (u.otherCpuSeconds ?? 0) / capacity;
  const kernel = Math.min(others, u.kernelThreadCpuSeconds / capacity);
  return { others, programs: others - kernel, kernel, steal: (u.stealSeconds ?? 0) / capacity };
}

// ---------------------------------------------------------------------------------------------
// Child processes

export function killPids(pids: readonly number[], signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
export async function stopChild(proc: ChildProcess, graceMs = 5_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// Output

export function table(rows: string[][], indent = ''): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (row: string[]): string =>
    (
      indent +
      row.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('   ')
    ).trimEnd();
  const header = rows[0] ?? [];
  const rule = indent + widths.map((w) => '-'.repeat(w)).join('   ');
  return [line(header), rule, ...rows.slice(1).map(line)].join('\n');
}

export function logger(tag: string): (message: string) => void {
  return (message) => process.stderr.write(`[${tag}] ${message}\n`);
}
