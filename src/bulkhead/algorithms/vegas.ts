import { InvalidOptionError } from '../../core/errors.js';
import { fn, fraction, integer, knownKeys, optionsObject } from '../../core/validate.js';
import { clamp, log10Root } from '../internal/math.js';
import type { LimitAlgorithm, LimitAlgorithmFactory, LimitBounds } from '../limit-algorithm.js';

/** A function of the current limit, or a constant. */
export type LimitFunction = number | ((limit: number) => number);

/** Options of {@link vegas}; the defaults are Netflix's. */
export interface VegasOptions {
  /** Weight of the new estimate against the current limit, in (0, 1]. @default 1 */
  smoothing?: number;
  /**
   * Re-measure the no-load RTT (take the current sample as the new minimum) every
   * `probeMultiplier × limit × jitter` samples, jitter uniform in [0.5, 1), so the minimum can
   * follow a latency that went up for good. @default 30
   */
  probeMultiplier?: number;
  /** Queue size below which the limit grows by `log10(limit)`. @default limit => 3·log10(limit) */
  alpha?: LimitFunction;
  /** Queue size above which the limit shrinks by `log10(limit)`. @default limit => 6·log10(limit) */
  beta?: LimitFunction;
  /** Queue size at or below which the limit grows fast, by `beta`. @default limit => log10(limit) */
  threshold?: LimitFunction;
  /** The increased limit. @default limit => limit + log10(limit) */
  increase?: (limit: number) => number;
  /** The decreased limit, also applied on a drop. @default limit => limit - log10(limit) */
  decrease?: (limit: number) => number;
  /** Source of the probe jitter, uniform in [0, 1). @default Math.random */
  random?: () => number;
}

/** The option names of {@link vegas}, for the limiter's flat form. */
export const VEGAS_KEYS = [
  'smoothing',
  'probeMultiplier',
  'alpha',
  'beta',
  'threshold',
  'increase',
  'decrease',
  'random',
] as const;

/**
 * Delay-based, after TCP Vegas and Netflix's `VegasLimit`. It keeps the lowest RTT seen as the
 * no-load RTT and estimates the queue the limit builds: `queue = ceil(limit × (1 − rttNoLoad /
 * rtt))`. Then, log10 standing for Netflix's `Log10RootFunction` (`max(1, floor(log10(limit)))`,
 * `floor(sqrt(limit))` from 1000 on):
 *
 * - on a drop: `decrease(limit)` (default `limit − log10(limit)`);
 * - app-limited (`inflight × 2 < limit`): unchanged;
 * - `queue <= threshold` (default `log10(limit)`): `limit + beta`, a fast increase;
 * - `queue < alpha` (default `3·log10(limit)`): `increase(limit)` (default `limit + log10(limit)`);
 * - `queue > beta` (default `6·log10(limit)`): `decrease(limit)`;
 * - otherwise unchanged;
 *
 * then clamped to `[minLimit, maxLimit]` and smoothed: `(1 − smoothing) × limit + smoothing × new`.
 * A sample below the no-load RTT only lowers the no-load RTT; every `probeMultiplier × limit ×
 * jitter` samples the current sample replaces it (a probe), so the estimate tracks lasting changes.
 *
 * @example adaptiveLimiter({ algorithm: vegas({ smoothing: 0.5 }) })
 * @throws {InvalidOptionError} for an invalid option.
 */
export function vegas(options?: VegasOptions): LimitAlgorithmFactory {
  const opts = optionsObject(options);
  knownKeys(opts, VEGAS_KEYS);
  const settings: VegasSettings = {
    smoothing: fraction(opts.smoothing, 'smoothing', 1),
    probeMultiplier: integer(opts.probeMultiplier, 'probeMultiplier', 1, 1_000_000, 30),
    alpha: limitFunction(opts.alpha, 'alpha', (limit) => 3 * log10Root(limit)),
    beta: limitFunction(opts.beta, 'beta', (limit) => 6 * log10Root(limit)),
    threshold: limitFunction(opts.threshold, 'threshold', log10Root),
    increase: fn(opts.increase, 'increase', (limit: number) => limit + log10Root(limit)),
    decrease: fn(opts.decrease, 'decrease', (limit: number) => limit - log10Root(limit)),
    random: fn(opts.random, 'random', Math.random),
  };
  return { name: 'vegas', create: (bounds) => new VegasLimit(bounds, settings) };
}

interface VegasSettings {
  smoothing: number;
  probeMultiplier: number;
  alpha: (limit: number) => number;
  beta: (limit: number) => number;
  threshold: (limit: number) => number;
  increase: (limit: number) => number;
  decrease: (limit: number) => number;
  random: () => number;
}

function limitFunction(
  value: unknown,
  option: string,
  fallback: (limit: number) => number,
): (limit: number) => number {
  if (value === undefined) return fallback;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new InvalidOptionError(option, value, 'a non-negative number or a function of the limit');
    }
    return () => value;
  }
  if (typeof value === 'function') return value as (limit: number) => number;
  throw new InvalidOptionError(option, value, 'a non-negative number or a function of the limit');
}

class VegasLimit implements LimitAlgorithm {
  #estimate: number;
  #rttNoLoad = 0;
  #probeCount = 0;
  #probeJitter: number;
  readonly #min: number;
  readonly #max: number;
  readonly #s: VegasSettings;

  constructor(bounds: LimitBounds, settings: VegasSettings) {
    this.#estimate = bounds.initialLimit;
    this.#min = bounds.minLimit;
    this.#max = bounds.maxLimit;
    this.#s = settings;
    this.#probeJitter = this.#jitter();
  }

  get limit(): number {
    return this.#estimate;
  }

  #jitter(): number {
    return 0.5 + this.#s.random() * 0.5;
  }

  update(rtt: number, inflight: number, didDrop: boolean): number {
    if (!(rtt > 0)) return this.#estimate;
    const s = this.#s;
    this.#probeCount++;
    if (this.#probeJitter * s.probeMultiplier * this.#estimate <= this.#probeCount) {
      this.#probeJitter = this.#jitter();
      this.#probeCount = 0;
      this.#rttNoLoad = rtt;
      return this.#estimate;
    }
    if (this.#rttNoLoad === 0 || rtt < this.#rttNoLoad) {
      this.#rttNoLoad = rtt;
      return this.#estimate;
    }

    const estimate = this.#estimate;
    const queueSize = Math.ceil(estimate * (1 - this.#rttNoLoad / rtt));
    let next: number;
    if (didDrop) {
      next = s.decrease(estimate);
    } else if (inflight * 2 < estimate) {
      // App-limited: the limit is not what holds the calls back, so latency says nothing about it.
      return estimate;
    } else {
      const limit = Math.trunc(estimate);
      const alpha = s.alpha(limit);
      const beta = s.beta(limit);
      if (queueSize <= s.threshold(limit)) next = estimate + beta;
      else if (queueSize < alpha) next = s.increase(estimate);
      else if (queueSize > beta) next = s.decrease(estimate);
      else return estimate;
    }
    next = clamp(next, this.#min, this.#max);
    next = (1 - s.smoothing) * estimate + s.smoothing * next;
    // A user-supplied function returning NaN must not poison the limit.
    if (Number.isFinite(next)) this.#estimate = next;
    return this.#estimate;
  }
}
