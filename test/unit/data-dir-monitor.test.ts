import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import {
  DataDirMonitor,
  type DataDirMonitorOptions,
} from '../../services/storage-node/src/store/data-dir-monitor';

/**
 * The data dir monitor's decisions, against a real temp dir where a real fault can be made (a
 * missing dir) and an injected probe where it needs root (read-only, full) or a stuck volume.
 */
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `cond` holds, for at most `ms`. The probe's answer also waits for a statfs on a libuv
 * thread, which on a machine busy with the rest of the suite can take longer than a fixed sleep.
 */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(5);
}

interface Report {
  fault: string | null;
  full: boolean;
  reason: string | undefined;
}

/** A monitor whose reports and log lines are recorded; the last report is what the node would show. */
function monitor(options: Partial<DataDirMonitorOptions> & { dataDir: string }) {
  const reports: Report[] = [];
  const lines: Array<{ level: number; msg: string; err?: string }> = [];
  let fault: string | null = null;
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const m = new DataDirMonitor(
    { minFreeBytes: 0, ...options },
    {
      setFault: (f) => (fault = f),
      setFull: (full, reason) => reports.push({ fault, full, reason }),
    },
    log,
  );
  return { m, reports, lines, last: () => reports[reports.length - 1] };
}

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated, open '/somewhere/tmp/.write-probe'`), { code });
}

/** A probe that does not return until release() is called, like a write to a stuck volume; later ones return. */
function stuckProbe() {
  let calls = 0;
  let stuck = true;
  let release: () => void = () => undefined;
  return {
    get calls() {
      return calls;
    },
    release: () => {
      stuck = false;
      release();
    },
    writeProbe: (): Promise<void> => {
      calls++;
      return stuck ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve();
    },
  };
}

describe('DataDirMonitor', () => {
  let dir: string;
  const running: DataDirMonitor[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-monitor-'));
    mkdirSync(join(dir, 'tmp'));
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((m) => m.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds a dir that takes writes ready and taking copies, and leaves no probe file behind', async () => {
    const { m, last, lines } = monitor({ dataDir: dir });
    await m.check();
    expect(last()).toEqual({ fault: null, full: false, reason: undefined });
    expect(existsSync(join(dir, 'tmp', '.write-probe'))).toBe(false);
    expect(lines).toEqual([]);
  });

  it('reports a missing data dir, without its path, and logs the error once', async () => {
    const { m, last, lines } = monitor({ dataDir: join(dir, 'gone') });
    await m.check();
    await m.check();
    expect(last()).toEqual({
      fault: 'the data dir is missing (ENOENT)',
      full: true,
      reason: 'data dir does not take writes: the data dir is missing (ENOENT)',
    });
    expect(lines.map((l) => l.msg)).toEqual([
      'data dir does not take writes; not ready, taking no new copies',
    ]);
    expect(lines[0]!.err).toMatch(/ENOENT.*gone/);
  });

  it.each([
    ['EROFS', 'the file system is read-only (EROFS)'],
    ['ENOSPC', 'no space left (ENOSPC)'],
    ['EDQUOT', 'no space left (EDQUOT)'],
    ['EIO', 'I/O error (EIO)'],
    ['EACCES', 'permission denied (EACCES)'],
    ['EMFILE', 'EMFILE'],
  ])('reports a write refused with %s as "%s"', async (code, reason) => {
    const { m, last } = monitor({ dataDir: dir, writeProbe: () => Promise.reject(errno(code)) });
    await m.check();
    expect(last()).toEqual({ fault: reason, full: true, reason: `data dir does not take writes: ${reason}` });
  });

  it('takes no new copies below the free space minimum, but stays ready', async () => {
    const { m, last } = monitor({ dataDir: dir, minFreeBytes: 1000, freeBytes: async () => 999 });
    await m.check();
    expect(last()).toEqual({ fault: null, full: true, reason: 'free space under --min-free-bytes' });
  });

  it('recovers by itself once writes work again, with one log line each way', async () => {
    let failing = 3;
    const { m, reports, lines } = monitor({
      dataDir: dir,
      intervalMs: 20,
      writeProbe: async () => {
        if (failing-- > 0) throw errno('EROFS');
      },
    });
    running.push(m);
    await m.check();
    m.start();
    await sleep(300);
    expect(reports.slice(0, 3).every((r) => r.fault === 'the file system is read-only (EROFS)')).toBe(true);
    expect(reports[reports.length - 1]).toEqual({ fault: null, full: false, reason: undefined });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'data dir does not take writes; not ready, taking no new copies'],
      [30, 'data dir takes writes again; ready'],
    ]);
  });

  it('reports writes that hang, starts no second probe behind the first, and recovers when it returns', async () => {
    const probe = stuckProbe();
    const { m, last, lines } = monitor({
      dataDir: dir,
      intervalMs: 20,
      hangMs: 300,
      writeProbe: probe.writeProbe,
    });
    running.push(m);
    const started = Date.now();
    // The start-up check gives up waiting at the hang limit rather than holding up start-up.
    await m.check();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(last()?.fault).toMatch(/^writes to the data dir hang \(no answer in \d+ s\)$/);
    expect(last()?.full).toBe(true);
    m.start();
    await sleep(200);
    expect(probe.calls).toBe(1);
    expect(last()?.fault).toMatch(/hang/);
    expect(lines.map((l) => l.msg)).toEqual([
      'data dir does not take writes; not ready, taking no new copies',
    ]);

    // The write returns: that probe's own answer clears the fault at once, and probing goes on.
    probe.release();
    await until(() => last()?.fault === null, 2000);
    expect(last()).toEqual({ fault: null, full: false, reason: undefined });
    expect(lines.map((l) => l.msg)).toContain('data dir takes writes again; ready');
    await sleep(100);
    expect(probe.calls).toBeGreaterThan(1);
  });

  it('stops at once while a probe hangs, and reports nothing when it later returns', async () => {
    const probe = stuckProbe();
    const { m, reports } = monitor({
      dataDir: dir,
      intervalMs: 20,
      hangMs: 10_000,
      writeProbe: probe.writeProbe,
    });
    m.start();
    await sleep(100);
    expect(probe.calls).toBe(1);
    const stopping = Date.now();
    await m.stop();
    expect(Date.now() - stopping).toBeLessThan(1_000);
    probe.release();
    await sleep(50);
    expect(reports).toEqual([]);
  });
});
