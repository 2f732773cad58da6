import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { round } from './bench-kit';

/**
 * Where a node's CPU time goes, from V8 .cpuprofile files (`node --cpu-prof`), cut by phase.
 *
 * A profile samples the main JavaScript thread every millisecond: each sample is a stack. A
 * sample's weight is the time until the next one. Samples in "(idle)" are the event loop waiting;
 * the rest is "busy" and every share below is of busy time, summed over the nodes. What the
 * profile cannot see (libuv's threadpool doing fs writes and fsyncs, V8's GC and compiler helper
 * threads) is the difference between /proc's CPU time for the process and the busy time here;
 * both are printed.
 *
 *  - self time by function: the frame on top of the stack;
 *  - self time by module: the same, grouped by npm package, Node internal module, or Shoal file
 *    (a native function, such as a hash update or a write syscall, counts to the module of the
 *    JavaScript that called it);
 *  - inclusive time by subsystem: the share of samples with any frame of that subsystem on the
 *    stack (pino, express, multer/busboy, undici, sqlite, ...): "how much would go if this went";
 *  - inclusive time of Shoal's own functions, and the heaviest call paths of the top functions.
 *
 * CLI: `node dist/test/bench/cpuprofile-summary.js [--phases phases.json] a.cpuprofile ...`.
 * Without --phases, each profile is taken whole. `npm run bench -- --profile` writes the phases.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface PhaseWindow {
  name: string;
  /** process.hrtime in microseconds: the same clock as a profile's timestamps. */
  startUs: number;
  endUs: number;
  /** /proc utime+stime per process group over the window, when known. */
  processCpuSeconds?: Record<string, number>;
  /** The same per thread class (main, threadpool, v8, other), when known. */
  threadCpuSeconds?: Record<string, Record<string, number>>;
}

/** Subsystems for inclusive time: the first pattern a frame's URL (or name) matches. */
const SUBSYSTEMS: Array<[string, RegExp]> = [
  [
    'logging (pino, sonic-boom)',
    /node_modules\/(pino|sonic-boom|pino-std-serializers|fast-redact|quick-format-unescaped|thread-stream|@pinojs)\//,
  ],
  [
    'express + router',
    /node_modules\/(express|router|body-parser|finalhandler|path-to-regexp|on-finished|send|serve-static|type-is|accepts|content-type|raw-body|qs|parseurl|mime-types|media-typer|negotiator|depd|http-errors|statuses|cookie|vary|encodeurl|escape-html|etag|fresh|range-parser|forwarded|proxy-addr|merge-descriptors|content-disposition)\//,
  ],
  ['multer + busboy', /node_modules\/(multer|busboy|streamsearch|append-field|concat-stream)\//],
  ['undici (peer calls)', /node_modules\/undici\//],
  ['better-sqlite3', /node_modules\/better-sqlite3\//],
  ['prom-client (metrics)', /node_modules\/(prom-client|tdigest|bintrees)\//],
  ['zod', /node_modules\/zod\//],
  ['node http server/client', /^node:(_http_|http|internal\/http)/],
  ['node streams', /^node:(internal\/streams|stream)/],
  ['node fs', /^node:(fs|internal\/fs)/],
  ['node crypto', /^node:(crypto|internal\/crypto)/],
  ['node net', /^node:(net|internal\/net|internal\/stream_base_commons)/],
  ['json (JSON.parse/stringify)', /^JSON\.|^(parse|stringify)$/],
];

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function shortUrl(url: string): string {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  const dist = u.indexOf('/dist/');
  if (dist >= 0) u = u.slice(dist + '/dist/'.length);
  return u.replace(/^services\/storage-node\/src\//, 'shoal/');
}

/** The module a URL belongs to: an npm package, a Node internal module, or a Shoal file. */
function moduleOf(url: string): string {
  const s = shortUrl(url);
  if (s.startsWith('node:')) {
    const parts = s.split('/');
    return parts[0] === 'node:internal'
      ? parts
          .slice(0, Math.min(parts.length - 1, 2) + 1)
          .join('/')
          .replace(/\.js$/, '')
      : parts[0]!;
  }
  if (url.includes('/node_modules/')) {
    const parts = s.split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return s.replace(/\.js$/, '');
}

function frameLabel(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  return `${name} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

interface Tally {
  busyUs: number;
  idleUs: number;
  selfByFunction: Map<string, number>;
  selfByModule: Map<string, number>;
  inclusiveBySubsystem: Map<string, number>;
  inclusiveByShoalFunction: Map<string, number>;
  /** Self time charged to the nearest Shoal function on the stack (what Shoal code caused it). */
  byNearestShoalFrame: Map<string, number>;
  /** Per top-of-stack function: caller chains (up to 6 frames) and their time. */
  callersOf: Map<string, Map<string, number>>;
}

function newTally(): Tally {
  return {
    busyUs: 0,
    idleUs: 0,
    selfByFunction: new Map(),
    selfByModule: new Map(),
    inclusiveBySubsystem: new Map(),
    inclusiveByShoalFunction: new Map(),
    byNearestShoalFrame: new Map(),
    callersOf: new Map(),
  };
}

function add(map: Map<string, number>, key: string, us: number): void {
  map.set(key, (map.get(key) ?? 0) + us);
}

/** Per profile node, what a sample landing on it means; computed once per node. */
interface NodeInfo {
  label: string;
  idle: boolean;
  module: string;
  subsystems: string[];
  shoalFunctions: string[];
  nearestShoal: string;
  callers: string;
}

function analyse(profile: CpuProfile): (nodeId: number) => NodeInfo {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const cache = new Map<number, NodeInfo>();
  return (nodeId) => {
    const hit = cache.get(nodeId);
    if (hit) return hit;
    const stack: CallFrame[] = [];
    for (let id: number | undefined = nodeId; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      if (n && n.callFrame.functionName !== '(root)') stack.push(n.callFrame);
    }
    const top = stack[0] ?? { functionName: '(root)', url: '', lineNumber: 0, columnNumber: 0 };
    const special = SPECIAL.has(top.functionName) && !top.url;
    // A native frame (no URL) counts to the module of the nearest JavaScript below it.
    const withUrl = stack.find((f) => f.url);
    const module = special ? top.functionName : withUrl ? moduleOf(withUrl.url) : '(native, no JS caller)';
    const label = special
      ? top.functionName
      : top.url
        ? frameLabel(top)
        : `${top.functionName} (native) <- ${withUrl ? frameLabel(withUrl) : '?'}`;
    const subsystems = new Set<string>();
    const shoal = new Set<string>();
    for (const f of stack) {
      for (const [name, re] of SUBSYSTEMS) {
        if (re.test(f.url) || (!f.url && re.test(f.functionName))) {
          subsystems.add(name);
          break;
        }
      }
      const s = shortUrl(f.url);
      if (s.startsWith('shoal/') || s.startsWith('shared/')) shoal.add(frameLabel(f));
    }
    if (top.functionName === '(garbage collector)') subsystems.add('garbage collector');
    const isShoal = (f: CallFrame): boolean => /^(shoal|shared)\//.test(shortUrl(f.url));
    const nearest = stack.find(isShoal);
    const nearestShoal = special
      ? top.functionName
      : nearest
        ? frameLabel(nearest)
        : `(no Shoal frame) ${module}`;
    const callers = stack
      .slice(1, 7)
      .map((f) => frameLabel(f))
      .join(' < ');
    const info: NodeInfo = {
      label,
      idle: top.functionName === '(idle)',
      module,
      subsystems: [...subsystems],
      shoalFunctions: [...shoal],
      nearestShoal,
      callers,
    };
    cache.set(nodeId, info);
    return info;
  };
}

/** Adds the samples of `profile` that fall in [startUs, endUs) to `tally`. */
function tallyProfile(profile: CpuProfile, startUs: number, endUs: number, tally: Tally): void {
  const info = analyse(profile);
  let t = profile.startTime;
  const n = profile.samples.length;
  const times = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    t += profile.timeDeltas[i] ?? 0;
    times[i] = t;
  }
  for (let i = 0; i < n; i++) {
    const at = times[i]!;
    if (at < startUs || at >= endUs) continue;
    // The time until the next sample; the last one gets the usual interval.
    const us = Math.min(Math.max(0, (times[i + 1] ?? at + 1000) - at), 50_000);
    const ni = info(profile.samples[i]!);
    if (ni.idle) {
      tally.idleUs += us;
      continue;
    }
    tally.busyUs += us;
    add(tally.selfByFunction, ni.label, us);
    add(tally.selfByModule, ni.module, us);
    for (const s of ni.subsystems) add(tally.inclusiveBySubsystem, s, us);
    for (const f of ni.shoalFunctions) add(tally.inclusiveByShoalFunction, f, us);
    add(tally.byNearestShoalFrame, ni.nearestShoal, us);
    let callers = tally.callersOf.get(ni.label);
    if (!callers) tally.callersOf.set(ni.label, (callers = new Map()));
    add(callers, ni.callers, us);
  }
}

function top(
  map: Map<string, number>,
  total: number,
  k: number,
): Array<{ name: string; ms: number; pct: number }> {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, us]) => ({
      name,
      ms: round(us / 1000, 1),
      pct: total > 0 ? round((100 * us) / total, 1) : 0,
    }));
}

export interface PhaseSummary {
  phase: string;
  nodes: string[];
  busyMs: number;
  idleMs: number;
  /** /proc CPU of the same processes over the same window, when known. */
  processCpuMs: number | undefined;
  /** /proc CPU by thread class over the window, ms. */
  threadCpuMs: Record<string, number> | undefined;
  selfByModule: Array<{ name: string; ms: number; pct: number }>;
  selfByFunction: Array<{
    name: string;
    ms: number;
    pct: number;
    topCallers: Array<{ path: string; pct: number }>;
  }>;
  inclusiveBySubsystem: Array<{ name: string; ms: number; pct: number }>;
  inclusiveByShoalFunction: Array<{ name: string; ms: number; pct: number }>;
  byNearestShoalFrame: Array<{ name: string; ms: number; pct: number }>;
}

function summarise(
  tally: Tally,
  phase: string,
  nodes: string[],
  processCpuMs: number | undefined,
  threadCpuMs?: Record<string, number>,
): PhaseSummary {
  const busy = tally.busyUs;
  return {
    phase,
    nodes,
    busyMs: round(busy / 1000, 1),
    idleMs: round(tally.idleUs / 1000, 1),
    processCpuMs,
    threadCpuMs,
    selfByModule: top(tally.selfByModule, busy, 25),
    selfByFunction: top(tally.selfByFunction, busy, 30).map((f) => ({
      ...f,
      topCallers: top(tally.callersOf.get(f.name) ?? new Map(), tally.selfByFunction.get(f.name) ?? 0, 2).map(
        (c) => ({ path: c.name, pct: c.pct }),
      ),
    })),
    inclusiveBySubsystem: top(tally.inclusiveBySubsystem, busy, 20),
    inclusiveByShoalFunction: top(tally.inclusiveByShoalFunction, busy, 25),
    byNearestShoalFrame: top(tally.byNearestShoalFrame, busy, 30),
  };
}

function renderMarkdown(summaries: PhaseSummary[]): string {
  const out: string[] = ['# CPU profile summary', ''];
  for (const s of summaries) {
    out.push(
      `## ${s.phase}`,
      '',
      `Nodes: ${s.nodes.join(', ')}. Busy (sampled main-thread JS + native) ${s.busyMs} ms, idle ${s.idleMs} ms` +
        (s.processCpuMs !== undefined ? `; /proc CPU of these processes ${s.processCpuMs} ms` : '') +
        (s.threadCpuMs
          ? ` (by thread: ${Object.entries(s.threadCpuMs)
              .map(([k, v]) => `${k} ${v} ms`)
              .join(', ')})`
          : '') +
        '. Busy is wall time the JavaScript thread was not idle: on a loaded machine it includes time spent waiting for a CPU.',
      '',
      '### Self time by module (% of busy)',
      '',
      '| module | ms | % |',
      '|---|---:|---:|',
      ...s.selfByModule.map((m) => `| ${m.name} | ${m.ms} | ${m.pct} |`),
      '',
      '### Inclusive time by subsystem (% of busy samples with it on the stack)',
      '',
      '| subsystem | ms | % |',
      '|---|---:|---:|',
      ...s.inclusiveBySubsystem.map((m) => `| ${m.name} | ${m.ms} | ${m.pct} |`),
      '',
      '### Self time charged to the nearest Shoal function on the stack (sums to 100%)',
      '',
      '| Shoal function (or runtime/framework with no Shoal caller) | ms | % |',
      '|---|---:|---:|',
      ...s.byNearestShoalFrame.map((m) => `| ${m.name} | ${m.ms} | ${m.pct} |`),
      '',
      "### Inclusive time of Shoal's own functions",
      '',
      '| function | ms | % |',
      '|---|---:|---:|',
      ...s.inclusiveByShoalFunction.map((m) => `| ${m.name} | ${m.ms} | ${m.pct} |`),
      '',
      '### Top self-time functions, with their heaviest caller chains',
      '',
      '| function | ms | % | heaviest callers (share of this function) |',
      '|---|---:|---:|---|',
      ...s.selfByFunction.map(
        (f) =>
          `| ${f.name.replace(/\|/g, '\\|')} | ${f.ms} | ${f.pct} | ${f.topCallers
            .map((c) => `${c.pct}%: ${c.path.replace(/\|/g, '\\|')}`)
            .join('<br>')} |`,
      ),
      '',
    );
  }
  return out.join('\n');
}

function msOf(seconds: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(seconds).map(([k, v]) => [k, round(v * 1000, 0)]));
}

function load(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
}

/**
 * One summary per phase over all profiles (nodes) together, plus one per node for each phase
 * (a coordinator and a replica do different work). Without windows, each profile whole.
 */
export function summariseProfiles(
  files: Record<string, string>,
  windows: PhaseWindow[],
): { markdown: string; json: PhaseSummary[] } {
  const profiles = Object.entries(files).map(([node, path]) => ({ node, profile: load(path) }));
  const phases: PhaseWindow[] =
    windows.length > 0 ? windows : [{ name: 'whole profile', startUs: -Infinity, endUs: Infinity }];
  const summaries: PhaseSummary[] = [];
  for (const w of phases) {
    const all = newTally();
    const perNode: PhaseSummary[] = [];
    const present: string[] = [];
    for (const { node, profile } of profiles) {
      const one = newTally();
      tallyProfile(profile, w.startUs, w.endUs, one);
      // A profile with no sample in this window (another process's phase) is left out.
      if (one.busyUs + one.idleUs === 0) continue;
      present.push(node);
      tallyProfile(profile, w.startUs, w.endUs, all);
      const cpu = w.processCpuSeconds?.[node];
      const threads = w.threadCpuSeconds?.[node];
      perNode.push(
        summarise(
          one,
          `${w.name} - ${node}`,
          [node],
          cpu === undefined ? undefined : round(cpu * 1000, 0),
          threads ? msOf(threads) : undefined,
        ),
      );
    }
    if (present.length === 0) continue;
    const cpus = present.map((node) => w.processCpuSeconds?.[node]);
    const totalCpu = cpus.every((c) => c !== undefined)
      ? round(cpus.reduce((a, b) => a! + b!, 0)! * 1000, 0)
      : undefined;
    const threadSets = present.map((node) => w.threadCpuSeconds?.[node]);
    const threadTotal = threadSets.every((t) => t !== undefined)
      ? msOf(
          threadSets.reduce<Record<string, number>>((sum, t) => {
            for (const [k, v] of Object.entries(t!)) sum[k] = (sum[k] ?? 0) + v;
            return sum;
          }, {}),
        )
      : undefined;
    summaries.push(summarise(all, `${w.name} - all nodes`, present, totalCpu, threadTotal));
    if (present.length > 1) summaries.push(...perNode);
  }
  return { markdown: renderMarkdown(summaries), json: summaries };
}

function cli(argv: string[]): void {
  let windows: PhaseWindow[] = [];
  const files: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--phases') windows = JSON.parse(readFileSync(argv[++i]!, 'utf8')) as PhaseWindow[];
    else files[basename(a).replace(/\.cpuprofile$/, '')] = a;
  }
  if (Object.keys(files).length === 0) {
    process.stderr.write('usage: cpuprofile-summary.js [--phases phases.json] a.cpuprofile ...\n');
    process.exitCode = 2;
    return;
  }
  process.stdout.write(summariseProfiles(files, windows).markdown);
}

if (require.main === module) cli(process.argv.slice(2));
