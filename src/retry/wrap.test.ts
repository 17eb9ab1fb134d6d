import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  wrap as cockatielWrap,
  handleAll,
  noop,
  TimeoutStrategy,
} from 'cockatiel';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { circuitBreaker } from '../breaker/index.js';
import { neverAbortedSignal } from '../core/abort.js';
import { InvalidOptionError, isAbortedError, isTimeoutError } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { budgetedRetry } from './budgeted-retry.js';
import { hedge } from './hedge.js';
import { retry } from './retry.js';
import { retryBudget } from './retry-budget.js';
import { timeout } from './timeout.js';
import { PolicyWrap, wrap } from './wrap.js';

const never = () => new Promise<never>(() => {});

/** Counts AbortControllers constructed while `run` runs. */
async function countControllers(run: () => Promise<unknown>): Promise<number> {
  const Original = globalThis.AbortController;
  let count = 0;
  globalThis.AbortController = class extends Original {
    constructor() {
      super();
      count++;
    }
  };
  try {
    await run();
  } finally {
    globalThis.AbortController = Original;
  }
  return count;
}

/** A function that waits for its signal and rejects with its reason, recording when it aborted. */
function honoursSignal(clock: FakeClock) {
  const abortedAt: number[] = [];
  const signals: AbortSignal[] = [];
  const fn = ({ signal }: { signal: AbortSignal }) =>
    new Promise<never>((_, reject) => {
      signals.push(signal);
      signal.addEventListener('abort', () => {
        abortedAt.push(clock.now());
        reject(signal.reason);
      });
    });
  return { fn, abortedAt, signals };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('wrap', () => {
  it('runs the layers outermost first: the retry retries what the timeout rejects', async () => {
    const clock = new FakeClock(0);
    const policy = wrap(retry({ maxAttempts: 2, clock }), circuitBreaker({ clock }), timeout(100, { clock }));
    const attempts: number[] = [];
    const p = policy.execute(({ attempt }) => {
      attempts.push(attempt);
      return attempt < 2 ? never() : 'third time';
    });
    await clock.advanceAsync(100);
    await clock.advanceAsync(100);
    await expect(p).resolves.toBe('third time');
    expect(attempts).toEqual([0, 1, 2]);
  });

  it("hands fn the merged context: the retry's attempt and the innermost signal", async () => {
    const clock = new FakeClock(0);
    const policy = wrap(retry({ clock }), circuitBreaker({ clock }), timeout(100, { clock }));
    let seen: Record<string, unknown> | undefined;
    await policy.execute((ctx) => {
      seen = { ...ctx };
      return 1;
    });
    expect(Object.keys(seen!).sort()).toEqual(['attempt', 'signal']);
    expect(seen!.attempt).toBe(0);
    expect(seen!.signal).toBeInstanceOf(AbortSignal);
    expect((seen!.signal as AbortSignal).aborted).toBe(true); // settled: abortOnReturn
  });

  it('creates no AbortSignal when fn does not read one, and exactly one when it does', async () => {
    const clock = new FakeClock(0);
    const stacks = [
      wrap(retry({ clock }), circuitBreaker({ clock }), timeout(1000, { clock })),
      wrap(timeout(5000, { clock }), retry({ clock }), timeout(1000, { clock })),
      wrap(
        timeout(5000, { clock }),
        hedge({ delay: 1000, clock }),
        timeout(1000, { clock, strategy: 'cooperative' }),
      ),
      wrap(wrap(retry({ clock }), timeout(5000, { clock })), timeout(1000, 'cooperative')),
    ];
    for (const policy of stacks) {
      expect(await countControllers(() => policy.execute(async () => 1))).toBe(0);
      expect(await countControllers(() => policy.execute(async ({ signal }) => signal.aborted))).toBe(1);
    }
  });

  it("aborts fn's signal at the earliest deadline of the timeouts around it", async () => {
    const clock = new FakeClock(0);
    const { fn, abortedAt } = honoursSignal(clock);
    const policy = wrap(
      timeout(300, { clock }),
      retry({ maxAttempts: 0, clock }),
      timeout(50, { clock, strategy: 'cooperative' }),
      timeout(1000, { clock }),
    );
    const p = policy.execute(fn);
    p.catch(() => {});
    await clock.advanceAsync(49);
    expect(abortedAt).toEqual([]);
    await clock.advanceAsync(1);
    expect(abortedAt).toEqual([50]);
    // The innermost (aggressive) timeout saw its caller abort: E_ABORTED, caused by the deadline.
    const err = await p.catch((e) => e);
    expect(isAbortedError(err)).toBe(true);
    expect(isTimeoutError(err.cause)).toBe(true);
    expect(err.cause.timeout).toBe(50);
  });

  it("aborts fn's signal when an outer timeout fires, though no layer read its signal", async () => {
    const clock = new FakeClock(0);
    const { fn, abortedAt } = honoursSignal(clock);
    const policy = wrap(
      timeout(40, { clock }),
      retry({ clock }),
      circuitBreaker({ clock }),
      timeout(1000, { clock }),
    );
    const p = policy.execute(fn);
    p.catch(() => {});
    await clock.advanceAsync(40);
    expect(abortedAt).toEqual([40]);
    expect(isTimeoutError(await p.catch((e) => e))).toBe(true);
  });

  it("aborts fn's signal when the caller's signal aborts, and rejects with E_ABORTED", async () => {
    const clock = new FakeClock(0);
    const { fn, abortedAt, signals } = honoursSignal(clock);
    const controller = new AbortController();
    const policy = wrap(retry({ clock }), circuitBreaker({ clock }), timeout(1000, { clock }));
    const p = policy.execute(fn, controller.signal);
    p.catch(() => {});
    await clock.advanceAsync(10);
    controller.abort('client went away');
    await flushMicrotasks();
    expect(abortedAt).toEqual([10]);
    expect(signals).toHaveLength(1);
    const err = await p.catch((e) => e);
    expect(isAbortedError(err)).toBe(true);
  });

  it("aborts the losing hedge attempt's signal", async () => {
    const clock = new FakeClock(0);
    const policy = wrap(hedge({ delay: 10, clock }), timeout(1000, { clock }));
    const signals: AbortSignal[] = [];
    const p = policy.execute(({ signal, attempt }) => {
      signals.push(signal);
      return attempt === 0 ? never() : Promise.resolve('backup');
    });
    await clock.advanceAsync(10);
    await expect(p).resolves.toBe('backup');
    expect(signals).toHaveLength(2);
    expect(signals[0]!.aborted).toBe(true);
  });

  describe('mixed with cockatiel', () => {
    it("runs cockatiel's retry, breaker and timeout as layers", async () => {
      const policy = wrap(
        cockatielRetry(handleAll, { maxAttempts: 2 }),
        cockatielBreaker(handleAll, { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(5) }),
        cockatielTimeout(1000, TimeoutStrategy.Cooperative),
      );
      let seen: { attempt: number; signal: AbortSignal } | undefined;
      let calls = 0;
      await expect(
        policy.execute((ctx) => {
          seen = ctx;
          if (++calls < 2) throw new Error('once');
          return 'ok';
        }),
      ).resolves.toBe('ok');
      expect(seen!.attempt).toBe(1);
      expect(seen!.signal).toBeInstanceOf(AbortSignal);
      expect(seen!.signal).not.toBe(neverAbortedSignal);
    });

    it("hands cockatiel's timeout our retry's context and ours cockatiel's", async () => {
      const clock = new FakeClock(0);
      const a = wrap(
        retry({ clock }),
        cockatielTimeout(1000, TimeoutStrategy.Cooperative),
        timeout(100, { clock }),
      );
      const b = wrap(
        cockatielRetry(handleAll, { maxAttempts: 1 }),
        circuitBreaker({ clock }),
        timeout(100, { clock }),
      );
      for (const policy of [a, b]) {
        let seen: { attempt: number; signal: AbortSignal } | undefined;
        await policy.execute((ctx) => {
          seen = { attempt: ctx.attempt, signal: ctx.signal };
        });
        expect(seen!.attempt).toBe(0);
        expect(seen!.signal).toBeInstanceOf(AbortSignal);
      }
    });

    it("links a real signal handed in by cockatiel's timeout to ours", async () => {
      const clock = new FakeClock(0);
      const outer = cockatielTimeout(20, TimeoutStrategy.Cooperative);
      const policy = wrap(outer, timeout(10_000, { clock, strategy: 'cooperative' }));
      const seen = await policy.execute(
        ({ signal }) =>
          new Promise<string>((resolve) =>
            signal.addEventListener('abort', () => resolve('aborted by cockatiel')),
          ),
      );
      expect(seen).toBe('aborted by cockatiel');
    });

    it('keeps budgetedRetry working as a layer', async () => {
      const clock = new FakeClock(0);
      const budget = retryBudget({ clock });
      const policy = wrap(budgetedRetry(handleAll, { budget, maxAttempts: 2 }), timeout(100, { clock }));
      let calls = 0;
      await expect(
        policy.execute(({ attempt }) => {
          calls++;
          if (attempt < 2) throw new Error('again');
          return attempt;
        }),
      ).resolves.toBe(2);
      expect(calls).toBe(3);
      expect(budget.stats()).toMatchObject({ deposits: 1, withdrawals: 2 });
    });

    it("reaches the callee through cockatiel's wrap() on every call, before and after contexts turn into plain objects", async () => {
      const clock = new FakeClock(0);
      const t = timeout(20, { clock, strategy: 'cooperative' });
      const policy = cockatielWrap(cockatielRetry(handleAll, { maxAttempts: 0 }), t);
      for (let i = 0; i < 3; i++) {
        const { fn, abortedAt } = honoursSignal(clock);
        const p = policy.execute(fn);
        p.catch(() => {});
        await clock.advanceAsync(20);
        expect(abortedAt).toEqual([clock.now()]);
        expect(isTimeoutError(await p.catch((e) => e))).toBe(true);
      }
    });

    it("works inside cockatiel's wrap, whose spread merge still finds the signal", async () => {
      const clock = new FakeClock(0);
      const inner = wrap(retry({ maxAttempts: 0, clock }), timeout(30, { clock, strategy: 'cooperative' }));
      const policy = cockatielWrap(cockatielRetry(handleAll, { maxAttempts: 0 }), inner);
      const { fn, abortedAt } = honoursSignal(clock);
      const p = policy.execute(fn);
      p.catch(() => {});
      await clock.advanceAsync(30);
      expect(abortedAt).toEqual([30]);
      expect(isTimeoutError(await p.catch((e) => e))).toBe(true);
    });
  });

  it("keeps the breaker's fast path inside cockatiel's retry", async () => {
    const policy = cockatielWrap(cockatielRetry(handleAll, { maxAttempts: 1 }), circuitBreaker());
    let signal: AbortSignal | undefined;
    await policy.execute((ctx) => {
      signal = ctx.signal;
    });
    // The fast path hands its shared context; the slow one would hand cockatiel's signal back.
    expect(signal).toBe(neverAbortedSignal);
  });

  it("keeps the breaker's semantics for a real signal: a call the caller aborted is not a failure", async () => {
    const clock = new FakeClock(0);
    const breaker = circuitBreaker({ clock });
    const policy = wrap(
      retry({ maxAttempts: 0, clock }),
      breaker,
      timeout(1000, { clock, strategy: 'cooperative' }),
    );
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    const p = policy.execute(({ signal }) => {
      seen = signal;
      return new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => reject(new Error('cut'))),
      );
    }, controller.signal);
    p.catch(() => {});
    controller.abort();
    await expect(p).rejects.toSatisfy(isAbortedError);
    expect(seen!.aborted).toBe(true);
    expect(breaker.stats()).toMatchObject({ totalCalls: 1, totalFailures: 0 });
  });

  it("exposes the layers and the outermost layer's events, as cockatiel's wrap", async () => {
    const outer = retry();
    const inner = timeout(100);
    const policy = wrap(outer, inner) as unknown as PolicyWrap;
    expect(policy).toBeInstanceOf(PolicyWrap);
    expect(policy.wrapped).toEqual([outer, inner]);
    expect(policy.onSuccess).toBe(outer.onSuccess);
    expect(policy.onFailure).toBe(outer.onFailure);
    const success = vi.fn();
    policy.onSuccess(success);
    await policy.execute(() => 1);
    expect(success).toHaveBeenCalledTimes(1);
  });

  it('returns a single policy as it is, and nests', async () => {
    const t = timeout(100);
    expect(wrap(t)).toBe(t);
    const nested = wrap(wrap(retry(), noop), wrap(circuitBreaker(), t));
    await expect(nested.execute(({ attempt }) => attempt)).resolves.toBe(0);
  });

  it('rejects what is not a policy with E_INVALID_OPTION naming it', () => {
    expect(() => (wrap as (...p: unknown[]) => unknown)()).toThrow(InvalidOptionError);
    for (const [args, option] of [
      [[{}], 'policies[0]'],
      [[retry(), null], 'policies[1]'],
      [[retry(), timeout(1), { execute: 1 }], 'policies[2]'],
    ] as const) {
      let err: unknown;
      try {
        (wrap as (...p: unknown[]) => unknown)(...args);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).option).toBe(option);
    }
  });
});
