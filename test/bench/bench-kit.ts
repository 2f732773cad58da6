import { readFileSync, readdirSync } from 'node:fs';

/** Small pieces both benchmarks use: outcomes of phases that may fail, child-process hygiene, formatting. */

const MiB = 1024 * 1024;

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

export async function attempt<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Children of this process, found in /proc. TestCluster.start() loses track of the nodes it has
 * already launched when a later one fails to come up, so cleanup looks them up by parent pid.
 */
export function ownChildPids(): number[] {
  const pids: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const m = /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'));
        if (m && Number(m[1]) === process.pid) pids.push(Number(entry));
      } catch {
        // It exited while we looked.
      }
    }
  } catch {
    // No /proc: nothing more to find.
  }
  return pids;
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
