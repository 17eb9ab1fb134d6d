import { LRUCache } from 'lru-cache';
import { integer, knownKeys, optionsObject } from '../../core/validate.js';
import { gcraTake, type Tat } from '../internal/gcra.js';
import type { GcraParams, RateLimitDecision, RateLimitStore } from '../rate-limit-store.js';

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Keys kept; the least recently used beyond this are forgotten (a forgotten key starts again
   * with a full bucket, so keep it above the number of keys active within one `per`). At most 2^24.
   * @default 10_000
   */
  maxKeys?: number;
}

/**
 * A rate-limit store in this process's memory: one small record per key in an LRU of at most
 * `maxKeys` keys. It answers synchronously, so a limiter on it decides without a promise tick.
 * Each process counts on its own: use {@link redisStore} to share a limit across instances.
 *
 * @example rateLimiter({ rate: 100, per: '1s', store: memoryStore({ maxKeys: 50_000 }) })
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid option.
 */
export function memoryStore(options?: MemoryStoreOptions): RateLimitStore {
  return new MemoryRateLimitStore(options);
}

class MemoryRateLimitStore implements RateLimitStore {
  readonly name = 'memory';
  readonly #maxKeys: number;
  /** Created on first use: lru-cache allocates its index arrays for `max` keys up front. */
  #tats: LRUCache<string, Tat> | undefined;

  constructor(options?: MemoryStoreOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['maxKeys']);
    this.#maxKeys = integer(opts.maxKeys, 'maxKeys', 1, 2 ** 24, 10_000);
  }

  take(key: string, cost: number, params: GcraParams, now: number): RateLimitDecision {
    const tats = (this.#tats ??= new LRUCache<string, Tat>({ max: this.#maxKeys }));
    const ms = Math.floor(now);
    const known = tats.get(key);
    const tat = known ?? { ms: 0, units: 0 };
    const decision = gcraTake(tat, ms, cost, params);
    if (known === undefined && decision.allowed && cost > 0) tats.set(key, tat);
    return decision;
  }
}
