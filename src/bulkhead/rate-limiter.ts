import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import { defaultPolicyContext, raceAbort } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { withDeadline } from '../core/deadline.js';
import { announce, channel, lifecycle } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, InvalidOptionError, TimeoutError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import { type Stopwatch, stopwatch } from '../core/hr-time.js';
import { bool, clockOption, duration, integer, knownKeys, optionsObject } from '../core/validate.js';
import { RateLimitedError, type RateLimitReason } from './errors.js';
import { gcd } from './internal/math.js';
import { optionalName } from './internal/options.js';
import type { GcraParams, RateLimitDecision, RateLimitStore } from './rate-limit-store.js';
import { memoryStore } from './stores/memory-store.js';

/** Options of {@link rateLimiter}. */
export interface RateLimiterOptions {
  /** Calls admitted per `per`, sustained: a whole number >= 1. */
  rate: number;
  /** The period of `rate`, a whole number of ms. @default '1s' */
  per?: Duration;
  /** Calls admitted at once after a quiet period (the bucket's size). @default rate */
  burst?: number;
  /** Where the per-key state lives. @default memoryStore() */
  store?: RateLimitStore;
  /** The key {@link RateLimiter.execute} uses. @default 'default' */
  key?: string;
  /**
   * When the store cannot answer within `timeout`: admit the call (`true`), or reject it with
   * `E_RATE_LIMITED`, `reason: 'unavailable'` (`false`). @default true
   */
  failOpen?: boolean;
  /** Longest wait for an asynchronous store's answer. @default the store's own timeout, else '250ms' */
  timeout?: Duration;
  /** Name shown in stats and diagnostics. */
  name?: string;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Snapshot returned by {@link RateLimiter.stats}. */
export interface RateLimiterStats {
  name: string | undefined;
  store: string;
  rate: number;
  per: number;
  burst: number;
  /** Totals since creation. */
  allowed: number;
  limited: number;
  /** Decisions made by `failOpen` because the store failed or was too slow. */
  degraded: number;
  /** Store calls that failed or timed out. */
  storeErrors: number;
}

/** Event of `onReject`. */
export interface RateLimitRejectEvent {
  key: string;
  reason: RateLimitReason;
  retryAfter: number;
}

/** Options of {@link RateLimiter.policy}. */
export interface RateLimitPolicyOptions {
  /** Tokens each call takes. @default 1 */
  cost?: number;
}

/** @internal What a {@link RateLimitPolicy} uses of its limiter; kept off the limiter's public surface. */
export interface PolicyHost {
  readonly onSuccess: Event<ISuccessEvent>;
  readonly onFailure: Event<IFailureEvent>;
  /** The decision, synchronous when the store answers synchronously; never rejects. */
  decide(key: string, cost: number): RateLimitDecision | Promise<RateLimitDecision>;
  /** Counts, reports and builds a rejection. */
  reject(key: string, decision: RateLimitDecision): RateLimitedError;
  /** Whether someone listens to onSuccess/onFailure. */
  observed(): boolean;
  /** Runs an admitted call, timing it for the events. */
  runObserved<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T>;
}

const MAX_BURST = 1_000_000;
const rejectChannel = channel('bulkhead', 'rate-limit');
const lifecycleChannels = lifecycle('bulkhead');

/**
 * Creates a rate limiter: per key (a tenant, an IP, a route), `rate` calls per `per` sustained,
 * with bursts of up to `burst`, by the generic cell rate algorithm (GCRA), which keeps a single
 * timestamp per key. In memory by default; on Redis with {@link redisStore}, where one atomic Lua
 * script makes every instance share the limit.
 *
 * Ask for a decision with {@link RateLimiter.take}, or run calls through it as a cockatiel policy:
 * `limiter.policy(key).execute(fn)` (or `limiter.execute(fn)` for the `key` option's key), which
 * rejects with `E_RATE_LIMITED` when over the rate.
 *
 * When the store fails or does not answer within `timeout`, the limiter decides by `failOpen`
 * (admit, by default), within that timeout: a Redis outage never hangs a caller.
 *
 * @example
 * import { rateLimiter } from 'buttress/bulkhead';
 * const perTenant = rateLimiter({ rate: 100, per: '1m', burst: 20 });
 * const { allowed, retryAfter, remaining } = await perTenant.take(tenantId);
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function rateLimiter(options: RateLimiterOptions): RateLimiter {
  return new RateLimiter(options);
}

/** See {@link rateLimiter}. */
export class RateLimiter implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;

  readonly #name: string | undefined;
  readonly #rate: number;
  readonly #per: number;
  readonly #params: GcraParams;
  readonly #store: RateLimitStore;
  readonly #key: string;
  readonly #failOpen: boolean;
  readonly #timeout: number;
  /** Whether the store bounds its own calls within our timeout, so we need no timer of our own. */
  readonly #storeBounded: boolean;
  readonly #clock: Clock;
  readonly #watch: Stopwatch;
  readonly #defaultPolicy: RateLimitPolicy;
  readonly #host: PolicyHost;

  #allowed = 0;
  #limited = 0;
  #degraded = 0;
  #storeErrors = 0;

  readonly #successEm = new Emitter<ISuccessEvent>();
  readonly #failureEm = new Emitter<IFailureEvent>();
  readonly #rejectEm = new Emitter<RateLimitRejectEvent>();
  readonly #storeErrorEm = new Emitter<unknown>();

  /** Fires with the duration of each call run through a policy of this limiter that succeeded. */
  readonly onSuccess: Event<ISuccessEvent> = this.#successEm.event;
  /** Fires for each call run through a policy of this limiter that failed (`handled` is false). */
  readonly onFailure: Event<IFailureEvent> = this.#failureEm.event;
  /** Fires for each call rejected with `E_RATE_LIMITED` by a policy of this limiter. */
  readonly onReject: Event<RateLimitRejectEvent> = this.#rejectEm.event;
  /** Fires with each store error or timeout (the decision was then made by `failOpen`). */
  readonly onStoreError: Event<unknown> = this.#storeErrorEm.event;

  constructor(options: RateLimiterOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['rate', 'per', 'burst', 'store', 'key', 'failOpen', 'timeout', 'name', 'clock']);
    this.#rate = integer(opts.rate, 'rate', 1, 1_000_000_000);
    const per = duration(opts.per, 'per', 1000, 1);
    if (!Number.isInteger(per))
      throw new InvalidOptionError('per', opts.per, 'a whole number of milliseconds');
    this.#per = per;
    const burst = integer(opts.burst, 'burst', 1, MAX_BURST, Math.min(this.#rate, MAX_BURST));
    const g = gcd(this.#rate, per);
    this.#params = Object.freeze({ interval: per / g, scale: this.#rate / g, burst });
    const store = opts.store ?? memoryStore();
    if (typeof store !== 'object' || store === null || typeof store.take !== 'function') {
      throw new InvalidOptionError(
        'store',
        store,
        'a RateLimitStore such as memoryStore() or redisStore(redis)',
      );
    }
    this.#store = store;
    this.#key = opts.key === undefined ? 'default' : validKey(opts.key, 'key');
    this.#failOpen = bool(opts.failOpen, 'failOpen', true);
    const storeTimeout =
      typeof store.timeout === 'number' && Number.isFinite(store.timeout) && store.timeout > 0
        ? store.timeout
        : undefined;
    this.#timeout = duration(opts.timeout, 'timeout', storeTimeout ?? 250, 1, 60_000);
    this.#storeBounded = storeTimeout !== undefined && storeTimeout <= this.#timeout;
    this.#name = optionalName(opts.name);
    this.#clock = clockOption(opts.clock);
    this.#watch = stopwatch(this.#clock);
    this.#host = {
      onSuccess: this.onSuccess,
      onFailure: this.onFailure,
      decide: (key, cost) => this.#decide(key, cost),
      reject: (key, decision) => this.#reject(key, decision),
      observed: () => this.#successEm.size !== 0 || this.#failureEm.size !== 0,
      runObserved: (fn, context) => this.#runObserved(fn, context),
    };
    this.#defaultPolicy = new RateLimitPolicy(this.#host, this.#key, 1);
    announce(lifecycleChannels.create, 'rate-limiter', this);
  }

  /** The limiter's name, if it was given one. */
  get name(): string | undefined {
    return this.#name;
  }

  /**
   * Takes `cost` tokens from `key`'s bucket if it holds them. Never rejects for being over the
   * rate (read `allowed`), nor when the store fails (the answer then has `degraded: true` and
   * follows `failOpen`).
   * @param cost tokens to take, a whole number in [0, burst]; 0 only reads.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` (as a rejection) for a non-string key or an invalid cost.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts before the store answers.
   */
  take(key: string, cost = 1, signal?: AbortSignal): Promise<RateLimitDecision> {
    try {
      validKey(key, 'key');
      this.#validCost(cost);
    } catch (error) {
      return Promise.reject(error);
    }
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    const decision = this.#decide(key, cost);
    // A slow store must not hold a caller who gave up: the decision is still counted when it lands.
    return decision instanceof Promise ? raceAbort(decision, signal) : Promise.resolve(decision);
  }

  /**
   * A cockatiel policy that rate-limits every call it runs under `key`, each taking `cost` tokens.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a non-string key or an invalid cost.
   */
  policy(key: string, options?: RateLimitPolicyOptions): RateLimitPolicy {
    validKey(key, 'key');
    const opts = optionsObject(options);
    knownKeys(opts, ['cost']);
    const cost = opts.cost ?? 1;
    this.#validCost(cost);
    return new RateLimitPolicy(this.#host, key, cost);
  }

  /**
   * Runs `fn` if the `key` option's bucket (default `'default'`) has a token.
   * @throws {RateLimitedError} `E_RATE_LIMITED` when over the rate, or when the store is
   *   unavailable and `failOpen` is false.
   * @throws {AbortedError} `E_ABORTED` when `signal` is already aborted.
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return this.#defaultPolicy.execute(fn, signal);
  }

  #validCost(cost: unknown): void {
    integer(cost, 'cost', 0, this.#params.burst);
  }

  /** The decision, synchronous when the store answers synchronously. Never rejects: store failures become `failOpen` decisions. */
  #decide(key: string, cost: number): RateLimitDecision | Promise<RateLimitDecision> {
    let answer: RateLimitDecision | PromiseLike<RateLimitDecision>;
    try {
      answer = this.#store.take(key, cost, this.#params, this.#clock.now());
    } catch (error) {
      return this.#fallback(error);
    }
    if (!isThenable(answer)) return this.#count(answer);
    return this.#bounded(answer).then(
      (decision) => this.#count(decision),
      (error: unknown) => this.#fallback(error),
    );
  }

  #count(decision: RateLimitDecision): RateLimitDecision {
    if (decision.allowed) this.#allowed++;
    else this.#limited++;
    return decision;
  }

  #fallback(error: unknown): RateLimitDecision {
    this.#storeErrors++;
    this.#degraded++;
    if (this.#storeErrorEm.size !== 0) this.#storeErrorEm.emit(error);
    if (this.#failOpen) {
      this.#allowed++;
      return { allowed: true, retryAfter: 0, remaining: 0, resetAfter: 0, degraded: true, error };
    }
    this.#limited++;
    // The store told us nothing about the key: suggest a retry once its timeout could have passed.
    return { allowed: false, retryAfter: this.#timeout, remaining: 0, resetAfter: 0, degraded: true, error };
  }

  #bounded(answer: PromiseLike<RateLimitDecision>): Promise<RateLimitDecision> {
    if (this.#storeBounded) return Promise.resolve(answer);
    return withDeadline(
      answer,
      this.#timeout,
      this.#clock,
      () => new TimeoutError(this.#timeout, `Rate limiter store "${this.#store.name}"`, 'E_REDIS_TIMEOUT'),
    );
  }

  #reject(key: string, decision: RateLimitDecision): RateLimitedError {
    const reason: RateLimitReason = decision.degraded ? 'unavailable' : 'rate';
    if (this.#rejectEm.size !== 0) this.#rejectEm.emit({ key, reason, retryAfter: decision.retryAfter });
    if (rejectChannel.hasSubscribers) {
      rejectChannel.publish({ name: this.#name, key, reason, retryAfter: decision.retryAfter });
    }
    return new RateLimitedError(
      reason,
      key,
      decision.retryAfter,
      decision.degraded ? decision.error : undefined,
    );
  }

  async #runObserved<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T> {
    const start = this.#watch();
    try {
      const value = await fn(context);
      if (this.#successEm.size !== 0) this.#successEm.emit({ duration: this.#watch() - start });
      return value;
    } catch (error) {
      if (this.#failureEm.size !== 0) {
        this.#failureEm.emit({
          duration: this.#watch() - start,
          handled: false,
          reason: { error: error as Error },
        });
      }
      throw error;
    }
  }

  /** Counts as a plain object. */
  stats(): RateLimiterStats {
    return {
      name: this.#name,
      store: String(this.#store.name),
      rate: this.#rate,
      per: this.#per,
      burst: this.#params.burst,
      allowed: this.#allowed,
      limited: this.#limited,
      degraded: this.#degraded,
      storeErrors: this.#storeErrors,
    };
  }
}

/**
 * A cockatiel policy admitting calls under one key of a {@link RateLimiter}; see
 * {@link RateLimiter.policy}. Its events are the limiter's.
 */
export class RateLimitPolicy implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;
  readonly #host: PolicyHost;
  /** The key this policy limits. */
  readonly key: string;
  /** Tokens each call takes. */
  readonly cost: number;
  readonly onSuccess: Event<ISuccessEvent>;
  readonly onFailure: Event<IFailureEvent>;

  /** @internal Use {@link RateLimiter.policy}. */
  constructor(host: PolicyHost, key: string, cost: number) {
    this.#host = host;
    this.key = key;
    this.cost = cost;
    this.onSuccess = host.onSuccess;
    this.onFailure = host.onFailure;
  }

  /**
   * Runs `fn` if the key's bucket holds `cost` tokens.
   * @throws {RateLimitedError} `E_RATE_LIMITED` when over the rate, or when the store is
   *   unavailable and `failOpen` is false.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts before the call starts.
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    const context = signal === undefined ? defaultPolicyContext : { signal };
    const decision = this.#host.decide(this.key, this.cost);
    if (decision instanceof Promise) {
      return raceAbort(decision, signal).then((d) => this.#after(d, fn, context));
    }
    return this.#after(decision, fn, context);
  }

  #after<T>(
    decision: RateLimitDecision,
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T> {
    const host = this.#host;
    if (!decision.allowed) return Promise.reject(host.reject(this.key, decision));
    if (host.observed()) return host.runObserved(fn, context);
    try {
      return Promise.resolve(fn(context));
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

function validKey(key: unknown, option: string): string {
  if (typeof key !== 'string') throw new InvalidOptionError(option, key, 'a string');
  return key;
}

function isThenable(value: unknown): value is PromiseLike<RateLimitDecision> {
  return (
    value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function'
  );
}
