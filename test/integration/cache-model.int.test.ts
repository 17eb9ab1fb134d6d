import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { CacheModel, type CacheReal, cacheCommands } from '../../src/cache/cache.model.test-util.js';
import { type Cache, createCache } from '../../src/cache/index.js';
import { FakeClock } from '../../src/testing/index.js';
import { busBarrier, busReady, type Cleanup, connectRedis, uniqueNamespace } from './cache-helpers.js';

// The model-based property test of src/cache/cache.prop.test.ts, with L2 = the real Redis at
// 127.0.0.1:6379 (a unique namespace per run) and time from a FakeClock: entry freshness is judged
// on the cache's clock, Redis's own expiry only collects garbage, so fake time drives it all.

const cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('cache with L2 on the real Redis, against a reference Map with TTLs (model-based)', () => {
  it('one instance, an L1 of 2 entries (most reads go to Redis): every read matches the model', async () => {
    const redis = await connectRedis(cleanups);
    await fc.assert(
      fc.asyncProperty(cacheCommands(), async (commands) => {
        const clock = new FakeClock();
        const cache = createCache({
          clock,
          namespace: uniqueNamespace('model'),
          l1: { maxEntries: 2 },
          l2: { redis },
        });
        try {
          await busReady(cache);
          const real: CacheReal = { cache, clock, settle: async () => {} };
          await fc.asyncModelRun(() => ({ model: new CacheModel(clock), real }), commands);
          expect(cache.stats().inflight).toBe(0);
        } finally {
          await cache.clear();
          await cache.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('one instance, no bus, an L1 cap of 1 ms: L1 and L2 agree with the model', async () => {
    const redis = await connectRedis(cleanups);
    await fc.assert(
      fc.asyncProperty(cacheCommands(), async (commands) => {
        const clock = new FakeClock();
        const cache = createCache({
          clock,
          namespace: uniqueNamespace('model'),
          l1: { maxTtl: 1 },
          l2: { redis },
          bus: false,
        });
        try {
          const real: CacheReal = { cache, clock, settle: async () => {} };
          await fc.asyncModelRun(() => ({ model: new CacheModel(clock), real }), commands);
        } finally {
          await cache.clear();
          await cache.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('two instances sharing a namespace, each with its own connections: once the bus has delivered, both match one model', async () => {
    const admin = await connectRedis(cleanups);
    const conns: Redis[] = [];
    for (let i = 0; i < 2; i++) conns.push(await connectRedis(cleanups));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 1 }), { minLength: 60, maxLength: 60 }),
        cacheCommands(),
        async (sides, commands) => {
          const clock = new FakeClock();
          const namespace = uniqueNamespace('model2');
          const caches: Cache[] = conns.map((redis) =>
            createCache({ clock, namespace, l1: { maxEntries: 3 }, l2: { redis } }),
          );
          try {
            await busReady(...caches);
            const settle = () => busBarrier(admin, namespace, caches);
            // Each command runs on one instance, chosen by `sides`; reads must see every write made
            // on either side, once the bus has delivered it.
            let i = 0;
            const real = {
              get cache() {
                return caches[sides[i++ % sides.length]!]!;
              },
              clock,
              settle,
            } as CacheReal;
            await fc.asyncModelRun(() => ({ model: new CacheModel(clock), real }), commands);
          } finally {
            await caches[0]!.clear();
            for (const cache of caches) await cache.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
