import { callQuorum, requireQuorum } from '../../services/storage-node/src/replication/quorum';
import { ShoalError } from '../../shared/errors';

// Unref'd: a call the test abandons must not keep jest waiting for its timer.
const after = <T>(ms: number, value: T): Promise<T> =>
  new Promise((r) => setTimeout(() => r(value), ms).unref());
const failAfter = (ms: number, message: string): Promise<never> =>
  new Promise((_r, reject) => setTimeout(() => reject(new Error(message)), ms));

describe('callQuorum', () => {
  it('waits for every call by default and lists successes and failures', async () => {
    const result = await callQuorum(
      ['a', 'b', 'c'],
      (t) => (t === 'b' ? failAfter(10, 'b is down') : after(30, t.toUpperCase())),
      { quorum: 2 },
    );
    expect(result.met).toBe(true);
    expect(result.succeeded).toEqual([
      { target: 'a', value: 'A' },
      { target: 'c', value: 'C' },
    ]);
    expect(result.failed.map((f) => [f.target, (f.error as Error).message])).toEqual([['b', 'b is down']]);
  });

  it('returns a grace period after the quorum, aborting and failing the calls still running', async () => {
    const aborted: string[] = [];
    const started = Date.now();
    const result = await callQuorum(
      ['fast1', 'fast2', 'hung'],
      (t, signal) => {
        if (t !== 'hung') return after(10, t);
        return new Promise((_r, reject) =>
          signal.addEventListener('abort', () => {
            aborted.push(t);
            reject(signal.reason as Error);
          }),
        );
      },
      { quorum: 2, graceAfterQuorumMs: 50 },
    );
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(result.met).toBe(true);
    expect(result.succeeded.map((s) => s.target)).toEqual(['fast1', 'fast2']);
    expect(result.failed.map((f) => f.target)).toEqual(['hung']);
    expect(aborted).toEqual(['hung']);
  });

  it('gives up at the deadline, quorum met or not', async () => {
    const result = await callQuorum(['a', 'b'], (t) => after(t === 'a' ? 5 : 10_000, t), {
      quorum: 2,
      deadlineMs: 50,
    });
    expect(result.met).toBe(false);
    expect(result.failed.map((f) => f.target)).toEqual(['b']);
  });

  it('counts a call that throws synchronously as a failure', async () => {
    const result = await callQuorum(
      ['a'],
      () => {
        throw new Error('bad');
      },
      { quorum: 1 },
    );
    expect(result.met).toBe(false);
    expect(result.failed).toHaveLength(1);
  });

  it('resolves at once for no targets', async () => {
    expect((await callQuorum([], () => after(1, 1), { quorum: 0 })).met).toBe(true);
  });

  it("requireQuorum throws the 503 quorum_unavailable with the caller's words", async () => {
    const result = await callQuorum(['a', 'b'], (t) => (t === 'a' ? after(1, 1) : failAfter(1, 'x')), {
      quorum: 2,
    });
    expect(() => requireQuorum(result, 2, (n) => `only ${n} of 2`)).toThrow(
      expect.objectContaining({
        code: 'quorum_unavailable',
        httpStatus: 503,
        message: 'only 1 of 2',
      }) as ShoalError,
    );
  });
});
