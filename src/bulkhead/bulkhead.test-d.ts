import { handleAll, type IPolicy, retry, TimeoutStrategy, timeout, wrap } from 'cockatiel';
import { describe, expectTypeOf, it } from 'vitest';
import {
  type AdaptiveLimiterOptions,
  adaptiveLimiter,
  bulkhead,
  type gradient2,
  type RateLimitDecision,
  rateLimiter,
} from './index.js';

describe('bulkhead types', () => {
  it('every limiter is a cockatiel IPolicy and composes through wrap()', () => {
    expectTypeOf(bulkhead({ limit: 1 })).toMatchTypeOf<IPolicy>();
    expectTypeOf(adaptiveLimiter()).toMatchTypeOf<IPolicy>();
    expectTypeOf(adaptiveLimiter({ partitions: { a: 1 } }).partition('a')).toMatchTypeOf<IPolicy>();
    expectTypeOf(rateLimiter({ rate: 1 })).toMatchTypeOf<IPolicy>();
    expectTypeOf(rateLimiter({ rate: 1 }).policy('k')).toMatchTypeOf<IPolicy>();
    const policy = wrap(
      retry(handleAll, { maxAttempts: 2 }),
      bulkhead({ limit: 2 }),
      timeout(10, TimeoutStrategy.Aggressive),
    );
    expectTypeOf(policy.execute(() => 1)).toEqualTypeOf<Promise<number>>();
    expectTypeOf(wrap(adaptiveLimiter(), rateLimiter({ rate: 1 })).execute(async () => 'x')).toEqualTypeOf<
      Promise<string>
    >();
  });

  it('execute infers T from sync, async and thenable functions', () => {
    const b = bulkhead({ limit: 1 });
    expectTypeOf(b.execute(() => 'x')).toEqualTypeOf<Promise<string>>();
    expectTypeOf(b.execute(async ({ signal }) => signal.aborted)).toEqualTypeOf<Promise<boolean>>();
    expectTypeOf(b.execute(() => ({}) as PromiseLike<{ id: number }>)).toEqualTypeOf<
      Promise<{ id: number }>
    >();
  });

  it("takes an algorithm's options alongside its name, and only that algorithm's", () => {
    expectTypeOf<{ algorithm: 'gradient2'; rttTolerance: 2 }>().toMatchTypeOf<AdaptiveLimiterOptions>();
    expectTypeOf<{
      algorithm: 'aimd';
      backoffRatio: 0.8;
      timeout: '1s';
    }>().toMatchTypeOf<AdaptiveLimiterOptions>();
    expectTypeOf<{ algorithm: ReturnType<typeof gradient2> }>().toMatchTypeOf<AdaptiveLimiterOptions>();
    // @ts-expect-error: rttTolerance is a gradient2 option
    adaptiveLimiter({ algorithm: 'aimd', rttTolerance: 2 });
    // @ts-expect-error: not an algorithm
    adaptiveLimiter({ algorithm: 'cubic' });
  });

  it('take resolves to a decision', () => {
    expectTypeOf(rateLimiter({ rate: 1 }).take('k')).toEqualTypeOf<Promise<RateLimitDecision>>();
  });
});
