import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { isTimeoutError } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { timeout } from './timeout.js';

test.prop([
  fc.array(fc.record({ start: fc.integer({ min: 0, max: 500 }), ms: fc.integer({ min: 0, max: 2000 }) }), {
    minLength: 1,
    maxLength: 30,
  }),
  fc.integer({ min: 0, max: 1e12 }),
])('timeout rejects exactly at the deadline (± one wheel tick)', async (calls, origin) => {
  const clock = new FakeClock(origin);
  const rejectedAt: (number | undefined)[] = [];
  const deadlines: number[] = [];
  const sorted = [...calls].sort((a, b) => a.start - b.start);
  let elapsed = 0;
  const pending: Promise<void>[] = [];
  for (const [i, c] of sorted.entries()) {
    await clock.advanceAsync(c.start - elapsed);
    elapsed = c.start;
    deadlines[i] = clock.now() + c.ms;
    pending.push(
      timeout(c.ms, { clock })
        .execute(() => new Promise<never>(() => {}))
        .catch((e) => {
          expect(isTimeoutError(e)).toBe(true);
          rejectedAt[i] = clock.now();
        }),
    );
  }
  await clock.advanceAsync(3000);
  await Promise.all(pending);
  for (const [i, deadline] of deadlines.entries()) {
    expect(rejectedAt[i]).toBeGreaterThanOrEqual(deadline);
    expect(rejectedAt[i]).toBeLessThanOrEqual(deadline + 1);
  }
});
