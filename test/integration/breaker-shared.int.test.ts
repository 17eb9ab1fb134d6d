import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type CircuitBreaker,
  circuitBreaker,
  consecutive,
  isCircuitOpenError,
  type RedisBreakerState,
  redisBreakerState,
} from '../../src/breaker/index.js';
import { createTcpProxy, type TcpAddress, type TcpProxy } from '../../src/testing/index.js';

// Two breakers on one key, each with its own ioredis connection, stand for two servers. These
// tests run on the real clock against the real Redis at 127.0.0.1:6379: the timing of a real
// server is the thing under test. Nothing here skips when Redis is down: connecting fails, and so
// does the test. Bounds are generous, for a noisy 2-core machine.

const REDIS: TcpAddress = { host: '127.0.0.1', port: 6379 };
/** The shared states' deadline for every Redis call. */
const REDIS_TIMEOUT = 100;
/** What a noisy machine may add to a deadline. */
const MARGIN = 400;
/** How soon every instance must see a transition published by another. */
const PROPAGATION = 50;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh key per test, so tests never see each other's circuits. */
function uniqueKey(): string {
  return `int-${randomBytes(6).toString('hex')}`;
}

/** A connection of one "server"; fails the test when Redis cannot be reached. */
async function connect(address: TcpAddress = REDIS): Promise<Redis> {
  const redis = new Redis({ ...address, lazyConnect: true, connectTimeout: 2_000 });
  // Connection errors are expected in the fault tests; ioredis would print each one.
  redis.on('error', () => {});
  cleanups.push(async () => {
    // Between two reconnection attempts there is no socket, and disconnect() emits no 'end'.
    const socket = redis.status !== 'end' && redis.status !== 'reconnecting' && redis.status !== 'wait';
    const ended = socket ? once(redis, 'end') : undefined;
    redis.disconnect();
    await ended;
  });
  await redis.connect();
  return redis;
}

interface Instance {
  readonly breaker: CircuitBreaker;
  readonly shared: RedisBreakerState;
  readonly redis: Redis;
}

function instance(redis: Redis, key: string, halfOpenAfter: number): Instance {
  const shared = redisBreakerState(redis, { key, timeout: REDIS_TIMEOUT, leaseTtl: '5s' });
  const breaker = circuitBreaker({ strategy: consecutive(1), halfOpenAfter, shared });
  cleanups.push(() => breaker.close());
  return { breaker, shared, redis };
}

async function startProxy(): Promise<TcpProxy> {
  const proxy = await createTcpProxy({ target: REDIS });
  cleanups.push(() => proxy.close());
  return proxy;
}

/** Polls `condition` on every turn of the event loop; fails with `what` after `timeout` ms. */
async function until(condition: () => boolean, what: string, timeout = 5_000): Promise<number> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeout) {
      throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return performance.now() - start;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const boom = () => {
  throw new Error('upstream down');
};

/** Runs `fn` through `breaker`; resolves with what happened and how long `execute()` took. */
async function timed(
  breaker: CircuitBreaker,
  fn: () => unknown = () => 'ok',
): Promise<{ ran: boolean; error: unknown; ms: number }> {
  let ran = false;
  const start = performance.now();
  try {
    await breaker.execute(() => {
      ran = true;
      return fn();
    });
    return { ran, error: undefined, ms: performance.now() - start };
  } catch (error) {
    return { ran, error, ms: performance.now() - start };
  }
}

function rejection(error: unknown): string | undefined {
  return isCircuitOpenError(error) ? `${error.code} ${error.reason}` : undefined;
}

/** Both instances subscribed and their connections ready: the fleet is in sync. */
async function synced(...instances: Instance[]): Promise<void> {
  await until(
    () => instances.every((i) => i.redis.status === 'ready' && i.shared.stats().subscribed),
    'every instance to be connected and subscribed',
  );
}

/**
 * Makes both instances half-open at once (A opens, if not yet; B follows through Redis), fires one trial call
 * on each at the same moment, and checks that exactly one ran and both closed.
 */
async function probeRace(a: Instance, b: Instance): Promise<void> {
  if (a.breaker.state === 'closed') await timed(a.breaker, boom);
  await until(() => b.breaker.state === 'open', 'B to follow A open', PROPAGATION + MARGIN);
  await until(
    () => a.breaker.state === 'half-open' && b.breaker.state === 'half-open',
    'both to turn half-open',
  );
  let runs = 0;
  const probe = async () => {
    runs++;
    await sleep(30);
    return 'ok';
  };
  const [ra, rb] = await Promise.all([timed(a.breaker, probe), timed(b.breaker, probe)]);
  expect(runs).toBe(1);
  const [winner, loser] = ra.ran ? [ra, rb] : [rb, ra];
  expect(winner.error).toBeUndefined();
  expect(rejection(loser.error)).toBe('E_CIRCUIT_OPEN half-open');
  expect(loser.ran).toBe(false);
  // The winner closes on its own verdict, the loser on the winner's message.
  await until(
    () => a.breaker.state === 'closed' && b.breaker.state === 'closed',
    'both to close after the probe succeeded',
    PROPAGATION + MARGIN,
  );
}

describe('a circuit shared through Redis', () => {
  it(`opens on every instance within ${PROPAGATION} ms of one instance opening it`, async () => {
    const key = uniqueKey();
    const a = instance(await connect(), key, 10_000);
    const b = instance(await connect(), key, 10_000);
    await synced(a, b);

    const start = performance.now();
    await timed(a.breaker, boom);
    expect(a.breaker.state).toBe('open');
    await until(() => b.breaker.state === 'open', 'B to open', 2_000);
    const elapsed = performance.now() - start;
    expect(elapsed).toBeLessThan(PROPAGATION);

    const call = await timed(b.breaker);
    expect(call.ran).toBe(false);
    expect(rejection(call.error)).toBe('E_CIRCUIT_OPEN open');
    expect(isCircuitOpenError(call.error) && call.error.retryAfter).toBeGreaterThan(9_000);
    expect(b.shared.stats()).toMatchObject({ received: 1, errors: 0, timeouts: 0 });
    expect(a.shared.stats()).toMatchObject({ published: 1, received: 0 });
  });

  it('starts open on a late joiner created after the circuit opened', async () => {
    const key = uniqueKey();
    const a = instance(await connect(), key, 10_000);
    await synced(a);
    await timed(a.breaker, boom);
    const halfOpenAt = a.breaker.stats().halfOpenAt!;
    await until(() => a.shared.stats().published === 1, 'A to publish');

    const c = instance(await connect(), key, 10_000);
    await until(() => c.breaker.state === 'open', 'the late joiner to learn the circuit is open', 2_000);
    expect(c.shared.stats().subscribed).toBe(true);
    // It opens until the fleet's deadline, not for a fresh delay of its own.
    expect(Math.abs(c.breaker.stats().halfOpenAt! - halfOpenAt)).toBeLessThan(MARGIN);
    const call = await timed(c.breaker);
    expect(call.ran).toBe(false);
    expect(rejection(call.error)).toBe('E_CIRCUIT_OPEN open');
  });

  it('lets exactly one instance probe when all turn half-open at once, then closes all', async () => {
    // A few rounds, each on a fresh key: the lease must hold every time, not only on a lucky one.
    for (let round = 0; round < 3; round++) {
      const key = uniqueKey();
      const a = instance(await connect(), key, 200);
      const b = instance(await connect(), key, 200);
      await synced(a, b);
      await probeRace(a, b);
      const leases = a.shared.stats().leasesGranted + b.shared.stats().leasesGranted;
      const denied = a.shared.stats().leasesDenied + b.shared.stats().leasesDenied;
      expect([leases, denied]).toEqual([1, 1]);
      expect(a.shared.stats().localGrants + b.shared.stats().localGrants).toBe(0);
      // The probe lease was given back and the stored state deleted (both fire and forget).
      const stored = [`{buttress:breaker:${key}}:lease`, `{buttress:breaker:${key}}:state`];
      await expect.poll(() => a.redis.exists(...stored), { timeout: 1_000, interval: 5 }).toBe(0);
    }
  });

  it("closes its own subscriber connection and nothing else: the user's connection stays usable", async () => {
    const tcp = () => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
    const redis = await connect();
    const before = tcp();
    const shared = redisBreakerState(redis, { key: uniqueKey(), timeout: REDIS_TIMEOUT });
    const breaker = circuitBreaker({ shared });
    await until(() => shared.stats().subscribed, 'the subscription');
    expect(tcp()).toBe(before + 1);
    await breaker.close();
    expect(tcp()).toBe(before);
    expect(redis.status).toBe('ready');
    expect(await redis.ping()).toBe('PONG');
  });
});

describe('a circuit shared through a failing Redis', () => {
  /** Every execute() of a fault test: none may wait on Redis longer than its deadline. */
  function checkWaits(calls: { ms: number }[]): void {
    const longest = Math.max(...calls.map((c) => c.ms));
    expect(longest).toBeLessThan(REDIS_TIMEOUT + MARGIN);
  }

  /**
   * With Redis out of reach, each instance runs on its own state: one opening does not open the
   * other, and each sends its own trial call when half-open (a local grant of the lease).
   */
  async function runLocally(a: Instance, b: Instance): Promise<{ ms: number }[]> {
    const calls: { ran: boolean; error: unknown; ms: number }[] = [];
    const run = async (i: Instance, fn?: () => unknown) => {
      const call = await timed(i.breaker, fn);
      calls.push(call);
      return call;
    };
    expect((await run(b)).ran).toBe(true);
    expect((await run(a, boom)).ran).toBe(true);
    expect(a.breaker.state).toBe('open');
    // B keeps serving: A's opening cannot reach it.
    for (let i = 0; i < 5; i++) {
      expect((await run(b)).ran).toBe(true);
      await sleep(10);
    }
    expect(b.breaker.state).toBe('closed');
    expect(rejection((await run(a)).error)).toBe('E_CIRCUIT_OPEN open');

    // A's trial call: the lease cannot be asked for, so A grants it to itself (within the deadline).
    await until(() => a.breaker.state === 'half-open', 'A to turn half-open');
    const probe = await run(a);
    expect(probe.ran).toBe(true);
    expect(a.breaker.state).toBe('closed');

    // Both open, both turn half-open, both probe: each on its own.
    await Promise.all([run(a, boom), run(b, boom)]);
    expect([a.breaker.state, b.breaker.state]).toEqual(['open', 'open']);
    await until(() => a.breaker.state === 'half-open' && b.breaker.state === 'half-open', 'both half-open');
    const [pa, pb] = await Promise.all([run(a), run(b)]);
    expect([pa.ran, pb.ran]).toEqual([true, true]);
    expect([a.breaker.state, b.breaker.state]).toEqual(['closed', 'closed']);
    return calls;
  }

  it('keeps serving on local state when Redis stalls (blackhole), never waiting past the deadline', async () => {
    const proxy = await startProxy();
    const key = uniqueKey();
    const a = instance(await connect(proxy.address), key, 200);
    const b = instance(await connect(proxy.address), key, 200);
    await synced(a, b);

    proxy.blackhole();
    const calls = await runLocally(a, b);
    checkWaits(calls);
    // The connections still look ready: only the deadline got the trial calls through.
    expect(a.redis.status).toBe('ready');
    expect(a.shared.stats().timeouts).toBeGreaterThanOrEqual(2);
    expect(a.shared.stats().localGrants).toBe(2);
    expect(b.shared.stats().localGrants).toBe(1);
    expect(a.shared.stats().received + b.shared.stats().received).toBe(0);
    // A blackhole loses bytes mid-stream, which a real network never does; heal the framing.
    proxy.reset().cut();
  });

  it('keeps serving on local state when the link drops (cut, refuse), and shares again once it is back', async () => {
    const proxy = await startProxy();
    const key = uniqueKey();
    const a = instance(await connect(proxy.address), key, 200);
    const b = instance(await connect(proxy.address), key, 200);
    await synced(a, b);

    proxy.refuse().cut();
    await until(() => a.redis.status !== 'ready' && b.redis.status !== 'ready', 'both connections to drop');
    const calls = await runLocally(a, b);
    checkWaits(calls);
    expect(a.shared.stats().localGrants).toBe(2);
    expect(a.shared.stats().dropped).toBeGreaterThan(0);

    proxy.reset();
    await synced(a, b);
    // Shared again: an opening propagates, and the fleet sends a single trial call.
    const start = performance.now();
    await timed(a.breaker, boom);
    await until(() => b.breaker.state === 'open', 'B to follow A again', 2_000);
    expect(performance.now() - start).toBeLessThan(PROPAGATION);
    await probeRace(a, b);
  });

  it('tells an instance that reconnects about a circuit opened while it was cut off', async () => {
    const proxy = await startProxy();
    const key = uniqueKey();
    const a = instance(await connect(), key, 10_000);
    const b = instance(await connect(proxy.address), key, 10_000);
    await synced(a, b);

    proxy.refuse().cut();
    await until(() => !b.shared.stats().subscribed, 'B to lose its subscription');
    await timed(a.breaker, boom);
    await until(() => a.shared.stats().published === 1, 'A to publish');
    await sleep(PROPAGATION);
    expect(b.breaker.state).toBe('closed'); // the message was lost

    proxy.reset();
    await until(() => b.breaker.state === 'open', 'B to read the stored state once back');
    const call = await timed(b.breaker);
    expect(call.ran).toBe(false);
    expect(rejection(call.error)).toBe('E_CIRCUIT_OPEN open');
    expect(Math.abs(b.breaker.stats().halfOpenAt! - a.breaker.stats().halfOpenAt!)).toBeLessThan(MARGIN);
  });
});
