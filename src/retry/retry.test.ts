import {
  ConstantBackoff,
  wrap as cockatielWrap,
  ExponentialBackoff,
  handleAll,
  handleType,
  handleWhenResult,
  IterableBackoff,
  noJitterGenerator,
} from 'cockatiel';
import { describe, expect, it, vi } from 'vitest';
import { neverAbortedSignal } from '../core/abort.js';
import { AbortedError, InvalidOptionError, isAbortedError } from '../core/errors.js';
import { sharedTimerWheel } from '../core/timer-wheel.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { retry } from './retry.js';
import { retryBudget } from './retry-budget.js';

class HttpError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** A function failing its first `failures` calls with `error`, then returning `value`. */
function flaky<T>(failures: number, value: T, error: unknown = new Error('flaky')) {
  const attempts: number[] = [];
  const fn = vi.fn(async ({ attempt }: { attempt: number }) => {
    attempts.push(attempt);
    if (attempts.length <= failures) throw error;
    return value;
  });
  return { fn, attempts };
}

describe('retry', () => {
  it('returns the first success, handing attempt 0 and a signal', async () => {
    const policy = retry();
    let seen: { attempt: number; signal: AbortSignal } | undefined;
    await expect(
      policy.execute((ctx) => {
        seen = ctx;
        return 7;
      }),
    ).resolves.toBe(7);
    expect(seen!.attempt).toBe(0);
    expect(seen!.signal).toBe(neverAbortedSignal);
    await expect(policy.execute(async () => 'async')).resolves.toBe('async');
    // biome-ignore lint/suspicious/noThenProperty: a non-Promise thenable is what this checks
    const thenable = { then: (ok: (v: number) => void) => ok(3) } as PromiseLike<number>;
    await expect(policy.execute(() => thenable)).resolves.toBe(3);
  });

  it('retries failures, at most maxAttempts times, and surfaces the last error', async () => {
    const clock = new FakeClock(0);
    const last = new Error('still down');
    const policy = retry({ maxAttempts: 2, clock });
    let calls = 0;
    const err = await policy
      .execute(() => {
        calls++;
        throw calls === 3 ? last : new Error(`down ${calls}`);
      })
      .catch((e) => e);
    expect(err).toBe(last);
    expect(calls).toBe(3);
    expect(policy.stats()).toEqual({ calls: 1, retries: 2, giveUps: 1, budgetRefusals: 0 });
  });

  it('succeeds after transient failures, numbering the attempts', async () => {
    const { fn, attempts } = flaky(2, 'ok');
    await expect(retry({ maxAttempts: 3 }).execute(fn)).resolves.toBe('ok');
    expect(attempts).toEqual([0, 1, 2]);
  });

  it('maxAttempts: 0 makes a single attempt', async () => {
    const { fn } = flaky(1, 'ok');
    await expect(retry({ maxAttempts: 0 }).execute(fn)).rejects.toThrow('flaky');
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('waits a constant delay on the timer wheel before each retry', async () => {
    const clock = new FakeClock(0);
    const { fn } = flaky(2, 'ok');
    const p = retry({ backoff: '100ms', clock }).execute(fn);
    await flushMicrotasks();
    expect(fn).toHaveBeenCalledTimes(1);
    await clock.advanceAsync(99);
    expect(fn).toHaveBeenCalledTimes(1);
    await clock.advanceAsync(1);
    expect(fn).toHaveBeenCalledTimes(2);
    await clock.advanceAsync(100);
    await expect(p).resolves.toBe('ok');
    expect(fn).toHaveBeenCalledTimes(3);
    await new Promise((resolve) => process.nextTick(resolve));
    expect(clock.pending).toBe(0);
    expect(sharedTimerWheel(clock).size).toBe(0);
  });

  it("follows a cockatiel backoff, asking it once per retry with cockatiel's context", async () => {
    const clock = new FakeClock(0);
    const backoff = new ExponentialBackoff({
      generator: noJitterGenerator,
      initialDelay: 10,
      maxDelay: 1000,
    });
    const next = vi.spyOn(backoff, 'next');
    const { fn } = flaky(3, 'ok');
    const delays: number[] = [];
    const policy = retry({ backoff, maxAttempts: 5, clock });
    policy.onRetry(({ delay }) => delays.push(delay));
    const p = policy.execute(fn);
    await clock.advanceAsync(10_000);
    await expect(p).resolves.toBe('ok');
    expect(delays).toEqual([10, 20, 40]);
    expect(next).toHaveBeenCalledTimes(1);
    const context = (next.mock.calls as unknown as [{ attempt: number; signal: AbortSignal }][])[0]![0];
    expect(context).toMatchObject({ attempt: 1, result: { error: expect.any(Error) } });
    expect(context.signal).toBe(neverAbortedSignal);
  });

  it('accepts ConstantBackoff and IterableBackoff', async () => {
    const clock = new FakeClock(0);
    for (const backoff of [new ConstantBackoff(5), new IterableBackoff([5, 5, 5])]) {
      const { fn } = flaky(2, 1);
      const p = retry({ backoff, clock }).execute(fn);
      await clock.advanceAsync(9);
      expect(fn).toHaveBeenCalledTimes(2);
      await clock.advanceAsync(1);
      await expect(p).resolves.toBe(1);
    }
  });

  it('retries only what isFailure accepts, as a predicate or a cockatiel policy', async () => {
    const notFound = new HttpError(404);
    const { fn: a } = flaky(1, 'ok', notFound);
    await expect(retry({ isFailure: (e) => (e as HttpError).status >= 500 }).execute(a)).rejects.toBe(
      notFound,
    );
    expect(a).toHaveBeenCalledTimes(1);

    const { fn: b } = flaky(1, 'ok', new HttpError(503));
    const policy = retry({ isFailure: handleType(HttpError, (e) => e.status >= 500) });
    await expect(policy.execute(b)).resolves.toBe('ok');
    expect(b).toHaveBeenCalledTimes(2);

    const { fn: c } = flaky(1, 'ok', new TypeError('bug'));
    await expect(policy.execute(c)).rejects.toBeInstanceOf(TypeError);
    expect(c).toHaveBeenCalledTimes(1);
  });

  it('retries values the result filter rejects, returning the last one when it gives up', async () => {
    const policy = retry({
      maxAttempts: 2,
      isFailure: handleWhenResult((r) => (r as { status: number }).status >= 500),
    });
    let calls = 0;
    await expect(policy.execute(() => ({ status: ++calls < 3 ? 503 : 200 }))).resolves.toEqual({
      status: 200,
    });
    calls = 0;
    const giveUp = vi.fn();
    policy.onGiveUp(giveUp);
    await expect(policy.execute(() => ({ status: 500 + ++calls }))).resolves.toEqual({ status: 503 });
    expect(giveUp).toHaveBeenCalledWith({ value: { status: 503 } });
  });

  it('a filter that throws makes the error surface instead of being retried', async () => {
    const boom = new Error('boom');
    const { fn } = flaky(1, 'ok', boom);
    await expect(
      retry({
        isFailure: () => {
          throw new Error('bad filter');
        },
      }).execute(fn),
    ).rejects.toBe(boom);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  describe('with a budget', () => {
    it('deposits once per call and withdraws once per retry', async () => {
      const clock = new FakeClock(0);
      const budget = retryBudget({ ratio: 1, minPerSecond: 0, clock });
      const policy = retry({ budget, clock });
      await policy.execute(() => 1);
      await policy.execute(() => 2);
      expect(budget.stats()).toMatchObject({ deposits: 2, withdrawals: 0 });
      const { fn } = flaky(2, 'ok');
      await expect(policy.execute(fn)).resolves.toBe('ok');
      expect(budget.stats()).toMatchObject({ deposits: 3, withdrawals: 2, refusals: 0 });
    });

    it('stops retrying when the budget refuses, and the last error surfaces', async () => {
      const clock = new FakeClock(0);
      const spent = retryBudget({ ratio: 0, minPerSecond: 0, clock });
      const policy = retry({ budget: spent, maxAttempts: 5, clock });
      const exhausted = vi.fn();
      const giveUp = vi.fn();
      policy.onBudgetExhausted(exhausted);
      policy.onGiveUp(giveUp);
      const down = new Error('down');
      let calls = 0;
      const err = await policy
        .execute(() => {
          calls++;
          throw down;
        })
        .catch((e) => e);
      expect(err).toBe(down);
      expect(calls).toBe(1);
      expect(exhausted).toHaveBeenCalledWith({ error: down, attempt: 1 });
      expect(giveUp).toHaveBeenCalledWith({ error: down });
      expect(policy.stats()).toMatchObject({ retries: 0, giveUps: 1, budgetRefusals: 1 });
    });

    it('does not withdraw for the last attempt or an error it does not retry', async () => {
      const clock = new FakeClock(0);
      const budget = retryBudget({ ratio: 1, minPerSecond: 0, clock });
      for (let i = 0; i < 10; i++) budget.deposit();
      const policy = retry({ budget, maxAttempts: 1, isFailure: (e) => e instanceof HttpError, clock });
      await policy.execute(() => Promise.reject(new HttpError(500))).catch(() => {});
      expect(budget.stats().withdrawals).toBe(1);
      await policy.execute(() => Promise.reject(new TypeError('bug'))).catch(() => {});
      expect(budget.stats().withdrawals).toBe(1);
    });
  });

  describe('abort', () => {
    it('rejects with E_ABORTED without calling fn when the signal is already aborted', async () => {
      const fn = vi.fn();
      const err = await retry()
        .execute(fn, AbortSignal.abort('gone'))
        .catch((e) => e);
      expect(isAbortedError(err)).toBe(true);
      expect(err.cause).toBe('gone');
      expect(fn).not.toHaveBeenCalled();
    });

    it('rejects at once when the signal aborts during a delay, and makes no further attempt', async () => {
      const clock = new FakeClock(0);
      const controller = new AbortController();
      const { fn } = flaky(5, 'ok');
      const p = retry({ backoff: 1000, clock }).execute(fn, controller.signal);
      const settled = vi.fn();
      p.catch(settled);
      await flushMicrotasks();
      expect(fn).toHaveBeenCalledTimes(1);
      controller.abort('stop');
      await flushMicrotasks();
      expect(settled).toHaveBeenCalledWith(expect.any(AbortedError));
      await clock.advanceAsync(5000);
      expect(fn).toHaveBeenCalledTimes(1);
      await new Promise((resolve) => process.nextTick(resolve));
      expect(sharedTimerWheel(clock).size).toBe(0);
    });

    it('stops after an attempt that fails once the signal has aborted', async () => {
      const controller = new AbortController();
      const policy = retry({ maxAttempts: 5 });
      let calls = 0;
      const err = await policy
        .execute(async ({ signal }) => {
          calls++;
          controller.abort('enough');
          throw new Error(`failed after abort: ${signal.aborted}`);
        }, controller.signal)
        .catch((e) => e);
      expect(calls).toBe(1);
      expect(isAbortedError(err)).toBe(true);
      expect(err.cause).toBe('enough');
    });

    it('returns the value of an attempt that succeeds despite the abort', async () => {
      const controller = new AbortController();
      await expect(
        retry().execute(() => {
          controller.abort();
          return 'done anyway';
        }, controller.signal),
      ).resolves.toBe('done anyway');
    });

    it("passes the caller's signal to fn", async () => {
      const controller = new AbortController();
      await retry().execute(({ signal }) => expect(signal).toBe(controller.signal), controller.signal);
    });
  });

  it('emits onRetry, onGiveUp, onSuccess and onFailure like cockatiel', async () => {
    const clock = new FakeClock(0);
    const policy = retry({ maxAttempts: 1, backoff: 10, clock });
    const events: unknown[] = [];
    policy.onRetry((e) => events.push(['retry', e]));
    policy.onGiveUp((e) => events.push(['giveUp', e]));
    policy.onSuccess((e) => events.push(['success', e]));
    policy.onFailure((e) => events.push(['failure', e.handled, e.duration]));
    const down = new Error('down');
    const p = policy.execute(async () => {
      throw down;
    });
    await clock.advanceAsync(10);
    await expect(p).rejects.toBe(down);
    expect(events).toEqual([
      ['failure', true, 0],
      ['retry', { error: down, delay: 10, attempt: 1 }],
      ['failure', true, 0],
      ['giveUp', { error: down }],
    ]);
    events.length = 0;
    const q = policy.execute(async () => {
      await clock.advanceAsync(5);
      return 1;
    });
    await expect(q).resolves.toBe(1);
    expect(events).toEqual([['success', { duration: 5 }]]);
  });

  it("composes with cockatiel's wrap() as an IPolicy", async () => {
    const { fn, attempts } = flaky(1, 'ok');
    const policy = cockatielWrap(retry({ maxAttempts: 2 }), retry({ maxAttempts: 0 }));
    await expect(policy.execute(fn)).resolves.toBe('ok');
    expect(attempts).toEqual([0, 0]);
  });

  describe('options', () => {
    const bad: [string, unknown][] = [
      ['maxAttempts', -1],
      ['maxAttempts', 1.5],
      ['maxAttempts', '3'],
      ['backoff', -5],
      ['backoff', 'soon'],
      ['backoff', {}],
      ['backoff', true],
      ['isFailure', 'all'],
      ['isFailure', { options: {} }],
      ['budget', {}],
      ['clock', { now: 1 }],
      ['maxRetries', 3],
    ];
    it.each(bad)('rejects %s: %j with E_INVALID_OPTION naming it', (option, value) => {
      let err: unknown;
      try {
        retry({ [option]: value } as never);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).code).toBe('E_INVALID_OPTION');
      expect((err as InvalidOptionError).option).toBe(option);
    });

    it('accepts handleAll and exposes its settings', () => {
      const budget = retryBudget();
      const policy = retry({ isFailure: handleAll, budget, maxAttempts: 4 });
      expect(policy.maxAttempts).toBe(4);
      expect(policy.budget).toBe(budget);
      expect(() => retry(null as never)).toThrow(InvalidOptionError);
    });
  });
});
