import type { IDefaultPolicyContext } from 'cockatiel';
import { LRUCache } from 'lru-cache';
import { type Clock, systemClock } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import { InvalidOptionError } from '../core/errors.js';
import type { Disposable } from '../core/events.js';
import { clockOption, duration, fn, fraction, integer, knownKeys, optionsObject } from '../core/validate.js';
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitBreakerStats,
  type CircuitState,
  kOpenGate,
} from './circuit-breaker.js';

/** Options of {@link breakerRegistry}. */
export interface BreakerRegistryOptions<K extends string> {
  /** Options for the breaker of `key`, called the first time the key is seen (and again after eviction). */
  create(key: K): CircuitBreakerOptions;
  /** Breakers kept at most; the least recently used is dropped beyond it. @default 1000 */
  maxKeys?: number;
  /** A breaker not used for this long is dropped. @default '10m' */
  idleTtl?: Duration;
  /**
   * The largest fraction of tracked breakers that may be open (or half-open) at once, as Envoy's
   * `max_ejection_percent`: one bad rollout cannot cut off every upstream. One breaker may always
   * open, whatever the fraction. Beyond the cap a breaker whose strategy trips stays closed.
   * @default 1 (no cap)
   */
  maxOpenFraction?: number;
  /** Time source for idle expiry. @default systemClock */
  clock?: Clock;
}

/** Snapshot returned by {@link BreakerRegistry.stats}. */
export interface BreakerRegistryStats {
  size: number;
  open: number;
  /** open / size (0 when empty). */
  openFraction: number;
  /** Breakers whose opening the cap refused. */
  vetoedOpens: number;
  breakers: Record<string, CircuitBreakerStats>;
}

/**
 * Per-key circuit breakers (per upstream host, route or tenant), LRU-bounded and idle-expiring,
 * with a cap on how many may be open at once.
 *
 * @example
 * const breakers = breakerRegistry({
 *   create: (host) => ({ name: host, strategy: consecutive(5), halfOpenAfter: '5s' }),
 *   maxKeys: 500,
 *   maxOpenFraction: 0.3,
 * });
 * await breakers.execute(url.host, ({ signal }) => fetch(url, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for invalid options.
 */
export function breakerRegistry<K extends string = string>(
  options: BreakerRegistryOptions<K>,
): BreakerRegistry<K> {
  return new BreakerRegistry(options);
}

/** See {@link breakerRegistry}. */
export class BreakerRegistry<K extends string = string> {
  readonly #create: (key: K) => CircuitBreakerOptions;
  readonly #maxOpenFraction: number;
  readonly #cache: LRUCache<K, CircuitBreaker>;
  readonly #open = new Set<CircuitBreaker>();
  /** Each tracked breaker's state listener, dropped on eviction: a caller may still hold and use it. */
  readonly #subscriptions = new WeakMap<CircuitBreaker, Disposable>();
  #vetoed = 0;

  constructor(options: BreakerRegistryOptions<K>) {
    const opts = optionsObject(options);
    knownKeys(opts, ['create', 'maxKeys', 'idleTtl', 'maxOpenFraction', 'clock']);
    this.#create = fn(opts.create, 'create');
    const maxKeys = integer(opts.maxKeys, 'maxKeys', 1, 2 ** 24, 1000);
    // lru-cache takes whole milliseconds.
    const idleTtl = Math.ceil(duration(opts.idleTtl, 'idleTtl', 600_000, 1));
    this.#maxOpenFraction = fraction(opts.maxOpenFraction, 'maxOpenFraction', 1);
    const clock = clockOption(opts.clock);
    this.#cache = new LRUCache<K, CircuitBreaker>({
      max: maxKeys,
      ttl: idleTtl,
      updateAgeOnGet: true,
      // Expiry is checked on access: no timer per key.
      ttlAutopurge: false,
      // With the system clock lru-cache's own time source is right, and it caches now() for 1ms,
      // which halves the cost of a lookup. An injected clock is read on every access instead,
      // since that cache (on a real timer) would hide a fake clock's jumps.
      ...(clock === systemClock ? {} : { perf: { now: () => clock.now() }, ttlResolution: 0 }),
      dispose: (breaker) => {
        this.#open.delete(breaker);
        this.#subscriptions.get(breaker)?.dispose();
        this.#subscriptions.delete(breaker);
        void breaker.close();
      },
    });
  }

  /** The breaker of `key`, created on first use. */
  get(key: K): CircuitBreaker {
    let breaker = this.#cache.get(key);
    if (breaker === undefined) {
      breaker = this.#build(key);
      this.#cache.set(key, breaker);
    }
    return breaker;
  }

  /** Runs `fn` through the breaker of `key`. */
  execute<T>(
    key: K,
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ): Promise<T> {
    return this.get(key).execute(fn, signal);
  }

  /** Whether a breaker for `key` is tracked (and not idle-expired). */
  has(key: K): boolean {
    return this.#cache.has(key);
  }

  /** Drops the breaker of `key`. */
  delete(key: K): boolean {
    return this.#cache.delete(key);
  }

  /** Tracked keys, most recently used first. */
  keys(): K[] {
    return [...this.#cache.keys()];
  }

  /** Number of tracked breakers. */
  get size(): number {
    return this.#cache.size;
  }

  /** Counts, and each breaker's stats. */
  stats(): BreakerRegistryStats {
    const breakers: Record<string, CircuitBreakerStats> = {};
    for (const [key, breaker] of this.#cache.entries()) breakers[key] = breaker.stats();
    const size = this.#cache.size;
    return {
      size,
      open: this.#open.size,
      openFraction: size === 0 ? 0 : this.#open.size / size,
      vetoedOpens: this.#vetoed,
      breakers,
    };
  }

  /** Drops every breaker, closing their shared states. */
  async close(): Promise<void> {
    const all = [...this.#cache.values()];
    this.#cache.clear();
    await Promise.all(all.map((b) => b.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #build(key: K): CircuitBreaker {
    const options = this.#create(key);
    if (options instanceof CircuitBreaker) {
      throw new InvalidOptionError(
        'create',
        options,
        'a function returning breaker options, not a breaker (the registry builds it)',
      );
    }
    const breaker = new CircuitBreaker({
      name: String(key),
      ...options,
      [kOpenGate]: (b: CircuitBreaker) => this.#mayOpen(b),
    } as CircuitBreakerOptions);
    const subscription = breaker.onStateChange((state: CircuitState) => {
      if (state === 'open' || state === 'half-open') this.#open.add(breaker);
      else this.#open.delete(breaker);
    });
    this.#subscriptions.set(breaker, subscription);
    if (breaker.state === 'open' || breaker.state === 'half-open') this.#open.add(breaker);
    return breaker;
  }

  #mayOpen(breaker: CircuitBreaker): boolean {
    if (this.#maxOpenFraction >= 1 || this.#open.has(breaker)) return true;
    const allowed = Math.max(1, Math.floor(this.#maxOpenFraction * this.#cache.size));
    if (this.#open.size + 1 <= allowed) return true;
    this.#vetoed++;
    return false;
  }
}
