import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { createCache } from './cache.js';
import { CacheModel, type CacheReal, cacheCommands, partCommands } from './cache.model.test-util.js';

describe('cache, L1 only, against a reference Map with TTLs (model-based)', () => {
  it('every read returns exactly what the model holds: writes, deletes, tags, clears and expiry', async () => {
    await fc.assert(
      fc.asyncProperty(cacheCommands(), async (commands) => {
        const clock = new FakeClock();
        const cache = createCache({ clock, l1: { maxEntries: 100 } });
        const real: CacheReal = { cache, clock, settle: async () => {} };
        try {
          await fc.asyncModelRun(() => ({ model: new CacheModel(clock), real }), commands);
          expect(cache.stats().inflight).toBe(0);
        } finally {
          await cache.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('namespaces are independent: a root and two children, interleaved, each match their own model', async () => {
    await fc.assert(
      fc.asyncProperty(partCommands(3), async (commands) => {
        const clock = new FakeClock();
        const root = createCache({ clock, l1: { maxEntries: 300 } });
        const caches = [root, root.namespace('x'), root.namespace('x').namespace('y')];
        const settle = async () => {};
        try {
          await fc.asyncModelRun(
            () => ({
              model: { parts: caches.map(() => new CacheModel(clock)) },
              real: { parts: caches.map((cache) => ({ cache, clock, settle })) },
            }),
            commands,
          );
        } finally {
          await root.close();
        }
      }),
      { numRuns: 200 },
    );
  });
});
