import { open, type FileHandle } from 'node:fs/promises';

/**
 * Group commit for SQLite's write-ahead log. With synchronous=FULL, SQLite fsyncs the WAL inside
 * every commit, on the calling thread: better-sqlite3 is synchronous, so each upload's commit
 * stopped the whole event loop for a disk flush. Instead SQLite runs with synchronous=NORMAL
 * (the WAL is written at each commit and synced only around checkpoints, which keep the main file
 * consistent) and this class makes commits durable: flush() resolves once an fdatasync of the WAL
 * that started after the call has finished, so every commit made before it is on disk. It runs
 * on libuv's thread pool, and every caller waiting meanwhile shares the next one: many uploads'
 * commits, one flush. An upload or delete is acknowledged only after its flush.
 */
export class GroupSync {
  private file: FileHandle | undefined;
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  /** Flushes done, and the callers they covered: how well commits are grouped. */
  readonly stats = { flushes: 0, callers: 0 };

  constructor(private readonly walPath: string) {}

  flush(): Promise<void> {
    this.stats.callers++;
    if (!this.running) return this.start();
    // The flush under way may have begun before this caller's commit: it waits for the next one,
    // which everyone arriving meanwhile shares.
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.next;
  }

  async close(): Promise<void> {
    await this.running?.catch(() => undefined);
    await this.next?.catch(() => undefined);
    await this.file?.close();
    this.file = undefined;
  }

  private startNext(): Promise<void> {
    this.next = undefined;
    return this.start();
  }

  private start(): Promise<void> {
    const run = this.sync().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async sync(): Promise<void> {
    // The WAL exists from the first commit on, for as long as the database is open.
    this.file ??= await open(this.walPath, 'r');
    await this.file.datasync();
    this.stats.flushes++;
  }
}
