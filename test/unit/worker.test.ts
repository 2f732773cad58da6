import { silentLogger } from '../../shared/logging';
import { BackgroundWorker, type WorkResult } from '../../shared/worker';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A worker that answers from a script and records when each step ran. */
function scripted(results: Array<WorkResult | Error>): { steps: number[]; work: () => Promise<WorkResult> } {
  const steps: number[] = [];
  const started = Date.now();
  return {
    steps,
    work: async () => {
      steps.push(Date.now() - started);
      const next = results.shift() ?? 'idle';
      if (next instanceof Error) throw next;
      return next;
    },
  };
}

describe('BackgroundWorker', () => {
  it('goes again at once while busy, then waits the idle period', async () => {
    const w = scripted(['busy', 'busy', 'idle']);
    const runner = new BackgroundWorker({ name: 't', work: w.work }, { idleMs: 300 }, silentLogger());
    runner.start();
    await sleep(150);
    expect(w.steps).toHaveLength(3);
    await sleep(300);
    expect(w.steps).toHaveLength(4);
    await runner.stop();
  });

  it('waits as long as a throttled step asks', async () => {
    const w = scripted([{ throttleMs: 200 }, 'idle']);
    const runner = new BackgroundWorker({ name: 't', work: w.work }, { idleMs: 10_000 }, silentLogger());
    runner.start();
    await sleep(100);
    expect(w.steps).toHaveLength(1);
    await sleep(250);
    expect(w.steps).toHaveLength(2);
    expect(w.steps[1]! - w.steps[0]!).toBeGreaterThanOrEqual(190);
    await runner.stop();
  });

  it('cuts an idle wait short on wake()', async () => {
    const w = scripted(['idle', 'idle']);
    const runner = new BackgroundWorker({ name: 't', work: w.work }, { idleMs: 10_000 }, silentLogger());
    runner.start();
    await sleep(50);
    expect(w.steps).toHaveLength(1);
    runner.wake();
    await sleep(50);
    expect(w.steps).toHaveLength(2);
    await runner.stop();
  });

  it('survives a failing step, retrying with growing delays, and resets them after a success', async () => {
    const w = scripted([new Error('a'), new Error('b'), 'busy', 'idle']);
    const runner = new BackgroundWorker(
      { name: 't', work: w.work },
      { idleMs: 10_000, backoffMs: 50, maxBackoffMs: 1_000 },
      silentLogger(),
    );
    runner.start();
    await sleep(400);
    expect(w.steps).toHaveLength(4);
    // 50 ms after the first failure, 100 ms after the second.
    expect(w.steps[1]! - w.steps[0]!).toBeGreaterThanOrEqual(45);
    expect(w.steps[2]! - w.steps[1]!).toBeGreaterThanOrEqual(95);
    expect(runner.status()).toMatchObject({ consecutiveErrors: 0, lastError: 'b', steps: 2 });
    await runner.stop();
  });

  it('aborts the step under way on stop() and resolves once it has returned', async () => {
    let sawAbort = false;
    const runner = new BackgroundWorker(
      {
        name: 't',
        work: (signal) =>
          new Promise<WorkResult>((resolve) => {
            signal.addEventListener('abort', () => {
              sawAbort = true;
              setTimeout(() => resolve('idle'), 20);
            });
          }),
      },
      { idleMs: 10 },
      silentLogger(),
    );
    runner.start();
    await sleep(20);
    await runner.stop();
    expect(sawAbort).toBe(true);
    expect(runner.status().state).toBe('stopped');
  });

  it('stops for good once the worker is done', async () => {
    const w = scripted(['busy', 'done', 'busy']);
    const runner = new BackgroundWorker({ name: 't', work: w.work }, { idleMs: 10 }, silentLogger());
    runner.start();
    await sleep(100);
    expect(w.steps).toHaveLength(2);
    expect(runner.status().state).toBe('done');
  });
});
