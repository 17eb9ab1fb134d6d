/*
 * Per-key bookkeeping for the operations in flight on a key: the L2 read and the fill that
 * concurrent callers share (local single-flight), and the key's write epoch (the stale-set guard).
 *
 * The guard. Every local write, delete and bus invalidation of a key bumps its epoch; a clear, a
 * tag invalidation and a bus gap bump the global epoch. A read or fill records both epochs when it
 * reads from L2 or takes the lease, and installs its result in L1 only if neither moved since:
 * whatever it read may predate the write, which wins. Its own callers still get its result (they
 * asked before the write), but a caller arriving after the write never joins it (a joiner would
 * otherwise receive a value older than one it could already have seen: monotonic reads).
 *
 * State exists only while something is in flight on the key (a reference count), so it costs
 * nothing for the keys that are only hit in L1.
 */

/** The epochs an operation started under. */
export interface Snapshot {
  /** Key epoch. */
  ke: number;
  /** Global epoch. */
  ge: number;
}

/** What is in flight on one key. */
export class KeyState {
  /** Bumped by every local write or invalidation of the key. */
  epoch = 0;
  /** Operations holding this state. */
  refs = 0;
  /** The shared L2 read, joinable while its snapshot is current. */
  read: (Snapshot & { promise: Promise<unknown> }) | undefined = undefined;
  /** The shared fill, joinable while its snapshot is current. */
  fill: (Snapshot & { readonly background: boolean }) | undefined = undefined;
  /** Fills waiting for another instance's lease on this key, woken by the bus. */
  wakers: Set<() => void> | undefined = undefined;
}

/** The key states of one cache (all its namespaces), and its global epoch. */
export class KeyStates {
  readonly #states = new Map<string, KeyState>();
  /** Bumped by clear, tag invalidations and bus gaps: invalidates everything in flight. */
  global = 0;

  /** The state of `key`, created if needed, with one more reference. */
  acquire(key: string): KeyState {
    let state = this.#states.get(key);
    if (state === undefined) {
      state = new KeyState();
      this.#states.set(key, state);
    }
    state.refs++;
    return state;
  }

  /** Drops a reference taken by {@link KeyStates.acquire}. */
  release(key: string, state: KeyState): void {
    if (--state.refs === 0 && this.#states.get(key) === state) this.#states.delete(key);
  }

  /** The epochs now, for an operation about to read L2 or load. */
  snapshot(state: KeyState): Snapshot {
    return { ke: state.epoch, ge: this.global };
  }

  /** True while nothing invalidated the key since `snap` was taken. */
  current(state: KeyState, snap: Snapshot): boolean {
    return state.epoch === snap.ke && this.global === snap.ge;
  }

  /**
   * A write or invalidation of `key`: what is in flight on it may no longer be installed nor
   * joined. Wakes the fills waiting for another instance's lease on it.
   */
  invalidate(key: string): void {
    const state = this.#states.get(key);
    if (state === undefined) return;
    state.epoch++;
    state.read = undefined;
    state.fill = undefined;
    this.wake(state);
  }

  /** Invalidates everything in flight (clear, tag invalidation, bus gap). */
  invalidateAll(): void {
    this.global++;
    for (const state of this.#states.values()) {
      state.read = undefined;
      state.fill = undefined;
      this.wake(state);
    }
  }

  /** Wakes the fills of `key` waiting for another instance's lease. */
  wakeKey(key: string): void {
    const state = this.#states.get(key);
    if (state !== undefined) this.wake(state);
  }

  wake(state: KeyState): void {
    const wakers = state.wakers;
    if (wakers === undefined) return;
    state.wakers = undefined;
    for (const wake of wakers) wake();
  }

  /** Keys with something in flight. */
  get size(): number {
    return this.#states.size;
  }
}
