import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from './cluster';
import { command, fuseDevice, pythonModule, root, type Requirement } from './requirements';

/**
 * Drives test/helpers/lossy-fs.py, a FUSE file system that keeps every change not yet fsync'd in
 * memory and forgets all of them at a "power cut" (its header says exactly what counts as
 * durable). A test mounts it on a dir, runs something on it, cuts the power and mounts the same
 * backing dir again to see what survived.
 */

/** Debian's python: its packages (python3-pyfuse3) are not visible to another python on PATH. */
export const PYTHON = '/usr/bin/python3';
export const LOSSY_FS_SCRIPT = join(repoRoot(), 'test/helpers/lossy-fs.py');

/** What a suite that mounts a lossy-fs needs (CI installs python3-pyfuse3 itself). */
export const lossyFsNeeds: Requirement[] = [
  root('CAP_SYS_ADMIN'),
  fuseDevice,
  pythonModule(PYTHON, 'pyfuse3', 'python3-pyfuse3'),
  command('umount', 'mount'),
];

/** What a power cut threw away: name changes not yet durable, and unsynced bytes in so many files. */
export interface Discarded {
  namespaceChanges: number;
  files: number;
  bytes: number;
}

interface Event {
  event: string;
  discarded?: Discarded;
}

export interface LossyFsOptions {
  /** A directory fsync also commits every earlier name change elsewhere (a journal's order). */
  orderedMetadata?: boolean;
}

export class LossyFs {
  private proc: ChildProcess | undefined;
  /** Resolves once the daemon is gone and its output read to the end. */
  private exited: Promise<void> | undefined;
  private gone = false;
  private events: Event[] = [];
  private stderr = '';
  private waiters: Array<() => void> = [];

  constructor(
    readonly backing: string,
    readonly mountPoint: string,
    private readonly options: LossyFsOptions = {},
  ) {}

  /** Mounts (again) and resolves once the mount is up. */
  async mount(): Promise<void> {
    if (this.proc) throw new Error(`lossy-fs is already mounted on ${this.mountPoint}`);
    this.events = [];
    this.stderr = '';
    this.gone = false;
    const args = [LOSSY_FS_SCRIPT, 'mount', this.backing, this.mountPoint];
    if (this.options.orderedMetadata) args.push('--ordered-metadata');
    const proc = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    // 'close', not 'exit': the last lines it printed may still be on their way after 'exit'.
    this.exited = new Promise((res) =>
      proc.once('close', () => {
        this.gone = true;
        res();
      }),
    );
    proc.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    createInterface({ input: proc.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as Event);
      } catch {
        this.stderr += line + '\n';
      }
      this.waiters.splice(0).forEach((w) => w());
    });
    void this.exited.then(() => this.waiters.splice(0).forEach((w) => w()));
    await this.waitForEvent('mounted', 10_000);
  }

  /**
   * Cuts the power: the daemon drops every unsynced change and exits at once, and the dead mount
   * is detached. Returns what was thrown away. Call it in the same tick as the SIGKILL of the
   * processes using the mount, so that nothing they do in between can make anything durable.
   */
  async crash(): Promise<Discarded> {
    const proc = this.proc;
    if (!proc) throw new Error(`lossy-fs is not mounted on ${this.mountPoint}`);
    proc.kill('SIGUSR1');
    const crashed = await this.waitForEvent('crashed', 10_000);
    await this.exited;
    this.proc = undefined;
    execFileSync('umount', ['-l', this.mountPoint]);
    return crashed.discarded!;
  }

  /** A clean stop (everything is made durable first, as a real unmount writes everything back). */
  async unmount(): Promise<void> {
    if (!this.proc) return;
    execFileSync('umount', [this.mountPoint]);
    await this.exited;
    this.proc = undefined;
  }

  /** For afterAll: whatever state it is in, leaves no daemon and no mount behind. Never throws. */
  async cleanup(): Promise<void> {
    if (this.proc) {
      this.proc.kill('SIGKILL');
      await this.exited;
      this.proc = undefined;
    }
    try {
      execFileSync('umount', ['-l', this.mountPoint], { stdio: 'ignore' });
    } catch {
      // Not mounted.
    }
  }

  private async waitForEvent(name: string, timeoutMs: number): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((e) => e.event === name);
      if (found) return found;
      if (this.gone || Date.now() > deadline) {
        throw new Error(`lossy-fs on ${this.mountPoint}: no "${name}" event; its stderr:\n${this.stderr}`);
      }
      await new Promise<void>((res) => {
        const timer = setTimeout(res, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          res();
        });
      });
    }
  }
}
