import {
  type FailureReason,
  type IBackoffFactory,
  type IPolicy,
  type IRetryBackoffContext,
  type IRetryContext,
  Policy,
  type RetryPolicy,
  retry,
} from 'cockatiel';
import { channel } from '../core/diagnostics.js';
import { InvalidOptionError } from '../core/errors.js';
import { Emitter, type Event, toDisposable } from '../core/events.js';
import { bool, integer, knownKeys, nonEmptyString, optionsObject } from '../core/validate.js';
import type { RetryBudgetLike } from './retry-budget.js';

const budgetChannel = channel('retry', 'budget-exhausted');
const retryChannel = channel('retry', 'retry');

/** What decides which failures are retried: cockatiel's `handleAll`, `handleType(...)`, `handleWhen(...)`, `handleWhenResult(...)`. */
export interface RetryFilter {
  readonly options: { errorFilter(error: Error): boolean; resultFilter(result: unknown): boolean };
}

/** Options of {@link budgetedRetry}: cockatiel's `retry()` options plus the budget. */
export interface BudgetedRetryOptions {
  /** The budget every retry withdraws from; each call deposits once. Share one per upstream. */
  budget: RetryBudgetLike;
  /**
   * Retries per call at most, as in cockatiel. A budget bounds retries across calls, not within
   * one, so unlike cockatiel the default is finite.
   * @default 3
   */
  maxAttempts?: number;
  /** Delay before each retry, any cockatiel backoff. @default no delay */
  backoff?: IBackoffFactory<IRetryBackoffContext<unknown>>;
  /**
   * Let cockatiel's backoff timer not keep the process alive (its `dangerouslyUnref()`), as every
   * buttress timer does.
   * @default true
   */
  unref?: boolean;
  /** Name shown in diagnostics (metrics are labelled by it). */
  name?: string;
}

/** Event of {@link BudgetedRetry.onBudgetExhausted}. */
export type BudgetExhaustedEvent = FailureReason<unknown> & {
  /** The retry that was refused (1 for the first retry). */
  attempt: number;
};

/**
 * Carries a refused failure through cockatiel's loop when it cannot be marked by identity (a
 * thrown primitive, or a result the result filter judged a failure). Never escapes `execute()`.
 */
class Veto {
  constructor(readonly reason: FailureReason<unknown>) {}
}

/**
 * Creates cockatiel's `retry()` with a retry budget: a failure is retried only while the
 * {@link RetryBudget} has balance; once it is spent, the call gives up at once and its last error
 * (or last result) surfaces, as if `maxAttempts` had been reached.
 *
 * How it plugs in: cockatiel's `RetryPolicy` offers no veto (its backoff cannot stop it), but it
 * asks its error filter before each retry and rethrows an error the filter does not handle. Each
 * attempt runs in a wrapper that, when cockatiel is about to retry, withdraws from the budget; if
 * the budget refuses, the wrapper marks that error so the filter reports it unhandled, and
 * cockatiel rethrows it untouched. Withdrawals therefore happen only for retries that are really
 * made: never for the last attempt, an unhandled error or an aborted call.
 *
 * Events: `onRetry`, `onSuccess` and `onFailure` are cockatiel's; `onGiveUp` fires also when the
 * budget refuses (cockatiel's own `onFailure` then reports the error with `handled: false`).
 *
 * @param policy Which failures to retry: `handleAll`, `handleType(...)`, `handleWhen(...)`, ...
 * @example
 * import { handleAll, ExponentialBackoff } from 'cockatiel';
 * import { budgetedRetry, retryBudget } from 'buttress/retry';
 * const budget = retryBudget();
 * const retry = budgetedRetry(handleAll, { budget, maxAttempts: 3, backoff: new ExponentialBackoff() });
 * await retry.execute(({ signal }) => fetch(url, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid policy or option.
 */
export function budgetedRetry(policy: RetryFilter, options: BudgetedRetryOptions): BudgetedRetry {
  return new BudgetedRetry(policy, options);
}

/** See {@link budgetedRetry}. */
export class BudgetedRetry implements IPolicy<IRetryContext, never> {
  declare readonly _altReturn: never;

  readonly #inner: RetryPolicy;
  readonly #name: string | undefined;
  readonly #budget: RetryBudgetLike;
  readonly #maxAttempts: number;
  readonly #errorFilter: (error: Error) => boolean;
  readonly #resultFilter: (result: unknown) => boolean;
  /** Errors refused by the budget, waiting for cockatiel's filter to see them once. */
  readonly #vetoed = new WeakSet<object>();
  readonly #exhaustedEm = new Emitter<BudgetExhaustedEvent>();
  readonly #vetoGiveUpEm = new Emitter<FailureReason<unknown>>();

  /** Fires once per call that succeeded (cockatiel's). */
  readonly onSuccess: RetryPolicy['onSuccess'];
  /** Fires for each failed attempt (cockatiel's); a refused retry shows as `handled: false`. */
  readonly onFailure: RetryPolicy['onFailure'];
  /** Fires before each retry, with its delay (cockatiel's). */
  readonly onRetry: RetryPolicy['onRetry'];
  /** Fires when a call stops retrying: attempts used up, or the budget spent. */
  readonly onGiveUp: Event<FailureReason<unknown>>;
  /** Fires when the budget refuses a retry. */
  readonly onBudgetExhausted: Event<BudgetExhaustedEvent> = this.#exhaustedEm.event;

  constructor(policy: RetryFilter, options: BudgetedRetryOptions) {
    const filters = (policy as RetryFilter | undefined)?.options;
    if (
      typeof filters !== 'object' ||
      filters === null ||
      typeof filters.errorFilter !== 'function' ||
      typeof filters.resultFilter !== 'function'
    ) {
      throw new InvalidOptionError(
        'policy',
        policy,
        'a cockatiel policy such as handleAll or handleType(...)',
      );
    }
    const opts = optionsObject(options);
    knownKeys(opts, ['budget', 'maxAttempts', 'backoff', 'unref', 'name']);
    this.#name = opts.name === undefined ? undefined : nonEmptyString(opts.name, 'name');
    const budget = opts.budget as RetryBudgetLike | undefined;
    if (
      typeof budget !== 'object' ||
      budget === null ||
      typeof budget.deposit !== 'function' ||
      typeof budget.tryWithdraw !== 'function'
    ) {
      throw new InvalidOptionError('budget', budget, 'a RetryBudget, e.g. retryBudget()');
    }
    const backoff = opts.backoff;
    if (
      backoff !== undefined &&
      (typeof backoff !== 'object' || backoff === null || typeof backoff.next !== 'function')
    ) {
      throw new InvalidOptionError(
        'backoff',
        backoff,
        'a cockatiel backoff such as new ExponentialBackoff()',
      );
    }
    this.#budget = budget;
    this.#maxAttempts = integer(opts.maxAttempts, 'maxAttempts', 0, 1_000_000, 3);
    const unref = bool(opts.unref, 'unref', true);
    const { errorFilter, resultFilter } = filters;
    this.#errorFilter = errorFilter;
    this.#resultFilter = resultFilter;
    const vetoed = this.#vetoed;
    const inner = retry(
      new Policy({
        // Seen once per failed attempt, right after our wrapper: a refused error is "unhandled".
        errorFilter: (error) => {
          if (error instanceof Veto) return false;
          if (vetoed.delete(error as object)) return false;
          return errorFilter(error);
        },
        resultFilter,
      }),
      backoff === undefined
        ? { maxAttempts: this.#maxAttempts }
        : { maxAttempts: this.#maxAttempts, backoff },
    );
    this.#inner = unref ? inner.dangerouslyUnref() : inner;
    this.onSuccess = this.#inner.onSuccess;
    this.onFailure = this.#inner.onFailure;
    this.onRetry = this.#inner.onRetry;
    // cockatiel makes the retries: report them where buttress's own retry() does. A listener costs
    // nothing until a retry happens.
    const name = this.#name;
    this.#inner.onRetry(({ attempt, delay }) => {
      if (retryChannel.hasSubscribers) retryChannel.publish({ name, attempt, delay });
    });
    const innerGiveUp = this.#inner.onGiveUp;
    const vetoGiveUp = this.#vetoGiveUpEm.event;
    this.onGiveUp = (listener) => {
      const a = innerGiveUp(listener);
      const b = vetoGiveUp(listener);
      return toDisposable(() => {
        a.dispose();
        b.dispose();
      });
    };
  }

  /** The policy's name, if it was given one. */
  get name(): string | undefined {
    return this.#name;
  }

  /** The budget retries withdraw from. */
  get budget(): RetryBudgetLike {
    return this.#budget;
  }

  /** Retries per call at most. */
  get maxAttempts(): number {
    return this.#maxAttempts;
  }

  /**
   * Runs `fn`, retrying failures the policy handles while attempts and budget last. Deposits
   * once into the budget per call.
   * @throws the last error of `fn` when it gives up.
   */
  execute<T>(fn: (context: IRetryContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    this.#budget.deposit();
    const attempt = (context: IRetryContext): PromiseLike<T> | T => {
      let result: PromiseLike<T> | T;
      try {
        result = fn(context);
      } catch (error) {
        throw this.#judgeError(error, context);
      }
      if (
        result !== null &&
        typeof result === 'object' &&
        typeof (result as PromiseLike<T>).then === 'function'
      ) {
        return Promise.resolve(result).then(
          (value) => this.#judgeValue(value, context),
          (error: unknown) => {
            throw this.#judgeError(error, context);
          },
        );
      }
      return this.#judgeValue(result as T, context);
    };
    return this.#inner.execute(attempt, signal).then(undefined, unwrapVeto) as Promise<T>;
  }

  /** True when cockatiel will retry after this attempt if the failure is handled. */
  #wouldRetry(context: IRetryContext): boolean {
    return context.attempt < this.#maxAttempts && !context.signal.aborted;
  }

  /** Returns what to throw for a failed attempt: the error itself, or a Veto carrying it. */
  #judgeError(error: unknown, context: IRetryContext): unknown {
    if (!this.#wouldRetry(context) || !this.#errorFilter(error as Error) || this.#budget.tryWithdraw()) {
      return error;
    }
    this.#refused({ error: error as Error }, context);
    if ((typeof error === 'object' && error !== null) || typeof error === 'function') {
      this.#vetoed.add(error as object);
      return error;
    }
    return new Veto({ error: error as Error });
  }

  #judgeValue<T>(value: T, context: IRetryContext): T {
    if (!this.#resultFilter(value) || !this.#wouldRetry(context) || this.#budget.tryWithdraw()) return value;
    this.#refused({ value }, context);
    throw new Veto({ value });
  }

  #refused(reason: FailureReason<unknown>, context: IRetryContext): void {
    if (this.#exhaustedEm.size !== 0) this.#exhaustedEm.emit({ ...reason, attempt: context.attempt + 1 });
    if (budgetChannel.hasSubscribers) {
      budgetChannel.publish({ policy: 'budgeted-retry', name: this.#name, attempt: context.attempt + 1 });
    }
    if (this.#vetoGiveUpEm.size !== 0) this.#vetoGiveUpEm.emit(reason);
  }
}

function unwrapVeto(error: unknown): unknown {
  if (!(error instanceof Veto)) throw error;
  const reason = error.reason;
  if ('error' in reason) throw reason.error;
  return reason.value;
}
