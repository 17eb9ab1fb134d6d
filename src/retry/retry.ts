import type {
  FailureReason,
  IBackoff,
  IBackoffFactory,
  IFailureEvent,
  IPolicy,
  IRetryBackoffContext,
  IRetryContext,
  ISuccessEvent,
} from 'cockatiel';
import { neverAbortedSignal } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, InvalidOptionError, isAbortedError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import {
  canAbort,
  type DeferredSignal,
  kExecute,
  kSource,
  type LayerContext,
  listen,
  materialize,
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
import type { BudgetExhaustedEvent, RetryFilter } from './budgeted-retry.js';
import { listenedEvent } from './internal/listened.js';
import type { RetryBudgetLike } from './retry-budget.js';

/** Options of {@link retry}. */
export interface RetryOptions {
  /**
   * Retries per call at most, after the first attempt: a call makes at most `maxAttempts + 1`
   * attempts. The name and meaning are cockatiel's (`retry(policy, { maxAttempts })`); unlike
   * cockatiel, the default is finite. 0 turns retrying off.
   * @default 3
   */
  maxAttempts?: number;
  /**
   * Delay before each retry: a duration (`100`, `'250ms'`) for a constant delay, or any cockatiel
   * backoff (`new ExponentialBackoff()`, `new ConstantBackoff(50)`, ...), asked once per retry.
   * @default 0 (retry at once)
   */
  backoff?: Duration | IBackoffFactory<IRetryBackoffContext<unknown>>;
  /**
   * Which failures are retried: a predicate on the error, or a cockatiel policy builder
   * (`handleAll`, `handleType(HttpError, e => e.status >= 500)`, `handleWhenResult(...)`), whose
   * result filter is honoured too: a returned value it matches is retried like an error.
   * Errors that are not failures surface at once.
   * @default every error is retried
   */
  isFailure?: ((error: unknown) => boolean) | RetryFilter;
  /**
   * A retry budget shared by the calls to one upstream: each call deposits once, each retry
   * withdraws; once the budget refuses, the call stops retrying and its last error (or value)
   * surfaces, as if `maxAttempts` had been reached.
   * @default no budget
   */
  budget?: RetryBudgetLike;
  /** Name shown in diagnostics (metrics are labelled by it). */
  name?: string;
  /** Time source, and the timer wheel the delays wait on. @default systemClock */
  clock?: Clock;
}

/** Event of {@link Retry.onRetry}: why the attempt failed, and the retry about to be made. */
export type RetryEvent = FailureReason<unknown> & {
  /** The delay before the retry, in ms. */
  delay: number;
  /** The retry being made: 1 for the first retry. */
  attempt: number;
};

/** Snapshot returned by {@link Retry.stats}. */
export interface RetryStats {
  /** Calls started. */
  calls: number;
  /** Retries made. */
  retries: number;
  /** Calls that failed after retrying as much as allowed (attempts or budget). */
  giveUps: number;
  /** Retries the budget refused. */
  budgetRefusals: number;
}

interface Core {
  readonly name: string | undefined;
  readonly maxAttempts: number;
  /** The constant delay, when `backoff` is a duration. */
  readonly delay: number;
  readonly factory: IBackoffFactory<IRetryBackoffContext<unknown>> | undefined;
  readonly errorFilter: (error: unknown) => boolean;
  readonly resultFilter: ((value: unknown) => boolean) | undefined;
  readonly budget: RetryBudgetLike | undefined;
  readonly clock: Clock;
  readonly wheel: TimerWheel;
  readonly success: Emitter<ISuccessEvent>;
  readonly failure: Emitter<IFailureEvent>;
  readonly retry: Emitter<RetryEvent>;
  readonly giveUp: Emitter<FailureReason<unknown>>;
  readonly exhausted: Emitter<BudgetExhaustedEvent>;
  /** Whether `onSuccess` or `onFailure` has a listener: attempts are timed only then. */
  timed: boolean;
  calls: number;
  retries: number;
  giveUps: number;
  budgetRefusals: number;
}

const retryChannel = channel('retry', 'retry');
const budgetChannel = channel('retry', 'budget-exhausted');
const allErrors = () => true;
const MAX_DELAY = 2 ** 31 - 1;

/** The context a backoff sees: cockatiel's, with the signal created only if the backoff reads it. */
class BackoffContext implements IRetryBackoffContext<unknown> {
  readonly attempt: number;
  readonly result: FailureReason<unknown>;
  readonly #source: SignalSource;
  constructor(attempt: number, result: FailureReason<unknown>, source: SignalSource) {
    this.attempt = attempt;
    this.result = result;
    this.#source = source;
  }
  get signal(): AbortSignal {
    return materialize(this.#source) ?? neverAbortedSignal;
  }
}

/**
 * One call: its attempts and the backoff between them. Allocated once per call and kept small:
 * the success path allocates nothing more than the attempt's context and one rejection handler;
 * what a wait between attempts needs lives in a {@link RetryWait}, made only for a retry.
 */
class RetryCall<T> {
  readonly core: Core;
  readonly fn: (context: never) => PromiseLike<T> | T;
  /** The caller's signal, when it can abort. */
  readonly source: AbortSignal | DeferredSignal | undefined;
  /** Hand `fn` a bare layer context (inside buttress's `wrap()`) rather than `{ attempt, signal }`. */
  readonly bare: boolean;
  /** The attempt running now: 0 for the first. */
  attempt = 0;
  started = 0;
  backoff: IBackoff<IRetryBackoffContext<unknown>> | undefined = undefined;

  constructor(
    core: Core,
    fn: (context: never) => PromiseLike<T> | T,
    source: AbortSignal | DeferredSignal | undefined,
    bare: boolean,
  ) {
    this.core = core;
    this.fn = fn;
    this.source = source;
    this.bare = bare;
  }

  /** Runs one attempt; the promise settles with the call's outcome. */
  run(): Promise<T> {
    const core = this.core;
    const timed = core.timed;
    if (timed) this.started = core.clock.now();
    const context = this.bare
      ? ({ attempt: this.attempt, [kSource]: this.source } as LayerContext)
      : { attempt: this.attempt, signal: (this.source as AbortSignal | undefined) ?? neverAbortedSignal };
    let result: PromiseLike<T> | T;
    try {
      result = this.fn(context as never);
    } catch (error) {
      return this.failed(error);
    }
    if (result instanceof Promise) {
      // The common case pays for one rejection handler; a result filter or a listener, for two.
      return core.resultFilter === undefined && !timed
        ? result.then(undefined, (error: unknown) => this.failed(error))
        : result.then(
            (value: T) => this.succeeded(value),
            (error: unknown) => this.failed(error),
          );
    }
    if (
      result !== null &&
      (typeof result === 'object' || typeof result === 'function') &&
      typeof (result as PromiseLike<T>).then === 'function'
    ) {
      return Promise.resolve(result).then(
        (value: T) => this.succeeded(value),
        (error: unknown) => this.failed(error),
      );
    }
    return Promise.resolve(this.succeeded(result as T));
  }

  succeeded(value: T): T | Promise<T> {
    const core = this.core;
    const filter = core.resultFilter;
    if (filter !== undefined && judge(filter, value)) {
      if (core.failure.size !== 0) {
        core.failure.emit({ duration: core.clock.now() - this.started, handled: true, reason: { value } });
      }
      return this.retryOrGiveUp({ value });
    }
    if (core.success.size !== 0) core.success.emit({ duration: core.clock.now() - this.started });
    return value;
  }

  failed(error: unknown): Promise<T> {
    const core = this.core;
    const source = this.source;
    const aborted = source?.aborted === true;
    const handled = !aborted && judge(core.errorFilter, error);
    if (core.failure.size !== 0) {
      core.failure.emit({
        duration: core.clock.now() - this.started,
        handled,
        reason: { error: error as Error },
      });
    }
    if (aborted) {
      // The caller gave up: whatever the attempt failed with, the call is aborted.
      return Promise.reject(isAbortedError(error) ? error : new AbortedError(source!.reason));
    }
    if (!handled) return Promise.reject(error);
    return this.retryOrGiveUp({ error: error as Error }) as Promise<T>;
  }

  /** After a failed attempt: waits and runs the next one, or gives up with `reason`. */
  retryOrGiveUp(reason: FailureReason<unknown>): T | Promise<T> {
    const core = this.core;
    const source = this.source;
    if (source?.aborted) return Promise.reject(new AbortedError(source.reason));
    if (this.attempt >= core.maxAttempts) return this.giveUp(reason);
    const next = this.attempt + 1;
    if (core.budget !== undefined && !core.budget.tryWithdraw()) {
      core.budgetRefusals++;
      if (core.exhausted.size !== 0) core.exhausted.emit({ ...reason, attempt: next });
      if (budgetChannel.hasSubscribers)
        budgetChannel.publish({ policy: 'retry', name: core.name, attempt: next });
      return this.giveUp(reason);
    }
    const delay = this.nextDelay(next, reason);
    core.retries++;
    if (core.retry.size !== 0) core.retry.emit({ ...reason, delay, attempt: next });
    if (retryChannel.hasSubscribers) retryChannel.publish({ name: core.name, attempt: next, delay });
    this.attempt = next;
    return new Promise<T>((resolve, reject) => {
      const wait = new RetryWait(this, resolve, reject);
      if (delay <= 0) {
        // No delay: the next attempt runs in a microtask, not on the wheel's next tick.
        queueMicrotask(() => wait.fire());
        return;
      }
      core.wheel.insert(wait, delay);
      if (source !== undefined) wait.unlink = listen(source, (why) => wait.callerAborted(why));
    });
  }

  nextDelay(attempt: number, reason: FailureReason<unknown>): number {
    const core = this.core;
    const factory = core.factory;
    if (factory === undefined) return core.delay;
    const context = new BackoffContext(attempt, reason, this.source);
    const backoff = (this.backoff =
      this.backoff === undefined ? factory.next(context) : this.backoff.next(context));
    const ms = backoff.duration;
    return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_DELAY) : 0;
  }

  giveUp(reason: FailureReason<unknown>): T | Promise<T> {
    const core = this.core;
    core.giveUps++;
    if (core.giveUp.size !== 0) core.giveUp.emit(reason);
    return 'error' in reason ? Promise.reject(reason.error) : (reason.value as T);
  }
}

/** The wait before a retry: an entry on the timer wheel, and the promise the call's caller awaits. */
class RetryWait<T> extends TimerEntry {
  readonly call: RetryCall<T>;
  resolve: ((value: T | PromiseLike<T>) => void) | undefined;
  reject: ((error: unknown) => void) | undefined;
  unlink: (() => void) | undefined = undefined;

  constructor(
    call: RetryCall<T>,
    resolve: (value: T | PromiseLike<T>) => void,
    reject: (error: unknown) => void,
  ) {
    super();
    this.call = call;
    this.resolve = resolve;
    this.reject = reject;
  }

  /** The delay has passed: run the next attempt. */
  fire(): void {
    const resolve = this.resolve;
    const reject = this.reject;
    if (resolve === undefined || reject === undefined) return;
    this.settle();
    const source = this.call.source;
    if (source?.aborted) reject(new AbortedError(source.reason));
    else resolve(this.call.run());
  }

  /** The caller aborted during the delay. */
  callerAborted(reason: unknown): void {
    this.unlink = undefined;
    const reject = this.reject;
    if (reject === undefined) return;
    this.call.core.wheel.cancel(this);
    this.settle();
    reject(new AbortedError(reason));
  }

  settle(): void {
    this.resolve = undefined;
    this.reject = undefined;
    const unlink = this.unlink;
    if (unlink !== undefined) {
      this.unlink = undefined;
      unlink();
    }
  }
}

/** Runs a filter; a filter that throws does not make the error retryable. */
function judge(filter: (value: unknown) => boolean, value: unknown): boolean {
  try {
    return filter(value) === true;
  } catch {
    return false;
  }
}

/**
 * Creates a retry policy: a call that fails is tried again, after `backoff`, up to `maxAttempts`
 * more times and, with a `budget`, only while the budget lends retries. Its options and events
 * follow cockatiel's `retry()`; the differences: delays wait on buttress's shared timer wheel (no
 * timer per retry, never keeping the process alive), a succeeding call costs tens of nanoseconds
 * instead of an `async` frame per attempt, the caller's abort rejects with `E_ABORTED` (during a
 * delay at once), and inside buttress's {@link wrap} it passes the signals of the policies around
 * it along without creating them.
 *
 * Abort: once the caller's `signal` has aborted, no further attempt is made and the call rejects
 * with `E_ABORTED` (its `cause` the signal's reason), unless the attempt in flight succeeds.
 *
 * Implements cockatiel's `IPolicy`, so it composes with cockatiel's policies and buttress's through
 * either library's `wrap()`.
 *
 * @example
 * import { ExponentialBackoff, handleType } from 'cockatiel';
 * import { retry, retryBudget } from 'buttress/retry';
 * const policy = retry({
 *   maxAttempts: 3,
 *   backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }),
 *   isFailure: handleType(HttpError, (e) => e.status >= 500),
 *   budget: retryBudget(),
 * });
 * const user = await policy.execute(({ signal, attempt }) => fetchUser(id, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function retry(options?: RetryOptions): Retry {
  return new Retry(options);
}

/** See {@link retry}. */
export class Retry implements IPolicy<IRetryContext, never> {
  declare readonly _altReturn: never;

  readonly #core: Core;

  /** Fires once per call that succeeded, with the duration of the successful attempt (as cockatiel). */
  readonly onSuccess: Event<ISuccessEvent>;
  /**
   * Fires for each failed attempt: `handled` is true when the failure is one the policy retries
   * (whether or not it still may), false for errors it lets through and for aborted calls.
   */
  readonly onFailure: Event<IFailureEvent>;
  /** Fires before each retry's delay, with the failure, the delay and the retry's number. */
  readonly onRetry: Event<RetryEvent>;
  /** Fires when a call stops retrying a failure: attempts used up, or the budget spent. */
  readonly onGiveUp: Event<FailureReason<unknown>>;
  /** Fires when the budget refuses a retry. */
  readonly onBudgetExhausted: Event<BudgetExhaustedEvent>;

  constructor(options?: RetryOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['maxAttempts', 'backoff', 'isFailure', 'budget', 'name', 'clock']);
    const name = opts.name === undefined ? undefined : nonEmptyString(opts.name, 'name');
    const clock = clockOption(opts.clock);
    const maxAttempts = integer(opts.maxAttempts, 'maxAttempts', 0, 1_000_000, 3);

    let delay = 0;
    let factory: IBackoffFactory<IRetryBackoffContext<unknown>> | undefined;
    const backoff = opts.backoff;
    if (typeof backoff === 'object' && backoff !== null && typeof backoff.next === 'function') {
      factory = backoff;
    } else if (backoff !== undefined && typeof backoff !== 'number' && typeof backoff !== 'string') {
      throw new InvalidOptionError(
        'backoff',
        backoff,
        "a delay in ms, a duration like '100ms', or a cockatiel backoff such as new ExponentialBackoff()",
      );
    } else {
      delay = duration(backoff, 'backoff', 0, 0, MAX_DELAY);
    }

    let errorFilter: (error: unknown) => boolean = allErrors;
    let resultFilter: ((value: unknown) => boolean) | undefined;
    const filter = opts.isFailure;
    if (typeof filter === 'function') {
      errorFilter = filter;
    } else if (
      typeof filter === 'object' &&
      filter !== null &&
      typeof filter.options?.errorFilter === 'function'
    ) {
      const filters = filter.options;
      errorFilter = (error) => filters.errorFilter(error as Error);
      if (typeof filters.resultFilter === 'function') resultFilter = (value) => filters.resultFilter(value);
    } else if (filter !== undefined) {
      throw new InvalidOptionError(
        'isFailure',
        filter,
        'a predicate (error) => boolean or a cockatiel policy such as handleAll',
      );
    }

    const budget = opts.budget;
    if (
      budget !== undefined &&
      (typeof budget !== 'object' ||
        budget === null ||
        typeof budget.deposit !== 'function' ||
        typeof budget.tryWithdraw !== 'function')
    ) {
      throw new InvalidOptionError('budget', budget, 'a RetryBudget, e.g. retryBudget()');
    }

    this.#core = {
      name,
      maxAttempts,
      delay,
      factory,
      errorFilter,
      resultFilter,
      budget,
      clock,
      wheel: sharedTimerWheel(clock),
      success: new Emitter(),
      failure: new Emitter(),
      retry: new Emitter(),
      giveUp: new Emitter(),
      exhausted: new Emitter(),
      timed: false,
      calls: 0,
      retries: 0,
      giveUps: 0,
      budgetRefusals: 0,
    };
    const core = this.#core;
    const changed = () => {
      core.timed = core.success.size !== 0 || core.failure.size !== 0;
    };
    this.onSuccess = listenedEvent(core.success, changed);
    this.onFailure = listenedEvent(core.failure, changed);
    this.onRetry = this.#core.retry.event;
    this.onGiveUp = this.#core.giveUp.event;
    this.onBudgetExhausted = this.#core.exhausted.event;
  }

  /** The policy's name, if it was given one. */
  get name(): string | undefined {
    return this.#core.name;
  }

  /** Retries per call at most. */
  get maxAttempts(): number {
    return this.#core.maxAttempts;
  }

  /** The budget retries withdraw from, if any. */
  get budget(): RetryBudgetLike | undefined {
    return this.#core.budget;
  }

  /**
   * Runs `fn`, retrying the failures `isFailure` accepts while attempts (and budget) last. `fn`
   * receives `{ attempt, signal }`: `attempt` is 0 for the first attempt, `signal` the caller's.
   * @throws {AbortedError} `E_ABORTED` when `signal` is already aborted, or aborts before the call
   *   succeeds.
   * @throws the last error of `fn` when it gives up, or at once an error `isFailure` rejects.
   */
  execute<T>(fn: (context: IRetryContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return this.#start(fn, signal, false);
  }

  /** @internal The entry buttress's `wrap()` uses: the signal may be deferred, `fn` gets a bare layer context. */
  [kExecute]<T>(fn: (context: LayerContext) => PromiseLike<T> | T, source: SignalSource): Promise<T> {
    return this.#start(fn, source, true);
  }

  #start<T>(fn: (context: never) => PromiseLike<T> | T, source: SignalSource, bare: boolean): Promise<T> {
    let caller: AbortSignal | DeferredSignal | undefined;
    if (canAbort(source)) {
      if (source.aborted) return Promise.reject(new AbortedError(source.reason));
      caller = source;
    }
    const core = this.#core;
    core.calls++;
    core.budget?.deposit();
    return new RetryCall(core, fn, caller, bare).run();
  }

  /** Counts since creation. */
  stats(): RetryStats {
    const core = this.#core;
    return {
      calls: core.calls,
      retries: core.retries,
      giveUps: core.giveUps,
      budgetRefusals: core.budgetRefusals,
    };
  }
}
