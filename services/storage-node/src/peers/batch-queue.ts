/**
 * Sends items to one peer in batches without waiting to fill them: an item goes out at once when
 * nothing is on its way, and items that come while a batch is on its way wait and go together in
 * the next one. Under load, batches grow by themselves (group commit, as a database does with its
 * log); when idle, an item waits for nothing.
 *
 * Each item has its own deadline, counted from when it was added: one queued behind a batch that
 * hangs fails at its deadline, not after the hung batch's own.
 */
export class BatchQueue<I, R> {
  private readonly queue: Array<Pending<I, R>> = [];
  private inFlight = false;

  constructor(
    /** Sends one batch; answers one result or Error per item, in order. Rejecting fails them all. */
    private readonly send: (items: I[]) => Promise<Array<R | Error>>,
    private readonly options: { maxBatch: number; deadlineMs: number; timeoutError: () => Error },
  ) {}

  /** Queues `item`; it fails after `deadlineMs` (the queue's deadline unless given) if not answered. */
  add(item: I, deadlineMs = this.options.deadlineMs): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const pending: Pending<I, R> = { item, settled: false, resolve, reject, timer: undefined };
      pending.timer = setTimeout(() => settle(pending, this.options.timeoutError()), deadlineMs);
      this.queue.push(pending);
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight) return;
    // Items whose deadline passed while they waited are not sent.
    while (this.queue[0]?.settled) this.queue.shift();
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatch).filter((p) => !p.settled);
    this.inFlight = true;
    this.send(batch.map((p) => p.item))
      .then(
        (results) => batch.forEach((p, i) => settle(p, results[i] ?? new Error('no result for this item'))),
        (err: unknown) =>
          batch.forEach((p) => settle(p, err instanceof Error ? err : new Error(String(err)))),
      )
      .finally(() => {
        this.inFlight = false;
        this.pump();
      });
  }
}

interface Pending<I, R> {
  item: I;
  settled: boolean;
  resolve: (value: R) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

function settle<I, R>(pending: Pending<I, R>, outcome: R | Error): void {
  if (pending.settled) return;
  pending.settled = true;
  clearTimeout(pending.timer);
  if (outcome instanceof Error) pending.reject(outcome);
  else pending.resolve(outcome);
}
