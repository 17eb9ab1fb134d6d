import { clamp } from './math.js';
/** How samples are grouped before they reach the algorithm. */
export interface WindowSettings {
  /** Shortest window, ms. */
  minTime: number;
  /** Longest window, ms. */
  maxTime: number;
  /** Samples a window needs before it is used. */
  minSamples: number;
}

/**
 * Netflix's `WindowedLimit`: samples are collected until a window closes, and the algorithm sees
 * one aggregate per window: the mean RTT, the largest `inflight` and whether any call dropped.
 * A window closes at the first sample ending after its end time once it holds `minSamples`
 * samples; the next one ends `clamp(2 × the closed window's lowest RTT, minTime, maxTime)` later.
 *
 * Updating once per two round trips is what keeps the loop stable: with one update per call, the
 * limit moves many times before the first call admitted under a new limit reports back, and the
 * limit overshoots and collapses in turn.
 *
 * Unlike Netflix's, a dropped sample counts towards `minSamples` (so a window full of timeouts
 * still reaches the algorithm) and its RTT enters the mean only when nothing else did.
 */
export class SampleWindow {
  readonly #settings: WindowSettings;
  #end = 0;
  #count = 0;
  #okCount = 0;
  #okSum = 0;
  #dropSum = 0;
  #minRtt = Number.POSITIVE_INFINITY;
  #maxInflight = 0;
  #drop = false;

  /** The closed window's mean RTT, valid after {@link SampleWindow.add} returned true. */
  rtt = 0;
  /** The closed window's largest inflight. */
  inflight = 0;
  /** Whether any call in the closed window dropped. */
  didDrop = false;

  constructor(settings: WindowSettings) {
    this.#settings = settings;
  }

  /** Adds a sample that ended at `end` (stopwatch ms); true when it closed the window. */
  add(rtt: number, inflight: number, didDrop: boolean, end: number): boolean {
    this.#count++;
    if (didDrop) {
      this.#drop = true;
      this.#dropSum += rtt;
    } else {
      this.#okCount++;
      this.#okSum += rtt;
    }
    if (rtt < this.#minRtt) this.#minRtt = rtt;
    if (inflight > this.#maxInflight) this.#maxInflight = inflight;
    if (end < this.#end || this.#count < this.#settings.minSamples) return false;

    const { minTime, maxTime } = this.#settings;
    this.#end = end + clamp(this.#minRtt * 2, minTime, maxTime);
    this.rtt = this.#okCount > 0 ? this.#okSum / this.#okCount : this.#dropSum / this.#count;
    this.inflight = this.#maxInflight;
    this.didDrop = this.#drop;
    this.#count = this.#okCount = this.#okSum = this.#dropSum = this.#maxInflight = 0;
    this.#minRtt = Number.POSITIVE_INFINITY;
    this.#drop = false;
    return true;
  }
}
