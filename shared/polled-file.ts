import { readFile, stat } from 'node:fs/promises';

/**
 * A small file that can change under a running process, such as a Kubernetes Secret mount (the
 * kubelet swaps it by a rename, so its inode changes with it). Polled rather than watched:
 * inotify does not see a swap through the mount's symlinks reliably.
 */
export class PolledFile {
  private stamp = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly path: string) {}

  /** Runs `check` now, then every `pollMs` until stop(). */
  async start(check: () => Promise<void>, pollMs = 2_000): Promise<void> {
    await check();
    this.timer = setInterval(() => void check(), pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Makes the next readIfChanged read the file whatever its stamp (after its content was dropped). */
  forget(): void {
    this.stamp = '';
  }

  /** The file's text when it changed since the last read, undefined when not; throws when it cannot be read. */
  async readIfChanged(): Promise<string | undefined> {
    const info = await stat(this.path);
    const stamp = `${info.mtimeMs}:${info.size}:${info.ino}`;
    if (stamp === this.stamp) return undefined;
    const text = await readFile(this.path, 'utf8');
    this.stamp = stamp;
    return text;
  }
}
