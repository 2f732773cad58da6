import { ShoalError } from '../../../../shared/errors';

export interface QuorumOptions {
  /** Successes needed. */
  quorum: number;
  /**
   * Once the quorum is met, how long the calls still running may take before the result is
   * returned without them (they are aborted through their signal). Undefined: wait for all.
   */
  graceAfterQuorumMs?: number;
  /** Overall limit: calls still running then are aborted and count as failed. */
  deadlineMs?: number;
}

export interface QuorumResult<T, R> {
  succeeded: Array<{ target: T; value: R }>;
  failed: Array<{ target: T; error: unknown }>;
  met: boolean;
}

/**
 * Calls `call` on every target at once and counts successes (Garage's try_call_many with a
 * quorum strategy): callers say how many they need and how long to wait, and never count
 * themselves. Resolves when every call has settled, or once the quorum is met and the grace
 * after it is over, or at the deadline; calls cut short are aborted through their signal and
 * reported as failed. Never rejects: a call's error is a failure, listed in the result.
 */
export async function callQuorum<T, R>(
  targets: readonly T[],
  call: (target: T, signal: AbortSignal) => Promise<R>,
  options: QuorumOptions,
): Promise<QuorumResult<T, R>> {
  const controllers = targets.map(() => new AbortController());
  const outcomes: Array<{ ok: true; value: R } | { ok: false; error: unknown } | undefined> = targets.map(
    () => undefined,
  );
  let successes = 0;
  let settled = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const timers: NodeJS.Timeout[] = [];
  const stop = (why: string): void => {
    controllers.forEach((c, i) => {
      if (outcomes[i] === undefined) c.abort(new Error(why));
    });
    finish();
  };
  if (options.deadlineMs !== undefined) {
    timers.push(setTimeout(() => stop(`no answer within ${options.deadlineMs} ms`), options.deadlineMs));
  }
  targets.forEach((target, i) => {
    let promise: Promise<R>;
    try {
      promise = call(target, controllers[i]!.signal);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      (value) => {
        if (outcomes[i] !== undefined) return;
        outcomes[i] = { ok: true, value };
        successes++;
        settled++;
        if (settled === targets.length) finish();
        else if (successes === options.quorum && options.graceAfterQuorumMs !== undefined) {
          const grace = options.graceAfterQuorumMs;
          timers.push(setTimeout(() => stop(`no answer within ${grace} ms of the quorum`), grace));
        }
      },
      (error: unknown) => {
        if (outcomes[i] !== undefined) return;
        outcomes[i] = { ok: false, error };
        settled++;
        if (settled === targets.length) finish();
      },
    );
  });
  if (targets.length === 0) finish();
  await done;
  timers.forEach(clearTimeout);
  const result: QuorumResult<T, R> = { succeeded: [], failed: [], met: false };
  targets.forEach((target, i) => {
    const outcome = outcomes[i];
    if (outcome?.ok) result.succeeded.push({ target, value: outcome.value });
    else
      result.failed.push({
        target,
        error: outcome ? outcome.error : (controllers[i]!.signal.reason ?? new Error('cut short')),
      });
  });
  result.met = result.succeeded.length >= options.quorum;
  return result;
}

/**
 * Throws the 503 a client gets when fewer than `quorum` nodes did what was asked; `describe` words
 * the message from the number that did.
 */
export function requireQuorum(
  result: QuorumResult<unknown, unknown>,
  quorum: number,
  describe: (succeeded: number) => string,
): void {
  if (result.succeeded.length >= quorum) return;
  throw new ShoalError('quorum_unavailable', describe(result.succeeded.length));
}
