import type { Clock } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import { clockOption, duration, knownKeys, numberIn, optionsObject } from '../core/validate.js';
import { WindowedCounter } from './internal/windowed-counter.js';

/** Options of {@link retryBudget}. */
export interface RetryBudgetOptions {
  /**
   * Retries allowed per deposit (per original call): 0.2 lets about one call in five be retried.
   * Between 0 and 1000.
   * @default 0.2
   */
  ratio?: number;
  /**
   * Retries allowed per second on top of the ratio, for clients that have just started or call
   * rarely. 0 gives no such reserve.
   * @default 10
   */
  minPerSecond?: number;
  /** How long a deposit (and a withdrawal) counts, between 1 s and 1 h. @default '10s' */
  ttl?: Duration;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Snapshot returned by {@link RetryBudget.stats}. */
export interface RetryBudgetStats {
  /** Retries that could be made now. */
  balance: number;
  /** Totals since creation. */
  deposits: number;
  withdrawals: number;
  /** Withdrawals refused. */
  refusals: number;
}

/** Something that can lend retries: a {@link RetryBudget} or your own (shared, remote, ...) implementation. */
export interface RetryBudgetLike {
  /** Credits one original call. */
  deposit(): void;
  /** Takes one retry if the balance allows it; returns whether it did. */
  tryWithdraw(): boolean;
}

/** Fixed-point scale, so that ratios like 0.2 add up exactly. */
const SCALE = 1_000_000;
/** Buckets per ttl, as Finagle's WindowedAdder uses: deposits expire within ttl/10 of `ttl`. */
const BUCKETS = 10;

/**
 * Creates a retry budget with Finagle's semantics: every original call deposits, every retry
 * withdraws, and a retry is allowed only while the balance covers it, so retries stay within
 * about `ratio` of the traffic (plus `minPerSecond`) instead of multiplying it during an outage.
 *
 * Deposits and withdrawals expire after `ttl` (counted in a ring of ten buckets, O(1) per
 * operation). Within any `ttl` window ending at a retry, retries never exceed
 * `ratio * calls + minPerSecond * ttl`, the calls being counted over that window widened by one
 * bucket (`ttl / 10`).
 *
 * Use it with cockatiel's retry through {@link budgetedRetry}, with {@link hedge}, or directly.
 *
 * @example
 * import { retryBudget, budgetedRetry } from 'buttress/retry';
 * import { handleAll, ExponentialBackoff } from 'cockatiel';
 * const budget = retryBudget({ ratio: 0.1 });
 * const retry = budgetedRetry(handleAll, { budget, maxAttempts: 3, backoff: new ExponentialBackoff() });
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function retryBudget(options?: RetryBudgetOptions): RetryBudget {
  return new RetryBudget(options);
}

/** See {@link retryBudget}. */
export class RetryBudget implements RetryBudgetLike {
  readonly #clock: Clock;
  readonly #counter: WindowedCounter;
  readonly #depositAmount: number;
  readonly #reserve: number;
  readonly #ratio: number;
  readonly #minPerSecond: number;
  readonly #ttl: number;
  #deposits = 0;
  #withdrawals = 0;
  #refusals = 0;

  constructor(options?: RetryBudgetOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['ratio', 'minPerSecond', 'ttl', 'clock']);
    this.#ratio = numberIn(opts.ratio, 'ratio', 0, 1000, 0.2);
    this.#minPerSecond = numberIn(opts.minPerSecond, 'minPerSecond', 0, 1_000_000, 10);
    this.#ttl = duration(opts.ttl, 'ttl', 10_000, 1000, 3_600_000);
    this.#clock = clockOption(opts.clock);
    // Rounded down, so the budget never lends more than the ratio promises.
    this.#depositAmount = Math.floor(this.#ratio * SCALE);
    this.#reserve = Math.floor(this.#minPerSecond * (this.#ttl / 1000) * SCALE);
    this.#counter = new WindowedCounter(this.#ttl, BUCKETS, 1);
  }

  /** Retries allowed per deposit. */
  get ratio(): number {
    return this.#ratio;
  }

  /** Retries per second allowed on top of the ratio. */
  get minPerSecond(): number {
    return this.#minPerSecond;
  }

  /** How long deposits count, in ms. */
  get ttl(): number {
    return this.#ttl;
  }

  /** Credits one original call (not a retry). */
  deposit(): void {
    this.#deposits++;
    if (this.#depositAmount !== 0) this.#counter.add(0, this.#depositAmount, this.#clock.now());
  }

  /** Takes one retry if the balance allows it; otherwise leaves the balance untouched and returns false. */
  tryWithdraw(): boolean {
    const now = this.#clock.now();
    if (this.#reserve + this.#counter.total(0, now) >= SCALE) {
      this.#counter.add(0, -SCALE, now);
      this.#withdrawals++;
      return true;
    }
    this.#refusals++;
    return false;
  }

  /** The number of retries that could be made now. */
  get balance(): number {
    return Math.max(0, Math.floor((this.#reserve + this.#counter.total(0, this.#clock.now())) / SCALE));
  }

  /** Balance and totals as a plain object. */
  stats(): RetryBudgetStats {
    return {
      balance: this.balance,
      deposits: this.#deposits,
      withdrawals: this.#withdrawals,
      refusals: this.#refusals,
    };
  }
}
