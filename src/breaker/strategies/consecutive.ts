import { bool, integer, knownKeys, optionsObject } from '../../core/validate.js';
import type { BreakerStrategy, BreakerStrategyFactory, HalfOpenVerdict, WindowCounts } from '../strategy.js';

/** Options of {@link consecutive}. */
export interface ConsecutiveOptions {
  /** Count calls slower than `slowCallDuration` as failures. @default false */
  countSlowCalls?: boolean;
}

/**
 * Opens after `threshold` failures in a row; any success resets the count. Half-open: the
 * first failed trial call re-opens, and the circuit closes once every trial call succeeded.
 *
 * @example circuitBreaker({ strategy: consecutive(5), halfOpenAfter: '10s' })
 * @throws {InvalidOptionError} when `threshold` is not an integer >= 1.
 */
export function consecutive(threshold: number, options?: ConsecutiveOptions): BreakerStrategyFactory {
  integer(threshold, 'strategy.threshold', 1, 2 ** 31 - 1);
  const opts = optionsObject(options, 'strategy');
  knownKeys(opts, ['countSlowCalls'], 'strategy');
  const countSlow = bool(opts.countSlowCalls, 'strategy.countSlowCalls', false);
  return {
    name: `consecutive(${threshold})`,
    create: () => new ConsecutiveStrategy(threshold, countSlow),
  };
}

class ConsecutiveStrategy implements BreakerStrategy {
  readonly usesTime = false;
  #run = 0;
  #calls = 0;
  #failures = 0;
  #slow = 0;

  constructor(
    readonly threshold: number,
    readonly countSlow: boolean,
  ) {}

  record(failed: boolean, slow: boolean): boolean {
    this.#calls++;
    if (slow) this.#slow++;
    if (failed || (slow && this.countSlow)) {
      this.#failures++;
      return ++this.#run >= this.threshold;
    }
    this.#run = 0;
    return false;
  }

  halfOpen(completed: number, failures: number, slow: number, probes: number): HalfOpenVerdict {
    if (failures > 0 || (this.countSlow && slow > 0)) return 'open';
    return completed >= probes ? 'close' : 'pending';
  }

  reset(): void {
    this.#run = this.#calls = this.#failures = this.#slow = 0;
  }

  counts(): WindowCounts {
    return { calls: this.#calls, failures: this.#failures, slowCalls: this.#slow };
  }
}
