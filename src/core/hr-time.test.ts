import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { systemClock } from './clock.js';
import { stopwatch } from './hr-time.js';

describe('stopwatch', () => {
  it('reads performance.now() under the system clock: sub-millisecond and monotonic', () => {
    const watch = stopwatch(systemClock);
    const before = performance.now();
    const t = watch();
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(performance.now());
    expect(stopwatch(systemClock)).toBe(watch);
  });

  it("reads any other clock's now(), so a FakeClock controls every duration", () => {
    const clock = new FakeClock(1000);
    const watch = stopwatch(clock);
    const start = watch();
    clock.advance(2.5);
    expect(watch() - start).toBe(2.5);
  });
});
