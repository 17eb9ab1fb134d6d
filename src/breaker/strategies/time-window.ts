import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { duration, fraction, integer, knownKeys, optionsObject } from '../../core/validate.js';
import {
  type BreakerStrategy,
  type BreakerStrategyFactory,
  type HalfOpenVerdict,
  rateTrips,
  rateVerdict,
  type WindowCounts,
} from '../strategy.js';

/** Options of {@link timeWindow}. */
export interface TimeWindowOptions {
  /** Length of the sliding window (ms or `'30s'`). */
  duration: Duration;
  /** Number of buckets the window is split into; the window slides one bucket at a time. @default 10 */
  buckets?: number;
  /** Calls needed in the window before the rates are judged. @default 20 */
  minimumThroughput?: number;
  /** Open when failed / calls reaches this fraction (0, 1]. @default 0.5 */
  failureRate?: number;
  /** Open when slow / calls reaches this fraction (0, 1]. @default undefined (slow calls never open the circuit) */
  slowCallRate?: number;
}

/**
 * A sliding window over the last `duration` of calls, as resilience4j's TIME_BASED window and
 * Hystrix's rolling buckets: `buckets` counters, each covering `duration / buckets` ms. The
 * circuit opens when at least `minimumThroughput` calls are in the window and the failure rate
 * or the slow-call rate reaches its threshold. Rotation is O(1) amortised: buckets are cleared
 * lazily when time moves past them, never by a timer.
 *
 * @example circuitBreaker({ strategy: timeWindow({ duration: '30s', buckets: 10, failureRate: 0.5 }) })
 * @throws {InvalidOptionError} for a non-positive duration, a bucket count outside [1, 1000] or a rate outside (0, 1].
 */
export function timeWindow(options: TimeWindowOptions): BreakerStrategyFactory {
  const opts = optionsObject(options, 'strategy');
  knownKeys(opts, ['duration', 'buckets', 'minimumThroughput', 'failureRate', 'slowCallRate'], 'strategy');
  const windowMs = duration(opts.duration, 'strategy.duration', undefined, 1);
  const buckets = integer(opts.buckets, 'strategy.buckets', 1, 1000, 10);
  if (windowMs / buckets < 1) {
    throw new InvalidOptionError(
      'strategy.buckets',
      buckets,
      `at most one bucket per millisecond of duration (${windowMs}ms)`,
    );
  }
  const minimumThroughput = integer(opts.minimumThroughput, 'strategy.minimumThroughput', 1, 2 ** 31 - 1, 20);
  const failureRate = fraction(opts.failureRate, 'strategy.failureRate', 0.5);
  const slowCallRate =
    opts.slowCallRate === undefined
      ? Number.POSITIVE_INFINITY
      : fraction(opts.slowCallRate, 'strategy.slowCallRate');
  return {
    name: `timeWindow(${windowMs}ms/${buckets})`,
    create: () =>
      new TimeWindowStrategy(windowMs / buckets, buckets, minimumThroughput, failureRate, slowCallRate),
  };
}

class TimeWindowStrategy implements BreakerStrategy {
  readonly #calls: Float64Array;
  readonly #failures: Float64Array;
  readonly #slow: Float64Array;
  /** Absolute index (time / width) of the newest bucket; -Infinity before the first call. */
  #head = Number.NEGATIVE_INFINITY;
  #totalCalls = 0;
  #totalFailures = 0;
  #totalSlow = 0;

  constructor(
    readonly width: number,
    readonly buckets: number,
    readonly minimumThroughput: number,
    readonly failureRate: number,
    readonly slowCallRate: number,
  ) {
    this.#calls = new Float64Array(buckets);
    this.#failures = new Float64Array(buckets);
    this.#slow = new Float64Array(buckets);
  }

  /** Moves the head to the bucket of `now`, dropping the buckets that left the window. Returns the slot. */
  #rotate(now: number): number {
    const index = Math.floor(now / this.width);
    const head = this.#head;
    if (index > head) {
      const n = this.buckets;
      // Clear at most `buckets` slots however long the gap: O(1) amortised per call.
      const gap = index - head;
      if (gap >= n) {
        this.#calls.fill(0);
        this.#failures.fill(0);
        this.#slow.fill(0);
        this.#totalCalls = this.#totalFailures = this.#totalSlow = 0;
      } else {
        for (let i = head + 1; i <= index; i++) {
          const slot = mod(i, n);
          this.#totalCalls -= this.#calls[slot]!;
          this.#totalFailures -= this.#failures[slot]!;
          this.#totalSlow -= this.#slow[slot]!;
          this.#calls[slot] = this.#failures[slot] = this.#slow[slot] = 0;
        }
      }
      this.#head = index;
    }
    // A clock that steps backwards records into the newest bucket rather than corrupting older ones.
    return mod(this.#head, this.buckets);
  }

  record(failed: boolean, slow: boolean, now: number): boolean {
    const slot = this.#rotate(now);
    this.#calls[slot]!++;
    this.#totalCalls++;
    if (failed) {
      this.#failures[slot]!++;
      this.#totalFailures++;
    }
    if (slow) {
      this.#slow[slot]!++;
      this.#totalSlow++;
    }
    return rateTrips(
      this.#totalCalls,
      this.#totalFailures,
      this.#totalSlow,
      this.minimumThroughput,
      this.failureRate,
      this.slowCallRate,
    );
  }

  halfOpen(completed: number, failures: number, slow: number, probes: number): HalfOpenVerdict {
    return rateVerdict(completed, failures, slow, probes, this.failureRate, this.slowCallRate);
  }

  reset(): void {
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#slow.fill(0);
    this.#totalCalls = this.#totalFailures = this.#totalSlow = 0;
    this.#head = Number.NEGATIVE_INFINITY;
  }

  counts(now: number): WindowCounts {
    if (this.#head !== Number.NEGATIVE_INFINITY) this.#rotate(now);
    return { calls: this.#totalCalls, failures: this.#totalFailures, slowCalls: this.#totalSlow };
  }
}

function mod(i: number, n: number): number {
  const r = i % n;
  return r < 0 ? r + n : r;
}
