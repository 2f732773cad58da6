import { open, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import { BackgroundWorker, type WorkResult } from '../../../../shared/worker';

/**
 * Where the monitor's findings go, after every check. The monitor knows nothing of readiness or
 * gossip; main.ts wires these to the node's lifecycle and to membership.
 */
export interface DataDirReports {
  /** Why the data dir takes no writes, or null while it does. Shown on /readyz: it names no path. */
  setFault(fault: string | null): void;
  /** Whether the node should take no new copies (a fault, or free space under the minimum), and why. */
  setFull(full: boolean, reason: string | undefined): void;
}

export interface DataDirMonitorOptions {
  dataDir: string;
  minFreeBytes: number;
  /** Pause between probes. */
  intervalMs?: number;
  /** A probe unanswered for this long means the data dir hangs (a stuck volume, a dead NFS server). */
  hangMs?: number;
  /**
   * Writes, fsyncs and deletes the probe file at `path`. Tests put here the faults that only root
   * can cause for real (a read-only or full file system) and writes that never return.
   */
  writeProbe?: (path: string) => Promise<void>;
  /** Bytes an unprivileged writer may still use in the data dir's file system. */
  freeBytes?: (dataDir: string) => Promise<number>;
}

const PROBE_INTERVAL_MS = 2_000;
const DISK_HANG_MS = 10_000;

interface Probe {
  since: number;
  done: Promise<void>;
}

/**
 * Proves, every 2 s, that the data dir still takes writes (write, fsync, delete a probe file)
 * and measures its free space. A data dir that refuses writes (ext4 remounted read-only after an
 * error, a vanished volume) makes the node not ready, so load balancers route around it and its
 * public routes answer 503 with the reason; like one below --min-free-bytes, it also makes the
 * node announce through gossip that it takes no new copies, so writers and repair skip it instead
 * of failing against it. Its copies stay readable by peers. Both clear by themselves.
 *
 * One probe at a time: a step waits for its probe at most until the probe has run `hangMs`, then
 * reports the data dir as hanging, like one that refuses writes, and leaves the probe running;
 * later steps start no new probe while it runs (on a hung disk each would hold another libuv
 * thread for good) but renew the report, until the probe completes and reports what it found.
 */
export class DataDirMonitor {
  private readonly runner: BackgroundWorker;
  private readonly hangMs: number;
  private probe: Probe | undefined;
  private fault: string | null = null;
  private stopped = false;

  constructor(
    private readonly options: DataDirMonitorOptions,
    private readonly reports: DataDirReports,
    private readonly log: Logger,
  ) {
    this.hangMs = options.hangMs ?? DISK_HANG_MS;
    const intervalMs = options.intervalMs ?? PROBE_INTERVAL_MS;
    this.runner = new BackgroundWorker(
      { name: 'data-dir-check', work: (signal) => this.step(signal) },
      // A step that throws is retried at the same pace: backing off would only delay the report.
      { firstMs: intervalMs, idleMs: intervalMs, backoffMs: intervalMs, maxBackoffMs: intervalMs },
      log,
    );
  }

  /** Checks once now and resolves when the result is reported (start-up), or the probe hangs. */
  async check(): Promise<void> {
    await this.runner.runOnce();
  }

  /** Checks every interval from now on. */
  start(): void {
    this.stopped = false;
    this.runner.start();
  }

  /** Stops checking; a probe still under way is not waited for and reports nothing more. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.runner.stop();
  }

  private async step(signal: AbortSignal): Promise<WorkResult> {
    const probe = (this.probe ??= this.startProbe());
    const hangsIn = probe.since + this.hangMs - Date.now();
    if (hangsIn > 0 && (await settlesWithin(probe.done, hangsIn, signal))) return 'idle';
    if (this.probe === probe && !signal.aborted) {
      const waited = Date.now() - probe.since;
      this.report(`writes to the data dir hang (no answer in ${Math.round(waited / 1000)} s)`, false);
    }
    return 'idle';
  }

  private startProbe(): Probe {
    const probe: Probe = { since: Date.now(), done: Promise.resolve() };
    probe.done = this.checkDataDir()
      .then(({ failure, lowSpace }) => this.report(failure?.reason, lowSpace, failure?.detail))
      .finally(() => {
        if (this.probe === probe) this.probe = undefined;
      });
    return probe;
  }

  private async checkDataDir(): Promise<{ failure: WriteFailure | undefined; lowSpace: boolean }> {
    const failure = await this.probeWrites();
    let lowSpace = false;
    try {
      lowSpace =
        (await (this.options.freeBytes ?? freeBytes)(this.options.dataDir)) < this.options.minFreeBytes;
    } catch {
      // A vanished dir: the probe above already reported it.
    }
    return { failure, lowSpace };
  }

  /** Undefined when a probe file could be written, fsync'd and deleted; otherwise why not. */
  private async probeWrites(): Promise<WriteFailure | undefined> {
    try {
      await (this.options.writeProbe ?? writeProbe)(join(this.options.dataDir, 'tmp', '.write-probe'));
      return undefined;
    } catch (err) {
      return { reason: describeWriteFailure(err), detail: errorText(err) };
    }
  }

  /** Passes a finding on, with one log line when the data dir stops or starts taking writes. */
  private report(fault: string | undefined, lowSpace: boolean, detail?: string): void {
    if (this.stopped) return;
    const { dataDir } = this.options;
    if (fault !== undefined && this.fault === null) {
      this.log.error(
        { dataDir, err: detail ?? fault },
        'data dir does not take writes; not ready, taking no new copies',
      );
    } else if (fault === undefined && this.fault !== null) {
      this.log.info({ dataDir }, 'data dir takes writes again; ready');
    }
    this.fault = fault ?? null;
    this.reports.setFault(this.fault);
    this.reports.setFull(
      fault !== undefined || lowSpace,
      fault !== undefined
        ? `data dir does not take writes: ${fault}`
        : lowSpace
          ? 'free space under --min-free-bytes'
          : undefined,
    );
  }
}

interface WriteFailure {
  /** A short account that names no path (it is shown on /readyz). */
  reason: string;
  /** The error itself, for the log. */
  detail: string;
}

async function writeProbe(path: string): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.writeFile('ok');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await unlink(path);
}

async function freeBytes(dataDir: string): Promise<number> {
  const fs = await statfs(dataDir);
  return fs.bavail * fs.bsize;
}

/** A short account of a failed write that names no path (it is shown on /readyz). */
function describeWriteFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EROFS':
      return 'the file system is read-only (EROFS)';
    case 'ENOENT':
      return 'the data dir is missing (ENOENT)';
    case 'ENOSPC':
    case 'EDQUOT':
      return `no space left (${code})`;
    case 'EIO':
      return 'I/O error (EIO)';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`;
    default:
      return code ?? 'unknown error';
  }
}

/** Whether `done` settles within `ms`; false as soon as `signal` aborts. */
function settlesWithin(done: Promise<void>, ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (settled: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(settled);
    };
    const onAbort = (): void => finish(false);
    const timer = setTimeout(() => finish(false), ms);
    timer.unref();
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) finish(false);
    done.then(
      () => finish(true),
      () => finish(true),
    );
  });
}
