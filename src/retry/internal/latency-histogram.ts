/**
 * Recent latencies in a fixed log-bucketed histogram (8 buckets per doubling, about 9% wide),
 * kept as two halves that rotate every `window / 2`, so the estimate follows the last
 * `window / 2` to `window` of samples. Recording is O(1); a percentile scans the 250 buckets and
 * is cached until enough new samples arrive.
 */
const PER_DOUBLING = 8;
/** Bucket 0 holds everything up to 1 ms; the last, everything from 2^31 ms up. */
const BUCKETS = 31 * PER_DOUBLING + 2;
/** Recompute a cached percentile after this many new samples. */
const REFRESH = 16;

export class LatencyHistogram {
  readonly #half: number;
  #current = new Float64Array(BUCKETS);
  #previous = new Float64Array(BUCKETS);
  #currentCount = 0;
  #previousCount = 0;
  #rotatedAt = Number.NaN;
  #cache = new Map<number, number>();
  #sinceCache = 0;

  constructor(window: number) {
    this.#half = window / 2;
  }

  /** Samples in the window. */
  count(now: number): number {
    this.#rotate(now);
    return this.#currentCount + this.#previousCount;
  }

  record(ms: number, now: number): void {
    this.#rotate(now);
    this.#current[bucketOf(ms)]!++;
    this.#currentCount++;
    if (++this.#sinceCache >= REFRESH) {
      this.#sinceCache = 0;
      this.#cache.clear();
    }
  }

  /** The upper bound of the bucket holding the `p` quantile (0 < p < 1); 0 when empty. */
  percentile(p: number, now: number): number {
    this.#rotate(now);
    const cached = this.#cache.get(p);
    if (cached !== undefined) return cached;
    const total = this.#currentCount + this.#previousCount;
    let value = 0;
    if (total > 0) {
      const rank = Math.ceil(p * total);
      let seen = 0;
      for (let i = 0; i < BUCKETS; i++) {
        seen += this.#current[i]! + this.#previous[i]!;
        if (seen >= rank) {
          value = upperBound(i);
          break;
        }
      }
    }
    this.#cache.set(p, value);
    return value;
  }

  #rotate(now: number): void {
    if (Number.isNaN(this.#rotatedAt)) {
      this.#rotatedAt = now;
      return;
    }
    const elapsed = now - this.#rotatedAt;
    if (elapsed < this.#half) return;
    if (elapsed >= 2 * this.#half) {
      this.#current.fill(0);
      this.#previous.fill(0);
      this.#previousCount = 0;
    } else {
      const recycled = this.#previous.fill(0);
      this.#previous = this.#current;
      this.#previousCount = this.#currentCount;
      this.#current = recycled;
    }
    this.#currentCount = 0;
    this.#rotatedAt = now;
    this.#cache.clear();
  }
}

export function bucketOf(ms: number): number {
  if (!(ms > 1)) return 0;
  const i = Math.ceil(Math.log2(ms) * PER_DOUBLING);
  return Math.min(i, BUCKETS - 1);
}

export function upperBound(bucket: number): number {
  return 2 ** (bucket / PER_DOUBLING);
}
