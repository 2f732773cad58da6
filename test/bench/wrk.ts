import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { round } from './bench-kit';

/**
 * Small downloads driven by wrk (a C load generator, so the client is not what limits a server
 * doing tens of thousands of answers a second). Each wrk process walks its own list of paths
 * round-robin, each thread from its own offset, over keep-alive connections; a Lua `done` hook
 * prints the figures as one JSON line.
 */

const SCRIPT = `
local thread_index = 0
function setup(thread)
  thread:set("offset", thread_index * 7919)
  thread_index = thread_index + 1
end

local paths = {}
local counter = 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  counter = (offset or 0) + tonumber(args[2] or "0")
end

function request()
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

export function wrkAvailable(): boolean {
  // wrk prints its usage and exits 1 without arguments; not found is an error of its own.
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
}

export interface WrkTarget {
  /** http://host:port */
  baseUrl: string;
  paths: readonly string[];
  connections: number;
  threads: number;
}

interface WrkRun {
  requests: number;
  durationUs: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { p50: number; p90: number; p99: number; max: number };
}

export interface WrkResult {
  ops: number;
  errors: number;
  firstError?: string;
  seconds: number;
  opsPerSec: number;
  /** p50 weighted by each wrk's requests; p99 and max the worst of them. */
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  perTarget: Array<{ baseUrl: string; connections: number; opsPerSec: number }>;
}

/** Runs one wrk per target at once for `seconds`; ops/s is the sum of theirs. */
export async function runWrk(
  dir: string,
  targets: readonly WrkTarget[],
  seconds: number,
  headers: Record<string, string> = {},
): Promise<WrkResult> {
  const script = join(dir, 'paths.lua');
  writeFileSync(script, SCRIPT);
  const runs = await Promise.all(
    targets.map((t, i) => {
      const list = join(dir, `paths-${i}.txt`);
      writeFileSync(list, t.paths.join('\n') + '\n');
      const args = [
        '-t',
        String(Math.min(t.threads, t.connections)),
        '-c',
        String(t.connections),
        '-d',
        `${seconds}s`,
        '--timeout',
        '10s',
        ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
        '-s',
        script,
        t.baseUrl,
        '--',
        list,
        String(i * 104729),
      ];
      return runOne(args);
    }),
  );
  const ops = runs.reduce((s, r) => s + r.requests - r.errors.status, 0);
  const errors = runs.reduce(
    (s, r) => s + r.errors.connect + r.errors.read + r.errors.write + r.errors.status + r.errors.timeout,
    0,
  );
  const total = runs.reduce((s, r) => s + r.requests, 0) || 1;
  const opsPerSec = runs.reduce((s, r) => s + (r.requests - r.errors.status) / (r.durationUs / 1e6), 0);
  const firstBad = runs.find((r) => Object.values(r.errors).some((n) => n > 0));
  return {
    ops,
    errors,
    ...(firstBad ? { firstError: `wrk errors ${JSON.stringify(firstBad.errors)}` } : {}),
    seconds: round(Math.max(...runs.map((r) => r.durationUs)) / 1e6, 3),
    opsPerSec: round(opsPerSec, 1),
    latencyMs: {
      p50: round(runs.reduce((s, r) => s + r.latencyUs.p50 * r.requests, 0) / total / 1000, 2),
      p90: round(Math.max(...runs.map((r) => r.latencyUs.p90)) / 1000, 2),
      p99: round(Math.max(...runs.map((r) => r.latencyUs.p99)) / 1000, 2),
      max: round(Math.max(...runs.map((r) => r.latencyUs.max)) / 1000, 2),
    },
    perTarget: runs.map((r, i) => ({
      baseUrl: targets[i]!.baseUrl,
      connections: targets[i]!.connections,
      opsPerSec: round((r.requests - r.errors.status) / (r.durationUs / 1e6), 1),
    })),
  };
}

function runOne(args: string[]): Promise<WrkRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.once('error', reject);
    // 'close', not 'exit': only then has all of its output been read.
    proc.once('close', (code) => {
      const line = out
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{'));
      if (code !== 0 || !line) {
        reject(new Error(`wrk exited with ${code}: ${(err || out).trim().slice(0, 500)}`));
        return;
      }
      resolve(JSON.parse(line) as WrkRun);
    });
  });
}

/** Splits `total` connections over `n` wrk processes as evenly as whole numbers allow. */
export function splitConnections(total: number, n: number): number[] {
  return Array.from({ length: n }, (_v, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}
