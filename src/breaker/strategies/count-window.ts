import { fraction, integer, knownKeys, optionsObject } from '../../core/validate.js';
import {
  type BreakerStrategy,
  type BreakerStrategyFactory,
  type HalfOpenVerdict,
  rateTrips,
  rateVerdict,
  type WindowCounts,
} from '../strategy.js';

/** Options of {@link countWindow}. */
export interface CountWindowOptions {
  /** How many of the most recent calls the window holds. */
  size: number;
  /** Calls needed in the window before the rates are judged. @default size */
  minimumCalls?: number;
  /** Open when failed / calls reaches this fraction (0, 1]. @default 0.5 */
  failureRate?: number;
  /** Open when slow / calls reaches this fraction (0, 1]. @default undefined (slow calls never open the circuit) */
  slowCallRate?: number;
}

const FAILED = 1;
const SLOW = 2;

/**
 * A sliding window over the last `size` calls, as resilience4j's COUNT_BASED window: the
 * circuit opens when at least `minimumCalls` calls are in the window and the failure rate or
 * the slow-call rate reaches its threshold. O(1) per call: a ring of one byte per call.
 *
 * Half-open: judged once every trial call has reported, by the same rates.
 *
 * @example circuitBreaker({ strategy: countWindow({ size: 100, failureRate: 0.5, slowCallRate: 0.8 }), slowCallDuration: '2s' })
 * @throws {InvalidOptionError} for a size below 1, a minimumCalls outside [1, size] or a rate outside (0, 1].
 */
export function countWindow(options: CountWindowOptions): BreakerStrategyFactory {
  const opts = optionsObject(options, 'strategy');
  knownKeys(opts, ['size', 'minimumCalls', 'failureRate', 'slowCallRate'], 'strategy');
  const size = integer(opts.size, 'strategy.size', 1, 1 << 24);
  const minimumCalls = integer(opts.minimumCalls, 'strategy.minimumCalls', 1, size, size);
  const failureRate = fraction(opts.failureRate, 'strategy.failureRate', 0.5);
  const slowCallRate =
    opts.slowCallRate === undefined
      ? Number.POSITIVE_INFINITY
      : fraction(opts.slowCallRate, 'strategy.slowCallRate');
  return {
    name: `countWindow(${size})`,
    create: () => new CountWindowStrategy(size, minimumCalls, failureRate, slowCallRate),
  };
}

class CountWindowStrategy implements BreakerStrategy {
  readonly usesTime = false;
  readonly #ring: Uint8Array;
  #next = 0;
  #calls = 0;
  #failures = 0;
  #slow = 0;

  constructor(
    readonly size: number,
    readonly minimumCalls: number,
    readonly failureRate: number,
    readonly slowCallRate: number,
  ) {
    this.#ring = new Uint8Array(size);
  }

  record(failed: boolean, slow: boolean): boolean {
    const ring = this.#ring;
    const i = this.#next;
    if (this.#calls === this.size) {
      // The window is full: the oldest call at this slot leaves it.
      const old = ring[i]!;
      if (old & FAILED) this.#failures--;
      if (old & SLOW) this.#slow--;
    } else {
      this.#calls++;
    }
    const flags = (failed ? FAILED : 0) | (slow ? SLOW : 0);
    ring[i] = flags;
    if (failed) this.#failures++;
    if (slow) this.#slow++;
    this.#next = i + 1 === this.size ? 0 : i + 1;
    return rateTrips(
      this.#calls,
      this.#failures,
      this.#slow,
      this.minimumCalls,
      this.failureRate,
      this.slowCallRate,
    );
  }

  halfOpen(completed: number, failures: number, slow: number, probes: number): HalfOpenVerdict {
    return rateVerdict(completed, failures, slow, probes, this.failureRate, this.slowCallRate);
  }

  reset(): void {
    this.#ring.fill(0);
    this.#next = this.#calls = this.#failures = this.#slow = 0;
  }

  counts(): WindowCounts {
    return { calls: this.#calls, failures: this.#failures, slowCalls: this.#slow };
  }
}
