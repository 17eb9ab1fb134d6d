/**
 * Counts seen by a strategy's window when `stats()` is taken.
 */
export interface WindowCounts {
  /** Calls currently in the window. */
  calls: number;
  /** Failed calls in the window. */
  failures: number;
  /** Calls slower than `slowCallDuration` in the window (failed or not). */
  slowCalls: number;
}

/** What a strategy decides once half-open trial calls have reported. */
export type HalfOpenVerdict = 'close' | 'open' | 'pending';

/**
 * Decides when a closed circuit opens, and whether half-open trial calls close it again.
 * One instance belongs to one breaker; a {@link BreakerStrategyFactory} makes a fresh one for
 * each breaker, so two breakers never share counts by accident.
 *
 * Implementations must be O(1) in {@link BreakerStrategy.record}: it runs on every call.
 */
export interface BreakerStrategy {
  /**
   * Whether {@link BreakerStrategy.record} reads its `now` argument. When false the breaker
   * skips reading the clock on calls it does not time. @default true
   */
  readonly usesTime?: boolean;
  /**
   * Records a call that completed while the circuit was closed.
   * @returns true when the circuit must open now.
   */
  record(failed: boolean, slow: boolean, now: number): boolean;
  /**
   * Judges the trial calls made while half-open.
   * @param completed trial calls that have completed
   * @param failures of those, the ones that failed
   * @param slow of those, the ones slower than `slowCallDuration` (failed or not)
   * @param probes the breaker's `halfOpenProbes`
   */
  halfOpen(completed: number, failures: number, slow: number, probes: number): HalfOpenVerdict;
  /** Forgets every recorded call (on open and on close). */
  reset(now: number): void;
  /** The counts in the window as of `now`. */
  counts(now: number): WindowCounts;
}

/** Builds a fresh {@link BreakerStrategy} for each breaker. Built-ins: `consecutive`, `countWindow`, `timeWindow`. */
export interface BreakerStrategyFactory {
  /** Short description, used in `stats()` and errors, e.g. `consecutive(5)`. */
  readonly name: string;
  create(): BreakerStrategy;
}

/**
 * Shared closed-state rule of the rate-based strategies: enough calls, and a rate reached.
 * Divides rather than comparing with `rate * calls`, which rounds up (0.55 * 100 is
 * 55.00000000000001, 0.28 * 25 is 7.000000000000001).
 */
export function rateTrips(
  calls: number,
  failures: number,
  slow: number,
  minimumCalls: number,
  failureRate: number,
  slowCallRate: number,
): boolean {
  return calls >= minimumCalls && (failures / calls >= failureRate || slow / calls >= slowCallRate);
}

/** Shared half-open rule of the rate-based strategies: judge once every probe has reported. */
export function rateVerdict(
  completed: number,
  failures: number,
  slow: number,
  probes: number,
  failureRate: number,
  slowCallRate: number,
): HalfOpenVerdict {
  if (completed < probes) {
    // Stop early once the calls seen so far guarantee the threshold, whatever the rest do.
    if (failures / probes >= failureRate || slow / probes >= slowCallRate) return 'open';
    return 'pending';
  }
  return failures / completed >= failureRate || slow / completed >= slowCallRate ? 'open' : 'close';
}
