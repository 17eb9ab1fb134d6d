/** The bounds an adaptive limiter gives the algorithm it creates. */
export interface LimitBounds {
  /** The limit to start from, within `[minLimit, maxLimit]`. */
  readonly initialLimit: number;
  readonly minLimit: number;
  readonly maxLimit: number;
}

/**
 * Estimates a concurrency limit from latency and drop samples, as the `Limit` classes of Netflix's
 * concurrency-limits do. One instance belongs to one limiter; a {@link LimitAlgorithmFactory}
 * makes a fresh one for each.
 *
 * The limiter calls {@link LimitAlgorithm.update} once per sample (per call, or per sampling
 * window: then `rtt` is the window's mean, `inflight` its maximum and `didDrop` true when any call
 * in it dropped). It uses `Math.floor` of the returned estimate, clamped to `[minLimit, maxLimit]`
 * whatever the algorithm returns, so a faulty algorithm cannot push the limit out of its bounds.
 *
 * `update` runs on every sample: keep it O(1) and allocation-free.
 */
export interface LimitAlgorithm {
  /** The current estimate (may be fractional). */
  readonly limit: number;
  /**
   * Feeds one sample and returns the new estimate.
   * @param rtt latency in milliseconds (fractional; samples below the limiter's `minRttThreshold` never arrive)
   * @param inflight calls in flight when the sampled call started, itself included
   * @param didDrop the call was dropped: it failed with an overload error, or took longer than the limiter's `timeout`
   */
  update(rtt: number, inflight: number, didDrop: boolean): number;
}

/** Builds a fresh {@link LimitAlgorithm} for each limiter. Built-ins: `aimd`, `vegas`, `gradient2`. */
export interface LimitAlgorithmFactory {
  /** Short description, shown in stats, e.g. `gradient2`. */
  readonly name: string;
  create(bounds: LimitBounds): LimitAlgorithm;
}
