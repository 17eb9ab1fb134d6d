import type { Clock, Timer } from '../core/clock.js';

interface FakeTimer {
  readonly id: number;
  due: number;
  fn: (() => void) | undefined;
}

/**
 * A {@link Clock} whose time moves only when a test says so. Timers fire in due order, each
 * seeing `now()` equal to its due time, so code under test observes exactly the schedule it
 * asked for, with no real sleeping.
 *
 * @example
 * const clock = new FakeClock();
 * const breaker = circuitBreaker({ clock, strategy: consecutive(3), halfOpenAfter: '10s' });
 * clock.advance(10_000); // the breaker is now half-open
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  // Kept sorted by (due, id); test timer counts are small, so insertion sort is the simplest right thing.
  #timers: FakeTimer[] = [];

  /** @param start initial `now()` in ms. @default 1_700_000_000_000 */
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: FakeTimer = { id: ++this.#seq, due: this.#now + Math.max(0, ms), fn };
    let i = this.#timers.length;
    while (i > 0 && this.#timers[i - 1]!.due > timer.due) i--;
    this.#timers.splice(i, 0, timer);
    return timer;
  }

  clearTimeout(timer: Timer): void {
    const i = this.#timers.indexOf(timer as FakeTimer);
    if (i !== -1) {
      this.#timers[i]!.fn = undefined;
      this.#timers.splice(i, 1);
    }
  }

  /** Number of timers scheduled and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing due timers in order (timers scheduled by them included). */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const next = this.#timers[0];
      if (!next || next.due > target) break;
      this.#timers.shift();
      this.#now = Math.max(this.#now, next.due);
      next.fn?.();
    }
    this.#now = target;
  }

  /**
   * Like {@link FakeClock.advance}, but lets pending promise callbacks run before and after each
   * timer, so async code reacting to a timer settles before the next one fires.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.#now + ms;
    await flushMicrotasks();
    for (;;) {
      const next = this.#timers[0];
      if (!next || next.due > target) break;
      this.#timers.shift();
      this.#now = Math.max(this.#now, next.due);
      next.fn?.();
      await flushMicrotasks();
    }
    this.#now = target;
    await flushMicrotasks();
  }

  /** Sets the time directly (it may go backwards, to test clock skew); fires nothing. */
  set(now: number): void {
    this.#now = now;
  }
}

/** Resolves after queued microtasks (and the ones they queue, a few levels deep) have run. */
export async function flushMicrotasks(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
