/**
 * Counters over a rolling time window, kept in a fixed ring of buckets with running totals:
 * adding and reading are O(1) (rotation clears at most one ring's worth of buckets, amortised
 * over the time that passed). Several channels (e.g. requests and accepts) share one ring.
 *
 * The window covers the current, partial bucket plus the `buckets` whole buckets before it: an
 * entry counts for at least `window` ms and at most one bucket longer. Time that goes backwards
 * is treated as the newest bucket.
 */
export class WindowedCounter {
  readonly #width: number;
  readonly #slots: number;
  readonly #channels: number;
  readonly #values: Float64Array;
  readonly #totals: Float64Array;
  /** Index (time / width) of the newest bucket; NaN before the first use. */
  #head = Number.NaN;

  constructor(window: number, buckets: number, channels: number) {
    this.#width = window / buckets;
    this.#slots = buckets + 1;
    this.#channels = channels;
    this.#values = new Float64Array(this.#slots * channels);
    this.#totals = new Float64Array(channels);
  }

  /** Width of one bucket in ms. */
  get bucketWidth(): number {
    return this.#width;
  }

  /** Adds `value` to `channel` at time `now`. */
  add(channel: number, value: number, now: number): void {
    const slot = this.#rotate(now);
    this.#values[slot * this.#channels + channel]! += value;
    this.#totals[channel]! += value;
  }

  /** Sum of `channel` over the window ending at `now`. */
  total(channel: number, now: number): number {
    this.#rotate(now);
    return this.#totals[channel]!;
  }

  /** Drops every count. */
  reset(): void {
    this.#values.fill(0);
    this.#totals.fill(0);
    this.#head = Number.NaN;
  }

  /** Moves the head to `now`'s bucket, clearing the buckets that left the window; returns the head slot. */
  #rotate(now: number): number {
    const bucket = Math.floor(now / this.#width);
    const head = this.#head;
    const slots = this.#slots;
    if (bucket > head) {
      const steps = Math.min(bucket - head, slots);
      const channels = this.#channels;
      for (let i = 1; i <= steps; i++) {
        const base = mod(head + i, slots) * channels;
        for (let c = 0; c < channels; c++) {
          this.#totals[c]! -= this.#values[base + c]!;
          this.#values[base + c] = 0;
        }
      }
      this.#head = bucket;
    } else if (Number.isNaN(head)) {
      this.#head = bucket;
    }
    return mod(this.#head, slots);
  }
}

function mod(n: number, m: number): number {
  const r = n % m;
  return r < 0 ? r + m : r;
}
