import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import type { Clock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ButtressError, InvalidOptionError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import {
  ContextFactory,
  canAbort,
  kExecute,
  kSource,
  type LayerContext,
  listen,
  type SignalSource,
} from '../core/signals.js';
import { sharedTimerWheel, TimerEntry, type TimerWheel } from '../core/timer-wheel.js';
import {
  clockOption,
  duration,
  integer,
  knownKeys,
  nonEmptyString,
  optionsObject,
} from '../core/validate.js';
import { LatencyHistogram } from './internal/latency-histogram.js';
import { LazySignal } from './internal/signals.js';
import { RetryBudget, type RetryBudgetLike } from './retry-budget.js';

/**
 * Hedge after a percentile of recent latency instead of a fixed delay. The latencies are those of
 * winning attempts (each from its own start), kept in a fixed log-bucketed histogram.
 */
export interface PercentileDelay {
  /** The quantile, between 0 and 1 exclusive, e.g. 0.95. */
  percentile: number;
  /** Never hedge sooner than this. @default 1 (ms) */
  min?: Duration;
  /** Never wait longer than this. @default '1m' */
  max?: Duration;
  /** Samples needed before the percentile is trusted. @default 20 */
  minSamples?: number;
  /** Delay used until there are `minSamples` samples. @default no hedging until then */
  initial?: Duration;
  /** How far back latencies count (between half and all of it). @default '30s' */
  window?: Duration;
}

/** Options of {@link hedge}. */
export interface HedgeOptions {
  /** How long to wait for an attempt before starting the next: a duration or a {@link PercentileDelay}. */
  delay: Duration | PercentileDelay;
  /** Extra attempts per call at most. @default 1 */
  maxHedges?: number;
  /**
   * Each call deposits into it, each hedge withdraws; no hedge is started while it is spent.
   * @default a private `retryBudget()` (20% of calls plus 10 per second)
   */
  budget?: RetryBudgetLike;
  /** Name shown in diagnostics (metrics are labelled by it). */
  name?: string;
  /** Time source, and the timer wheel it drives. @default systemClock */
  clock?: Clock;
}

/** Context passed to each attempt. */
export interface IHedgeContext extends IDefaultPolicyContext {
  /** 0 for the first attempt, then 1, 2, ... for hedges. */
  attempt: number;
}

/** Event of {@link Hedge.onHedge}. */
export interface HedgeEvent {
  /** The attempt being started (1 for the first hedge). */
  attempt: number;
  /** The delay that passed without an answer, in ms. */
  delay: number;
}

/** Snapshot returned by {@link Hedge.stats}. */
export interface HedgeStats {
  calls: number;
  /** Extra attempts started. */
  hedges: number;
  /** Calls won by an extra attempt. */
  hedgeWins: number;
  /** Hedges not started because the budget was spent. */
  budgetRefusals: number;
  /** The delay a call started now would use, in ms (Infinity: no hedging yet). */
  delay: number;
}

/** Signal reason of attempts that lost the race: shared and stackless, losers are routine. */
const lostReason: ButtressError = Object.freeze(
  new ButtressError('E_ABORTED', 'Another attempt of this hedged call finished first', { noStack: true }),
) as ButtressError;

const hedgeChannel = channel('retry', 'hedge');
const budgetChannel = channel('retry', 'budget-exhausted');
const MAX_DELAY = 2 ** 31 - 1;

interface Core {
  readonly name: string | undefined;
  readonly maxHedges: number;
  readonly contexts: ContextFactory;
  readonly budget: RetryBudgetLike;
  readonly clock: Clock;
  readonly wheel: TimerWheel;
  readonly histogram: LatencyHistogram | undefined;
  readonly success: Emitter<ISuccessEvent>;
  readonly failure: Emitter<IFailureEvent>;
  readonly hedge: Emitter<HedgeEvent>;
  calls: number;
  hedges: number;
  hedgeWins: number;
  budgetRefusals: number;
}

/** One hedged call: its attempts, the timer of its next hedge, and its settlement. */
class HedgeCall<T> extends TimerEntry {
  readonly core: Core;
  readonly fn: (context: never) => PromiseLike<T> | T;
  /** Hand `fn` a bare layer context (inside buttress's `wrap()`) rather than a user context. */
  readonly bare: boolean;
  readonly delay: number;
  readonly start: number;
  readonly signals: LazySignal[] = [];
  readonly starts: number[] = [];
  inflight = 0;
  settled = false;
  lastError: unknown = undefined;
  resolve!: (value: T) => void;
  reject!: (error: unknown) => void;
  unlinkCaller: (() => void) | undefined = undefined;

  constructor(core: Core, fn: (context: never) => PromiseLike<T> | T, delay: number, bare: boolean) {
    super();
    this.core = core;
    this.fn = fn;
    this.bare = bare;
    this.delay = delay;
    this.start = core.clock.now();
  }

  launch(attempt: number): void {
    const lazy = new LazySignal(undefined);
    this.signals.push(lazy);
    this.starts.push(this.core.clock.now());
    this.inflight++;
    const target: LayerContext = { attempt, [kSource]: lazy };
    const context = (this.bare ? target : this.core.contexts.create(target)) as never;
    let result: PromiseLike<T> | T;
    try {
      result = this.fn(context);
    } catch (error) {
      this.failed(error);
      return;
    }
    if (
      result !== null &&
      typeof result === 'object' &&
      typeof (result as PromiseLike<T>).then === 'function'
    ) {
      (result as PromiseLike<T>).then(
        (value) => this.succeeded(attempt, value),
        (error: unknown) => this.failed(error),
      );
    } else {
      this.succeeded(attempt, result as T);
    }
  }

  /** The hedge delay passed with no winner yet. */
  fire(): void {
    if (this.settled) return;
    const core = this.core;
    const attempt = this.signals.length;
    if (!core.budget.tryWithdraw()) {
      core.budgetRefusals++;
      if (budgetChannel.hasSubscribers) budgetChannel.publish({ policy: 'hedge', name: core.name, attempt });
      return;
    }
    core.hedges++;
    if (core.hedge.size !== 0) core.hedge.emit({ attempt, delay: this.delay });
    if (hedgeChannel.hasSubscribers) hedgeChannel.publish({ name: core.name, attempt, delay: this.delay });
    if (attempt < core.maxHedges) core.wheel.insert(this, this.delay);
    this.launch(attempt);
  }

  succeeded(attempt: number, value: T): void {
    if (this.settled) return;
    const core = this.core;
    const now = core.clock.now();
    core.histogram?.record(now - this.starts[attempt]!, now);
    if (attempt > 0) core.hedgeWins++;
    this.finish(attempt);
    if (core.success.size !== 0) core.success.emit({ duration: now - this.start });
    this.resolve(value);
  }

  failed(error: unknown): void {
    if (this.settled) return;
    this.lastError = error;
    // Hedging answers latency, not errors: once every running attempt has failed, so has the call.
    if (--this.inflight > 0) return;
    this.finish(-1);
    const core = this.core;
    if (core.failure.size !== 0) {
      core.failure.emit({
        duration: core.clock.now() - this.start,
        handled: false,
        reason: { error: error as Error },
      });
    }
    this.reject(error);
  }

  callerAborted(reason: unknown): void {
    if (this.settled) return;
    this.unlinkCaller = undefined;
    for (const lazy of this.signals) lazy.abort(reason);
    this.finish(-1);
    this.reject(new AbortedError(reason));
  }

  /** Settles: stops the hedge timer and aborts the signal of every attempt but the winner. */
  finish(winner: number): void {
    this.settled = true;
    this.core.wheel.cancel(this);
    const unlink = this.unlinkCaller;
    if (unlink !== undefined) {
      this.unlinkCaller = undefined;
      unlink();
    }
    const signals = this.signals;
    for (let i = 0; i < signals.length; i++) if (i !== winner) signals[i]!.abort(lostReason);
  }
}

/**
 * Creates a hedging policy: when an attempt has not answered after `delay`, a backup attempt
 * starts beside it (up to `maxHedges` of them, one per `delay`); the first attempt to succeed
 * wins and every other attempt's `signal` aborts. Hedges withdraw from a retry budget, so they
 * stop when the upstream is slow for everyone rather than doubling its load.
 *
 * Hedging answers tail latency, not errors (as Finagle's backup requests): an attempt that fails
 * does not start a hedge early; the call fails once every attempt started so far has failed,
 * with the error of the last one to fail. Put a retry outside the hedge to retry errors.
 * The callee must be safe to run more than once (idempotent reads).
 *
 * @example
 * import { hedge, retryBudget } from 'buttress/retry';
 * const hedged = hedge({ delay: { percentile: 0.95, initial: '50ms' }, budget: retryBudget({ ratio: 0.05 }) });
 * const row = await hedged.execute(({ signal }) => replica.query(sql, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function hedge(options: HedgeOptions): Hedge {
  return new Hedge(options);
}

/** See {@link hedge}. */
export class Hedge implements IPolicy<IHedgeContext, never> {
  declare readonly _altReturn: never;

  readonly #core: Core;
  readonly #fixedDelay: number | undefined;
  readonly #percentile: number;
  readonly #min: number;
  readonly #max: number;
  readonly #minSamples: number;
  readonly #initial: number;

  /** Fires with the duration of each call that succeeded. */
  readonly onSuccess: Event<ISuccessEvent>;
  /** Fires for each call whose attempts all failed (`handled` is false: hedging does not handle errors). */
  readonly onFailure: Event<IFailureEvent>;
  /** Fires when a hedge starts. */
  readonly onHedge: Event<HedgeEvent>;

  constructor(options: HedgeOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['delay', 'maxHedges', 'budget', 'name', 'clock']);
    const name = opts.name === undefined ? undefined : nonEmptyString(opts.name, 'name');
    const clock = clockOption(opts.clock);
    const delay = opts.delay;
    let histogram: LatencyHistogram | undefined;
    if (typeof delay === 'object' && delay !== null) {
      const p = optionsObject(delay as PercentileDelay, 'delay');
      knownKeys(p, ['percentile', 'min', 'max', 'minSamples', 'initial', 'window'], 'delay');
      const percentile = p.percentile;
      if (typeof percentile !== 'number' || !(percentile > 0 && percentile < 1)) {
        throw new InvalidOptionError('delay.percentile', percentile, 'a number between 0 and 1 exclusive');
      }
      this.#percentile = percentile;
      this.#min = duration(p.min, 'delay.min', 1, 0, MAX_DELAY);
      this.#max = duration(p.max, 'delay.max', 60_000, this.#min, MAX_DELAY);
      this.#minSamples = integer(p.minSamples, 'delay.minSamples', 1, 1_000_000, 20);
      this.#initial =
        p.initial === undefined
          ? Number.POSITIVE_INFINITY
          : duration(p.initial, 'delay.initial', undefined, 0, MAX_DELAY);
      histogram = new LatencyHistogram(duration(p.window, 'delay.window', 30_000, 1000, 86_400_000));
    } else {
      this.#fixedDelay = duration(delay, 'delay', undefined, 0, MAX_DELAY);
      this.#percentile = this.#min = this.#max = this.#minSamples = this.#initial = 0;
    }
    const maxHedges = integer(opts.maxHedges, 'maxHedges', 1, 100, 1);
    const budget = opts.budget === undefined ? new RetryBudget({ clock }) : opts.budget;
    if (
      typeof budget !== 'object' ||
      budget === null ||
      typeof budget.deposit !== 'function' ||
      typeof budget.tryWithdraw !== 'function'
    ) {
      throw new InvalidOptionError('budget', budget, 'a RetryBudget, e.g. retryBudget()');
    }
    this.#core = {
      name,
      maxHedges,
      contexts: new ContextFactory(),
      budget,
      clock,
      wheel: sharedTimerWheel(clock),
      histogram,
      success: new Emitter(),
      failure: new Emitter(),
      hedge: new Emitter(),
      calls: 0,
      hedges: 0,
      hedgeWins: 0,
      budgetRefusals: 0,
    };
    this.onSuccess = this.#core.success.event;
    this.onFailure = this.#core.failure.event;
    this.onHedge = this.#core.hedge.event;
  }

  /** The policy's name, if it was given one. */
  get name(): string | undefined {
    return this.#core.name;
  }

  /** The delay a call started now waits before hedging, in ms (Infinity: it will not hedge). */
  get delay(): number {
    if (this.#fixedDelay !== undefined) return this.#fixedDelay;
    const histogram = this.#core.histogram!;
    const now = this.#core.clock.now();
    if (histogram.count(now) < this.#minSamples) return this.#initial;
    const estimate = histogram.percentile(this.#percentile, now);
    return Math.min(this.#max, Math.max(this.#min, estimate));
  }

  /**
   * Runs `fn`, hedging slow attempts. Each attempt gets its own `signal`, aborted when another
   * attempt wins, when the call fails, or when `signal` (the caller's) aborts.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts first.
   * @throws the error of the last attempt to fail, when every attempt fails.
   */
  execute<T>(fn: (context: IHedgeContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return this.#start(fn, signal, false);
  }

  /** @internal The entry buttress's `wrap()` uses: the signal may be deferred, `fn` gets a bare layer context. */
  [kExecute]<T>(fn: (context: LayerContext) => PromiseLike<T> | T, source: SignalSource): Promise<T> {
    return this.#start(fn, source, true);
  }

  #start<T>(fn: (context: never) => PromiseLike<T> | T, source: SignalSource, bare: boolean): Promise<T> {
    const caller = canAbort(source) ? source : undefined;
    if (caller?.aborted) return Promise.reject(new AbortedError(caller.reason));
    const core = this.#core;
    core.calls++;
    core.budget.deposit();
    const delay = this.delay;
    const call = new HedgeCall(core, fn, delay, bare);
    const promise = new Promise<T>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    if (caller !== undefined) call.unlinkCaller = listen(caller, (reason) => call.callerAborted(reason));
    if (delay < MAX_DELAY) core.wheel.insert(call, delay);
    call.launch(0);
    return promise;
  }

  /** Counts since creation. */
  stats(): HedgeStats {
    const core = this.#core;
    return {
      calls: core.calls,
      hedges: core.hedges,
      hedgeWins: core.hedgeWins,
      budgetRefusals: core.budgetRefusals,
      delay: this.delay,
    };
  }
}
