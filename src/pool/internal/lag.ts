/*
 * Replication lag in time, from WAL positions.
 *
 * A replica reports how far it has replayed (an LSN), not how old its data is. The usual proxy,
 * `now() - pg_last_xact_replay_timestamp()`, grows without bound on an idle primary, so an idle
 * cluster would eject healthy replicas. Instead the health checker records the primary's WAL
 * position every round, and the lag of a replica that has replayed up to L is how long ago the
 * primary passed L:
 *
 *   - L at or past the newest primary sample: 0 (it has everything the primary had then);
 *   - L between two samples: the moment the primary passed L, interpolated linearly between the
 *     last time it was seen at or below L and the first time it was seen above L (WAL is
 *     assumed to grow evenly in between: the estimate is off by at most one health interval);
 *   - L older than every sample kept: at least the age of the oldest sample (a lower bound; the
 *     history spans more than `maxReplicaLag`, so this is enough to eject).
 *
 * Samples take the time a probe was *sent* and replicas the time their answer *arrived*: both
 * errors make the lag look larger, never smaller. Consecutive samples at the same position are
 * merged into one entry that remembers when the position was first and last seen, so an idle
 * primary uses one entry and interpolation never credits a replica with a later time than it
 * earned. A position lower than the newest (the primary was replaced) clears the history.
 */

/** Primary WAL positions over time, in a fixed ring; estimates a replica's lag from its replay position. */
export class LagTracker {
  readonly #capacity: number;
  readonly #lsn: bigint[];
  /** When each position was first seen. */
  readonly #first: number[];
  /** When each position was last seen. */
  readonly #last: number[];
  #start = 0;
  #size = 0;

  /** @param capacity entries kept; size it to span more than `maxReplicaLag` of health rounds. */
  constructor(capacity: number) {
    this.#capacity = Math.max(2, capacity);
    this.#lsn = new Array<bigint>(this.#capacity).fill(0n);
    this.#first = new Array<number>(this.#capacity).fill(0);
    this.#last = new Array<number>(this.#capacity).fill(0);
  }

  /** Entries held. */
  get size(): number {
    return this.#size;
  }

  /** The newest primary position recorded, if any. */
  get latest(): bigint | undefined {
    return this.#size === 0 ? undefined : this.#lsn[this.#index(this.#size - 1)];
  }

  /** Records that the primary was at `lsn` at time `at` (ms). */
  record(at: number, lsn: bigint): void {
    if (this.#size > 0) {
      const newest = this.#index(this.#size - 1);
      // Time never runs backwards inside the history, whatever the clock does.
      const t = Math.max(at, this.#last[newest]!);
      const latest = this.#lsn[newest]!;
      if (lsn === latest) {
        this.#last[newest] = t;
        return;
      }
      if (lsn < latest) {
        this.clear();
      } else {
        this.#push(t, lsn);
        return;
      }
    }
    this.#push(at, lsn);
  }

  #push(at: number, lsn: bigint): void {
    let i: number;
    if (this.#size < this.#capacity) {
      i = this.#index(this.#size);
      this.#size++;
    } else {
      i = this.#start;
      this.#start = (this.#start + 1) % this.#capacity;
    }
    this.#lsn[i] = lsn;
    this.#first[i] = at;
    this.#last[i] = at;
  }

  /**
   * Estimated lag (ms) at `now` of a replica that has replayed up to `replayed`; undefined
   * while no primary position has been recorded.
   */
  lagOf(replayed: bigint, now: number): number | undefined {
    const size = this.#size;
    if (size === 0) return undefined;
    // Newest first: a healthy replica is at or near the newest sample.
    let k = size - 1;
    if (replayed >= this.#lsn[this.#index(k)]!) return 0;
    while (k >= 0 && this.#lsn[this.#index(k)]! > replayed) k--;
    if (k < 0) return Math.max(0, now - this.#first[this.#index(0)]!);
    const lo = this.#index(k);
    const hi = this.#index(k + 1);
    const p0 = this.#lsn[lo]!;
    const p1 = this.#lsn[hi]!;
    const t0 = this.#last[lo]!;
    const t1 = this.#first[hi]!;
    const fraction = Number(replayed - p0) / Number(p1 - p0);
    return Math.max(0, now - (t0 + fraction * (t1 - t0)));
  }

  /** Forgets every sample. */
  clear(): void {
    this.#start = 0;
    this.#size = 0;
  }

  /** The samples, oldest first (for tests and stats). */
  samples(): { lsn: bigint; first: number; last: number }[] {
    const out: { lsn: bigint; first: number; last: number }[] = [];
    for (let k = 0; k < this.#size; k++) {
      const i = this.#index(k);
      out.push({ lsn: this.#lsn[i]!, first: this.#first[i]!, last: this.#last[i]! });
    }
    return out;
  }

  #index(k: number): number {
    return (this.#start + k) % this.#capacity;
  }
}
