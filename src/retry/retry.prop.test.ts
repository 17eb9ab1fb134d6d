import { fc, test } from '@fast-check/vitest';
import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  retry as cockatielRetry,
  handleAll,
} from 'cockatiel';
import { expect } from 'vitest';
import { circuitBreaker } from '../breaker/index.js';
import { isAbortedError, isTimeoutError } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { hedge } from './hedge.js';
import { retry } from './retry.js';
import { retryBudget } from './retry-budget.js';
import { timeout } from './timeout.js';
import { wrap } from './wrap.js';

test.prop([
  fc.integer({ min: 0, max: 8 }),
  fc.integer({ min: 0, max: 12 }),
  fc.constantFrom(0, 1, 25),
  fc.boolean(),
])(
  'retry never makes more than maxAttempts retries (maxAttempts + 1 attempts)',
  async (maxAttempts, failures, delay, sync) => {
    const clock = new FakeClock(0);
    const policy = retry({ maxAttempts, backoff: delay, clock });
    let attempts = 0;
    const p = policy.execute(({ attempt }) => {
      expect(attempt).toBe(attempts);
      attempts++;
      if (attempts <= failures) {
        if (sync) throw new Error(`failure ${attempts}`);
        return Promise.reject(new Error(`failure ${attempts}`));
      }
      return attempts;
    });
    p.catch(() => {});
    await clock.advanceAsync(delay * (maxAttempts + 1) + 1);
    expect(attempts).toBe(Math.min(failures, maxAttempts) + 1);
    if (failures <= maxAttempts) await expect(p).resolves.toBe(failures + 1);
    else await expect(p).rejects.toThrow(`failure ${maxAttempts + 1}`);
    expect(policy.stats().retries).toBe(attempts - 1);
  },
);

const budgetConfig = fc.record({
  ratio: fc.constantFrom(0, 0.1, 0.2, 0.5, 1),
  minPerSecond: fc.constantFrom(0, 0.5, 1, 2),
});

test.prop([budgetConfig, fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 60 })])(
  'with a budget, retries never exceed what the budget allows',
  async ({ ratio, minPerSecond }, failuresPerCall) => {
    // Everything happens within one ttl window: the budget's bound is ratio·calls + minPerSecond·ttl.
    const clock = new FakeClock(0);
    const ttl = 10_000;
    const budget = retryBudget({ ratio, minPerSecond, ttl, clock });
    const policy = retry({ maxAttempts: 4, budget, clock });
    let calls = 0;
    let retries = 0;
    for (const failures of failuresPerCall) {
      calls++;
      let attempts = 0;
      await policy
        .execute(() => {
          if (attempts++ > 0) retries++;
          if (attempts <= failures) throw new Error('down');
          return 'ok';
        })
        .catch(() => {});
      clock.advance(10);
      const bound = ratio * calls + minPerSecond * (ttl / 1000);
      expect(retries).toBeLessThanOrEqual(bound + 1e-9);
    }
    expect(budget.stats().withdrawals).toBe(retries);
    expect(policy.stats().retries).toBe(retries);
  },
);

/** A layer of a generated stack. */
type Layer =
  | { kind: 'timeout'; ms: number; strategy: 'aggressive' | 'cooperative' }
  | { kind: 'retry' }
  | { kind: 'breaker' }
  | { kind: 'hedge' }
  | { kind: 'cockatiel-retry' }
  | { kind: 'cockatiel-breaker' };

const layer: fc.Arbitrary<Layer> = fc.oneof(
  fc.record({
    kind: fc.constant('timeout' as const),
    ms: fc.integer({ min: 1, max: 100 }),
    strategy: fc.constantFrom('aggressive' as const, 'cooperative' as const),
  }),
  fc.constant({ kind: 'retry' as const }),
  fc.constant({ kind: 'breaker' as const }),
  fc.constant({ kind: 'hedge' as const }),
  fc.constant({ kind: 'cockatiel-retry' as const }),
  fc.constant({ kind: 'cockatiel-breaker' as const }),
);

test.prop([
  fc.array(layer, { minLength: 1, maxLength: 5 }),
  fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
])('wrap passes the innermost signal that aborts when any layer aborts', async (layers, abortAt) => {
  const clock = new FakeClock(0);
  const policies = layers.map((l) => {
    switch (l.kind) {
      case 'timeout':
        return timeout(l.ms, { clock, strategy: l.strategy });
      case 'retry':
        // No retries: the first attempt's signal is the one under test.
        return retry({ maxAttempts: 0, clock });
      case 'breaker':
        return circuitBreaker({ clock });
      case 'hedge':
        // Never hedges within the test's horizon.
        return hedge({ delay: 10_000, clock });
      // cockatiel's policies take and hand down real signals (no timers of theirs here).
      case 'cockatiel-retry':
        return cockatielRetry(handleAll, { maxAttempts: 0 });
      default:
        return cockatielBreaker(handleAll, { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(5) });
    }
  });
  const policy = (wrap as (...p: unknown[]) => ReturnType<typeof timeout>)(...policies);
  const caller = new AbortController();
  const signals: AbortSignal[] = [];
  let abortedAt: number | undefined;
  const p = policy.execute(({ signal }) => {
    signals.push(signal);
    return new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => {
        abortedAt ??= clock.now();
        reject(signal.reason);
      });
    });
  }, caller.signal);
  p.catch(() => {});
  if (abortAt !== undefined) clock.setTimeout(() => caller.abort('caller'), abortAt);

  const deadlines = layers.flatMap((l) => (l.kind === 'timeout' ? [l.ms] : []));
  const expected = Math.min(abortAt ?? Number.POSITIVE_INFINITY, ...deadlines);
  await clock.advanceAsync(200);
  await flushMicrotasks();

  expect(signals).toHaveLength(1);
  if (expected === Number.POSITIVE_INFINITY) {
    expect(abortedAt).toBeUndefined();
    expect(signals[0]!.aborted).toBe(false);
    caller.abort('cleanup');
    await p.catch(() => {});
    return;
  }
  expect(abortedAt).toBe(expected);
  const err = await p.catch((e) => e);
  // fn rejects with its signal's reason; the layers pass it on or replace it with their own.
  expect(err === 'caller' || isAbortedError(err) || isTimeoutError(err)).toBe(true);
});
