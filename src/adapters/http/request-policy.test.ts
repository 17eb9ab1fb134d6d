import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../../breaker/circuit-breaker.js';
import { consecutive } from '../../breaker/strategies/consecutive.js';
import { bulkhead } from '../../bulkhead/bulkhead.js';
import { FakeClock, flushMicrotasks } from '../../testing/fake-clock.js';
import { policyOption, RequestRun, routePolicy } from './request-policy.js';

describe('routePolicy and RequestRun', () => {
  it('is undefined when a route has no policy', () => {
    expect(routePolicy({})).toBeUndefined();
  });

  it('holds a bulkhead slot for the life of the request, and rejects the next one before it enters', async () => {
    const limiter = bulkhead({ limit: 1 });
    const policy = routePolicy({ limiter })!;
    const a = new RequestRun();
    const entered: string[] = [];
    const failed: [unknown, boolean][] = [];
    a.start(
      policy,
      () => entered.push('a'),
      (e, inside) => failed.push([e, inside]),
    );
    const b = new RequestRun();
    b.start(
      policy,
      () => entered.push('b'),
      (e, inside) => failed.push([e, inside]),
    );
    await flushMicrotasks();
    expect(entered).toEqual(['a']);
    expect(failed).toHaveLength(1);
    expect(failed[0]![0]).toMatchObject({ code: 'E_BULKHEAD_FULL' });
    expect(failed[0]![1]).toBe(false);
    a.end(200);
    await flushMicrotasks();
    expect(limiter.stats().executing).toBe(0);
  });

  it('5xx answers count as breaker failures, but are not reported back', async () => {
    const clock = new FakeClock();
    const breaker = circuitBreaker({ strategy: consecutive(2), halfOpenAfter: '10s', clock });
    const policy = routePolicy({ breaker })!;
    const failed: unknown[] = [];
    for (let i = 0; i < 2; i++) {
      const run = new RequestRun();
      run.start(
        policy,
        () => {},
        (e) => failed.push(e),
      );
      run.end(503);
      await flushMicrotasks();
    }
    expect(failed).toEqual([]);
    expect(breaker.state).toBe('open');
    const run = new RequestRun();
    run.start(
      policy,
      () => {},
      (e) => failed.push(e),
    );
    await flushMicrotasks();
    expect(failed[0]).toMatchObject({ code: 'E_CIRCUIT_OPEN' });
  });

  it('the deadline fails an entered request and aborts its signal', async () => {
    const clock = new FakeClock();
    const policy = routePolicy({ timeout: '1s', clock })!;
    const run = new RequestRun();
    let signal: AbortSignal | undefined;
    const failed: [unknown, boolean][] = [];
    run.start(
      policy,
      (s) => (signal = s),
      (e, inside) => failed.push([e, inside]),
    );
    await clock.advanceAsync(1000);
    expect(failed[0]![0]).toMatchObject({ code: 'E_TIMEOUT' });
    expect(failed[0]![1]).toBe(true);
    expect(signal!.aborted).toBe(true);
    run.end(504); // the timeout's own answer: reported to nobody
    await flushMicrotasks();
    expect(failed).toHaveLength(1);
  });

  it('checks its options', () => {
    expect(() => policyOption({}, 'shed')).toThrow(/shed/);
    expect(() => routePolicy({ timeout: 'soon' as never }, 'route')).toThrow(/route\.timeout/);
  });
});
