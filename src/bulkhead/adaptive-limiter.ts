import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import { defaultPolicyContext } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { announce, channel, lifecycle } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ClosedError, hasCode, InvalidOptionError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import { type Stopwatch, stopwatch } from '../core/hr-time.js';
import {
  clockOption,
  duration,
  fraction,
  integer,
  knownKeys,
  optionsObject,
  fn as validFn,
} from '../core/validate.js';
import { AIMD_KEYS, type AimdOptions, aimd } from './algorithms/aimd.js';
import { GRADIENT2_KEYS, type Gradient2Options, gradient2 } from './algorithms/gradient2.js';
import { VEGAS_KEYS, type VegasOptions, vegas } from './algorithms/vegas.js';
import type { BulkheadRejectEvent } from './bulkhead.js';
import { BulkheadFullError, type BulkheadRejectReason } from './errors.js';
import { clamp } from './internal/math.js';
import { optionalName, QUEUE_KEYS, queueSettings } from './internal/options.js';
import { SampleWindow, type WindowSettings } from './internal/sample-window.js';
import { type LeaveReason, type QueueOrder, type Waiter, WaitQueue } from './internal/wait-queue.js';
import type { LimitAlgorithm, LimitAlgorithmFactory } from './limit-algorithm.js';

/** The built-in algorithms by name. */
export type LimitAlgorithmName = 'aimd' | 'vegas' | 'gradient2';

/** How samples are grouped before they reach the algorithm; see {@link AdaptiveLimiterOptions.window}. */
export interface SampleWindowOptions {
  /** Shortest window. @default 0 */
  minTime?: Duration;
  /** Longest window. @default '1s' */
  maxTime?: Duration;
  /** Samples a window needs before it is used. @default 10 */
  minSamples?: number;
}

/** Options every adaptive limiter takes, whatever its algorithm. */
export interface AdaptiveLimiterBaseOptions {
  /** The limit to start from. @default 20 */
  initialLimit?: number;
  /** The limit never goes below this. @default 1 */
  minLimit?: number;
  /** The limit never goes above this. @default 1000 */
  maxLimit?: number;
  /** Calls that may wait for a slot (per partition); further calls are rejected at once. @default 0 */
  queue?: number;
  /** How long a call may wait for a slot. @default no limit */
  queueTimeout?: Duration;
  /** Which waiter gets a freed slot; see the bulkhead's `order`. @default 'fifo' */
  order?: QueueOrder;
  /** `'adaptive-lifo'` only; see the bulkhead's `codelTarget`. @default '5ms' */
  codelTarget?: Duration;
  /** `'adaptive-lifo'` only; see the bulkhead's `codelInterval`. @default '100ms' */
  codelInterval?: Duration;
  /**
   * Shares of the limit reserved for named partitions, e.g. `{ live: 0.9, batch: 0.1 }` (each in
   * (0, 1], summing to at most 1). A partition always gets `max(1, ceil(limit × share))` slots,
   * and may borrow any slot left unused while the limiter is under its limit. Run calls in one
   * with {@link AdaptiveLimiter.partition}; calls made on the limiter itself use no partition:
   * they only borrow.
   */
  partitions?: Record<string, number>;
  /** A call that takes longer than this counts as a drop (it is not cancelled). @default none */
  timeout?: Duration;
  /**
   * Which errors mean overload (a drop): the limit shrinks on them. Other errors give no sample
   * (as in Netflix's executors: RTTs are taken from successes only).
   * @default E_TIMEOUT errors, and rejections with cockatiel's `isBulkheadRejectedError` brand or code E_BULKHEAD_FULL
   */
  isDrop?: (error: unknown) => boolean;
  /** Samples faster than this (ms) are ignored: they measure nothing but the event loop. @default 0.1 */
  minRttThreshold?: Duration;
  /**
   * Samples reach the algorithm once per window (Netflix's `WindowedLimit`): the mean RTT, the
   * largest inflight and whether any call dropped. A window closes at the first sample after its
   * end that finds at least `minSamples` samples in it; the next one ends `clamp(2 × lowest RTT,
   * minTime, maxTime)` later. `false` feeds every sample straight to the algorithm, as Netflix's
   * `SimpleLimiter` does: the limit then moves many times per round trip and swings widely
   * under overload.
   * @default { minTime: 0, maxTime: '1s', minSamples: 10 }
   */
  window?: SampleWindowOptions | false;
  /** Name shown in errors, stats and diagnostics. */
  name?: string;
  /** Time source; latency is measured with `performance.now()` when it is `systemClock`. @default systemClock */
  clock?: Clock;
}

/**
 * Options of {@link adaptiveLimiter}: the base options, and the algorithm, either by name with
 * its options alongside (`{ algorithm: 'gradient2', rttTolerance: 2 }`) or as a factory
 * (`{ algorithm: gradient2({ rttTolerance: 2 }) }`, or your own {@link LimitAlgorithmFactory}).
 */
export type AdaptiveLimiterOptions = AdaptiveLimiterBaseOptions &
  (
    | ({ algorithm?: 'vegas' } & VegasOptions)
    | ({ algorithm: 'gradient2' } & Gradient2Options)
    | ({ algorithm: 'aimd' } & AimdOptions)
    | { algorithm: LimitAlgorithmFactory }
  );

/** Snapshot returned by {@link AdaptiveLimiter.stats}. */
export interface AdaptiveLimiterStats {
  name: string | undefined;
  algorithm: string;
  limit: number;
  inflight: number;
  queued: number;
  partitions: Record<string, { share: number; limit: number; inflight: number; queued: number }>;
  /** Totals since creation. */
  totalExecuted: number;
  /** Calls rejected with `E_BULKHEAD_FULL` (full or queue timeout). */
  totalRejected: number;
  totalQueueTimeouts: number;
  totalAborted: number;
  /** Samples that reached the algorithm's window as drops. */
  totalDropped: number;
  /** Calls that gave no sample: other errors, aborted calls, samples under `minRttThreshold`. */
  totalIgnored: number;
  /** Times the limit changed. */
  limitChanges: number;
}

/** Event of `onLimitChange`. */
export interface LimitChangeEvent {
  limit: number;
  previous: number;
}

/** Event of an adaptive limiter's `onReject`. */
export interface LimiterRejectEvent extends BulkheadRejectEvent {
  partition: string | undefined;
}

interface LimiterWaiter extends Waiter {
  readonly slice: Slice;
  readonly fn: (context: IDefaultPolicyContext) => unknown;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * @internal One partition's share, slots and queue. The limiter itself runs in an unnamed one
 * with no share.
 */
export class Slice {
  /** Slots guaranteed to this partition whatever the others hold. */
  guaranteed = 0;
  busy = 0;

  constructor(
    readonly name: string | undefined,
    readonly share: number,
    readonly queue: WaitQueue<LimiterWaiter>,
  ) {}
}

const BASE_KEYS = [
  'algorithm',
  'initialLimit',
  'minLimit',
  'maxLimit',
  ...QUEUE_KEYS,
  'partitions',
  'timeout',
  'isDrop',
  'minRttThreshold',
  'window',
  'name',
  'clock',
] as const;
const ALGORITHMS: Record<
  LimitAlgorithmName,
  { keys: readonly string[]; create: (options: Record<string, unknown>) => LimitAlgorithmFactory }
> = {
  aimd: { keys: AIMD_KEYS, create: aimd },
  vegas: { keys: VEGAS_KEYS, create: vegas },
  gradient2: { keys: GRADIENT2_KEYS, create: gradient2 },
};
const MAX_INT = 2 ** 31 - 1;

const rejectChannel = channel('bulkhead', 'reject');
const limitChannel = channel('bulkhead', 'limit');
const lifecycleChannels = lifecycle('bulkhead');

/** The default `isDrop`: timeouts and rejections by a bulkhead downstream (ours or cockatiel's). */
export function isOverloadError(error: unknown): boolean {
  if (hasCode(error, 'E_TIMEOUT')) return true;
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { isBulkheadRejectedError?: unknown; code?: unknown };
  return e.isBulkheadRejectedError === true || e.code === 'E_BULKHEAD_FULL';
}

/**
 * Creates an adaptive concurrency limiter: a bulkhead whose limit follows the capacity of what it
 * protects, found from latency and drops the way TCP finds a link's capacity, after Netflix's
 * concurrency-limits. Calls over the limit wait in the queue (if any) or are rejected at once
 * with `E_BULKHEAD_FULL`, before they add to the overload.
 *
 * Algorithms: `'vegas'` (default; delay-based, keeps the minimum RTT as its baseline), `'gradient2'`
 * (compares each RTT to a long-term average; for spiky latency), `'aimd'` (loss-based: needs drops,
 * from `timeout` or `isDrop`). See their factories for the exact rules.
 *
 * Implements cockatiel's `IPolicy`. Every call is timed (with `performance.now()` under the
 * system clock), which costs an async frame per call; a fixed {@link bulkhead} does not.
 *
 * @example
 * import { adaptiveLimiter } from 'buttress/bulkhead';
 * const limiter = adaptiveLimiter({ algorithm: 'gradient2', minLimit: 5, maxLimit: 200, partitions: { live: 0.9, batch: 0.1 } });
 * await limiter.partition('live').execute(() => handle(req));
 * console.log(limiter.limit, limiter.inflight);
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function adaptiveLimiter(options?: AdaptiveLimiterOptions): AdaptiveLimiter {
  return new AdaptiveLimiter(options);
}

/** See {@link adaptiveLimiter}. */
export class AdaptiveLimiter implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;

  readonly #name: string | undefined;
  readonly #algorithmName: string;
  readonly #algorithm: LimitAlgorithm;
  readonly #minLimit: number;
  readonly #maxLimit: number;
  readonly #timeout: number;
  readonly #isDrop: (error: unknown) => boolean;
  readonly #minRtt: number;
  readonly #window: SampleWindow | undefined;
  readonly #watch: Stopwatch;
  /** The limiter's own unnamed partition first, then the named ones in declaration order. */
  readonly #slices: Slice[];
  readonly #byName = new Map<string, Slice>();
  readonly #views = new Map<string, LimiterPartition>();
  readonly #partitioned: boolean;

  #limit: number;
  #inflight = 0;
  #started = 0;
  #rejected = 0;
  #timedOut = 0;
  #aborted = 0;
  #dropped = 0;
  #ignored = 0;
  #changes = 0;
  /** Exponentially weighted mean RTT of every completed call, for retryAfter. */
  #meanRtt = 0;
  #dispatching = false;
  #closed = false;

  readonly #successEm = new Emitter<ISuccessEvent>();
  readonly #failureEm = new Emitter<IFailureEvent>();
  readonly #rejectEm = new Emitter<LimiterRejectEvent>();
  readonly #limitEm = new Emitter<LimitChangeEvent>();

  /** Fires with the duration of each call that succeeded (in any partition). */
  readonly onSuccess: Event<ISuccessEvent> = this.#successEm.event;
  /** Fires for each call that failed (in any partition); `handled` is true for drops. */
  readonly onFailure: Event<IFailureEvent> = this.#failureEm.event;
  /** Fires for each call rejected with `E_BULKHEAD_FULL`. */
  readonly onReject: Event<LimiterRejectEvent> = this.#rejectEm.event;
  /** Fires when the limit changes. */
  readonly onLimitChange: Event<LimitChangeEvent> = this.#limitEm.event;

  constructor(options?: AdaptiveLimiterOptions) {
    const opts = optionsObject(options) as Record<string, unknown>;
    const algorithm = opts.algorithm ?? 'vegas';
    let factory: LimitAlgorithmFactory;
    if (typeof algorithm === 'string' && Object.hasOwn(ALGORITHMS, algorithm)) {
      const entry = ALGORITHMS[algorithm as LimitAlgorithmName];
      knownKeys(opts, [...BASE_KEYS, ...entry.keys]);
      const params: Record<string, unknown> = {};
      for (const key of entry.keys) if (opts[key] !== undefined) params[key] = opts[key];
      factory = entry.create(params);
    } else if (
      typeof algorithm === 'object' &&
      algorithm !== null &&
      typeof (algorithm as LimitAlgorithmFactory).create === 'function'
    ) {
      knownKeys(opts, BASE_KEYS);
      factory = algorithm as LimitAlgorithmFactory;
    } else {
      throw new InvalidOptionError(
        'algorithm',
        algorithm,
        "'aimd', 'vegas', 'gradient2' or a LimitAlgorithmFactory such as gradient2({...})",
      );
    }

    this.#minLimit = integer(opts.minLimit, 'minLimit', 1, MAX_INT, 1);
    this.#maxLimit = integer(
      opts.maxLimit,
      'maxLimit',
      this.#minLimit,
      MAX_INT,
      Math.max(1000, this.#minLimit),
    );
    const initial = integer(
      opts.initialLimit,
      'initialLimit',
      this.#minLimit,
      this.#maxLimit,
      clamp(20, this.#minLimit, this.#maxLimit),
    );
    this.#limit = initial;
    const settings = queueSettings(opts);
    this.#timeout =
      opts.timeout === undefined ? Number.POSITIVE_INFINITY : duration(opts.timeout, 'timeout', undefined, 0);
    this.#isDrop = validFn(opts.isDrop, 'isDrop', isOverloadError);
    this.#minRtt = duration(opts.minRttThreshold, 'minRttThreshold', 0.1, 0);
    this.#window = windowFor(opts.window);
    this.#name = optionalName(opts.name);
    const clock = clockOption(opts.clock);
    this.#watch = stopwatch(clock);

    this.#algorithmName = String(factory.name);
    const created = factory.create({
      initialLimit: initial,
      minLimit: this.#minLimit,
      maxLimit: this.#maxLimit,
    });
    if (typeof created !== 'object' || created === null || typeof created.update !== 'function') {
      throw new InvalidOptionError('algorithm', factory, 'a factory whose create() returns a LimitAlgorithm');
    }
    this.#algorithm = created;

    const makeQueue = () =>
      new WaitQueue<LimiterWaiter>({
        capacity: settings.queue,
        order: settings.order,
        timeout: settings.queueTimeout,
        codelTarget: settings.codelTarget,
        codelInterval: settings.codelInterval,
        clock,
        onLeave: this.#onLeave,
      });
    this.#slices = [new Slice(undefined, 0, makeQueue())];
    const partitions = opts.partitions;
    if (partitions !== undefined) {
      if (typeof partitions !== 'object' || partitions === null || Array.isArray(partitions)) {
        throw new InvalidOptionError(
          'partitions',
          partitions,
          'an object of shares, e.g. { live: 0.9, batch: 0.1 }',
        );
      }
      let total = 0;
      for (const [name, share] of Object.entries(partitions)) {
        fraction(share, `partitions.${name}`);
        total += share;
        const slice = new Slice(name, share, makeQueue());
        this.#slices.push(slice);
        this.#byName.set(name, slice);
      }
      if (this.#byName.size === 0) {
        throw new InvalidOptionError('partitions', partitions, 'at least one partition');
      }
      if (total > 1 + 1e-9) {
        throw new InvalidOptionError('partitions', partitions, 'shares summing to at most 1');
      }
    }
    this.#partitioned = this.#byName.size > 0;
    this.#resize();
    announce(lifecycleChannels.create, 'adaptive-limiter', this);
  }

  /** The limiter's name, if it was given one. */
  get name(): string | undefined {
    return this.#name;
  }

  /** The current concurrency limit. */
  get limit(): number {
    return this.#limit;
  }

  /** Calls running now (in every partition). */
  get inflight(): number {
    return this.#inflight;
  }

  /** Calls waiting now (in every partition). */
  get queued(): number {
    let n = 0;
    for (const slice of this.#slices) n += slice.queue.size;
    return n;
  }

  /**
   * Runs `fn` under the limit, in no partition (with partitions configured, such calls only
   * borrow slots the partitions leave unused).
   * @throws {BulkheadFullError} `E_BULKHEAD_FULL` when over the limit with a full queue, or after `queueTimeout`.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts before the call starts.
   * @throws {ClosedError} `E_CLOSED` after {@link AdaptiveLimiter.close}.
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return this.#execute(this.#slices[0]!, fn, signal);
  }

  /**
   * The policy of one partition: `limiter.partition('live').execute(fn, signal)`.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` when `name` is not a configured partition.
   */
  partition(name: string): LimiterPartition {
    let view = this.#views.get(name);
    if (view === undefined) {
      const slice = this.#byName.get(name);
      if (slice === undefined) {
        throw new InvalidOptionError(
          'partition',
          name,
          this.#partitioned
            ? `one of ${[...this.#byName.keys()].map((n) => `'${n}'`).join(', ')}`
            : 'no partition: none are configured',
        );
      }
      view = new LimiterPartition(this, slice, (fn, signal) => this.#execute(slice, fn, signal));
      this.#views.set(name, view);
    }
    return view;
  }

  #execute<T>(
    slice: Slice,
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    if (this.#closed) return Promise.reject(new ClosedError(this.#what()));
    // Waiters exist only while their partition cannot run (dispatch runs whenever that changes),
    // so a caller that can run is never jumping a queue.
    if (this.#inflight < this.#limit || slice.busy < slice.guaranteed) {
      return this.#run(slice, fn, signal === undefined ? defaultPolicyContext : { signal });
    }
    const queue = slice.queue;
    if (queue.full) return Promise.reject(this.#reject('full', slice, queue.size + 1));
    return new Promise<T>((resolve, reject) => {
      const waiter: LimiterWaiter = {
        dequeIndex: -1,
        enqueuedAt: 0,
        deadline: 0,
        unlisten: undefined,
        slice,
        fn,
        signal,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      queue.add(waiter, signal);
    });
  }

  async #run<T>(
    slice: Slice,
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T> {
    const inflight = ++this.#inflight;
    slice.busy++;
    this.#started++;
    const start = this.#watch();
    let value: T;
    try {
      value = await fn(context);
    } catch (error) {
      const rtt = this.#watch() - start;
      let drop = false;
      if (!context.signal.aborted) {
        try {
          drop = this.#isDrop(error) === true;
        } catch {
          drop = false;
        }
      }
      this.#complete(slice, rtt, inflight, drop, !drop, start);
      if (this.#failureEm.size !== 0) {
        this.#failureEm.emit({ duration: rtt, handled: drop, reason: { error: error as Error } });
      }
      throw error;
    }
    const rtt = this.#watch() - start;
    this.#complete(slice, rtt, inflight, false, false, start);
    if (this.#successEm.size !== 0) this.#successEm.emit({ duration: rtt });
    return value;
  }

  /** Frees the slot, feeds the sample, and hands free slots to waiters. */
  #complete(
    slice: Slice,
    rtt: number,
    inflight: number,
    drop: boolean,
    ignore: boolean,
    start: number,
  ): void {
    this.#inflight--;
    slice.busy--;
    this.#meanRtt = this.#meanRtt === 0 ? rtt : this.#meanRtt + 0.2 * (rtt - this.#meanRtt);
    const late = rtt > this.#timeout;
    if (ignore && !late) {
      this.#ignored++;
    } else if (rtt < this.#minRtt) {
      this.#ignored++;
    } else {
      const dropped = drop || late;
      if (dropped) this.#dropped++;
      const window = this.#window;
      if (window === undefined) {
        this.#update(this.#algorithm.update(rtt, inflight, dropped));
      } else if (window.add(rtt, inflight, dropped, start + rtt)) {
        this.#update(this.#algorithm.update(window.rtt, window.inflight, window.didDrop));
      }
    }
    this.#dispatch();
  }

  #update(estimate: number): void {
    const next = Number.isFinite(estimate)
      ? clamp(Math.floor(estimate), this.#minLimit, this.#maxLimit)
      : this.#limit;
    if (next === this.#limit) return;
    const previous = this.#limit;
    this.#limit = next;
    this.#changes++;
    this.#resize();
    if (this.#limitEm.size !== 0) this.#limitEm.emit({ limit: next, previous });
    if (limitChannel.hasSubscribers) limitChannel.publish({ name: this.#name, limit: next, previous });
  }

  /** Recomputes each partition's guaranteed slots, as Netflix does: `max(1, ceil(limit × share))`. */
  #resize(): void {
    for (let i = 1; i < this.#slices.length; i++) {
      const slice = this.#slices[i]!;
      // The epsilon keeps 30 × 0.1 = 3.0000000000000004 from rounding up to 4.
      slice.guaranteed = Math.max(1, Math.ceil(this.#limit * slice.share - 1e-9));
    }
  }

  /**
   * Hands free slots to waiters. A partition under its guaranteed share goes first; otherwise,
   * while the limiter is under its limit, the partition using the smallest part of its share.
   */
  #dispatch(): void {
    if (this.#dispatching || this.#closed) return;
    this.#dispatching = true;
    try {
      for (;;) {
        const slice = this.#partitioned ? this.#pick() : this.#pickSingle();
        if (slice === undefined) return;
        const waiter = slice.queue.next()!;
        const context = waiter.signal === undefined ? defaultPolicyContext : { signal: waiter.signal };
        waiter.resolve(this.#run(slice, waiter.fn, context));
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #pickSingle(): Slice | undefined {
    const slice = this.#slices[0]!;
    return slice.queue.size !== 0 && this.#inflight < this.#limit ? slice : undefined;
  }

  #pick(): Slice | undefined {
    const slices = this.#slices;
    let best: Slice | undefined;
    let bestUse = Number.POSITIVE_INFINITY;
    for (let i = 1; i < slices.length; i++) {
      const slice = slices[i]!;
      if (slice.queue.size !== 0 && slice.busy < slice.guaranteed) {
        const use = slice.busy / slice.guaranteed;
        if (use < bestUse) {
          best = slice;
          bestUse = use;
        }
      }
    }
    if (best !== undefined || this.#inflight >= this.#limit) return best;
    for (let i = 1; i < slices.length; i++) {
      const slice = slices[i]!;
      if (slice.queue.size !== 0) {
        const use = slice.busy / slice.guaranteed;
        if (use < bestUse) {
          best = slice;
          bestUse = use;
        }
      }
    }
    // Calls in no partition borrow last.
    if (best === undefined && slices[0]!.queue.size !== 0) best = slices[0];
    return best;
  }

  readonly #onLeave = (waiter: LimiterWaiter, why: LeaveReason, reason: unknown): void => {
    if (why === 'abort') {
      this.#aborted++;
      waiter.reject(new AbortedError(reason));
      return;
    }
    this.#timedOut++;
    const slice = waiter.slice;
    waiter.reject(this.#reject('queue-timeout', slice, slice.queue.size + 1));
  };

  #reject(reason: BulkheadRejectReason, slice: Slice, position: number): BulkheadFullError {
    this.#rejected++;
    // Little's law: `limit` slots each held for about the mean RTT free up limit/RTT per ms.
    const retryAfter = Math.ceil((this.#meanRtt * position) / this.#limit);
    const partition = slice.name;
    if (this.#rejectEm.size !== 0) this.#rejectEm.emit({ reason, retryAfter, partition });
    if (rejectChannel.hasSubscribers) {
      rejectChannel.publish({
        kind: 'adaptive',
        name: this.#name,
        reason,
        retryAfter,
        limit: this.#limit,
        partition,
      });
    }
    return new BulkheadFullError(reason, retryAfter, this.#limit, this.#name, partition);
  }

  #what(): string {
    return this.#name ? `Adaptive limiter "${this.#name}"` : 'Adaptive limiter';
  }

  /** Counts and gauges as a plain object. */
  stats(): AdaptiveLimiterStats {
    const partitions: AdaptiveLimiterStats['partitions'] = {};
    for (const [name, slice] of this.#byName) {
      partitions[name] = {
        share: slice.share,
        limit: slice.guaranteed,
        inflight: slice.busy,
        queued: slice.queue.size,
      };
    }
    return {
      name: this.#name,
      algorithm: this.#algorithmName,
      limit: this.#limit,
      inflight: this.#inflight,
      queued: this.queued,
      partitions,
      totalExecuted: this.#started,
      totalRejected: this.#rejected,
      totalQueueTimeouts: this.#timedOut,
      totalAborted: this.#aborted,
      totalDropped: this.#dropped,
      totalIgnored: this.#ignored,
      limitChanges: this.#changes,
    };
  }

  /**
   * Rejects every waiting call with `E_CLOSED`, and every later call too; calls already running
   * finish normally. Leaves no timer behind.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    announce(lifecycleChannels.close, 'adaptive-limiter', this);
    for (const slice of this.#slices) {
      for (const waiter of slice.queue.clear()) waiter.reject(new ClosedError(this.#what()));
    }
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * One partition of an {@link AdaptiveLimiter}, as a cockatiel policy. Its events are the
 * limiter's (they fire for calls in every partition).
 */
export class LimiterPartition implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;
  readonly #limiter: AdaptiveLimiter;
  readonly #slice: Slice;
  readonly #execute: <T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal: AbortSignal | undefined,
  ) => Promise<T>;

  readonly onSuccess: Event<ISuccessEvent>;
  readonly onFailure: Event<IFailureEvent>;

  /** @internal Use {@link AdaptiveLimiter.partition}. */
  constructor(
    limiter: AdaptiveLimiter,
    slice: Slice,
    execute: <T>(
      fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
      signal: AbortSignal | undefined,
    ) => Promise<T>,
  ) {
    this.#limiter = limiter;
    this.#slice = slice;
    this.#execute = execute;
    this.onSuccess = limiter.onSuccess;
    this.onFailure = limiter.onFailure;
  }

  /** The partition's name. */
  get name(): string {
    return this.#slice.name!;
  }

  /** The partition's share of the limit. */
  get share(): number {
    return this.#slice.share;
  }

  /** Slots guaranteed to this partition now: `max(1, ceil(limiter.limit × share))`. */
  get limit(): number {
    return this.#slice.guaranteed;
  }

  /** This partition's calls running now. */
  get inflight(): number {
    return this.#slice.busy;
  }

  /** This partition's calls waiting now. */
  get queued(): number {
    return this.#slice.queue.size;
  }

  /** The limiter this partition belongs to. */
  get limiter(): AdaptiveLimiter {
    return this.#limiter;
  }

  /** Runs `fn` in this partition; see {@link AdaptiveLimiter.execute}. */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return this.#execute(fn, signal);
  }
}

function windowFor(value: unknown): SampleWindow | undefined {
  if (value === false) return undefined;
  const opts = optionsObject(value as SampleWindowOptions | undefined, 'window');
  knownKeys(opts, ['minTime', 'maxTime', 'minSamples'], 'window');
  const minTime = duration(opts.minTime, 'window.minTime', 0, 0);
  const settings: WindowSettings = {
    minTime,
    maxTime: duration(opts.maxTime, 'window.maxTime', Math.max(1000, minTime), minTime),
    minSamples: integer(opts.minSamples, 'window.minSamples', 1, 1_000_000, 10),
  };
  return new SampleWindow(settings);
}
