import type { CircuitBreaker, CircuitBreakerOptions, CircuitState } from '../breaker/circuit-breaker.js';
import type { Clock } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import type { RedisConnection } from '../core/redis.js';
import type { Serializer } from './internal/serializer.js';

/**
 * Options of the in-process layer, L1: an `lru-cache` holding decoded values.
 *
 * @example
 * const l1: CacheL1Options = { maxEntries: 50_000, maxBytes: 64 * 1024 * 1024, maxEntryBytes: 1024 * 1024, maxTtl: '30s' };
 */
export interface CacheL1Options {
  /** Most entries held; the least recently used are evicted first. @default 10_000 */
  maxEntries?: number;
  /**
   * Most bytes held, estimated (the payload length for values read from Redis, else a walk over
   * the value; see `sizeOf`). @default undefined (bounded by count only)
   */
  maxBytes?: number;
  /** Values estimated bigger than this skip L1 (they still go to L2). @default maxBytes */
  maxEntryBytes?: number;
  /**
   * Cap on how long an entry stays fresh in L1, whatever its TTL: after it, L1 asks L2 again.
   * Bounds how stale an instance can be if an invalidation were lost. @default undefined (no cap)
   */
  maxTtl?: Duration;
  /** Estimates a value's size in bytes, for `maxBytes`. @default a walk counting strings, numbers and slots */
  sizeOf?: (value: unknown) => number;
}

/**
 * Options of the Redis layer, L2.
 *
 * @example
 * import { Redis } from 'ioredis';
 * const l2: CacheL2Options = { redis: new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), timeout: '50ms' };
 */
export interface CacheL2Options {
  /** Your ioredis `Redis` or `Cluster`. It stays yours: the cache never closes it. */
  redis: RedisConnection;
  /**
   * Deadline of every Redis call; past it the call counts as failed and the cache carries on
   * with L1 and the loader.
   * @default 50 (ms)
   */
  timeout?: Duration;
  /**
   * Lifetime of a fill lease (the distributed single-flight lock). A loader running longer than
   * this loses the lease: its value is returned but not cached, and another instance may load.
   * It is also the longest other instances wait for a holder that died.
   * @default '5s'
   */
  leaseTtl?: Duration;
  /**
   * The circuit breaker guarding L2: options for one the cache creates (and closes), or a
   * breaker of yours (left open on close), or `false` for none.
   * @default { strategy: consecutive(5), halfOpenAfter: '1s' }
   */
  breaker?: CircuitBreaker | CircuitBreakerOptions | false;
  /**
   * Most keys read by one script call. Reads issued in the same tick are batched; a larger
   * batch is split, so that Redis runs one chunk while the client decodes the previous one
   * (measured best around 25 at 100 reads in flight).
   * @default 25
   */
  batchSize?: number;
}

/** Options of the invalidation bus. */
export interface CacheBusOptions {
  /**
   * Interval of the heartbeat the bus sends itself through Redis; a heartbeat missing for one
   * interval counts as a gap (L1 stops being trusted). Bounds how long a silently partitioned
   * instance can serve invalidated values from L1: about two intervals.
   * @default '1s'
   */
  heartbeat?: Duration | false;
}

/**
 * Options of {@link createCache}.
 *
 * @example
 * const cache = createCache({
 *   namespace: 'shop',
 *   l1: { maxEntries: 50_000 },
 *   l2: { redis, timeout: '50ms' },
 *   ttl: '5m',
 *   grace: '1h',
 * });
 */
export interface CacheOptions {
  /**
   * Name of the cache: Redis keys are `{<namespace>}:...` and its bus channel `{<namespace>}:bus`.
   * No braces. @default 'cache'
   */
  namespace?: string;
  /** The in-process layer. @default { maxEntries: 10_000 } */
  l1?: CacheL1Options;
  /** The Redis layer. @default undefined (L1 only) */
  l2?: CacheL2Options;
  /**
   * Cross-instance L1 invalidation over Redis pub/sub (needs `l2`). `{ heartbeat }` sets how often
   * the bus checks that its subscriber still hears Redis (a silent partition is otherwise
   * invisible); `heartbeat: false` turns that off.
   * @default true when `l2` is set, with a heartbeat every second
   */
  bus?: boolean | CacheBusOptions;
  /** How long a value stays fresh. @default '1m' */
  ttl?: Duration;
  /**
   * How long past its TTL a value may still be served when the loader fails or is slow
   * (stale-if-error), or `false`. @default false
   */
  grace?: Duration | false;
  /** After a failed load served a graced value, how long before the loader is tried again. @default '10s' */
  graceBackoff?: Duration;
  /** Spread of TTLs, ± this fraction, so entries written together do not expire together. @default 0 */
  jitter?: number;
  /**
   * Probabilistic early refresh (XFetch, Vattani et al. 2015): a hit refreshes in the background
   * with probability exp(-remaining / (β·Δ)), Δ the last load's duration. `true` means β = 1.
   * @default false
   */
  earlyRefresh?: number | boolean;
  /** How values are written to Redis. @default richSerializer */
  serializer?: Serializer;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Options every async call takes. */
export interface CacheCallOptions {
  /** Aborting rejects the call with `E_ABORTED` (a shared load goes on for its other callers). */
  signal?: AbortSignal;
}

/** Options of `set`, `setMany`. */
export interface CacheSetOptions extends CacheCallOptions {
  /** Overrides the cache's `ttl`. */
  ttl?: Duration;
  /** Overrides the cache's `grace`. */
  grace?: Duration | false;
  /** Overrides the cache's `jitter`. */
  jitter?: number;
  /** Tags, for `deleteByTag`. */
  tags?: readonly string[];
}

/** Options of `getOrSet` and `wrap`. */
export interface GetOrSetOptions extends CacheSetOptions {
  /**
   * Soft timeout: with a graced value at hand, return it once the load has taken this long, and
   * let the load finish in the background. `0` is stale-while-revalidate. Without a graced value
   * the caller waits for the load. @default undefined (wait)
   */
  timeout?: Duration;
  /**
   * Hard timeout: abort the load after this long and reject with `E_FACTORY_TIMEOUT` (or serve the
   * graced value, if there is one). @default undefined (none)
   */
  hardTimeout?: Duration;
  /** Overrides the cache's `earlyRefresh`. */
  earlyRefresh?: number | boolean;
  /** Overrides the cache's `graceBackoff`. */
  graceBackoff?: Duration;
  /**
   * The caller whose call starts the load waits for it, whatever `timeout` says; only the callers
   * that join a load already running get the graced value early (nginx's
   * `proxy_cache_use_stale updating`). For loaders that depend on the caller who runs them: an
   * HTTP handler producing the response of the request that started the load cannot also have
   * that request answered from the stale copy. @default false
   */
  leaderWaits?: boolean;
}

/**
 * What a loader receives. Not generic on purpose: a type parameter in the loader's own parameter
 * would stop TypeScript from inferring the cached type from what the loader returns.
 */
export interface LoaderContext {
  /** Aborted when the load is abandoned: hard timeout, every caller gone, or the cache closed. */
  readonly signal: AbortSignal;
  /** The graced (stale) value, if one is at hand (say, for a conditional request); cast it to your type. */
  readonly stale: unknown;
  /** `return ctx.skip()` to cache nothing: the same as returning `undefined`, said out loud. */
  skip(): undefined;
  /** Caches this value for `ttl` instead of the configured TTL. */
  setTtl(ttl: Duration): void;
}

/** A value source for `getOrSet`: `null` is a value and is cached; `undefined` (or `skip()`) is not. */
export type Loader<T> = (ctx: LoaderContext) => T | PromiseLike<T>;

/** Options of `wrap`: getOrSet's, plus how to name the cache key of a call. */
export interface WrapOptions<A extends unknown[]> extends Omit<GetOrSetOptions, 'signal'> {
  /** The cache key of a call, from its arguments. */
  key: (...args: A) => string;
}

/** One entry of `setMany`. */
export interface CacheSetManyItem extends Omit<CacheSetOptions, 'signal'> {
  key: string;
  value: unknown;
}

/**
 * Outcome of a write. `degraded: true` means L1 was updated but Redis could not be (down, slow,
 * or its breaker open): other instances do not see the write, and the cache will delete the key
 * from Redis once it is reachable again, so nobody reads the older value there afterwards.
 */
export interface CacheWriteResult {
  readonly degraded: boolean;
  /** Why, when degraded (a `CacheUnavailableError` with the cause). */
  readonly error?: unknown;
}

/** An `onHit` event. */
export interface CacheHitEvent {
  readonly namespace: string;
  readonly key: string;
  /** Where the value came from. */
  readonly layer: 'l1' | 'l2';
  /** True when a graced (stale) value was served. */
  readonly graced: boolean;
}

/** An `onMiss` event: no usable value in L1 or L2. */
export interface CacheMissEvent {
  readonly namespace: string;
  readonly key: string;
}

/** An `onLoad` event: a loader ran. */
export interface CacheLoadEvent {
  readonly namespace: string;
  readonly key: string;
  /** Milliseconds it took. */
  readonly duration: number;
  /** The error it threw, if it failed. */
  readonly error?: unknown;
  /** True when the value was cached; false when skipped, undefined, superseded or failed. */
  readonly cached: boolean;
}

/** An `onWrite` event: set, setMany, delete, deleteMany, deleteByTag, clear. */
export interface CacheWriteEvent {
  readonly namespace: string;
  readonly operation: 'set' | 'delete' | 'deleteByTag' | 'clear';
  /** Keys, tags, or nothing for clear. */
  readonly keys: readonly string[];
  readonly degraded: boolean;
}

/** An `onInvalidate` event: another instance's write reached this one over the bus. */
export interface CacheInvalidateEvent {
  readonly namespace: string;
  readonly keys?: readonly string[];
  readonly tags?: readonly string[];
  readonly clear?: true;
}

/** An `onError` event: something went wrong without failing the caller. */
export interface CacheErrorEvent {
  readonly namespace: string;
  /** What was being done. */
  readonly operation: string;
  readonly key?: string;
  readonly error: unknown;
}

/** Snapshot returned by `stats()`. Counters are totals since creation, for the whole cache. */
export interface CacheStats {
  readonly namespace: string;
  readonly l1: {
    /** Entries held (expired ones not yet evicted included). */
    readonly entries: number;
    readonly maxEntries: number;
    /** Estimated bytes held, when L1 is bounded by bytes; else 0. */
    readonly bytes: number;
    readonly maxBytes: number | undefined;
    /** Estimated heap per entry beyond its value (measured, see docs/cache.md). */
    readonly overheadPerEntry: number;
  };
  readonly l1Hits: number;
  readonly l2Hits: number;
  readonly misses: number;
  /** Graced (stale) values served. */
  readonly gracedHits: number;
  readonly loads: number;
  readonly loadErrors: number;
  /** Loads whose value was returned but not installed: a write, delete or invalidation won the race. */
  readonly staleFillsDropped: number;
  /** Waits for another instance's fill (distributed single-flight). */
  readonly leaseWaits: number;
  /** Early refreshes started (XFetch). */
  readonly earlyRefreshes: number;
  /** Keys with a read, load or write in flight now (0 when idle: per-key state does not outlive its operations). */
  readonly inflight: number;
  readonly l2: {
    readonly enabled: boolean;
    readonly breaker: CircuitState | undefined;
    readonly calls: number;
    readonly failures: number;
    readonly timeouts: number;
    /** Batched read calls, and the reads they carried (reads / batches = batching factor). */
    readonly batches: number;
    readonly batchedReads: number;
    readonly corruptPayloads: number;
    /** Writes that reached L1 only. */
    readonly degradedWrites: number;
    /** Deletes sent right behind writes that timed out, in case those land late. */
    readonly fences: number;
    /** Keys (or tags, or a clear) waiting to be deleted from Redis once it is back. */
    readonly repairPending: number;
  };
  readonly bus: {
    readonly enabled: boolean;
    readonly connected: boolean;
    readonly received: number;
    /** Times the subscriber went down or came back (each time L1 was dropped). */
    readonly gaps: number;
  };
}
