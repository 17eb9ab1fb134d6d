import { InvalidOptionError } from '../../core/errors.js';
import { knownKeys, optionsObject } from '../../core/validate.js';
import { clamp } from '../internal/math.js';
import type { LimitAlgorithm, LimitAlgorithmFactory, LimitBounds } from '../limit-algorithm.js';

/** Options of {@link aimd}. */
export interface AimdOptions {
  /** The factor the limit is multiplied by on a drop, in `[0.5, 1)`. @default 0.9 */
  backoffRatio?: number;
}

/** The option names of {@link aimd}, for the limiter's flat form (`algorithm: 'aimd', backoffRatio: 0.8`). */
export const AIMD_KEYS = ['backoffRatio'] as const;

/**
 * Additive increase, multiplicative decrease, after Netflix's `AIMDLimit`: loss-based, it reacts
 * to drops only (an overload error, or a call slower than the limiter's `timeout`), never to
 * latency. On a drop: `limit = max(minLimit, min(limit - 1, floor(limit × backoffRatio)))`.
 * Otherwise, when `inflight × 2 >= limit` (the limit is actually being used): `limit + 1`, at
 * most `maxLimit`. While fewer than half the slots are in use the limit holds (app-limited).
 *
 * Give the limiter a `timeout` (or an `isDrop` that recognises your upstream's overload errors):
 * without drops, AIMD only ever grows.
 *
 * @example adaptiveLimiter({ algorithm: aimd({ backoffRatio: 0.8 }), timeout: '200ms' })
 * @throws {InvalidOptionError} for an invalid option.
 */
export function aimd(options?: AimdOptions): LimitAlgorithmFactory {
  const opts = optionsObject(options);
  knownKeys(opts, AIMD_KEYS);
  const ratio = opts.backoffRatio === undefined ? 0.9 : opts.backoffRatio;
  if (typeof ratio !== 'number' || !(ratio >= 0.5 && ratio < 1)) {
    throw new InvalidOptionError('backoffRatio', ratio, 'a number at least 0.5 and below 1');
  }
  return { name: 'aimd', create: (bounds) => new AimdLimit(bounds, ratio) };
}

class AimdLimit implements LimitAlgorithm {
  #limit: number;
  readonly #min: number;
  readonly #max: number;
  readonly #ratio: number;

  constructor(bounds: LimitBounds, ratio: number) {
    this.#limit = bounds.initialLimit;
    this.#min = bounds.minLimit;
    this.#max = bounds.maxLimit;
    this.#ratio = ratio;
  }

  get limit(): number {
    return this.#limit;
  }

  update(_rtt: number, inflight: number, didDrop: boolean): number {
    const limit = Math.floor(this.#limit);
    if (didDrop) {
      this.#limit = Math.max(this.#min, Math.min(limit - 1, Math.floor(limit * this.#ratio)));
    } else if (inflight * 2 >= limit) {
      this.#limit = clamp(limit + 1, this.#min, this.#max);
    }
    return this.#limit;
  }
}
