import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  wrap as cockatielWrap,
  ExponentialBackoff,
  fallback,
  handleAll,
  handleType,
  type IDefaultPolicyContext,
  type IMergedPolicy,
  type IPolicy,
  type IRetryContext,
  TimeoutStrategy,
} from 'cockatiel';
import { describe, expectTypeOf, it } from 'vitest';
import { type CircuitBreaker, circuitBreaker } from '../breaker/index.js';
import * as root from '../index.js';
import {
  budgetedRetry,
  hedge,
  type Retry,
  type RetryEvent,
  type RetryStats,
  retry,
  retryBudget,
  type Timeout,
  timeout,
  wrap,
} from './index.js';

describe('retry() and wrap() types', () => {
  it('wrap(retry, circuitBreaker, timeout) from buttress infers Promise<number>', () => {
    const policy = wrap(retry({ maxAttempts: 3 }), circuitBreaker(), timeout(100));
    expectTypeOf(policy.execute(() => 42)).toEqualTypeOf<Promise<number>>();
    expectTypeOf(policy.execute(async () => 42)).toEqualTypeOf<Promise<number>>();
    policy.execute((ctx) => {
      expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
      expectTypeOf(ctx.attempt).toEqualTypeOf<number>();
      return 1;
    });
    // cockatiel's IMergedPolicy shape, so code typed against cockatiel's wrap() accepts ours.
    expectTypeOf(policy).toExtend<
      IMergedPolicy<IRetryContext & IDefaultPolicyContext, never, [Timeout, Retry, CircuitBreaker]>
    >();
    expectTypeOf(policy.wrapped).toEqualTypeOf<[Timeout, Retry, CircuitBreaker]>();
  });

  it('mixes with cockatiel policies, either way round, and infers like cockatiel', () => {
    const mixed = wrap(
      cockatielRetry(handleAll, { maxAttempts: 3 }),
      circuitBreaker(),
      cockatielTimeout(100, TimeoutStrategy.Cooperative),
    );
    expectTypeOf(mixed.execute(() => 42)).toEqualTypeOf<Promise<number>>();
    const reversed = wrap(
      retry({ backoff: new ExponentialBackoff() }),
      cockatielBreaker(handleAll, { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      timeout(100),
    );
    expectTypeOf(reversed.execute(async () => 42)).toEqualTypeOf<Promise<number>>();
    const inCockatiel = cockatielWrap(retry(), circuitBreaker(), timeout(100));
    expectTypeOf(inCockatiel.execute(() => 42)).toEqualTypeOf<Promise<number>>();
    // Same type as cockatiel's own wrap() of the same layers.
    expectTypeOf(wrap(retry(), timeout(100))).toEqualTypeOf(cockatielWrap(retry(), timeout(100)));
  });

  it("keeps a fallback's alternative return in the union, as cockatiel's _altReturn", () => {
    const policy = wrap(fallback(handleAll, 'stale' as const), retry(), timeout(100));
    expectTypeOf(policy.execute(() => 42)).toEqualTypeOf<Promise<number | 'stale'>>();
  });

  it('returns one policy as it is, and nests', () => {
    expectTypeOf(wrap(timeout(100))).toEqualTypeOf<Timeout>();
    const nested = wrap(wrap(retry(), circuitBreaker()), timeout(100), hedge({ delay: 10 }));
    expectTypeOf(nested.execute(({ attempt }) => attempt)).toEqualTypeOf<Promise<number>>();
  });

  it('types retry() as an IPolicy with cockatiel-shaped events and options', () => {
    expectTypeOf(retry()).toExtend<IPolicy<IRetryContext>>();
    expectTypeOf(retry().execute(() => 'x')).toEqualTypeOf<Promise<string>>();
    expectTypeOf(retry().stats()).toEqualTypeOf<RetryStats>();
    retry().onRetry((e) => expectTypeOf(e).toEqualTypeOf<RetryEvent>());
    retry({ isFailure: handleType(TypeError), backoff: '100ms', budget: retryBudget(), maxAttempts: 2 });
    retry({ isFailure: (error) => error instanceof TypeError, backoff: 50 });
    // @ts-expect-error backoff takes a duration or a cockatiel backoff
    retry({ backoff: { delay: 5 } });
    // @ts-expect-error maxAttempts is a number
    retry({ maxAttempts: '3' });
    // @ts-expect-error wrap takes policies
    wrap(retry(), { execute: 1 });
    expectTypeOf(
      wrap(budgetedRetry(handleAll, { budget: retryBudget() }), timeout(1)).execute(() => 1),
    ).toEqualTypeOf<Promise<number>>();
  });

  it('is exported from the root entry without clashing', () => {
    expectTypeOf(root.wrap).toEqualTypeOf(wrap);
    expectTypeOf(root.retry).toEqualTypeOf(retry);
  });
});
