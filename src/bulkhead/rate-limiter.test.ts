import { handleAll, retry, wrap } from 'cockatiel';
import { describe, expect, it, vi } from 'vitest';
import { isInvalidOptionError } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { isRateLimitedError, RateLimitedError } from './errors.js';
import type { RateLimitDecision, RateLimitStore } from './rate-limit-store.js';
import { rateLimiter } from './rate-limiter.js';
import { memoryStore } from './stores/memory-store.js';
import { redisStore } from './stores/redis-store.js';

const pick = ({ allowed, retryAfter, remaining, resetAfter }: RateLimitDecision) => ({
  allowed,
  retryAfter,
  remaining,
  resetAfter,
});

describe('rateLimiter (memory store)', () => {
  it('admits a burst, then one call per emission interval, with exact retryAfter, remaining and resetAfter', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 10, per: '1s', burst: 3, clock });
    expect(pick(await limiter.take('a'))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 2,
      resetAfter: 100,
    });
    expect(pick(await limiter.take('a'))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 1,
      resetAfter: 200,
    });
    expect(pick(await limiter.take('a'))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 0,
      resetAfter: 300,
    });
    expect(pick(await limiter.take('a'))).toEqual({
      allowed: false,
      retryAfter: 100,
      remaining: 0,
      resetAfter: 300,
    });
    clock.advance(99);
    expect((await limiter.take('a')).retryAfter).toBe(1);
    clock.advance(1);
    expect(pick(await limiter.take('a'))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 0,
      resetAfter: 300,
    });
    // Another key has its own bucket.
    expect((await limiter.take('b')).remaining).toBe(2);
    clock.advance(1000);
    expect((await limiter.take('a')).remaining).toBe(2);
    expect(limiter.stats()).toMatchObject({
      allowed: 6,
      limited: 2,
      store: 'memory',
      rate: 10,
      per: 1000,
      burst: 3,
    });
  });

  it('handles rates that do not divide the period exactly (3 per second: one every 333⅓ ms)', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 3, per: 1000, burst: 1, clock });
    expect((await limiter.take('k')).allowed).toBe(true);
    expect((await limiter.take('k')).retryAfter).toBe(334);
    clock.advance(333);
    expect((await limiter.take('k')).allowed).toBe(false);
    clock.advance(1);
    expect((await limiter.take('k')).allowed).toBe(true);
    // Three tokens of 333⅓ ms take exactly 1000 ms: no rounding drift.
    const burst = rateLimiter({ rate: 3, per: 1000, burst: 3, clock: new FakeClock(0) });
    const fresh = new FakeClock(0);
    const exact = rateLimiter({ rate: 3, per: 1000, burst: 3, clock: fresh });
    expect((await exact.take('k', 3)).allowed).toBe(true);
    fresh.advance(999);
    expect(pick(await exact.take('k', 3))).toEqual({
      allowed: false,
      retryAfter: 1,
      remaining: 2,
      resetAfter: 1,
    });
    fresh.advance(1);
    expect((await exact.take('k', 3)).allowed).toBe(true);
    expect((await burst.take('k', 3)).resetAfter).toBe(1000);
  });

  it('takes `cost` tokens; cost 0 only reads; a cost above burst is an invalid option', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 5, per: 1000, burst: 5, clock });
    expect(pick(await limiter.take('k', 3))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 2,
      resetAfter: 600,
    });
    expect(pick(await limiter.take('k', 3))).toEqual({
      allowed: false,
      retryAfter: 200,
      remaining: 2,
      resetAfter: 600,
    });
    expect(pick(await limiter.take('k', 0))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 2,
      resetAfter: 600,
    });
    expect(pick(await limiter.take('fresh', 0))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 5,
      resetAfter: 0,
    });
    for (const cost of [6, -1, 1.5, Number.NaN, '1']) {
      const err = await limiter.take('k', cost as number).catch((e) => e);
      expect(isInvalidOptionError(err)).toBe(true);
      expect(err.option).toBe('cost');
    }
    await expect(limiter.take(42 as unknown as string)).rejects.toMatchObject({ option: 'key' });
  });

  it('as a policy: runs admitted calls, rejects the others with E_RATE_LIMITED and retryAfter, no stack', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 2, per: '1s', clock, key: 'global' });
    const reject = vi.fn();
    limiter.onReject(reject);
    const tenant = limiter.policy('tenant-1');
    await expect(tenant.execute(() => 'a')).resolves.toBe('a');
    await expect(tenant.execute(async ({ signal }) => signal.aborted)).resolves.toBe(false);
    const err = await tenant.execute(() => 'never').catch((e) => e);
    expect(err).toBeInstanceOf(RateLimitedError);
    expect(isRateLimitedError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'E_RATE_LIMITED', reason: 'rate', key: 'tenant-1', retryAfter: 500 });
    expect(err.stack.split('\n')).toHaveLength(1);
    expect(reject).toHaveBeenCalledWith({ key: 'tenant-1', reason: 'rate', retryAfter: 500 });
    // execute() uses the `key` option.
    await expect(limiter.execute(() => 1)).resolves.toBe(1);
    await expect(limiter.execute(() => 2)).resolves.toBe(2);
    await expect(limiter.execute(() => 3)).rejects.toMatchObject({ key: 'global' });
    // a heavier policy
    const heavy = limiter.policy('bulk', { cost: 2 });
    await expect(heavy.execute(() => 'h')).resolves.toBe('h');
    await expect(heavy.execute(() => 'h')).rejects.toBeInstanceOf(RateLimitedError);
    expect(() => limiter.policy('x', { cost: 3 })).toThrow(/"cost"/);
    expect(() => limiter.policy('x', { weight: 1 } as never)).toThrow(/"weight"/);
  });

  it('as a policy: passes errors and sync throws through, aborts before a call, emits onSuccess/onFailure', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 100, clock });
    await expect(limiter.execute(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    await expect(
      limiter.execute(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    const ac = new AbortController();
    ac.abort('r');
    await expect(limiter.execute(() => 1, ac.signal)).rejects.toMatchObject({ code: 'E_ABORTED' });
    const success = vi.fn();
    const failure = vi.fn();
    limiter.onSuccess(success);
    limiter.onFailure(failure);
    await limiter.execute(() => 1);
    await limiter.execute(() => Promise.reject(new Error('y'))).catch(() => {});
    expect(success).toHaveBeenCalledWith({ duration: 0 });
    expect(failure).toHaveBeenCalledWith(expect.objectContaining({ handled: false }));
  });

  it('composes with cockatiel through wrap()', async () => {
    const limiter = rateLimiter({ rate: 1, clock: new FakeClock(0) });
    const policy = wrap(retry(handleAll, { maxAttempts: 1 }), limiter.policy('k'));
    await expect(policy.execute(() => 'ok')).resolves.toBe('ok');
    await expect(policy.execute(() => 'no')).rejects.toBeInstanceOf(RateLimitedError);
  });

  it('memoryStore keeps at most maxKeys keys: a forgotten key starts full again', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 1, per: '1h', store: memoryStore({ maxKeys: 2 }), clock });
    expect((await limiter.take('a')).allowed).toBe(true);
    expect((await limiter.take('a')).allowed).toBe(false);
    await limiter.take('b');
    await limiter.take('c'); // evicts a
    expect((await limiter.take('a')).allowed).toBe(true);
  });
});

describe('rateLimiter store failures', () => {
  const failing = (error: unknown): RateLimitStore => ({
    name: 'failing',
    take: () => {
      throw error;
    },
  });
  const hanging: RateLimitStore = { name: 'hanging', take: () => new Promise(() => {}) };

  it('fails open by default: admits, marks the decision degraded, reports onStoreError', async () => {
    const boom = new Error('down');
    const limiter = rateLimiter({ rate: 1, store: failing(boom), clock: new FakeClock(0) });
    const errors: unknown[] = [];
    limiter.onStoreError((e) => errors.push(e));
    expect(await limiter.take('k')).toMatchObject({ allowed: true, degraded: true, error: boom });
    await expect(limiter.execute(() => 'ran')).resolves.toBe('ran');
    expect(errors).toEqual([boom, boom]);
    expect(limiter.stats()).toMatchObject({ degraded: 2, storeErrors: 2, allowed: 2 });
  });

  it('fails closed on request: E_RATE_LIMITED with reason unavailable and the cause', async () => {
    const boom = new Error('down');
    const limiter = rateLimiter({ rate: 1, store: failing(boom), failOpen: false, clock: new FakeClock(0) });
    expect(await limiter.take('k')).toMatchObject({ allowed: false, degraded: true });
    const err = await limiter.execute(() => 'never').catch((e) => e);
    expect(err).toMatchObject({ code: 'E_RATE_LIMITED', reason: 'unavailable', cause: boom });
  });

  it('decides at exactly `timeout` when the store does not answer', async () => {
    for (const failOpen of [true, false]) {
      const clock = new FakeClock(0);
      const limiter = rateLimiter({ rate: 1, store: hanging, failOpen, timeout: 80, clock });
      let decided: RateLimitDecision | undefined;
      void limiter.take('k').then((d) => {
        decided = d;
      });
      await clock.advanceAsync(79);
      expect(decided).toBeUndefined();
      await clock.advanceAsync(1);
      expect(decided).toMatchObject({
        allowed: failOpen,
        degraded: true,
        error: { code: 'E_REDIS_TIMEOUT' },
      });
      expect(clock.pending).toBe(0);
    }
  });

  it('a caller whose signal aborts stops waiting for a slow store at once', async () => {
    const clock = new FakeClock(0);
    const limiter = rateLimiter({ rate: 1, store: hanging, timeout: 1000, clock });
    const ac = new AbortController();
    const taking = limiter.take('k', 1, ac.signal).catch((e) => e);
    const running = limiter
      .policy('k')
      .execute(() => 'never', ac.signal)
      .catch((e) => e);
    await clock.advanceAsync(10);
    ac.abort('bye');
    expect(await taking).toMatchObject({ code: 'E_ABORTED', cause: 'bye' });
    expect(await running).toMatchObject({ code: 'E_ABORTED' });
    await clock.advanceAsync(1000);
  });

  it("relies on the store's own timeout when it is within the limiter's, so no second timer runs", async () => {
    const clock = new FakeClock(0);
    const take = vi.fn(() => Promise.resolve({ allowed: true, retryAfter: 0, remaining: 1, resetAfter: 1 }));
    const limiter = rateLimiter({ rate: 1, store: { name: 'bounded', timeout: 50, take }, clock });
    const p = limiter.take('k');
    expect(clock.pending).toBe(0);
    await expect(p).resolves.toMatchObject({ allowed: true });
  });
});

describe('redisStore without a server', () => {
  it('falls back from EVALSHA to EVAL on NOSCRIPT, with the key in a hash tag', async () => {
    const evalsha = vi.fn(() => Promise.reject(new Error('NOSCRIPT No matching script')));
    const evalFn = vi.fn((..._args: unknown[]) => Promise.resolve([1, 0, 4, 100]));
    const store = redisStore({ evalsha, eval: evalFn } as never, {
      namespace: 'ns',
      clock: new FakeClock(0),
    });
    const limiter = rateLimiter({ rate: 10, burst: 5, store, clock: new FakeClock(0) });
    expect(pick(await limiter.take('tenant'))).toEqual({
      allowed: true,
      retryAfter: 0,
      remaining: 4,
      resetAfter: 100,
    });
    expect(evalFn.mock.calls[0]!.slice(1, 3)).toEqual([1, '{ns:rl:tenant}']);
    // server time: an empty `now`
    expect(evalFn.mock.calls[0]![7]).toBe('');
  });

  it('rejects with E_REDIS_TIMEOUT after its timeout, which the limiter turns into a failOpen decision', async () => {
    const clock = new FakeClock(0);
    const store = redisStore({ evalsha: () => new Promise(() => {}), eval: vi.fn() } as never, {
      timeout: 30,
      clock,
    });
    expect(store.timeout).toBe(30);
    const limiter = rateLimiter({ rate: 1, store, failOpen: false, clock });
    let decided: RateLimitDecision | undefined;
    void limiter.take('k').then((d) => {
      decided = d;
    });
    await clock.advanceAsync(30);
    expect(decided).toMatchObject({ allowed: false, degraded: true, error: { code: 'E_REDIS_TIMEOUT' } });
  });

  it('treats a malformed reply as a store failure', async () => {
    const store = redisStore({ evalsha: () => Promise.resolve('OK'), eval: vi.fn() } as never);
    const limiter = rateLimiter({ rate: 1, store });
    expect(await limiter.take('k')).toMatchObject({ allowed: true, degraded: true });
  });

  it('validates its connection and options', () => {
    expect(() => redisStore({} as never)).toThrow(/"redis"/);
    expect(() => redisStore({ evalsha() {}, eval() {} } as never, { time: 'local' } as never)).toThrow(
      /"time"/,
    );
    expect(() => redisStore({ evalsha() {}, eval() {} } as never, { namespace: '' })).toThrow(/"namespace"/);
    expect(() => redisStore({ evalsha() {}, eval() {} } as never, { timeout: 0 })).toThrow(/"timeout"/);
  });
});
