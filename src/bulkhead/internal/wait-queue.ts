import { onAbort } from '../../core/abort.js';
import type { Clock, Timer } from '../../core/clock.js';
import { Deque, type DequeEntry } from './deque.js';

/** In which order waiters get a freed slot. */
export type QueueOrder = 'fifo' | 'lifo' | 'adaptive-lifo';

/** A caller waiting for a slot. Subtypes add what running the call needs. */
export interface Waiter extends DequeEntry {
  /** When it joined the queue (clock ms). */
  enqueuedAt: number;
  /** When it leaves on its queue timeout (clock ms); Infinity without one. */
  deadline: number;
  /** Removes the waiter's abort listener; set while it waits with a signal. */
  unlisten: (() => void) | undefined;
}

/** Why a waiter left the queue without a slot. */
export type LeaveReason = 'timeout' | 'abort';

export interface WaitQueueOptions<W extends Waiter> {
  capacity: number;
  order: QueueOrder;
  /** Milliseconds a waiter may wait; Infinity for no limit. */
  timeout: number;
  /** adaptive-lifo: the sojourn time above which the queue counts as standing. */
  codelTarget: number;
  /** adaptive-lifo: how long the sojourn must stay above the target before serving LIFO. */
  codelInterval: number;
  clock: Clock;
  /** Called after a waiter left the queue on its timeout or its signal; the owner rejects it. */
  onLeave: (waiter: W, why: LeaveReason, reason: unknown) => void;
}

/**
 * The waiting room of a bulkhead or limiter: at most `capacity` waiters, handed out in `order`,
 * each leaving at once when its queue timeout passes or its signal aborts.
 *
 * Every waiter has the same timeout and joins at the tail, so deadlines grow from head to tail
 * in either order: one timer, set for the head's deadline, serves the whole queue (a timer per
 * waiter would cost a timer allocation per queued call). When it fires, every expired waiter at
 * the head leaves, and the timer is set again for the new head. A waiter leaving from the middle
 * (an abort) becomes a tombstone in the deque, so nobody else waits longer because of it.
 *
 * `adaptive-lifo` (Facebook's adaptive LIFO with a CoDel-style trigger): at every dequeue, look at
 * the sojourn time of the oldest waiter. While it is at most `codelTarget` the queue is healthy:
 * serve FIFO, and forget any earlier excursion. When it is above, remember when that was first
 * seen; once it has stayed above for `codelInterval` (no dequeue in between saw it at or below the
 * target, and the queue never emptied) the queue is standing: serve the newest waiter first, whose
 * caller is the most likely to still be waiting for the answer, while the old ones run out their
 * timeouts. The queue returns to FIFO as soon as a dequeue sees the oldest waiter within the
 * target, or the queue empties.
 */
export class WaitQueue<W extends Waiter> {
  readonly capacity: number;
  readonly order: QueueOrder;
  readonly #deque = new Deque<W>();
  readonly #timeout: number;
  readonly #target: number;
  readonly #interval: number;
  readonly #clock: Clock;
  readonly #onLeave: (waiter: W, why: LeaveReason, reason: unknown) => void;
  #timer: Timer | undefined;
  /** When a dequeue first saw the oldest waiter above the target; NaN while healthy. */
  #aboveSince = Number.NaN;
  #lifo: boolean;

  constructor(options: WaitQueueOptions<W>) {
    this.capacity = options.capacity;
    this.order = options.order;
    this.#timeout = options.timeout;
    this.#target = options.codelTarget;
    this.#interval = options.codelInterval;
    this.#clock = options.clock;
    this.#onLeave = options.onLeave;
    this.#lifo = options.order === 'lifo';
  }

  /** Waiters in the queue. */
  get size(): number {
    return this.#deque.size;
  }

  /** True when no more waiters fit. */
  get full(): boolean {
    return this.#deque.size >= this.capacity;
  }

  /** The order the last dequeue served in: `'lifo'` while an adaptive queue is standing. */
  get mode(): 'fifo' | 'lifo' {
    return this.#lifo ? 'lifo' : 'fifo';
  }

  /**
   * Adds a waiter at the tail (the caller checked {@link WaitQueue.full}). With a `signal`, the
   * waiter leaves when it aborts; `signal` must not be aborted already.
   */
  add(waiter: W, signal: AbortSignal | undefined): void {
    const now = this.#clock.now();
    waiter.enqueuedAt = now;
    waiter.deadline = now + this.#timeout;
    waiter.unlisten =
      signal === undefined ? undefined : onAbort(signal, (reason) => this.#leave(waiter, 'abort', reason));
    this.#deque.push(waiter);
    if (this.#timer === undefined && this.#timeout !== Number.POSITIVE_INFINITY) this.#arm(now);
  }

  /** Takes the next waiter to run, in the queue's order, or undefined when empty. */
  next(): W | undefined {
    const deque = this.#deque;
    if (deque.size === 0) return undefined;
    let waiter: W;
    if (this.order === 'fifo') waiter = deque.shift()!;
    else if (this.order === 'lifo') waiter = deque.pop()!;
    else waiter = this.#standing() ? deque.pop()! : deque.shift()!;
    this.#release(waiter);
    return waiter;
  }

  /** Removes every waiter (on close), returning them oldest first; clears the timer. */
  clear(): W[] {
    const all = this.#deque.clear();
    for (const waiter of all) waiter.unlisten?.();
    this.#emptied();
    return all;
  }

  #standing(): boolean {
    const now = this.#clock.now();
    const oldest = this.#deque.peekFirst()!;
    if (now - oldest.enqueuedAt <= this.#target) {
      this.#aboveSince = Number.NaN;
      this.#lifo = false;
      return false;
    }
    if (Number.isNaN(this.#aboveSince)) this.#aboveSince = now;
    this.#lifo = now - this.#aboveSince >= this.#interval;
    return this.#lifo;
  }

  /** Bookkeeping for a waiter that left the deque, by whatever way. */
  #release(waiter: W): void {
    const unlisten = waiter.unlisten;
    if (unlisten !== undefined) {
      waiter.unlisten = undefined;
      unlisten();
    }
    if (this.#deque.size === 0) this.#emptied();
  }

  #emptied(): void {
    if (this.order === 'adaptive-lifo') {
      this.#aboveSince = Number.NaN;
      this.#lifo = false;
    }
    if (this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #leave(waiter: W, why: LeaveReason, reason: unknown): void {
    if (!this.#deque.remove(waiter)) return;
    this.#release(waiter);
    this.#onLeave(waiter, why, reason);
  }

  /** Sets the timer for the head's deadline. */
  #arm(now: number): void {
    const head = this.#deque.peekFirst();
    if (head === undefined) return;
    this.#timer = this.#clock.setTimeout(this.#expire, Math.max(0, head.deadline - now));
  }

  readonly #expire = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    const deque = this.#deque;
    for (;;) {
      const head = deque.peekFirst();
      if (head === undefined || head.deadline > now) break;
      deque.shift();
      this.#release(head);
      this.#onLeave(head, 'timeout', undefined);
    }
    // onLeave may have run user code that queued more waiters and armed the timer already.
    if (this.#timer === undefined && deque.size !== 0) this.#arm(now);
  };
}
