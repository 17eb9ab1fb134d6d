import { InvalidOptionError } from '../../core/errors.js';
import { fraction, integer, knownKeys, numberIn, optionsObject } from '../../core/validate.js';
import { clamp } from '../internal/math.js';
import type { LimitAlgorithm, LimitAlgorithmFactory, LimitBounds } from '../limit-algorithm.js';
import type { LimitFunction } from './vegas.js';

/** Options of {@link gradient2}; the defaults are Netflix's. */
export interface Gradient2Options {
  /** Weight of the new estimate against the current limit, in (0, 1]. @default 0.2 */
  smoothing?: number;
  /** How much the RTT may exceed the long-term RTT before the limit shrinks (>= 1). @default 1.5 */
  rttTolerance?: number;
  /** Samples averaged by the long-term RTT (an exponential average with factor 2/(n+1), after a plain mean of the first 10). @default 600 */
  longWindow?: number;
  /** Headroom added to the limit at each update: a number, or a function of the limit. @default 4 */
  queueSize?: LimitFunction;
}

/** The option names of {@link gradient2}, for the limiter's flat form. */
export const GRADIENT2_KEYS = ['smoothing', 'rttTolerance', 'longWindow', 'queueSize'] as const;

/** Samples averaged plainly before the long-term RTT turns exponential (Netflix's warm-up). */
const WARMUP = 10;

/**
 * Gradient-based, after Netflix's `Gradient2Limit`. It compares each RTT sample (the short RTT)
 * to a long-term exponential average of the samples (the long RTT):
 *
 * - `gradient = max(0.5, min(1, rttTolerance × longRtt / shortRtt))`;
 * - `newLimit = limit × gradient + queueSize`, then `limit × (1 − smoothing) + newLimit × smoothing`,
 *   clamped to `[minLimit, maxLimit]`;
 * - app-limited (`inflight < limit / 2`): unchanged;
 * - when `longRtt / shortRtt > 2` (latency fell back after a long overload) the long RTT is cut by
 *   5% at each sample, so the limit recovers without waiting for the average to decay.
 *
 * Drops are not used (as in Netflix's implementation): only latency moves the limit.
 *
 * Known limitation (Netflix issue #137): the long RTT averages loaded samples too, so under an
 * overload that lasts many times `longWindow` samples it drifts up and the limit with it. Prefer
 * `vegas` (which keeps a minimum) for steady overload; gradient2 is made for spikes.
 *
 * @example adaptiveLimiter({ algorithm: gradient2({ rttTolerance: 2 }) })
 * @throws {InvalidOptionError} for an invalid option.
 */
export function gradient2(options?: Gradient2Options): LimitAlgorithmFactory {
  const opts = optionsObject(options);
  knownKeys(opts, GRADIENT2_KEYS);
  const settings: Gradient2Settings = {
    smoothing: fraction(opts.smoothing, 'smoothing', 0.2),
    tolerance: numberIn(opts.rttTolerance, 'rttTolerance', 1, 1000, 1.5),
    longWindow: integer(opts.longWindow, 'longWindow', 1, 1_000_000, 600),
    queueSize: queueSizeFunction(opts.queueSize),
  };
  return { name: 'gradient2', create: (bounds) => new Gradient2Limit(bounds, settings) };
}

interface Gradient2Settings {
  smoothing: number;
  tolerance: number;
  longWindow: number;
  queueSize: (limit: number) => number;
}

function queueSizeFunction(value: unknown): (limit: number) => number {
  if (value === undefined) return () => 4;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return () => value;
  if (typeof value === 'function') return value as (limit: number) => number;
  throw new InvalidOptionError('queueSize', value, 'a non-negative number or a function of the limit');
}

class Gradient2Limit implements LimitAlgorithm {
  #estimate: number;
  #longRtt = 0;
  #longSum = 0;
  #longCount = 0;
  readonly #factor: number;
  readonly #min: number;
  readonly #max: number;
  readonly #s: Gradient2Settings;

  constructor(bounds: LimitBounds, settings: Gradient2Settings) {
    this.#estimate = bounds.initialLimit;
    this.#min = bounds.minLimit;
    this.#max = bounds.maxLimit;
    this.#s = settings;
    this.#factor = 2 / (settings.longWindow + 1);
  }

  get limit(): number {
    return this.#estimate;
  }

  /** The long-term RTT in ms (0 before the first sample). */
  get longRtt(): number {
    return this.#longRtt;
  }

  update(rtt: number, inflight: number): number {
    if (!(rtt > 0)) return this.#estimate;
    const s = this.#s;
    const estimate = this.#estimate;
    const queueSize = s.queueSize(Math.trunc(estimate));
    const shortRtt = rtt;
    // Netflix's ExpAvgMeasurement: a plain mean while warming up, then exponential.
    if (this.#longCount < WARMUP) {
      this.#longCount++;
      this.#longSum += rtt;
      this.#longRtt = this.#longSum / this.#longCount;
    } else {
      this.#longRtt = this.#longRtt * (1 - this.#factor) + rtt * this.#factor;
    }
    const longRtt = this.#longRtt;
    if (longRtt / shortRtt > 2) this.#longRtt *= 0.95;

    if (inflight < estimate / 2) return estimate;

    const gradient = Math.max(0.5, Math.min(1, (s.tolerance * longRtt) / shortRtt));
    let next = estimate * gradient + queueSize;
    next = estimate * (1 - s.smoothing) + next * s.smoothing;
    next = clamp(next, this.#min, this.#max);
    if (Number.isFinite(next)) this.#estimate = next;
    return this.#estimate;
  }
}
