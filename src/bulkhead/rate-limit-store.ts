/**
 * The generic cell rate algorithm's parameters, in exact integers. Time is counted in units of
 * `1 / scale` ms, so that the emission interval (one token every `per / rate` ms) is the whole
 * number `interval` of units even when `per / rate` is not a whole number of ms: with
 * `g = gcd(rate, per)`, `interval = per / g` and `scale = rate / g`.
 */
export interface GcraParams {
  /** Units between two tokens: one token every `interval / scale` ms. */
  readonly interval: number;
  /** Units per millisecond. */
  readonly scale: number;
  /** Tokens a full bucket holds: calls admitted at once after a quiet period. */
  readonly burst: number;
}

/** The answer to one {@link RateLimiter.take}. */
export interface RateLimitDecision {
  /** Whether the call is admitted (and its cost taken). */
  readonly allowed: boolean;
  /** Milliseconds until a call of the same cost would be admitted; 0 when allowed. */
  readonly retryAfter: number;
  /** Tokens left after this decision: calls of cost 1 that would be admitted right now. */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again (every token back). */
  readonly resetAfter: number;
  /**
   * True when the store could not answer (unreachable, or slower than the limiter's `timeout`)
   * and the limiter decided by its `failOpen` setting instead.
   */
  readonly degraded?: boolean;
  /** On a degraded decision, what the store failed with. */
  readonly error?: unknown;
}

/**
 * Where a rate limiter keeps one timestamp per key (the theoretical arrival time of GCRA) and
 * applies the algorithm atomically. Built-ins: `memoryStore()` (one process) and
 * `redisStore(redis)` (a fleet). A store may answer synchronously; a synchronous answer lets the
 * limiter run the call without an extra promise tick.
 *
 * Contract: `take` applies GCRA to `key` exactly as `memoryStore` does (see
 * `src/bulkhead/internal/gcra.ts`), atomically with respect to every other `take` on the same key.
 * It may use its own time source instead of `now` (the Redis store uses Redis `TIME`, so that
 * instances with skewed clocks agree). An asynchronous store should settle within its
 * {@link RateLimitStore.timeout}; the limiter bounds every call anyway.
 */
export interface RateLimitStore {
  /** Short description, shown in stats: `memory`, `redis`. */
  readonly name: string;
  /** Milliseconds within which the store settles every `take` (it rejects after that), if it bounds itself. */
  readonly timeout?: number;
  /**
   * Takes `cost` tokens from `key`'s bucket if it holds them.
   * @param now the limiter's clock, in ms
   */
  take(
    key: string,
    cost: number,
    params: GcraParams,
    now: number,
  ): RateLimitDecision | PromiseLike<RateLimitDecision>;
}
