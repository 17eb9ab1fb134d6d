import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { type Cache, createCache } from '../../src/cache/index.js';
import { createTcpProxy, type TcpProxy } from '../../src/testing/index.js';
import {
  busBarrier,
  busReady,
  type Cleanup,
  connectRedis,
  now,
  REDIS,
  sleep,
  uniqueNamespace,
  until,
} from './cache-helpers.js';

// A fault-injecting TCP proxy sits between instance A and Redis; instance B talks to Redis
// directly. Real clock and real Redis: the latency a caller sees while Redis is slow, silent or
// gone is the thing under test, and so is what every instance serves once the link is back.

/** L2 deadline of the caches under test. */
const L2_TIMEOUT = 50;
/** What a noisy 2-core machine may add to a deadline. */
const MARGIN = 150;
/** Bus heartbeat of A: a silent partition is noticed within about two of these. */
const HEARTBEAT = 200;

const cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  proxy: TcpProxy;
  a: Cache;
  b: Cache;
  admin: Redis;
  namespace: string;
}

async function setup(): Promise<Setup> {
  const proxy = await createTcpProxy({ target: REDIS });
  cleanups.push(() => proxy.close());
  const namespace = uniqueNamespace('faults');
  // A reconnects quickly after a cut, as production settings would.
  const ra = await connectRedis(cleanups, proxy.address, { retryStrategy: () => 20 });
  const rb = await connectRedis(cleanups);
  const admin = await connectRedis(cleanups);
  const a = createCache({
    namespace,
    l2: { redis: ra, timeout: L2_TIMEOUT, breaker: { halfOpenAfter: 200 } },
    bus: { heartbeat: HEARTBEAT },
  });
  const b = createCache({ namespace, l2: { redis: rb, timeout: L2_TIMEOUT } });
  cleanups.push(async () => {
    await b.clear();
    await a.close();
    await b.close();
  });
  await busReady(a, b);
  return { proxy, a, b, admin, namespace };
}

/** Runs `n` calls concurrently and returns the slowest caller's latency (ms) and the results. */
async function worst<T>(
  n: number,
  call: (i: number) => Promise<T>,
): Promise<{ worst: number; results: T[] }> {
  let slowest = 0;
  const results = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const start = now();
      const result = await call(i);
      slowest = Math.max(slowest, now() - start);
      return result;
    }),
  );
  return { worst: slowest, results };
}

/** Keeps poking A until its L2 is healthy again and every degraded write has been repaired. */
async function recovered(a: Cache): Promise<void> {
  await until(
    () => {
      void a.get('poke');
      const s = a.stats();
      return s.l2.breaker === 'closed' && s.l2.repairPending === 0 && s.bus.connected;
    },
    'A to recover (breaker closed, repairs done, bus back)',
    10_000,
  );
}

type Fault = {
  name: string;
  inject(proxy: TcpProxy): void;
  heal(proxy: TcpProxy): void;
};

const faults: Fault[] = [
  { name: 'latency (500 ms each way)', inject: (p) => p.delay(500), heal: (p) => p.reset() },
  {
    name: 'blackhole (a silent partition)',
    inject: (p) => p.blackhole(),
    // The proxy drops what enters a blackhole, which a real TCP stream never does (it would
    // retransmit or reset): cut the connections so the client starts clean.
    heal: (p) => {
      p.cut();
      p.reset();
    },
  },
  { name: 'cut (connections reset)', inject: (p) => p.cut().refuse(), heal: (p) => p.reset() },
  {
    name: 'refuse (the server is dead)',
    inject: (p) => {
      p.refuse();
      p.cut();
    },
    heal: (p) => p.reset(),
  },
];

describe.each(faults)('fault between an instance and Redis: $name', ({ inject, heal }) => {
  it('bounds the worst caller latency, keeps serving (L1, graced, loader), and serves nothing older than the last write after recovery', async () => {
    const { proxy, a, b, admin, namespace } = await setup();
    await a.set('k', 'v1');
    await a.set('graced', 'g1', { ttl: 100, grace: '1h' });
    expect(await b.get('k')).toBe('v1');
    await sleep(120); // 'graced' is now stale but within grace

    inject(proxy);

    // Reads and loads: bounded by the L2 deadline, then the breaker makes them immediate.
    let loads = 0;
    const reads = await worst(200, (i) =>
      a.getOrSet(`cold:${i % 20}`, () => {
        loads++;
        return `loaded:${i % 20}`;
      }),
    );
    expect(reads.results.every((r, i) => r === `loaded:${i % 20}`)).toBe(true);
    expect(loads).toBeGreaterThan(0);
    expect(reads.worst).toBeLessThan(L2_TIMEOUT + MARGIN);

    // Stale-if-error: the source is failing too, and the graced value stands in.
    const graced = await worst(20, () =>
      a.getOrSet('graced', () => Promise.reject(new Error('source down too')), { grace: '1h' }),
    );
    expect(graced.results).toEqual(Array(20).fill('g1'));
    expect(graced.worst).toBeLessThan(L2_TIMEOUT + MARGIN);

    // Writes: degraded, not thrown, just as fast.
    const start = now();
    const write = await a.set('k', 'v2');
    expect(now() - start).toBeLessThan(L2_TIMEOUT + MARGIN);
    expect(write.degraded).toBe(true);
    expect(await a.get('k')).toBe('v2');
    const del = await a.delete('cold:1');
    expect(del.degraded).toBe(true);

    // Meanwhile the healthy instance writes: this is the last write of 'k'.
    expect((await b.set('k', 'v3')).degraded).toBe(false);
    expect(await b.get('k')).toBe('v3');

    heal(proxy);
    await recovered(a);
    await busBarrier(admin, namespace, [a, b]);

    // Nothing older than the last write: 'v1' and A's degraded 'v2' are gone everywhere (a miss
    // is fine: it reloads from the source).
    for (const cache of [a, b]) {
      const value = await cache.get('k');
      expect(value === 'v3' || value === undefined, `got ${String(value)}`).toBe(true);
    }
    expect(await b.get('cold:1')).not.toBe('loaded:1');
    // And the fleet works normally again.
    await a.set('k', 'v4');
    await busBarrier(admin, namespace, [a, b]);
    expect(await b.get('k')).toBe('v4');
    expect(a.stats().l2.degradedWrites).toBeGreaterThan(0);
  });
});

describe('faults and the fill lease', () => {
  it('a lease granted to a call that timed out is given back, so other instances do not wait out its TTL', async () => {
    const { proxy, a, b } = await setup();
    proxy.delay(150); // every call of A misses its 50 ms deadline, and lands later
    expect(await a.getOrSet('leased', () => 'from A')).toBe('from A');
    await sleep(400); // the late get-or-lease has landed, then its release
    proxy.reset();
    const start = now();
    expect(await b.getOrSet('leased', () => 'from B')).toBe('from B');
    expect(now() - start).toBeLessThan(500);
  });

  it('a silent partition of the bus is noticed by the heartbeat: the instance stops trusting L1', async () => {
    const { proxy, a, b, admin, namespace } = await setup();
    await a.set('k', 'v1');
    expect(await a.get('k')).toBe('v1');
    const gapsBefore = a.stats().bus.gaps;
    proxy.blackhole();
    await until(() => !a.stats().bus.connected, 'the heartbeat to notice', HEARTBEAT * 4);
    expect(a.stats().bus.gaps).toBeGreaterThan(gapsBefore);
    // B writes: the message cannot reach A, but A no longer serves its L1 copy as fresh.
    await b.set('k', 'v2');
    const value = await a.getOrSet('k', () => 'from source');
    expect(value).not.toBe('v1');
    proxy.cut();
    proxy.reset();
    await recovered(a);
    // A's load during the partition was L1-only, so the repair deleted the key from Redis: a miss,
    // or B's write; never A's old L1 copy.
    const after = await a.get('k');
    expect(after === 'v2' || after === undefined, `got ${String(after)}`).toBe(true);
    await b.set('k', 'v3');
    await busBarrier(admin, namespace, [a, b]);
    expect(await a.getOrSet('k', () => 'from source')).toBe('v3');
  });
});
