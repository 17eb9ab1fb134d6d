import { type Clock, systemClock, type Timer } from './clock.js';
import { InvalidOptionError } from './errors.js';
import { clockOption, integer, knownKeys, numberIn, optionsObject } from './validate.js';

/*
 * A hashed timing wheel (Varghese & Lauck, scheme 6, as in Netty's HashedWheelTimer) driven by a
 * single underlying clock timer.
 *
 * Why: a per-call `setTimeout` costs a libuv timer insert and removal (and, in cockatiel, an
 * AbortController too), several hundred nanoseconds for a timeout that almost never fires. Here a
 * schedule is a linked-list push into `slots[tick % size]` and a cancel is an unlink: both O(1)
 * with no allocation beyond the entry itself. At most one clock timer is armed, for the earliest
 * non-empty slot; when the wheel empties it is released before control returns to the event loop
 * (a `process.nextTick`), so an idle wheel holds no handle and never keeps a process alive.
 *
 * Deadlines are rounded up to whole ticks: an entry fires no earlier than its deadline and at most
 * one tick after it (plus whatever lateness the underlying clock adds). Entries further away than
 * one revolution (`slots * tick`) wait in their slot and are skipped until their round comes, which
 * costs a spurious wake-up per revolution for a lone long timer and nothing under load.
 */

const IDLE = 0;
const SCHEDULED = 1;
const DUE = 2;

/**
 * An entry in a {@link TimerWheel}. `schedule()` returns one as the handle to `cancel()`; modules
 * that need per-call state subclass it and implement {@link TimerEntry.fire}, so the call state
 * and the wheel node are one allocation.
 */
export abstract class TimerEntry {
  /** @internal */ _next: TimerEntry | null = null;
  /** @internal */ _prev: TimerEntry | null = null;
  /** @internal Absolute tick (relative to the wheel's origin) at which the entry is due. */
  _tick = 0;
  /** @internal */ _slot = 0;
  /** @internal */ _state: 0 | 1 | 2 = IDLE;

  /** Called once, from the wheel, when the entry's deadline has passed. */
  abstract fire(): void;

  /** True while the entry waits in a wheel. */
  get pending(): boolean {
    return this._state !== IDLE;
  }
}

class CallbackEntry extends TimerEntry {
  readonly #callback: () => void;
  constructor(callback: () => void) {
    super();
    this.#callback = callback;
  }
  fire(): void {
    this.#callback();
  }
}

/** Options of {@link TimerWheel}. */
export interface TimerWheelOptions {
  /** Time source; its `setTimeout` drives the wheel. @default systemClock */
  clock?: Clock;
  /** Resolution in milliseconds: deadlines are rounded up to a multiple of it. @default 1 */
  tick?: number;
  /** Number of slots, a power of two; one revolution spans `slots * tick` ms. @default 4096 */
  slots?: number;
}

/**
 * A timer service for many short-lived timers (timeouts, hedging delays, queue deadlines) that
 * mostly get cancelled. Use {@link sharedTimerWheel} to get the one wheel of a clock.
 *
 * @example
 * const wheel = sharedTimerWheel(clock);
 * const handle = wheel.schedule(100, () => controller.abort());
 * // ... the work finished in time:
 * wheel.cancel(handle);
 */
export class TimerWheel {
  readonly #clock: Clock;
  readonly #tickMs: number;
  readonly #mask: number;
  readonly #heads: (TimerEntry | null)[];
  /** One bit per slot, set while the slot's list is non-empty: finds the next armed slot fast. */
  readonly #occupied: Uint32Array;
  readonly #origin: number;
  /** Last tick whose slot has been processed. */
  #cursor = 0;
  #size = 0;
  #timer: Timer | undefined;
  #armedTick = 0;
  #due: TimerEntry[] = [];
  #releasePending = false;
  #firing = false;

  constructor(options?: TimerWheelOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['clock', 'tick', 'slots']);
    this.#clock = clockOption(opts.clock);
    this.#tickMs = numberIn(opts.tick, 'tick', 0.001, 60_000, 1);
    const slots = integer(opts.slots, 'slots', 32, 1 << 20, 4096);
    if ((slots & (slots - 1)) !== 0) throw new InvalidOptionError('slots', slots, 'a power of two');
    this.#mask = slots - 1;
    this.#heads = new Array<TimerEntry | null>(slots).fill(null);
    this.#occupied = new Uint32Array(slots >>> 5);
    this.#origin = this.#clock.now();
  }

  /** The wheel's resolution in milliseconds. */
  get tick(): number {
    return this.#tickMs;
  }

  /** Entries scheduled and not yet fired or cancelled. */
  get size(): number {
    return this.#size;
  }

  /** True while an underlying clock timer is armed (never once an empty wheel has reached the next tick). */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Calls `callback` once, no earlier than `ms` milliseconds from now and at most one tick later.
   * Returns a handle for {@link TimerWheel.cancel}. A callback that throws does not stop the others:
   * its error is rethrown asynchronously.
   */
  schedule(ms: number, callback: () => void): TimerEntry {
    const entry = new CallbackEntry(callback);
    this.insert(entry, ms);
    return entry;
  }

  /**
   * Schedules an entry of your own (a {@link TimerEntry} subclass), so per-call state and the
   * wheel node share one object. The entry must not be pending already.
   */
  insert(entry: TimerEntry, ms: number): void {
    const now = this.#clock.now();
    if (this.#size === 0 && !this.#firing) {
      // Nothing is waiting: skip the idle ticks instead of walking them on the next fire.
      const nowTick = Math.floor((now - this.#origin) / this.#tickMs);
      if (nowTick > this.#cursor) this.#cursor = nowTick;
    }
    let tick = Math.ceil((now + Math.max(ms, 0) - this.#origin) / this.#tickMs);
    // The cursor's own slot has been processed: anything due by then goes to the next tick.
    if (tick <= this.#cursor) tick = this.#cursor + 1;
    const slot = tick & this.#mask;
    entry._tick = tick;
    entry._slot = slot;
    entry._state = SCHEDULED;
    entry._prev = null;
    const head = this.#heads[slot]!;
    entry._next = head;
    if (head === null) this.#occupied[slot >>> 5]! |= 1 << (slot & 31);
    else head._prev = entry;
    this.#heads[slot] = entry;
    this.#size++;
    if (!this.#firing && (this.#timer === undefined || tick < this.#armedTick)) this.#arm(tick, now);
  }

  /**
   * Cancels an entry in O(1). Returns true when it was pending; false when it had already fired,
   * been cancelled, or was never scheduled. A cancelled entry never fires.
   */
  cancel(entry: TimerEntry): boolean {
    const state = entry._state;
    if (state === SCHEDULED) {
      this.#unlink(entry);
      entry._state = IDLE;
      if (--this.#size === 0 && this.#timer !== undefined && !this.#releasePending) {
        // Release the clock timer once the current run of callbacks is over (before control
        // returns to the event loop) rather than at once: a chain of awaited calls then arms it
        // once, instead of paying a setTimeout and a clearTimeout per call.
        this.#releasePending = true;
        process.nextTick(this.#releaseIfIdle);
      }
      return true;
    }
    if (state === DUE) {
      // Collected for firing in this very round (a sibling's callback cancels it): skip it.
      entry._state = IDLE;
      return true;
    }
    return false;
  }

  readonly #releaseIfIdle = (): void => {
    this.#releasePending = false;
    if (this.#size === 0 && this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  };

  #unlink(entry: TimerEntry): void {
    const prev = entry._prev;
    const next = entry._next;
    if (prev === null) {
      const slot = entry._slot;
      this.#heads[slot] = next;
      if (next === null) this.#occupied[slot >>> 5]! &= ~(1 << (slot & 31));
    } else {
      prev._next = next;
    }
    if (next !== null) next._prev = prev;
    entry._next = entry._prev = null;
  }

  #arm(tick: number, now: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#armedTick = tick;
    const delay = this.#origin + tick * this.#tickMs - now;
    this.#timer = this.#clock.setTimeout(this.#onTimer, Math.max(delay, 0));
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    const nowTick = Math.floor((now - this.#origin) / this.#tickMs);
    if (nowTick > this.#cursor) this.#advance(nowTick);
    if (this.#size !== 0) this.#armNext(this.#clock.now());
  };

  /** Collects every entry due by `nowTick` from the slots after the cursor, then fires them. */
  #advance(nowTick: number): void {
    const cursor = this.#cursor;
    const span = nowTick - cursor;
    const limit = Math.min(span, this.#mask + 1);
    const due = this.#firing ? [] : this.#due;
    let offset = 0;
    while (offset < limit) {
      const found = this.#nextOccupied(cursor + 1 + offset, limit - offset);
      if (found < 0) break;
      offset += found;
      this.#collect((cursor + 1 + offset) & this.#mask, nowTick, due);
      offset++;
    }
    this.#cursor = nowTick;
    if (due.length === 0) return;
    const outer = this.#firing;
    this.#firing = true;
    try {
      for (let i = 0; i < due.length; i++) {
        const entry = due[i]!;
        if (entry._state !== DUE) continue;
        entry._state = IDLE;
        try {
          entry.fire();
        } catch (error) {
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    } finally {
      due.length = 0;
      this.#firing = outer;
    }
  }

  #collect(slot: number, nowTick: number, due: TimerEntry[]): void {
    let entry = this.#heads[slot]!;
    while (entry !== null) {
      const next = entry._next;
      if (entry._tick <= nowTick) {
        this.#unlink(entry);
        entry._state = DUE;
        this.#size--;
        due.push(entry);
      }
      entry = next as TimerEntry;
    }
  }

  /**
   * Offset `o` in `[0, limit)` of the first occupied slot among the ticks `fromTick + o`, or -1.
   * Scans a word (32 slots) at a time.
   */
  #nextOccupied(fromTick: number, limit: number): number {
    const mask = this.#mask;
    const words = this.#occupied;
    let scanned = 0;
    // `&` keeps the low 32 bits of any safe integer, so ticks beyond 2^31 still map correctly.
    let slot = fromTick & mask;
    while (scanned < limit) {
      const bit = slot & 31;
      const word = words[slot >>> 5]! >>> bit;
      if (word !== 0) {
        const found = scanned + 31 - Math.clz32(word & -word);
        return found < limit ? found : -1;
      }
      scanned += 32 - bit;
      slot = (slot + 32 - bit) & mask;
    }
    return -1;
  }

  #armNext(now: number): void {
    const found = this.#nextOccupied(this.#cursor + 1, this.#mask + 1);
    // size > 0 guarantees an occupied slot; the guard only keeps a corrupted wheel from spinning.
    if (found >= 0) this.#arm(this.#cursor + 1 + found, now);
  }
}

const wheels = new WeakMap<Clock, TimerWheel>();

/**
 * The timer wheel shared by every buttress module using `clock` (1 ms ticks), created on first
 * use. Keyed by the clock, so a `FakeClock` gets its own wheel and two clocks never share one.
 */
export function sharedTimerWheel(clock: Clock = systemClock): TimerWheel {
  let wheel = wheels.get(clock);
  if (wheel === undefined) {
    wheel = new TimerWheel({ clock });
    wheels.set(clock, wheel);
  }
  return wheel;
}
