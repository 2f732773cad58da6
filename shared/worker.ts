import type { Logger } from 'pino';
import { errorText } from './errors';

/**
 * What one step of background work found, which decides when the next step runs:
 *  - 'busy': there is more to do; go again after the worker's busy pause.
 *  - 'idle': nothing to do; wait the idle period, or until someone calls wake().
 *  - { throttleMs }: there is work, but not before this long (a rate limit, a view that settles).
 *  - 'done': the worker has finished for good.
 */
export type WorkResult = 'busy' | 'idle' | 'done' | { throttleMs: number };

/** One kind of background work: gossip, repair, scrub, housekeeping. Each step is one work() call. */
export interface Worker {
  readonly name: string;
  work(signal: AbortSignal): Promise<WorkResult>;
}

export interface WorkerTiming {
  /** Pause after an idle step (or a function of the moment, for periods that change). */
  idleMs: number | (() => number);
  /** Pause after a busy step; 0 goes again on the next turn of the event loop. */
  busyMs?: number;
  /** Delay before the first step. */
  firstMs?: number;
  /** After a step throws: the first retry delay, doubling up to maxBackoffMs while steps keep failing. */
  backoffMs?: number;
  maxBackoffMs?: number;
}

export interface WorkerStatus {
  name: string;
  state: 'stopped' | 'running' | 'waiting' | 'done';
  steps: number;
  consecutiveErrors: number;
  lastError: string | null;
}

/**
 * Runs a Worker in the background: owns its timer, the pauses between steps, backoff after
 * failures and shutdown, so that no background loop hand-rolls them (the shape Garage gives its
 * background tasks). Steps never overlap; a step that throws is logged and retried with backoff
 * instead of ending the loop or the process. stop() aborts the step under way through its signal
 * and resolves once it has returned.
 */
export class BackgroundWorker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private stopped = true;
  private wakeRequested = false;
  private readonly stats: WorkerStatus;

  constructor(
    private readonly worker: Worker,
    private readonly timing: WorkerTiming,
    private readonly log: Logger,
  ) {
    this.stats = { name: worker.name, state: 'stopped', steps: 0, consecutiveErrors: 0, lastError: null };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.schedule(this.timing.firstMs ?? 0);
  }

  /** Runs one step now, outside the schedule, and resolves when it is done (start-up, tests). */
  async runOnce(): Promise<WorkResult> {
    while (this.running) await this.running;
    const controller = this.abort ?? new AbortController();
    return this.worker.work(controller.signal);
  }

  /** Cuts an idle wait short: new work has arrived. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.wakeRequested = true;
      return;
    }
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort?.abort(new Error(`${this.worker.name} is stopping`));
    await this.running;
    if (this.stats.state !== 'done') this.stats.state = 'stopped';
  }

  status(): WorkerStatus {
    return { ...this.stats };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.stats.state = 'waiting';
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.step().finally(() => (this.running = undefined));
    }, delayMs);
    this.timer.unref();
  }

  private async step(): Promise<void> {
    this.stats.state = 'running';
    this.wakeRequested = false;
    let next: number;
    try {
      const result = await this.worker.work(this.abort!.signal);
      this.stats.steps++;
      this.stats.consecutiveErrors = 0;
      if (result === 'done') {
        this.stats.state = 'done';
        this.stopped = true;
        return;
      }
      next =
        result === 'busy'
          ? (this.timing.busyMs ?? 0)
          : result === 'idle'
            ? this.wakeRequested
              ? 0
              : this.idleMs()
            : Math.max(0, result.throttleMs);
    } catch (err) {
      if (this.stopped) return;
      this.stats.consecutiveErrors++;
      this.stats.lastError = errorText(err);
      const base = this.timing.backoffMs ?? 1_000;
      next = Math.min(
        this.timing.maxBackoffMs ?? 60_000,
        base * 2 ** Math.min(16, this.stats.consecutiveErrors - 1),
      );
      this.log.warn(
        { worker: this.worker.name, err: this.stats.lastError, retryInMs: next },
        'background work failed',
      );
    }
    this.schedule(next);
  }

  private idleMs(): number {
    const idle = this.timing.idleMs;
    return typeof idle === 'function' ? idle() : idle;
  }
}
