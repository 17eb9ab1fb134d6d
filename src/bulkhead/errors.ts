import { ButtressError } from '../core/errors.js';

/** Why a bulkhead or limiter turned a call away. */
export type BulkheadRejectReason = 'full' | 'queue-timeout';

/**
 * Rejection by a {@link Bulkhead} or an {@link AdaptiveLimiter}: code `E_BULKHEAD_FULL`. Every
 * slot was taken and the queue was full (`reason: 'full'`), or the call waited in the queue for
 * `queueTimeout` without getting a slot (`reason: 'queue-timeout'`). The call never ran.
 *
 * Carries cockatiel's `isBulkheadRejectedError` brand, so cockatiel's guard and retry filters treat
 * it as their own `BulkheadRejectedError`. Captures no stack trace: overloaded services reject in
 * bulk, and the stack would only point into buttress.
 */
export class BulkheadFullError extends ButtressError {
  /** cockatiel brand: cockatiel's `isBulkheadRejectedError(e)` is true. */
  readonly isBulkheadRejectedError = true;
  /** Why the call was rejected. */
  readonly reason: BulkheadRejectReason;
  /**
   * Estimated milliseconds until a slot would be available to a new caller: recent mean
   * execution time × (queue position) / limit, rounded up. 0 while nothing has been timed yet.
   */
  readonly retryAfter: number;
  /** The concurrency limit when the call was rejected. */
  readonly limit: number;
  /** Name of the bulkhead or limiter, when it has one. */
  readonly bulkhead: string | undefined;
  /** The limiter partition the call was made in, if any. */
  readonly partition: string | undefined;

  constructor(
    reason: BulkheadRejectReason,
    retryAfter: number,
    limit: number,
    bulkhead?: string,
    partition?: string,
  ) {
    const where = `${bulkhead ? ` "${bulkhead}"` : ''}${partition ? ` (partition "${partition}")` : ''}`;
    super(
      'E_BULKHEAD_FULL',
      reason === 'full'
        ? `Bulkhead${where} is full (limit ${limit}); retry after ${retryAfter}ms`
        : `Bulkhead${where}: the call waited its queueTimeout without a slot (limit ${limit}); retry after ${retryAfter}ms`,
      { noStack: true },
    );
    this.reason = reason;
    this.retryAfter = retryAfter;
    this.limit = limit;
    this.bulkhead = bulkhead;
    this.partition = partition;
  }
}

/** Why a rate limiter turned a call away. */
export type RateLimitReason = 'rate' | 'unavailable';

/**
 * Rejection by a {@link RateLimiter}: code `E_RATE_LIMITED`. `reason: 'rate'` when the key is
 * over its rate; `reason: 'unavailable'` when the store (Redis) could not answer within the
 * timeout and the limiter is configured to fail closed (`failOpen: false`); `cause` then holds
 * the store's error. Captures no stack trace.
 */
export class RateLimitedError extends ButtressError {
  /** Why the call was rejected. */
  readonly reason: RateLimitReason;
  /** Milliseconds until a call of the same cost would be admitted (an estimate for `'unavailable'`). */
  readonly retryAfter: number;
  /** The rate-limited key. */
  readonly key: string;

  constructor(reason: RateLimitReason, key: string, retryAfter: number, cause?: unknown) {
    super(
      'E_RATE_LIMITED',
      reason === 'rate'
        ? `Rate limit exceeded for key "${key}"; retry after ${retryAfter}ms`
        : `Rate limiter store unavailable for key "${key}"; failing closed`,
      { noStack: true, cause },
    );
    this.reason = reason;
    this.key = key;
    this.retryAfter = retryAfter;
  }
}

/** True for `E_BULKHEAD_FULL` rejections by buttress (use cockatiel's `isBulkheadRejectedError` to include cockatiel's own). */
export const isBulkheadFullError = (e: unknown): e is BulkheadFullError => e instanceof BulkheadFullError;

/** True for `E_RATE_LIMITED` rejections. */
export const isRateLimitedError = (e: unknown): e is RateLimitedError => e instanceof RateLimitedError;
