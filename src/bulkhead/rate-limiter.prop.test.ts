import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { ReferenceBucket } from './internal/gcra-reference.js';
import { rateLimiter } from './rate-limiter.js';

const params = fc.record({
  rate: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 100_000 })),
  per: fc.oneof(fc.constantFrom(1, 7, 1000, 60_000), fc.integer({ min: 1, max: 5000 })),
  burst: fc.integer({ min: 1, max: 12 }),
});

const request = fc.record({
  gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 5000 })),
  key: fc.constantFrom('a', 'b', 'c'),
  /** A fraction of burst, so costs stay valid whatever burst is drawn. */
  cost: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, fc.double({ min: 0, max: 1, noNaN: true })),
});

test.prop([
  params,
  fc.array(request, { minLength: 1, maxLength: 200 }),
  fc.integer({ min: 0, max: 2 ** 40 }),
])(
  'GCRA admits exactly what a reference model admits over any sequence',
  async ({ rate, per, burst }, requests, start) => {
    const clock = new FakeClock(start);
    const limiter = rateLimiter({ rate, per, burst, clock });
    const buckets = new Map<string, ReferenceBucket>();
    for (const { gap, key, cost: fraction } of requests) {
      clock.advance(gap);
      const cost = fraction === 1 ? 1 : Math.round(fraction * burst);
      let bucket = buckets.get(key);
      if (bucket === undefined) buckets.set(key, (bucket = new ReferenceBucket(rate, per, burst)));
      const expected = bucket.take(clock.now(), cost);
      const { allowed, retryAfter, remaining, resetAfter } = await limiter.take(key, cost);
      expect({ allowed, retryAfter, remaining, resetAfter }).toEqual(expected);
    }
  },
);
