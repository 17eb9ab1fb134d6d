import {
  handleAll,
  type IDefaultPolicyContext,
  type IPolicy,
  retry,
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';
import { describe, expectTypeOf, it } from 'vitest';
import {
  type BreakerRegistry,
  breakerRegistry,
  type CircuitBreaker,
  type CircuitBreakerJSON,
  type CircuitState,
  circuitBreaker,
  consecutive,
} from './index.js';

describe('circuit breaker types', () => {
  it('composes with cockatiel retry through wrap()', () => {
    const policy = wrap(retry(handleAll, { maxAttempts: 3 }), circuitBreaker());
    expectTypeOf(policy.execute(() => 1)).toEqualTypeOf<Promise<number>>();
    expectTypeOf(policy.execute(async () => 1)).toEqualTypeOf<Promise<number>>();
  });

  it('composes with cockatiel timeout through wrap()', () => {
    const policy = wrap(circuitBreaker(), timeout(100, TimeoutStrategy.Aggressive));
    expectTypeOf(policy.execute(() => 1)).toEqualTypeOf<Promise<number>>();
    expectTypeOf(policy.execute(async ({ signal }) => (signal.aborted ? 0 : Math.random()))).toEqualTypeOf<
      Promise<number>
    >();
  });

  it('execute infers T from sync, async and thenable functions', () => {
    const breaker = circuitBreaker();
    expectTypeOf(breaker.execute(() => 'x')).toEqualTypeOf<Promise<string>>();
    expectTypeOf(breaker.execute(async () => ({ id: 1 }))).toEqualTypeOf<Promise<{ id: number }>>();
    expectTypeOf(breaker.execute(() => ({}) as PromiseLike<boolean>)).toEqualTypeOf<Promise<boolean>>();
    expectTypeOf(breaker.execute(() => 1, new AbortController().signal)).toEqualTypeOf<Promise<number>>();
    // @ts-expect-error the signal argument must be an AbortSignal
    breaker.execute(() => 1, 'signal');
  });

  it('hands fn a context with signal: AbortSignal', () => {
    circuitBreaker().execute((context) => {
      expectTypeOf(context).toEqualTypeOf<IDefaultPolicyContext>();
      expectTypeOf(context.signal).toEqualTypeOf<AbortSignal>();
    });
  });

  it('is assignable to cockatiel IPolicy', () => {
    expectTypeOf<CircuitBreaker>().toExtend<IPolicy>();
    expectTypeOf<CircuitBreaker>().toExtend<IPolicy<IDefaultPolicyContext, never>>();
    expectTypeOf<CircuitBreaker['_altReturn']>().toBeNever();
  });

  it('exposes state, JSON and registry types', () => {
    const breaker = circuitBreaker({ strategy: consecutive(3), halfOpenAfter: '5s' });
    expectTypeOf(breaker.state).toEqualTypeOf<CircuitState>();
    expectTypeOf(breaker.toJSON()).toEqualTypeOf<CircuitBreakerJSON>();
    const registry = breakerRegistry<'a' | 'b'>({ create: () => ({}) });
    expectTypeOf(registry).toEqualTypeOf<BreakerRegistry<'a' | 'b'>>();
    expectTypeOf(registry.execute('a', () => 1)).toEqualTypeOf<Promise<number>>();
    // @ts-expect-error keys are typed
    registry.get('c');
    // @ts-expect-error halfOpenAfter takes a duration string with a unit
    circuitBreaker({ halfOpenAfter: '5 seconds' });
  });
});
