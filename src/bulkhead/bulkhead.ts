import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import { defaultPolicyContext } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { announce, channel, lifecycle } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ClosedError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import { type Stopwatch, stopwatch } from '../core/hr-time.js';
import { clockOption, integer, knownKeys, optionsObject } from '../core/validate.js';
import { BulkheadFullError, type BulkheadRejectReason } from './errors.js';
import { optionalName, QUEUE_KEYS, queueSettings } from './internal/options.js';
import { type LeaveReason, type QueueOrder, type Waiter, WaitQueue } from './internal/wait-queue.js';

export type { QueueOrder } from './internal/wait-queue.js';

/** Options of {@link bulkhead}. */
export interface BulkheadOptions {
  /** Calls that may run at once. An integer >= 1. */
  limit: number;
  /** Calls that may wait for a slot; further calls are rejected at once. @default 0 */
  queue?: number;
  /** How long a call may wait for a slot before it is rejected (`reason: 'queue-timeout'`). @default no limit */
  queueTimeout?: Duration;
  /**
   * Which waiter gets a freed slot: `'fifo'` the oldest, `'lifo'` the newest, `'adaptive-lifo'`
   * the oldest until a standing queue forms, then the newest (see {@link BulkheadOptions.codelTarget}).
   * @default 'fifo'
   */
  order?: QueueOrder;
  /**
   * `'adaptive-lifo'` only: the queue is standing once the oldest waiter's wait, as seen at each
   * dequeue, has stayed above `codelTarget` for `codelInterval`. It is FIFO again as soon as a
   * dequeue sees the oldest waiter within the target, or the queue empties. @default '5ms'
   */
  codelTarget?: Duration;
  /** `'adaptive-lifo'` only: see {@link BulkheadOptions.codelTarget}. @default '100ms' */
  codelInterval?: Duration;
  /** Name shown in errors, stats and diagnostics. */
  name?: string;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Snapshot returned by {@link Bulkhead.stats}. */
export interface BulkheadStats {
  name: string | undefined;
  limit: number;
  /** Calls running now. */
  executing: number;
  /** Calls waiting now. */
  queued: number;
  /** The `queue` option. */
  queueCapacity: number;
  order: QueueOrder;
  /** The order the last dequeue served in (`'lifo'` while an adaptive queue is standing). */
  mode: 'fifo' | 'lifo';
  /** Recent mean execution time in ms (an exponentially weighted average of sampled calls). */
  meanExecutionTime: number;
  /** Totals since creation. */
  totalExecuted: number;
  /** Calls rejected with `E_BULKHEAD_FULL` (full or queue timeout). */
  totalRejected: number;
  /** Of those, the ones that waited out their `queueTimeout`. */
  totalQueueTimeouts: number;
  /** Waiters whose signal aborted. */
  totalAborted: number;
}

/** Event of `onReject`. */
export interface BulkheadRejectEvent {
  reason: BulkheadRejectReason;
  retryAfter: number;
}

interface BulkheadWaiter extends Waiter {
  readonly fn: (context: IDefaultPolicyContext) => unknown;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** One call in this many is timed for the retryAfter estimate (a power of two, as a mask). */
const SAMPLE_MASK = 15;
/** Weight of a new sample in the mean execution time. */
const EWMA_WEIGHT = 0.2;

const rejectChannel = channel('bulkhead', 'reject');
const lifecycleChannels = lifecycle('bulkhead');

/**
 * Creates a bulkhead: at most `limit` calls run at once, up to `queue` more wait for a slot, and
 * the rest are rejected at once with `E_BULKHEAD_FULL`, so a slow dependency cannot take every
 * connection, socket or worker of the process with it.
 *
 * Implements cockatiel's `IPolicy`, so it composes with cockatiel's policies through `wrap()`,
 * and its rejections carry cockatiel's `isBulkheadRejectedError` brand.
 *
 * A call that finds a free slot costs one `.then()` on its own promise, with handlers bound once
 * per bulkhead: no closure, no async frame, no timer. Waiting calls cost a promise and a queue
 * entry; the queue is a ring buffer with O(1) removal, and one timer serves every queue timeout.
 *
 * @example
 * import { bulkhead } from 'buttress/bulkhead';
 * const db = bulkhead({ limit: 10, queue: 100, queueTimeout: '2s', order: 'adaptive-lifo' });
 * const rows = await db.execute(({ signal }) => pool.query({ text: sql, signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function bulkhead(options: BulkheadOptions): Bulkhead {
  return new Bulkhead(options);
}

/** See {@link bulkhead}. */
export class Bulkhead implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;

  readonly #name: string | undefined;
  readonly #limit: number;
  /** The limit while open, 0 once closed: the hot path compares against it and nothing else. */
  #cap: number;
  readonly #queue: WaitQueue<BulkheadWaiter>;
  readonly #watch: Stopwatch;
  #executing = 0;
  #started = 0;
  #meanMs = 0;
  #rejected = 0;
  #timedOut = 0;
  #aborted = 0;
  #dispatching = false;
  #closed = false;

  readonly #successEm = new Emitter<ISuccessEvent>();
  readonly #failureEm = new Emitter<IFailureEvent>();
  readonly #rejectEm = new Emitter<BulkheadRejectEvent>();

  /** Fires with the duration of each call that succeeded. */
  readonly onSuccess: Event<ISuccessEvent> = this.#successEm.event;
  /** Fires for each call that failed (`handled` is false: a bulkhead handles no error, it passes them on). */
  readonly onFailure: Event<IFailureEvent> = this.#failureEm.event;
  /** Fires for each call rejected with `E_BULKHEAD_FULL`. */
  readonly onReject: Event<BulkheadRejectEvent> = this.#rejectEm.event;

  constructor(options: BulkheadOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['limit', ...QUEUE_KEYS, 'name', 'clock']);
    this.#limit = integer(opts.limit, 'limit', 1, 2 ** 31 - 1);
    this.#cap = this.#limit;
    const settings = queueSettings(opts);
    this.#name = optionalName(opts.name);
    const clock = clockOption(opts.clock);
    this.#watch = stopwatch(clock);
    this.#queue = new WaitQueue<BulkheadWaiter>({
      capacity: settings.queue,
      order: settings.order,
      timeout: settings.queueTimeout,
      codelTarget: settings.codelTarget,
      codelInterval: settings.codelInterval,
      clock,
      onLeave: this.#onLeave,
    });
    announce(lifecycleChannels.create, 'bulkhead', this);
  }

  /** The bulkhead's name, if it was given one. */
  get name(): string | undefined {
    return this.#name;
  }

  /** Calls that may run at once. */
  get limit(): number {
    return this.#limit;
  }

  /** Calls running now. */
  get executing(): number {
    return this.#executing;
  }

  /** Calls waiting for a slot now. */
  get queued(): number {
    return this.#queue.size;
  }

  /** Free execution slots (cockatiel's `BulkheadPolicy.executionSlots`). */
  get executionSlots(): number {
    return Math.max(0, this.#cap - this.#executing);
  }

  /** Free queue places (cockatiel's `BulkheadPolicy.queueSlots`). */
  get queueSlots(): number {
    return this.#closed ? 0 : this.#queue.capacity - this.#queue.size;
  }

  /**
   * Runs `fn` in a free slot, or once one frees up.
   * @throws {BulkheadFullError} `E_BULKHEAD_FULL` when every slot and queue place is taken
   *   (`reason: 'full'`), or when the call waited `queueTimeout` (`reason: 'queue-timeout'`).
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts before the call starts.
   * @throws {ClosedError} `E_CLOSED` after {@link Bulkhead.close}.
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    if (this.#executing < this.#cap) {
      let context = defaultPolicyContext;
      if (signal !== undefined) {
        if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
        context = { signal };
      }
      this.#executing++;
      return this.#run(fn, context);
    }
    return this.#wait(fn, signal);
  }

  /** Runs `fn` in a slot already counted in `#executing`; frees the slot when it settles. */
  #run<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T> {
    if ((this.#started++ & SAMPLE_MASK) === 0 || this.#successEm.size !== 0 || this.#failureEm.size !== 0) {
      return this.#runTimed(fn, context);
    }
    let result: PromiseLike<T> | T;
    try {
      result = fn(context);
    } catch (error) {
      this.#release();
      return Promise.reject(error);
    }
    if (result instanceof Promise) return result.then(this.#ok, this.#err) as Promise<T>;
    if (isThenable(result)) return Promise.resolve(result).then(this.#ok, this.#err) as Promise<T>;
    this.#release();
    return Promise.resolve(result as T);
  }

  readonly #ok = (value: unknown): unknown => {
    this.#release();
    return value;
  };

  readonly #err = (error: unknown): never => {
    this.#release();
    throw error;
  };

  /** The slow path: timed (a sample for retryAfter, or someone listens to onSuccess/onFailure). */
  async #runTimed<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T> {
    const start = this.#watch();
    let value: T;
    try {
      value = await fn(context);
    } catch (error) {
      const elapsed = this.#sample(start);
      this.#release();
      if (this.#failureEm.size !== 0) {
        this.#failureEm.emit({ duration: elapsed, handled: false, reason: { error: error as Error } });
      }
      throw error;
    }
    const elapsed = this.#sample(start);
    this.#release();
    if (this.#successEm.size !== 0) this.#successEm.emit({ duration: elapsed });
    return value;
  }

  #sample(start: number): number {
    const elapsed = Math.max(0, this.#watch() - start);
    this.#meanMs = this.#meanMs === 0 ? elapsed : this.#meanMs + EWMA_WEIGHT * (elapsed - this.#meanMs);
    return elapsed;
  }

  #release(): void {
    if (--this.#executing < this.#cap && this.#queue.size !== 0) this.#dispatch();
  }

  /** Hands free slots to waiters. Not re-entered: a waiter failing synchronously frees its slot into this loop. */
  #dispatch(): void {
    if (this.#dispatching) return;
    this.#dispatching = true;
    try {
      while (this.#executing < this.#cap) {
        const waiter = this.#queue.next();
        if (waiter === undefined) break;
        this.#executing++;
        const context = waiter.signal === undefined ? defaultPolicyContext : { signal: waiter.signal };
        waiter.resolve(this.#run(waiter.fn, context));
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #wait<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    if (this.#closed)
      return Promise.reject(new ClosedError(this.#name ? `Bulkhead "${this.#name}"` : 'Bulkhead'));
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    const queue = this.#queue;
    if (queue.full) return Promise.reject(this.#reject('full', queue.size + 1));
    return new Promise<T>((resolve, reject) => {
      const waiter: BulkheadWaiter = {
        dequeIndex: -1,
        enqueuedAt: 0,
        deadline: 0,
        unlisten: undefined,
        fn,
        signal,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      queue.add(waiter, signal);
    });
  }

  readonly #onLeave = (waiter: BulkheadWaiter, why: LeaveReason, reason: unknown): void => {
    if (why === 'abort') {
      this.#aborted++;
      waiter.reject(new AbortedError(reason));
    } else {
      this.#timedOut++;
      waiter.reject(this.#reject('queue-timeout', this.#queue.size + 1));
    }
  };

  /** Counts, reports and builds a rejection for a caller who would be `position`-th in the queue. */
  #reject(reason: BulkheadRejectReason, position: number): BulkheadFullError {
    this.#rejected++;
    const retryAfter = Math.ceil((this.#meanMs * position) / this.#limit);
    if (this.#rejectEm.size !== 0) this.#rejectEm.emit({ reason, retryAfter });
    if (rejectChannel.hasSubscribers) {
      rejectChannel.publish({ kind: 'bulkhead', name: this.#name, reason, retryAfter, limit: this.#limit });
    }
    return new BulkheadFullError(reason, retryAfter, this.#limit, this.#name);
  }

  /** Counts and gauges as a plain object. */
  stats(): BulkheadStats {
    return {
      name: this.#name,
      limit: this.#limit,
      executing: this.#executing,
      queued: this.#queue.size,
      queueCapacity: this.#queue.capacity,
      order: this.#queue.order,
      mode: this.#queue.mode,
      meanExecutionTime: this.#meanMs,
      totalExecuted: this.#started,
      totalRejected: this.#rejected,
      totalQueueTimeouts: this.#timedOut,
      totalAborted: this.#aborted,
    };
  }

  /**
   * Rejects every waiting call with `E_CLOSED`, and every later call too; calls already running
   * finish normally. Leaves no timer behind.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    announce(lifecycleChannels.close, 'bulkhead', this);
    this.#cap = 0;
    const what = this.#name ? `Bulkhead "${this.#name}"` : 'Bulkhead';
    for (const waiter of this.#queue.clear()) waiter.reject(new ClosedError(what));
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}
