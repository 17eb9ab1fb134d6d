import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { adaptiveThrottle } from './adaptive-throttle.js';

test.prop([
  fc.double({ min: 1, max: 5, noNaN: true }),
  fc.array(
    fc.record({
      accepted: fc.boolean(),
      roll: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      wait: fc.integer({ min: 0, max: 20_000 }),
    }),
    { maxLength: 150 },
  ),
])(
  'the local rejection probability matches max(0, (requests − k·accepts) / (requests + 1)) over the window',
  async (k, calls) => {
    const clock = new FakeClock(0);
    const window = 60_000;
    const buckets = 12;
    let roll = 0;
    const t = adaptiveThrottle({ clock, k, window, buckets, random: () => roll });
    const width = window / buckets;
    // Reference: every counted outcome with its bucket; the window is the current bucket + `buckets` before it.
    const log: { bucket: number; accepted: boolean }[] = [];
    for (const c of calls) {
      clock.advance(c.wait);
      const b = Math.floor(clock.now() / width);
      const live = log.filter((e) => e.bucket >= b - buckets);
      const requests = live.length;
      const accepts = live.filter((e) => e.accepted).length;
      const expected = Math.max(0, (requests - k * accepts) / (requests + 1));
      expect(t.probability).toBeCloseTo(expected, 9);
      roll = c.roll;
      let called = false;
      await t
        .execute(() => {
          called = true;
          return c.accepted ? Promise.resolve() : Promise.reject(new Error('overloaded'));
        })
        .catch(() => {});
      expect(called).toBe(!(expected > 0 && c.roll < expected));
      log.push({ bucket: b, accepted: called && c.accepted });
    }
  },
);
