/**
 * Opaque handle returned by {@link Clock.setTimeout}. Real clocks return Node's `Timeout`;
 * fake clocks return their own token.
 */
export type Timer = { unref?(): unknown } | number | object;

/**
 * Where every buttress module gets time from. Inject one through the `clock` option to test
 * time-dependent behaviour without sleeping (see `FakeClock` in `buttress/testing`).
 */
export interface Clock {
  /** Milliseconds since the Unix epoch (may be fractional). */
  now(): number;
  /** Schedules `fn` after `ms` milliseconds. Timers must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Cancels a timer returned by {@link Clock.setTimeout}; unknown or fired timers are ignored. */
  clearTimeout(timer: Timer): void;
}

/**
 * The default clock: `Date.now()` and Node's timers, `unref()`ed so that a buttress object never
 * keeps a process alive on its own.
 */
export const systemClock: Clock = Object.freeze({
  now: Date.now,
  setTimeout(fn: () => void, ms: number): Timer {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout(timer: Timer): void {
    clearTimeout(timer as NodeJS.Timeout);
  },
});
