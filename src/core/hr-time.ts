import { performance } from 'node:perf_hooks';
import { type Clock, systemClock } from './clock.js';

/*
 * Latency needs sub-millisecond resolution: adaptive concurrency limits ignore samples below
 * 100 µs, and a fast call measured with `Date.now()` reads 0 or 1 ms. The Clock contract only
 * promises `now()` in (possibly fractional) ms since the epoch, so a module measuring durations
 * asks for a stopwatch here instead of calling `clock.now()` itself.
 */

/** Reads a monotonic time in fractional milliseconds, meaningful only as a difference of two reads. */
export type Stopwatch = () => number;

const performanceNow: Stopwatch = () => performance.now();

/**
 * The high-resolution time source to measure durations with under `clock`: `performance.now()`
 * (sub-microsecond, monotonic) for {@link systemClock}, whose `now()` is `Date.now()` and only
 * ms-granular; the clock's own `now()` for any other clock, so a `FakeClock` in tests stays in
 * control of every duration.
 */
export function stopwatch(clock: Clock): Stopwatch {
  if (clock === systemClock) return performanceNow;
  return () => clock.now();
}
