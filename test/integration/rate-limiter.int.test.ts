import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fc } from '@fast-check/vitest';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  isRateLimitedError,
  type RateLimitDecision,
  type RateLimiter,
  rateLimiter,
  redisStore,
} from '../../src/bulkhead/index.js';
import { ReferenceBucket } from '../../src/bulkhead/internal/gcra-reference.js';
import { createTcpProxy, FakeClock, type TcpAddress, type TcpProxy } from '../../src/testing/index.js';

// Rate limiters on the real Redis at 127.0.0.1:6379, each "server" with its own ioredis
// connection. Real clock and real sockets: the timing of a real server is the thing under test.
// Nothing here skips when Redis is down: connecting fails, and so does the test (under CI=true
// and everywhere else). Bounds are generous, for a noisy 2-core machine.

const REDIS: TcpAddress = { host: '127.0.0.1', port: 6379 };
/** The stores' deadline for every Redis call. */
const REDIS_TIMEOUT = 100;
/** What a noisy machine may add to a deadline. */
const MARGIN = 400;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh namespace per test, so tests never see each other's keys; its keys are deleted after. */
function uniqueNamespace(): string {
  return `int-rl-${randomBytes(6).toString('hex')}`;
}

/** A connection of one "server"; fails the test when Redis cannot be reached. */
async function connect(address: TcpAddress = REDIS): Promise<Redis> {
  const redis = new Redis({ ...address, lazyConnect: true, connectTimeout: 2_000 });
  // Connection errors are expected in the fault tests; ioredis would print each one.
  redis.on('error', () => {});
  cleanups.push(() => redis.disconnect());
  await redis.connect();
  return redis;
}

/** Deletes every key of `namespace` once the test is over. */
function dropNamespaceAfter(redis: Redis, namespace: string): void {
  cleanups.push(async () => {
    const keys = await redis.keys(`{${namespace}:rl:*`);
    if (keys.length > 0) await redis.del(...keys);
  });
}

async function startProxy(): Promise<TcpProxy> {
  const proxy = await createTcpProxy({ target: REDIS });
  cleanups.push(() => proxy.close());
  return proxy;
}

async function until(condition: () => boolean, what: string, timeout = 5_000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeout)
      throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function timedTake(
  limiter: RateLimiter,
  key: string,
): Promise<{ decision: RateLimitDecision; ms: number }> {
  const start = performance.now();
  const decision = await limiter.take(key);
  return { decision, ms: performance.now() - start };
}

describe('rate limiter on Redis', () => {
  it('two instances with their own connections share one key and together admit exactly what one would', async () => {
    const namespace = uniqueNamespace();
    const [ra, rb, rc] = await Promise.all([connect(), connect(), connect()]);
    dropNamespaceAfter(ra, namespace);
    const options = { rate: 10, per: '1m', burst: 10 } as const;
    const a = rateLimiter({ ...options, store: redisStore(ra, { namespace, timeout: 2_000 }) });
    const b = rateLimiter({ ...options, store: redisStore(rb, { namespace, timeout: 2_000 }) });
    const single = rateLimiter({ ...options, store: redisStore(rc, { namespace, timeout: 2_000 }) });

    // 40 concurrent calls, alternating between the two instances, all on one key.
    const shared = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).take('tenant-1')),
    );
    const alone = await Promise.all(Array.from({ length: 40 }, () => single.take('tenant-2')));
    const admitted = (ds: RateLimitDecision[]) => ds.filter((d) => d.allowed).length;
    expect(shared.every((d) => !d.degraded)).toBe(true);
    expect(admitted(shared)).toBe(10);
    expect(admitted(alone)).toBe(10);
    expect(
      admitted(shared.filter((_, i) => i % 2 === 0)) + admitted(shared.filter((_, i) => i % 2 === 1)),
    ).toBe(10);
    // Each admitted call saw a distinct number of tokens left: one schedule, not two.
    expect(new Set(shared.filter((d) => d.allowed).map((d) => d.remaining)).size).toBe(10);
    expect(stripDegraded(await a.take('tenant-1'))).toMatchObject({ allowed: false, remaining: 0 });

    // One key per rate-limited key, in the namespace's hash tag, expiring with its TAT.
    const raw = await ra.get(`{${namespace}:rl:tenant-1}`);
    expect(raw).toMatch(/^\d+:\d+$/);
    const ttl = await ra.pttl(`{${namespace}:rl:tenant-1}`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it("uses the server's clock: instances whose own clocks are hours apart still share one schedule", async () => {
    const namespace = uniqueNamespace();
    const [ra, rb] = await Promise.all([connect(), connect()]);
    dropNamespaceAfter(ra, namespace);
    const a = rateLimiter({
      rate: 5,
      per: '1m',
      clock: new FakeClock(0),
      store: redisStore(ra, { namespace }),
    });
    const b = rateLimiter({
      rate: 5,
      per: '1m',
      clock: new FakeClock(Date.now() + 6 * 3_600_000),
      store: redisStore(rb, { namespace }),
    });
    const decisions = [];
    for (let i = 0; i < 6; i++) decisions.push(await (i % 2 === 0 ? a : b).take('k'));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false]);
    // 12s per token: the next one is at most 12s away, by the server's clock.
    expect(decisions[5]!.retryAfter).toBeGreaterThan(0);
    expect(decisions[5]!.retryAfter).toBeLessThanOrEqual(12_000);
  });

  it('the Lua script admits exactly what the reference model admits, from two instances, over any sequence', async () => {
    const [ra, rb] = await Promise.all([connect(), connect()]);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          rate: fc.integer({ min: 1, max: 1000 }),
          per: fc.oneof(fc.constantFrom(1000, 60_000), fc.integer({ min: 1, max: 5000 })),
          burst: fc.integer({ min: 1, max: 8 }),
        }),
        fc.array(
          fc.record({
            gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3000 })),
            instance: fc.boolean(),
            key: fc.constantFrom('a', 'b'),
            cost: fc.double({ min: 0, max: 1, noNaN: true }),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        async ({ rate, per, burst }, requests) => {
          const namespace = uniqueNamespace();
          // Both instances read the same fake clock, passed to the script as the time.
          const clock = new FakeClock(1_700_000_000_000);
          const make = (redis: Redis) =>
            rateLimiter({
              rate,
              per,
              burst,
              clock,
              store: redisStore(redis, { namespace, time: 'client', timeout: 2_000 }),
            });
          const a = make(ra);
          const b = make(rb);
          const buckets = new Map<string, ReferenceBucket>();
          try {
            for (const { gap, instance, key, cost: fraction } of requests) {
              clock.advance(gap);
              const cost = Math.round(fraction * burst);
              let bucket = buckets.get(key);
              if (bucket === undefined) buckets.set(key, (bucket = new ReferenceBucket(rate, per, burst)));
              const expected = bucket.take(clock.now(), cost);
              const got = await (instance ? a : b).take(key, cost);
              expect(got.degraded).toBeUndefined();
              expect(stripDegraded(got)).toEqual(expected);
            }
          } finally {
            const keys = await ra.keys(`{${namespace}:rl:*`);
            if (keys.length > 0) await ra.del(...keys);
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('fails open when Redis stalls (blackhole), deciding within the timeout', async () => {
    const proxy = await startProxy();
    const namespace = uniqueNamespace();
    const redis = await connect(proxy.address);
    const direct = await connect();
    dropNamespaceAfter(direct, namespace);
    const limiter = rateLimiter({
      rate: 1,
      per: '1m',
      store: redisStore(redis, { namespace, timeout: REDIS_TIMEOUT }),
    });
    expect((await limiter.take('k')).allowed).toBe(true);
    expect((await limiter.take('k')).allowed).toBe(false);

    proxy.blackhole();
    const { decision, ms } = await timedTake(limiter, 'k');
    expect(decision).toMatchObject({ allowed: true, degraded: true, error: { code: 'E_REDIS_TIMEOUT' } });
    expect(ms).toBeGreaterThanOrEqual(REDIS_TIMEOUT - 5);
    expect(ms).toBeLessThan(REDIS_TIMEOUT + MARGIN);
    await expect(limiter.execute(() => 'served')).resolves.toBe('served');
    expect(limiter.stats().degraded).toBe(2);
    // A blackhole loses bytes mid-stream, which a real network never does; heal the framing.
    proxy.reset().cut();
    await until(() => redis.status === 'ready', 'the connection to come back');
    expect(stripDegraded(await limiter.take('k'))).toMatchObject({ allowed: false });
  });

  it('fails closed when asked, when Redis stalls or the link drops: E_RATE_LIMITED, reason unavailable, within the timeout', async () => {
    const proxy = await startProxy();
    const namespace = uniqueNamespace();
    const redis = await connect(proxy.address);
    const direct = await connect();
    dropNamespaceAfter(direct, namespace);
    const limiter = rateLimiter({
      rate: 100,
      failOpen: false,
      store: redisStore(redis, { namespace, timeout: REDIS_TIMEOUT }),
    });
    expect((await limiter.take('k')).allowed).toBe(true);

    proxy.blackhole();
    let start = performance.now();
    const stalled = await limiter.execute(() => 'never').catch((e) => e);
    expect(performance.now() - start).toBeLessThan(REDIS_TIMEOUT + MARGIN);
    expect(isRateLimitedError(stalled)).toBe(true);
    expect(stalled).toMatchObject({
      code: 'E_RATE_LIMITED',
      reason: 'unavailable',
      cause: { code: 'E_REDIS_TIMEOUT' },
    });

    proxy.reset().refuse().cut();
    await until(() => redis.status !== 'ready', 'the connection to drop');
    start = performance.now();
    const { decision, ms } = await timedTake(limiter, 'k');
    expect(decision).toMatchObject({ allowed: false, degraded: true });
    expect(ms).toBeLessThan(REDIS_TIMEOUT + MARGIN);
    const cut = await limiter.execute(() => 'never').catch((e) => e);
    expect(cut).toMatchObject({ code: 'E_RATE_LIMITED', reason: 'unavailable' });
    expect(performance.now() - start).toBeLessThan(2 * (REDIS_TIMEOUT + MARGIN));

    proxy.reset();
    await until(() => redis.status === 'ready', 'the connection to come back');
    await expect(limiter.execute(() => 'back')).resolves.toBe('back');
  });
});

function stripDegraded({ allowed, retryAfter, remaining, resetAfter }: RateLimitDecision) {
  return { allowed, retryAfter, remaining, resetAfter };
}
