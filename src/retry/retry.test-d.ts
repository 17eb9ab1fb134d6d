import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  handleAll,
  type IPolicy,
  type IRetryContext,
  retry,
  wrap,
} from 'cockatiel';
import { describe, expectTypeOf, it } from 'vitest';
import { circuitBreaker } from '../breaker/index.js';
import {
  adaptiveThrottle,
  budgetedRetry,
  hedge,
  type IHedgeContext,
  isThrottledError,
  retryBudget,
  type ThrottledError,
  timeout,
} from './index.js';

describe('buttress/retry types', () => {
  it('mixes with cockatiel in wrap() and infers the result type', () => {
    const policy = wrap(retry(handleAll, { maxAttempts: 3 }), circuitBreaker(), timeout(100));
    expectTypeOf(policy.execute(() => 42)).toEqualTypeOf<Promise<number>>();
    expectTypeOf(policy.execute(async () => 'x')).toEqualTypeOf<Promise<string>>();
    policy.execute((ctx) => {
      expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
      expectTypeOf(ctx.attempt).toEqualTypeOf<number>();
      return 1;
    });
    const reversed = wrap(
      timeout(100),
      cockatielBreaker(handleAll, { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
    );
    expectTypeOf(reversed.execute(() => true)).toEqualTypeOf<Promise<boolean>>();
  });

  it('every policy is a cockatiel IPolicy', () => {
    const budget = retryBudget();
    expectTypeOf(timeout(10)).toMatchTypeOf<IPolicy>();
    expectTypeOf(adaptiveThrottle()).toMatchTypeOf<IPolicy>();
    expectTypeOf(hedge({ delay: 10, budget })).toMatchTypeOf<IPolicy<IHedgeContext>>();
    expectTypeOf(budgetedRetry(handleAll, { budget })).toMatchTypeOf<IPolicy<IRetryContext>>();
    const all = wrap(
      budgetedRetry(handleAll, { budget }),
      adaptiveThrottle(),
      hedge({ delay: { percentile: 0.9 } }),
      timeout('1s'),
    );
    expectTypeOf(all.execute(() => 1n)).toEqualTypeOf<Promise<bigint>>();
  });

  it('checks options at compile time', () => {
    // @ts-expect-error strategy is a closed set
    timeout(10, { strategy: 'eager' });
    // @ts-expect-error the budget is required
    budgetedRetry(handleAll, { maxAttempts: 3 });
    // @ts-expect-error delay is required
    hedge({ maxHedges: 2 });
    expectTypeOf(isThrottledError).guards.toEqualTypeOf<ThrottledError>();
  });
});
