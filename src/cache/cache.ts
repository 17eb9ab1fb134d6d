import { randomBytes } from 'node:crypto';
import { CircuitBreaker, circuitBreaker } from '../breaker/circuit-breaker.js';
import { consecutive } from '../breaker/strategies/consecutive.js';
import { onAbort, raceAbort } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { channel, publish } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ClosedError, InvalidOptionError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import { isReplyError } from '../core/redis.js';
import { sharedTimerWheel, type TimerWheel } from '../core/timer-wheel.js';
import { duration } from '../core/validate.js';
import { Bus, type BusMessage } from './bus/bus.js';
import { CacheSerializeError, CacheUnavailableError, FactoryTimeoutError } from './errors.js';
import { decodeEntry, Entry, encodeEntry } from './internal/envelope.js';
import {
  betaOf,
  jittered,
  type LoadOptions,
  namespaceName,
  type ResolvedOptions,
  resolveLoad,
  resolveOptions,
  resolveWrite,
  type WriteOptions,
} from './internal/options.js';
import type { Serializer } from './internal/serializer.js';
import { type KeyState, KeyStates, type Snapshot } from './internal/single-flight.js';
import { ENTRY_OVERHEAD } from './internal/size.js';
import { MemoryStore } from './stores/memory.js';
import { NamespaceKeys, type Payload, RedisStore, type WriteItem } from './stores/redis.js';
import type {
  CacheCallOptions,
  CacheErrorEvent,
  CacheHitEvent,
  CacheInvalidateEvent,
  CacheLoadEvent,
  CacheMissEvent,
  CacheOptions,
  CacheSetManyItem,
  CacheSetOptions,
  CacheStats,
  CacheWriteEvent,
  CacheWriteResult,
  GetOrSetOptions,
  Loader,
  LoaderContext,
  WrapOptions,
} from './types.js';

/** Result of an L2 read that could not be made (Redis down, slow, breaker open). */
const L2_DOWN: unique symbol = Symbol('l2 down');
type ReadResult = Entry | undefined | typeof L2_DOWN;

const OK: CacheWriteResult = Object.freeze({ degraded: false });
const OK_PROMISE: Promise<CacheWriteResult> = Promise.resolve(OK);
const UNDEFINED_PROMISE: Promise<undefined> = Promise.resolve(undefined);

/** First and longest pause between two looks at another instance's fill. */
const LEASE_POLL_MIN = 5;
const LEASE_POLL_MAX = 200;
/** Keys remembered for deletion from Redis after an outage; beyond it, the namespace is cleared instead. */
const MAX_REPAIR_KEYS = 10_000;
/** Redis keeps an entry this much longer than its graced lifetime (its TTL there is only for garbage collection). */
const L2_SLACK = 1_000;

const loadChannel = channel('cache', 'load');
const errorChannel = channel('cache', 'error');
const invalidateChannel = channel('cache', 'invalidate');

/** What must still be deleted from Redis once it is back: writes that reached L1 only. */
interface Repair {
  readonly keys: Set<string>;
  readonly tags: Set<string>;
  clear: boolean;
}

/**
 * A getOrSet load in flight, shared by the callers of one instance (local single-flight). Its
 * snapshot (`ke`, `ge`) is the key's epochs when it last read L2 or took the lease: its value is
 * installed only if they have not moved since.
 */
class Flight implements Snapshot {
  ke = 0;
  ge = 0;
  /** Graced value at hand, for stale-if-error and soft timeouts. */
  stale: Entry | undefined;
  /** Callers waiting on it. */
  waiters = 0;
  /** True once a caller left it running on purpose (soft timeout, stale-while-revalidate, early refresh). */
  keepAlive: boolean;
  abandoned: unknown;
  /** Wakes a lease wait when the flight is abandoned. */
  onAbandon: (() => void) | undefined;
  controller: AbortController | undefined;
  settled = false;
  promise!: Promise<unknown>;

  constructor(
    readonly background: boolean,
    stale: Entry | undefined,
  ) {
    this.keepAlive = background;
    this.stale = stale;
  }

  /** Stops the flight: its lease wait ends, its loader's signal aborts, its result is not installed. */
  abandon(reason: unknown): void {
    if (this.settled || this.abandoned !== undefined) return;
    this.abandoned = reason;
    this.controller?.abort(reason);
    this.onAbandon?.();
  }
}

/** The loader's context; the AbortSignal is created only if the loader reads it. */
class LoadContext implements LoaderContext {
  ttl: number | undefined;
  readonly #flight: Flight;
  readonly stale: unknown;

  constructor(flight: Flight, stale: unknown) {
    this.#flight = flight;
    this.stale = stale;
  }

  get signal(): AbortSignal {
    const flight = this.#flight;
    if (flight.controller === undefined) {
      flight.controller = new AbortController();
      if (flight.abandoned !== undefined) flight.controller.abort(flight.abandoned);
    }
    return flight.controller.signal;
  }

  skip(): undefined {
    return undefined;
  }

  /** An own arrow property, so `({ setTtl }) => ...` works as well as `ctx.setTtl(...)`. */
  readonly setTtl = (ttl: Duration): void => {
    this.ttl = duration(ttl, 'ttl', undefined, 1, 2 ** 31 - 1);
  };
}

/** State shared by a cache and its namespaces. */
class Core {
  readonly o: ResolvedOptions;
  readonly clock: Clock;
  readonly wheel: TimerWheel;
  readonly serializer: Serializer;
  readonly l1: MemoryStore;
  readonly l2: RedisStore | undefined;
  readonly bus: Bus | undefined;
  /** The breaker the cache created (and closes), if it created one. */
  readonly ownBreaker: CircuitBreaker | undefined;
  readonly keys = new KeyStates();
  /** Bus channel -> the namespace's handler. */
  readonly channels = new Map<string, (message: BusMessage) => void>();
  readonly flights = new Set<Flight>();
  readonly repairs = new Set<{ run(): Promise<void> }>();
  readonly id: string;
  /** getOrSet's options when a call passes none: resolved once. */
  readonly defaultLoad: LoadOptions;
  #seq = 0;
  repairing = false;
  closed = false;
  closing: Promise<void> | undefined;

  l1Hits = 0;
  l2Hits = 0;
  misses = 0;
  gracedHits = 0;
  loads = 0;
  loadErrors = 0;
  staleFillsDropped = 0;
  leaseWaits = 0;
  earlyRefreshes = 0;
  corrupt = 0;
  degradedWrites = 0;

  readonly hitEm = new Emitter<CacheHitEvent>();
  readonly missEm = new Emitter<CacheMissEvent>();
  readonly loadEm = new Emitter<CacheLoadEvent>();
  readonly writeEm = new Emitter<CacheWriteEvent>();
  readonly invalidateEm = new Emitter<CacheInvalidateEvent>();
  readonly errorEm = new Emitter<CacheErrorEvent>();

  constructor(options: CacheOptions | undefined) {
    const o = resolveOptions(options);
    this.o = o;
    this.clock = o.clock;
    this.wheel = sharedTimerWheel(o.clock);
    this.serializer = o.serializer;
    this.l1 = new MemoryStore(o.l1);
    if (o.l2 !== undefined) {
      let breaker: CircuitBreaker | undefined;
      const given = o.l2.breaker;
      if (given instanceof CircuitBreaker) {
        breaker = given;
      } else if (given !== false) {
        breaker = circuitBreaker({
          name: `cache:${o.namespace}:l2`,
          strategy: consecutive(5),
          halfOpenAfter: '1s',
          // A script error or WRONGTYPE says nothing about Redis being reachable.
          isFailure: (error) => !isReplyError(error),
          clock: o.clock,
          ...(given as object | undefined),
        });
        this.ownBreaker = breaker;
      }
      this.l2 = new RedisStore(o.l2.redis, {
        clock: o.clock,
        timeout: o.l2.timeout,
        breaker,
        binary: o.serializer.binary === true,
        batchSize: o.l2.batchSize,
      });
      if (o.bus) {
        this.bus = new Bus(o.l2.redis, {
          clock: o.clock,
          closeTimeout: Math.max(o.l2.timeout, 500),
          heartbeat: o.busHeartbeat,
          handlers: {
            message: (ch, message) => this.channels.get(ch)?.(message),
            gap: () => {
              // Invalidations may have been missed: nothing L1 holds is fresh any more (it stays
              // only as a graced stand-in), and nothing in flight may be installed.
              this.l1.distrustAll();
              this.keys.invalidateAll();
            },
            error: (error) => this.error('', 'bus', undefined, error),
          },
        });
      }
    }
    this.id = this.bus?.id ?? randomBytes(9).toString('base64url');
    this.defaultLoad = Object.freeze(resolveLoad(undefined, o));
  }

  /** A fresh fill lease token. */
  token(): string {
    return `${this.id}:${++this.#seq}`;
  }

  error(namespace: string, operation: string, key: string | undefined, error: unknown): void {
    if (this.errorEm.size !== 0) this.errorEm.emit({ namespace, operation, key, error });
    publish(errorChannel, () => ({ namespace, operation, key, error }));
  }

  /** True when L2-backed values may enter L1: no bus, or a bus that cannot have missed anything. */
  get installable(): boolean {
    return this.bus === undefined || this.bus.connected;
  }

  /** Deletes from Redis what degraded writes left there, once Redis answers again. */
  maybeRepair(): void {
    if (this.repairing || this.repairs.size === 0 || this.closed || !this.l2?.available) return;
    this.repairing = true;
    void (async () => {
      try {
        for (const repair of [...this.repairs]) await repair.run();
      } catch {
        // Still unreachable: tried again on a later call.
      } finally {
        this.repairing = false;
      }
    })();
  }
}

/**
 * Creates a two-layer cache: L1 in process (`lru-cache`, decoded values), L2 in Redis (optional),
 * kept coherent across instances by a pub/sub bus, with local and distributed single-flight
 * fills, stale-set protection, stale-if-error, soft and hard timeouts and early refresh.
 * See docs/cache.md for the consistency model.
 *
 * @example
 * import { Redis } from 'ioredis';
 * import { createCache } from 'buttress/cache';
 *
 * const cache = createCache({ namespace: 'shop', l2: { redis: new Redis() }, ttl: '5m', grace: '1h' });
 * const product = await cache.getOrSet(`product:${id}`, ({ signal }) => db.product(id, { signal }), {
 *   tags: [`category:${categoryId}`],
 *   timeout: '200ms',
 * });
 * await cache.deleteByTag(`category:${categoryId}`);
 * await cache.close(); // closes what the cache opened, never your Redis connection
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the option, for an invalid or unknown option.
 */
export function createCache(options?: CacheOptions): Cache {
  return new Cache(new Core(options), undefined, undefined);
}

/**
 * A cache namespace: the root one from {@link createCache}, or a child from
 * {@link Cache.namespace}. Every method taking a key works within the namespace.
 */
export class Cache {
  readonly #c: Core;
  readonly #name: string;
  /** Prefix of this namespace's L1 keys ('' for the root). */
  readonly #prefix: string;
  readonly #keys: NamespaceKeys | undefined;
  /** The namespace's bus channel, or '' when there is no bus. */
  readonly #channel: string;
  readonly #children = new Map<string, Cache>();
  readonly #root: boolean;
  #repair: Repair | undefined;
  #closed = false;

  /** Fires on every hit (L1 or L2, graced or not). */
  readonly onHit: Event<CacheHitEvent>;
  /** Fires when neither layer had a usable value. */
  readonly onMiss: Event<CacheMissEvent>;
  /** Fires after each loader run. */
  readonly onLoad: Event<CacheLoadEvent>;
  /** Fires after each write (set, delete, deleteByTag, clear), degraded or not. */
  readonly onWrite: Event<CacheWriteEvent>;
  /** Fires when another instance's write invalidates this instance's L1. */
  readonly onInvalidate: Event<CacheInvalidateEvent>;
  /** Fires for what went wrong without failing a caller: Redis failures, corrupt payloads, bus trouble, failed loads served graced. */
  readonly onError: Event<CacheErrorEvent>;

  /** @internal Use {@link createCache} and {@link Cache.namespace}. */
  constructor(internal: object, parent?: Cache, name?: string) {
    const core = internal as Core;
    this.#c = core;
    this.#root = parent === undefined;
    this.#name = parent === undefined ? core.o.namespace : `${parent.#name}:${name}`;
    this.#prefix = parent === undefined ? '' : `\u0001${this.#name}\u0001`;
    this.#keys = core.l2 === undefined ? undefined : new NamespaceKeys(this.#name, core.l2.keyPrefix);
    this.#channel = core.bus === undefined ? '' : `${core.l2!.keyPrefix}{${this.#name}}:bus`;
    this.onHit = core.hitEm.event;
    this.onMiss = core.missEm.event;
    this.onLoad = core.loadEm.event;
    this.onWrite = core.writeEm.event;
    this.onInvalidate = core.invalidateEm.event;
    this.onError = core.errorEm.event;
    if (core.bus !== undefined) {
      core.channels.set(this.#channel, (message) => this.#onRemote(message));
      core.bus.add(this.#channel);
    }
  }

  /** The full namespace name (`parent:child` for a child). */
  get name(): string {
    return this.#name;
  }

  // ---------------------------------------------------------------------------------------------
  // Keys

  /** L1 key of `key`: the key itself in the root namespace (no concatenation on the hit path). */
  #l1Key(key: string): string {
    if (this.#prefix !== '') return this.#prefix + key;
    // Root keys starting with the separator are escaped so they never collide with a child's.
    return key.charCodeAt(0) === 1 ? `\u0001${key}` : key;
  }

  /** True when an L1 key belongs to this namespace. */
  #owns = (l1Key: string): boolean =>
    this.#prefix === ''
      ? l1Key.charCodeAt(0) !== 1 || l1Key.charCodeAt(1) === 1
      : l1Key.startsWith(this.#prefix);

  #tagKeys(tags: readonly string[] | undefined): string[] | undefined {
    return tags?.map((t) => `${this.#prefix}\u0002${t}`);
  }

  #check(key: unknown): asserts key is string {
    if (this.#closed || this.#c.closed) throw new ClosedError('Cache');
    if (typeof key !== 'string') throw new InvalidOptionError('key', key, 'a string');
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  /**
   * The fresh value under `key`, or undefined. Looks in L1, then L2 (a value found there enters
   * L1 for its remaining TTL, capped by `l1.maxTtl`). A graced (stale) value is not returned.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts first.
   */
  get<T = unknown>(key: string, options?: CacheCallOptions): Promise<T | undefined> {
    const c = this.#c;
    if (typeof key === 'string' && !c.closed && !this.#closed && options?.signal?.aborted !== true) {
      const entry = c.l1.get(this.#l1Key(key));
      if (entry !== undefined && c.clock.now() < entry.freshUntil) {
        c.l1Hits++;
        if (c.hitEm.size !== 0) c.hitEm.emit({ namespace: this.#name, key, layer: 'l1', graced: false });
        return (entry.promise ??= Promise.resolve(entry.value)) as Promise<T>;
      }
      if (c.l2 === undefined) {
        c.misses++;
        if (c.missEm.size !== 0) c.missEm.emit({ namespace: this.#name, key });
        return UNDEFINED_PROMISE;
      }
    }
    return this.#getSlow(key, options) as Promise<T | undefined>;
  }

  async #getSlow(key: string, options: CacheCallOptions | undefined): Promise<unknown> {
    this.#check(key);
    const signal = options?.signal;
    if (signal?.aborted) throw new AbortedError(signal.reason);
    const c = this.#c;
    const l1Key = this.#l1Key(key);
    const entry = c.l1.get(l1Key);
    const now = c.clock.now();
    if (entry !== undefined && now < entry.freshUntil) return this.#hit(key, entry, 'l1', false);
    if (this.#l2Usable(key)) {
      const read = await raceAbort(this.#readL2(key, l1Key), signal);
      if (read !== L2_DOWN) {
        if (read !== undefined && c.clock.now() < read.expiresAt) return this.#hit(key, read, 'l2', false);
        return this.#miss(key);
      }
    }
    // Redis out of reach: what L1 holds is the best there is while it is still within its TTL
    // (past the L1 cap, which only bounds staleness while Redis can be asked), unless a bus gap
    // made it suspect.
    if (entry !== undefined && !entry.suspect && c.clock.now() < entry.expiresAt) {
      return this.#hit(key, entry, 'l1', false);
    }
    return this.#miss(key);
  }

  /**
   * The fresh values under `keys`, in order (undefined for each miss). The L2 reads of all the
   * misses go out in one round trip.
   */
  getMany<T = unknown>(keys: readonly string[], options?: CacheCallOptions): Promise<(T | undefined)[]> {
    if (!Array.isArray(keys))
      return Promise.reject(new InvalidOptionError('keys', keys, 'an array of strings'));
    return Promise.all(keys.map((key) => this.get<T>(key, options)));
  }

  /** True when a fresh value is cached under `key` (L1 or L2). */
  async has(key: string, options?: CacheCallOptions): Promise<boolean> {
    return (await this.get(key, options)) !== undefined;
  }

  #hit(key: string, entry: Entry, layer: 'l1' | 'l2', graced: boolean): unknown {
    const c = this.#c;
    if (graced) c.gracedHits++;
    else if (layer === 'l1') c.l1Hits++;
    else c.l2Hits++;
    if (c.hitEm.size !== 0) c.hitEm.emit({ namespace: this.#name, key, layer, graced });
    return entry.value;
  }

  #miss(key: string): undefined {
    const c = this.#c;
    c.misses++;
    if (c.missEm.size !== 0) c.missEm.emit({ namespace: this.#name, key });
    return undefined;
  }

  /** True when L2 may be asked about `key` now. */
  #l2Usable(key: string | undefined): boolean {
    const l2 = this.#c.l2;
    if (l2 === undefined) return false;
    if (this.#c.repairs.size !== 0) this.#c.maybeRepair();
    const repair = this.#repair;
    // Until the repair has run, Redis may hold what this instance overwrote or deleted while it
    // could not reach it: reading it would go back in time.
    if (
      repair !== undefined &&
      (repair.clear || repair.tags.size !== 0 || (key !== undefined && repair.keys.has(key)))
    ) {
      return false;
    }
    return l2.available;
  }

  /** True when a write may be sent to L2 now. */
  #l2Writable(): boolean {
    const c = this.#c;
    if (c.l2 === undefined) return false;
    if (c.repairs.size !== 0) c.maybeRepair();
    return c.l2.available;
  }

  /**
   * Reads `key` from L2, shared with any read of it already in flight under the current epochs.
   * A fresh result enters L1 if nothing invalidated the key meanwhile.
   */
  #readL2(key: string, l1Key: string): Promise<ReadResult> {
    const c = this.#c;
    const state = c.keys.acquire(l1Key);
    let read = state.read;
    if (read === undefined || !c.keys.current(state, read)) {
      read = { ke: state.epoch, ge: c.keys.global, promise: undefined as unknown as Promise<unknown> };
      state.read = read;
      read.promise = this.#doReadL2(key, l1Key, state, read);
    }
    c.keys.release(l1Key, state);
    return read.promise as Promise<ReadResult>;
  }

  async #doReadL2(
    key: string,
    l1Key: string,
    state: KeyState,
    snap: Snapshot & { promise: Promise<unknown> },
  ): Promise<ReadResult> {
    const c = this.#c;
    state.refs++;
    let payload: Payload | null;
    try {
      payload = await c.l2!.read(this.#keys!, key);
    } catch (error) {
      this.#l2Failed('read', key, error);
      return L2_DOWN;
    } finally {
      if (state.read === snap) state.read = undefined;
      c.keys.release(l1Key, state);
    }
    if (payload === null) return undefined;
    const entry = this.#decode(key, payload);
    if (entry === undefined) return undefined;
    const now = c.clock.now();
    if (now >= entry.staleUntil) return undefined;
    if (now < entry.expiresAt && c.installable && c.keys.current(state, snap)) {
      this.#install(l1Key, entry, payloadBytes(payload));
    }
    return entry;
  }

  #decode(key: string, payload: Payload): Entry | undefined {
    try {
      return decodeEntry(key, payload, this.#c.serializer);
    } catch (error) {
      this.#c.corrupt++;
      this.#c.error(this.#name, 'decode', key, error);
      return undefined;
    }
  }

  #l2Failed(operation: string, key: string | undefined, error: unknown): void {
    this.#c.error(this.#name, operation, key, error);
  }

  /** Puts `entry` in L1, fresh there until its expiry or the L1 cap, whichever is first. */
  #install(l1Key: string, entry: Entry, payloadBytes?: number): void {
    const c = this.#c;
    entry.freshUntil = Math.min(entry.expiresAt, c.clock.now() + c.o.l1.maxTtl);
    c.l1.set(l1Key, entry, this.#tagKeys(entry.tags), payloadBytes);
  }

  // ---------------------------------------------------------------------------------------------
  // getOrSet

  /**
   * The value under `key`; on a miss, `loader` produces it and it is cached (L2, then L1, then
   * the other instances are told). Concurrent calls for a key share one load in this instance,
   * and instances sharing Redis share one load through a lease (the others wait for its value).
   *
   * `null` is a value and is cached (negative caching); `undefined` is returned but not cached.
   * With `grace`, a failing or slow loader is answered with the stale value (see `timeout`,
   * `hardTimeout`). A write, delete or invalidation of the key that happens while the loader runs
   * wins: the loader's value goes to the callers that were waiting for it, and is never cached.
   *
   * @example
   * const user = await cache.getOrSet(`user:${id}`, ({ signal }) => db.users.find(id, { signal }), { ttl: '10m' });
   * @throws {FactoryTimeoutError} `E_FACTORY_TIMEOUT` past `hardTimeout` with no graced value.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts first.
   * @throws whatever the loader throws, when there is no graced value.
   */
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    const c = this.#c;
    if (typeof key === 'string' && !c.closed && !this.#closed) {
      const entry = c.l1.get(this.#l1Key(key));
      if (entry !== undefined) {
        const now = c.clock.now();
        if (now < entry.freshUntil && options?.signal?.aborted !== true) {
          const beta = options?.earlyRefresh === undefined ? c.o.beta : betaOrZero(options.earlyRefresh);
          // XFetch: refresh with probability exp(-remaining / (β·Δ)), i.e. when
          // now - β·Δ·ln(rand) reaches the expiry.
          if (beta !== 0 && now - beta * entry.delta * Math.log(Math.random()) >= entry.expiresAt) {
            this.#refreshEarly(key, entry, loader as Loader<unknown>, options);
          }
          c.l1Hits++;
          if (c.hitEm.size !== 0) c.hitEm.emit({ namespace: this.#name, key, layer: 'l1', graced: false });
          return (entry.promise ??= Promise.resolve(entry.value)) as Promise<T>;
        }
      }
    }
    return this.#getOrSetSlow(key, loader, options) as Promise<T>;
  }

  async #getOrSetSlow<T>(
    key: string,
    loader: Loader<T>,
    options: GetOrSetOptions | undefined,
  ): Promise<unknown> {
    this.#check(key);
    if (typeof loader !== 'function') throw new InvalidOptionError('loader', loader, 'a function');
    const c = this.#c;
    const lo = options === undefined ? c.defaultLoad : resolveLoad(options, c.o);
    if (lo.signal?.aborted) throw new AbortedError(lo.signal.reason);
    const l1Key = this.#l1Key(key);
    let entry = c.l1.get(l1Key);
    const now = c.clock.now();
    if (entry !== undefined) {
      if (now < entry.freshUntil) return this.#hit(key, entry, 'l1', false);
      if (now >= entry.staleUntil) {
        c.l1.delete(l1Key);
        entry = undefined;
      } else if (now < entry.retryAt) {
        // A load failed recently and this graced value stood in: no new load before graceBackoff.
        return this.#hit(key, entry, 'l1', true);
      }
    }
    const state = c.keys.acquire(l1Key);
    try {
      let flight = state.fill as Flight | undefined;
      let leader = false;
      if (flight === undefined) {
        flight = this.#startFlight(key, l1Key, state, loader as Loader<unknown>, lo, entry, undefined);
        leader = true;
      }
      return await this.#awaitFlight(flight, key, lo, entry, leader && lo.leaderWaits);
    } finally {
      c.keys.release(l1Key, state);
    }
  }

  /** Starts an XFetch refresh of a fresh entry in the background, unless a load of the key is already running. */
  #refreshEarly(
    key: string,
    entry: Entry,
    loader: Loader<unknown>,
    options: GetOrSetOptions | undefined,
  ): void {
    const c = this.#c;
    let lo: LoadOptions;
    try {
      lo = options === undefined ? c.defaultLoad : resolveLoad(options, c.o);
    } catch {
      return; // the same options fail loudly on the next miss
    }
    const l1Key = this.#l1Key(key);
    const state = c.keys.acquire(l1Key);
    try {
      if (state.fill !== undefined) return;
      c.earlyRefreshes++;
      this.#startFlight(key, l1Key, state, loader, lo, entry, entry);
    } finally {
      c.keys.release(l1Key, state);
    }
  }

  #startFlight(
    key: string,
    l1Key: string,
    state: KeyState,
    loader: Loader<unknown>,
    lo: LoadOptions,
    stale: Entry | undefined,
    refresh: Entry | undefined,
  ): Flight {
    const c = this.#c;
    const graced = stale !== undefined && c.clock.now() < stale.staleUntil ? stale : undefined;
    const flight = new Flight(refresh !== undefined, graced);
    state.fill = flight;
    state.refs++;
    c.flights.add(flight);
    flight.promise = this.#flyAndLand(flight, key, l1Key, state, loader, lo, refresh);
    // A background refresh has no caller to handle its outcome (failures went to onError).
    if (refresh !== undefined) flight.promise.catch(noop);
    return flight;
  }

  /** Runs the flight, then takes it off the key before its callers resume. */
  async #flyAndLand(
    flight: Flight,
    key: string,
    l1Key: string,
    state: KeyState,
    loader: Loader<unknown>,
    lo: LoadOptions,
    refresh: Entry | undefined,
  ): Promise<unknown> {
    try {
      return await this.#fly(flight, key, l1Key, state, loader, lo, refresh);
    } finally {
      flight.settled = true;
      if (state.fill === flight) state.fill = undefined;
      this.#c.flights.delete(flight);
      this.#c.keys.release(l1Key, state);
    }
  }

  /**
   * What one caller waits for: the flight, bounded by its own signal, soft and hard timeouts.
   * `waits`: the caller started the flight with `leaderWaits`, so no soft timeout applies to it.
   */
  #awaitFlight(
    flight: Flight,
    key: string,
    lo: LoadOptions,
    stale: Entry | undefined,
    waits: boolean,
  ): Promise<unknown> {
    const c = this.#c;
    const graced = (): Entry | undefined => {
      const candidate = stale ?? flight.stale;
      return candidate !== undefined && c.clock.now() < candidate.staleUntil ? candidate : undefined;
    };
    const softTimeout = waits ? undefined : lo.timeout;
    if (softTimeout === 0) {
      // Stale-while-revalidate: the graced value now, the load in the background.
      const now = graced();
      if (now !== undefined) {
        flight.keepAlive = true;
        flight.promise.catch(noop);
        return Promise.resolve(this.#hit(key, now, 'l1', true));
      }
    }
    if (softTimeout === undefined && lo.hardTimeout === undefined && lo.signal === undefined) {
      // A caller that can never leave: the flight must run to its end.
      flight.keepAlive = true;
      return flight.promise;
    }
    return new Promise<unknown>((resolve, reject) => {
      let done = false;
      flight.waiters++;
      const finish = (): boolean => {
        if (done) return false;
        done = true;
        flight.waiters--;
        if (soft !== undefined) c.wheel.cancel(soft);
        if (hard !== undefined) c.wheel.cancel(hard);
        off();
        return true;
      };
      const soft =
        softTimeout !== undefined && softTimeout > 0
          ? c.wheel.schedule(softTimeout, () => {
              const value = graced();
              if (value === undefined || !finish()) return;
              flight.keepAlive = true;
              resolve(this.#hit(key, value, 'l1', true));
            })
          : undefined;
      const hardTimeout = lo.hardTimeout;
      const hard =
        hardTimeout !== undefined
          ? c.wheel.schedule(hardTimeout, () => {
              if (!finish()) return;
              const value = graced();
              if (value !== undefined) resolve(this.#hit(key, value, 'l1', true));
              else reject(new FactoryTimeoutError(key, hardTimeout));
              this.#maybeAbandon(flight, new FactoryTimeoutError(key, hardTimeout));
            })
          : undefined;
      const off = onAbort(lo.signal, (reason) => {
        if (!finish()) return;
        reject(new AbortedError(reason));
        this.#maybeAbandon(flight, new AbortedError(reason));
      });
      flight.promise.then(
        (value) => {
          if (finish()) resolve(value);
        },
        (error: unknown) => {
          if (finish()) reject(error);
        },
      );
    });
  }

  /** Abandons a flight every caller has left, unless one left it running on purpose. */
  #maybeAbandon(flight: Flight, reason: unknown): void {
    if (flight.waiters === 0 && !flight.keepAlive) flight.abandon(reason);
  }

  /** The body of a flight: L2, then the lease (or a wait for another instance's fill), then the loader. */
  async #fly(
    flight: Flight,
    key: string,
    l1Key: string,
    state: KeyState,
    loader: Loader<unknown>,
    lo: LoadOptions,
    refresh: Entry | undefined,
  ): Promise<unknown> {
    const c = this.#c;
    const l2 = c.l2;
    let degraded = false;
    let token: string | undefined;
    let versions: number[] = [];
    if (l2 !== undefined) {
      // 1. L2, unless this is an early refresh of the entry L2 gave us.
      if (refresh === undefined) {
        if (!this.#l2Usable(key)) {
          degraded = true;
        } else {
          const read = await this.#readL2(key, l1Key);
          if (read === L2_DOWN) {
            degraded = true;
          } else if (read !== undefined) {
            if (c.clock.now() < read.expiresAt) return this.#hit(key, read, 'l2', false);
            flight.stale = newer(flight.stale, read, c.clock.now());
          }
        }
      }
      // 2. The lease: one fill per key across instances.
      if (!degraded && !this.#l2Usable(key)) degraded = true;
      if (!degraded) {
        token = c.token();
        let delay = LEASE_POLL_MIN;
        for (;;) {
          if (flight.abandoned !== undefined) throw flight.abandoned;
          const snap = c.keys.snapshot(state);
          flight.ke = snap.ke;
          flight.ge = snap.ge;
          let reply: Awaited<ReturnType<RedisStore['getOrLease']>>;
          try {
            const freshAfter = refresh !== undefined ? refresh.expiresAt : c.clock.now();
            reply = await l2.getOrLease(this.#keys!, key, token, c.o.l2!.leaseTtl, freshAfter, lo.tags ?? []);
          } catch (error) {
            this.#l2Failed('lease', key, error);
            degraded = true;
            token = undefined;
            break;
          }
          const now = c.clock.now();
          if (reply.status === 'fresh') {
            const entry = this.#decode(key, reply.payload);
            if (entry !== undefined) {
              if (c.installable && c.keys.current(state, flight)) {
                this.#install(l1Key, entry, payloadBytes(reply.payload));
              }
              return this.#hit(key, entry, 'l2', false);
            }
            // Unreadable: load, and overwrite it through a plain set below.
            token = undefined;
            break;
          }
          if (reply.payload !== null) {
            const entry = this.#decode(key, reply.payload);
            if (entry !== undefined) flight.stale = newer(flight.stale, entry, now);
          }
          if (reply.status === 'acquired') {
            versions = reply.versions;
            break;
          }
          // Another instance is filling the key: wait for its value (the bus wakes us when it is
          // written, polling with backoff covers a lost message), bounded by the lease's life.
          c.leaseWaits++;
          await this.#sleep(flight, state, Math.min(delay, Math.max(1, reply.pttl)));
          delay = Math.min(delay * 2, LEASE_POLL_MAX);
        }
      }
    }
    if (token === undefined) {
      const snap = c.keys.snapshot(state);
      flight.ke = snap.ke;
      flight.ge = snap.ge;
    }
    if (flight.abandoned !== undefined) throw flight.abandoned;
    return this.#load(flight, key, l1Key, state, loader, lo, token, versions, degraded);
  }

  /** Waits `ms`, or until the bus says the key changed, or until the flight is abandoned. */
  #sleep(flight: Flight, state: KeyState, ms: number): Promise<void> {
    const c = this.#c;
    return new Promise<void>((resolve) => {
      let done = false;
      const wake = (): void => {
        if (done) return;
        done = true;
        c.wheel.cancel(timer);
        state.wakers?.delete(wake);
        flight.onAbandon = undefined;
        resolve();
      };
      const timer = c.wheel.schedule(ms, wake);
      (state.wakers ??= new Set()).add(wake);
      flight.onAbandon = wake;
    });
  }

  async #load(
    flight: Flight,
    key: string,
    l1Key: string,
    state: KeyState,
    loader: Loader<unknown>,
    lo: LoadOptions,
    token: string | undefined,
    versions: readonly number[],
    degraded: boolean,
  ): Promise<unknown> {
    const c = this.#c;
    const ctx = new LoadContext(flight, flight.stale?.value);
    const started = c.clock.now();
    c.loads++;
    let value: unknown;
    try {
      const result = loader(ctx);
      value = isThenable(result) ? await this.#bounded(result, flight, key, lo.hardTimeout) : result;
      if (flight.abandoned !== undefined) throw flight.abandoned;
    } catch (error) {
      c.loadErrors++;
      this.#loaded(key, started, false, error);
      if (token !== undefined) this.#releaseLease(key, token);
      const stale = flight.stale;
      const now = c.clock.now();
      if (stale !== undefined && now < stale.staleUntil && flight.abandoned === undefined) {
        // Stale-if-error: serve the graced value, and leave the source alone for graceBackoff.
        this.#c.error(this.#name, 'load', key, error);
        const standIn = stale.clone();
        standIn.retryAt = now + lo.graceBackoff;
        if (c.keys.current(state, flight)) this.#install(l1Key, standIn);
        return flight.background ? stale.value : this.#hit(key, standIn, 'l1', true);
      }
      throw error;
    }
    const now = c.clock.now();
    if (value === undefined) {
      if (token !== undefined) this.#releaseLease(key, token);
      this.#loaded(key, started, false);
      return undefined;
    }
    const ttl = ctx.ttl ?? jittered(lo.ttl, lo.jitter);
    const entry = new Entry(
      value,
      started,
      now + ttl,
      now + ttl + lo.grace,
      Math.max(1, now - started),
      lo.tags,
    );
    let cached = false;
    if (c.l2 !== undefined && !degraded) {
      let payload: string | Uint8Array;
      try {
        payload = encodeEntry(entry, c.serializer);
      } catch (error) {
        if (token !== undefined) this.#releaseLease(key, token);
        this.#c.error(this.#name, 'serialize', key, new CacheSerializeError(key, c.serializer.name, error));
        this.#loaded(key, started, false);
        return value;
      }
      const item: WriteItem = {
        key,
        payload,
        lifetime: lifetimeOf(entry, now),
        expiresAt: entry.expiresAt,
        tags: lo.tags,
      };
      try {
        if (token !== undefined) {
          const written = await c.l2.fill(
            this.#keys!,
            item,
            token,
            versions,
            this.#channel,
            this.#channel === '' ? '' : c.bus!.keysMessage([key]),
          );
          if (written === 1) {
            cached = true;
            if (c.installable && c.keys.current(state, flight))
              this.#install(l1Key, entry, payloadBytes(payload));
          } else {
            // A set, delete, clear or tag invalidation took the lease: they win.
            c.staleFillsDropped++;
          }
        } else {
          // No lease (the entry there was unreadable): a plain write, still only if nothing
          // changed the key locally meanwhile.
          if (c.keys.current(state, flight)) {
            await c.l2.set(this.#keys!, [item], this.#channel, this.#busKeys([key]));
            cached = true;
            if (c.installable && c.keys.current(state, flight))
              this.#install(l1Key, entry, payloadBytes(payload));
          } else {
            c.staleFillsDropped++;
          }
        }
      } catch (error) {
        this.#l2Failed('fill', key, error);
        degraded = true;
      }
    }
    if (c.l2 === undefined || degraded) {
      if (c.keys.current(state, flight)) {
        this.#install(l1Key, entry);
        cached = true;
      } else {
        c.staleFillsDropped++;
      }
      if (degraded) this.#needsRepair('key', key);
    }
    this.#loaded(key, started, cached);
    return value;
  }

  /** Settles like the loader, or rejects with `E_FACTORY_TIMEOUT` after `hardTimeout` (aborting its signal). */
  #bounded(
    result: PromiseLike<unknown>,
    flight: Flight,
    key: string,
    hardTimeout: number | undefined,
  ): Promise<unknown> {
    const c = this.#c;
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (): boolean => {
        if (done) return false;
        done = true;
        if (timer !== undefined) c.wheel.cancel(timer);
        flight.onAbandon = undefined;
        return true;
      };
      const timer =
        hardTimeout !== undefined
          ? c.wheel.schedule(hardTimeout, () => {
              if (!finish()) return;
              const error = new FactoryTimeoutError(key, hardTimeout);
              flight.controller?.abort(error);
              reject(error);
            })
          : undefined;
      flight.onAbandon = () => {
        if (finish()) reject(flight.abandoned);
      };
      result.then(
        (value) => {
          if (finish()) resolve(value);
        },
        (error: unknown) => {
          if (finish()) reject(error);
        },
      );
    });
  }

  #loaded(key: string, started: number, cached: boolean, error?: unknown): void {
    const c = this.#c;
    const duration = c.clock.now() - started;
    if (c.loadEm.size !== 0) {
      c.loadEm.emit(
        error === undefined
          ? { namespace: this.#name, key, duration, cached }
          : { namespace: this.#name, key, duration, cached, error },
      );
    }
    publish(loadChannel, () => ({ namespace: this.#name, key, duration, cached, error }));
  }

  #releaseLease(key: string, token: string): void {
    const c = this.#c;
    c.l2!.releaseLease(
      this.#keys!,
      key,
      token,
      this.#channel,
      this.#channel === '' ? '' : c.bus!.wakeMessage(key),
    ).catch((error: unknown) => this.#l2Failed('release', key, error));
  }

  #busKeys(keys: readonly string[]): string {
    return this.#channel === '' ? '' : this.#c.bus!.keysMessage(keys);
  }

  /**
   * Wraps a function so that its results are cached: each call is a getOrSet under
   * `options.key(...args)`.
   *
   * @example
   * const findUser = cache.wrap((id: string) => db.users.find(id), { key: (id) => `user:${id}`, ttl: '10m' });
   * const user = await findUser('42');
   */
  wrap<A extends unknown[], R>(
    fn: (...args: A) => R | PromiseLike<R>,
    options: WrapOptions<A>,
  ): (...args: A) => Promise<R> {
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', fn, 'a function');
    if (typeof options !== 'object' || options === null || typeof options.key !== 'function') {
      throw new InvalidOptionError(
        'key',
        (options as { key?: unknown } | null)?.key,
        'a function of the arguments',
      );
    }
    const { key, ...rest } = options;
    resolveLoad(rest, this.#c.o);
    const callOptions = Object.keys(rest).length === 0 ? undefined : rest;
    return (...args: A) => this.getOrSet<R>(key(...args), () => fn(...args), callOptions);
  }

  // ---------------------------------------------------------------------------------------------
  // Writes

  /**
   * Writes `value` under `key`: Redis first, then L1, then the other instances are told (keys
   * only). A load of the key in flight anywhere is superseded: its value will not be cached.
   * When Redis cannot be reached, L1 is written and the result says `{ degraded: true }`.
   * `undefined` deletes the key.
   *
   * @example
   * const { degraded } = await cache.set(`user:${user.id}`, user, { ttl: '10m', tags: [`team:${user.teamId}`] });
   * @throws {CacheSerializeError} `E_CACHE_SERIALIZE` when the value cannot be serialized (nothing is written).
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts first (the write may still complete).
   */
  set(key: string, value: unknown, options?: CacheSetOptions): Promise<CacheWriteResult> {
    try {
      this.#check(key);
      if (value === undefined)
        return this.delete(key, options === undefined ? undefined : { signal: options.signal });
      const w = resolveWrite(options, this.#c.o);
      if (w.signal?.aborted) throw new AbortedError(w.signal.reason);
      return this.#write([{ key, value, w }], w.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Writes several entries in one Redis round trip. Each item may carry its own `ttl`, `grace`,
   * `jitter` and `tags`; `options` gives the rest.
   */
  setMany(items: readonly CacheSetManyItem[], options?: CacheSetOptions): Promise<CacheWriteResult> {
    try {
      if (!Array.isArray(items)) throw new InvalidOptionError('items', items, 'an array of { key, value }');
      const base = resolveWrite(options, this.#c.o);
      if (base.signal?.aborted) throw new AbortedError(base.signal.reason);
      const writes = items.map((item, i) => {
        if (typeof item !== 'object' || item === null) {
          throw new InvalidOptionError(`items[${i}]`, item, 'an object { key, value }');
        }
        const { key, value, ...own } = item;
        this.#check(key);
        if (value === undefined)
          throw new InvalidOptionError(`items[${i}].value`, value, 'a value other than undefined');
        const w =
          Object.keys(own).length === 0
            ? base
            : resolveWrite({ ...options, ...own, signal: undefined }, this.#c.o);
        return { key, value, w };
      });
      if (writes.length === 0) return OK_PROMISE;
      return this.#write(writes, base.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #write(
    writes: readonly { key: string; value: unknown; w: WriteOptions }[],
    signal: AbortSignal | undefined,
  ): Promise<CacheWriteResult> {
    const c = this.#c;
    const now = c.clock.now();
    const prepared = writes.map(({ key, value, w }) => {
      const ttl = jittered(w.ttl, w.jitter);
      const entry = new Entry(value, now, now + ttl, now + ttl + w.grace, 0, w.tags);
      return { key, l1Key: this.#l1Key(key), entry };
    });
    if (c.l2 === undefined) {
      for (const { l1Key, entry } of prepared) {
        c.keys.invalidate(l1Key);
        this.#install(l1Key, entry);
      }
      this.#wrote(
        'set',
        writes.map((w) => w.key),
        false,
      );
      return OK_PROMISE;
    }
    // Serialize before touching anything: a value that cannot be written fails the call whole.
    const items: WriteItem[] = prepared.map(({ key, entry }) => {
      let payload: string | Uint8Array;
      try {
        payload = encodeEntry(entry, c.serializer);
      } catch (error) {
        throw new CacheSerializeError(key, c.serializer.name, error);
      }
      return { key, payload, lifetime: lifetimeOf(entry, now), expiresAt: entry.expiresAt, tags: entry.tags };
    });
    const states = prepared.map(({ l1Key }) => {
      const state = c.keys.acquire(l1Key);
      c.keys.invalidate(l1Key);
      return { state, snap: c.keys.snapshot(state) };
    });
    const done = (async (): Promise<CacheWriteResult> => {
      let error: unknown;
      try {
        if (!this.#l2Writable()) throw new CacheUnavailableError();
        await c.l2!.set(this.#keys!, items, this.#channel, this.#busKeys(prepared.map((p) => p.key)));
      } catch (e) {
        error = e;
      }
      const degraded = error !== undefined;
      prepared.forEach(({ key, l1Key, entry }, i) => {
        const { state, snap } = states[i]!;
        // Another write or an invalidation came after ours: it wins, in L1 as in Redis.
        if (c.keys.current(state, snap) && (degraded || c.installable)) {
          this.#install(l1Key, entry, payloadBytes(items[i]!.payload));
        } else {
          c.l1.delete(l1Key);
        }
        c.keys.release(l1Key, state);
        // Redis now holds this write: nothing older of the key is left there to repair.
        if (degraded) this.#needsRepair('key', key);
        else this.#repair?.keys.delete(key);
      });
      this.#wrote(
        'set',
        prepared.map((p) => p.key),
        degraded,
      );
      if (!degraded) return OK;
      c.degradedWrites++;
      this.#l2Failed('set', prepared[0]?.key, error);
      return { degraded: true, error };
    })();
    return raceAbort(done, signal);
  }

  /**
   * Deletes `key` everywhere: L1 at once, then Redis, then the other instances' L1. A load of it
   * in flight anywhere will not be cached.
   */
  delete(key: string, options?: CacheCallOptions): Promise<CacheWriteResult> {
    return this.deleteMany([key], options);
  }

  /** Deletes several keys in one Redis round trip. */
  deleteMany(keys: readonly string[], options?: CacheCallOptions): Promise<CacheWriteResult> {
    try {
      if (!Array.isArray(keys)) throw new InvalidOptionError('keys', keys, 'an array of strings');
      for (const key of keys) this.#check(key);
      const signal = options?.signal;
      if (signal?.aborted) throw new AbortedError(signal.reason);
      const c = this.#c;
      const l1Keys = keys.map((key) => this.#l1Key(key));
      for (const l1Key of l1Keys) {
        c.keys.invalidate(l1Key);
        c.l1.delete(l1Key);
      }
      if (c.l2 === undefined || keys.length === 0) {
        this.#wrote('delete', keys, false);
        return OK_PROMISE;
      }
      const states = l1Keys.map((l1Key) => c.keys.acquire(l1Key));
      const done = (async (): Promise<CacheWriteResult> => {
        let error: unknown;
        try {
          if (!this.#l2Writable()) throw new CacheUnavailableError();
          await c.l2!.delete(this.#keys!, keys, this.#channel, this.#busKeys(keys));
        } catch (e) {
          error = e;
        }
        const degraded = error !== undefined;
        l1Keys.forEach((l1Key, i) => {
          c.l1.delete(l1Key);
          c.keys.release(l1Key, states[i]!);
          if (!degraded) this.#repair?.keys.delete(keys[i]!);
        });
        this.#wrote('delete', keys, degraded);
        if (!degraded) return OK;
        for (const key of keys) this.#needsRepair('key', key);
        c.degradedWrites++;
        this.#l2Failed('delete', keys[0], error);
        return { degraded: true, error };
      })();
      return raceAbort(done, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Invalidates every entry carrying `tags` (one or several), in every instance: O(1) in Redis
   * per tag (a version bump), and in each L1 O(entries carrying the tag). See docs/cache.md for
   * what it costs a read.
   */
  deleteByTag(tags: string | readonly string[], options?: CacheCallOptions): Promise<CacheWriteResult> {
    try {
      if (this.#closed || this.#c.closed) throw new ClosedError('Cache');
      const list = typeof tags === 'string' ? [tags] : tags;
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        !list.every((t) => typeof t === 'string' && t.length > 0)
      ) {
        throw new InvalidOptionError('tags', tags, 'a non-empty string or array of non-empty strings');
      }
      const signal = options?.signal;
      if (signal?.aborted) throw new AbortedError(signal.reason);
      const c = this.#c;
      const unique = [...new Set(list)];
      const tagKeys = this.#tagKeys(unique)!;
      c.keys.invalidateAll();
      c.l1.deleteTagged(tagKeys);
      if (c.l2 === undefined) {
        this.#wrote('deleteByTag', unique, false);
        return OK_PROMISE;
      }
      const done = (async (): Promise<CacheWriteResult> => {
        let error: unknown;
        try {
          if (!this.#l2Writable()) throw new CacheUnavailableError();
          await c.l2!.invalidateTags(
            this.#keys!,
            unique,
            this.#channel,
            this.#channel === '' ? '' : c.bus!.tagsMessage(unique),
            c.o.l2!.leaseTtl,
          );
        } catch (e) {
          error = e;
        }
        c.l1.deleteTagged(tagKeys);
        const degraded = error !== undefined;
        this.#wrote('deleteByTag', unique, degraded);
        if (!degraded) return OK;
        for (const tag of unique) this.#needsRepair('tag', tag);
        c.degradedWrites++;
        this.#l2Failed('deleteByTag', undefined, error);
        return { degraded: true, error };
      })();
      return raceAbort(done, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Deletes every entry of this namespace (not of its child namespaces): L1, then Redis (SCAN and
   * UNLINK, never KEYS, on every master of a Cluster), then the other instances' L1.
   */
  clear(options?: CacheCallOptions): Promise<CacheWriteResult> {
    try {
      if (this.#closed || this.#c.closed) throw new ClosedError('Cache');
      const signal = options?.signal;
      if (signal?.aborted) throw new AbortedError(signal.reason);
      const c = this.#c;
      c.keys.invalidateAll();
      c.l1.deleteWhere(this.#owns);
      if (c.l2 === undefined) {
        this.#wrote('clear', [], false);
        return OK_PROMISE;
      }
      const done = (async (): Promise<CacheWriteResult> => {
        let error: unknown;
        try {
          if (!this.#l2Writable()) throw new CacheUnavailableError();
          await this.#clearL2();
        } catch (e) {
          error = e;
        }
        c.keys.invalidateAll();
        c.l1.deleteWhere(this.#owns);
        const degraded = error !== undefined;
        this.#wrote('clear', [], degraded);
        if (!degraded) {
          if (this.#repair !== undefined) this.#repair = undefined;
          return OK;
        }
        this.#needsRepair('clear', '');
        c.degradedWrites++;
        this.#l2Failed('clear', undefined, error);
        return { degraded: true, error };
      })();
      return raceAbort(done, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #clearL2(): Promise<void> {
    const c = this.#c;
    await c.l2!.clear(this.#keys!);
    if (this.#channel !== '') await c.l2!.publish(this.#keys!, this.#channel, c.bus!.clearMessage());
  }

  #wrote(operation: CacheWriteEvent['operation'], keys: readonly string[], degraded: boolean): void {
    const c = this.#c;
    if (c.writeEm.size !== 0) c.writeEm.emit({ namespace: this.#name, operation, keys, degraded });
  }

  // ---------------------------------------------------------------------------------------------
  // Repair after an outage

  /**
   * Remembers a write that reached L1 only. Until it has been replayed as a deletion in Redis
   * (once Redis answers again), reads of what it touched skip Redis, which may hold an older value.
   */
  #needsRepair(kind: 'key' | 'tag' | 'clear', item: string): void {
    const r = (this.#repair ??= { keys: new Set(), tags: new Set(), clear: false });
    if (kind === 'clear') r.clear = true;
    else if (kind === 'tag') r.tags.add(item);
    else if (!r.clear) {
      r.keys.add(item);
      if (r.keys.size > MAX_REPAIR_KEYS) {
        // Too many to replay one by one: clear the namespace in Redis instead.
        r.clear = true;
        r.keys.clear();
      }
    }
    this.#c.repairs.add(this.#repairTask);
  }

  readonly #repairTask = {
    run: async (): Promise<void> => {
      const c = this.#c;
      const r = this.#repair;
      if (r === undefined) {
        c.repairs.delete(this.#repairTask);
        return;
      }
      if (r.clear) {
        await this.#clearL2();
        r.clear = false;
        r.keys.clear();
      }
      if (r.tags.size > 0) {
        const tags = [...r.tags];
        await c.l2!.invalidateTags(
          this.#keys!,
          tags,
          this.#channel,
          this.#channel === '' ? '' : c.bus!.tagsMessage(tags),
          c.o.l2!.leaseTtl,
        );
        for (const tag of tags) r.tags.delete(tag);
      }
      while (r.keys.size > 0) {
        const keys = [...r.keys].slice(0, 500);
        await c.l2!.delete(this.#keys!, keys, this.#channel, this.#busKeys(keys));
        for (const key of keys) r.keys.delete(key);
      }
      if (!r.clear && r.tags.size === 0 && r.keys.size === 0) {
        this.#repair = undefined;
        c.repairs.delete(this.#repairTask);
      }
    },
  };

  // ---------------------------------------------------------------------------------------------
  // Bus

  /** Another instance wrote: drop what L1 holds of it, and supersede what is in flight. */
  #onRemote(message: BusMessage): void {
    const c = this.#c;
    if (message.keys !== undefined) {
      for (const key of message.keys) {
        const l1Key = this.#l1Key(key);
        c.l1.delete(l1Key);
        c.keys.invalidate(l1Key);
      }
    } else if (message.tags !== undefined) {
      c.keys.invalidateAll();
      c.l1.deleteTagged(this.#tagKeys(message.tags)!);
    } else if (message.clear === true) {
      c.keys.invalidateAll();
      c.l1.deleteWhere(this.#owns);
    } else if (message.wake !== undefined) {
      for (const key of message.wake) c.keys.wakeKey(this.#l1Key(key));
      return;
    }
    if (c.invalidateEm.size !== 0) {
      c.invalidateEm.emit({
        namespace: this.#name,
        keys: message.keys,
        tags: message.tags,
        clear: message.clear,
      });
    }
    publish(invalidateChannel, () => ({ namespace: this.#name, ...message }));
  }

  // ---------------------------------------------------------------------------------------------
  // Namespaces, stats, lifecycle

  /**
   * A child namespace, `<this>:<name>`: its own keys, tags and `clear()`, sharing this cache's
   * L1, connections, bus and breaker. Calling it again with the same name returns the same object.
   *
   * @example
   * const users = cache.namespace('users');
   * await users.set('42', user); // Redis key {shop:users}:v:42
   * await users.clear();         // leaves the parent's entries alone
   */
  namespace(name: string): Cache {
    if (this.#closed || this.#c.closed) throw new ClosedError('Cache');
    const valid = namespaceName(name, 'name');
    let child = this.#children.get(valid);
    if (child === undefined) {
      child = new Cache(this.#c, this, valid);
      this.#children.set(valid, child);
    }
    return child;
  }

  /** Counts and gauges for the whole cache (all namespaces), as a plain object. */
  stats(): CacheStats {
    const c = this.#c;
    const l2 = c.l2?.counters();
    let pending = 0;
    for (const cache of this.#allRepairs()) pending += cache;
    return {
      namespace: this.#name,
      l1: {
        entries: c.l1.size,
        maxEntries: c.l1.maxEntries,
        bytes: c.l1.bytes,
        maxBytes: c.l1.maxBytes,
        overheadPerEntry: ENTRY_OVERHEAD,
      },
      l1Hits: c.l1Hits,
      l2Hits: c.l2Hits,
      misses: c.misses,
      gracedHits: c.gracedHits,
      loads: c.loads,
      loadErrors: c.loadErrors,
      staleFillsDropped: c.staleFillsDropped,
      leaseWaits: c.leaseWaits,
      earlyRefreshes: c.earlyRefreshes,
      inflight: c.keys.size,
      l2: {
        enabled: c.l2 !== undefined,
        breaker: c.l2?.breaker?.state,
        calls: l2?.calls ?? 0,
        failures: l2?.failures ?? 0,
        timeouts: l2?.timeouts ?? 0,
        batches: l2?.batches ?? 0,
        batchedReads: l2?.batchedReads ?? 0,
        corruptPayloads: c.corrupt,
        degradedWrites: c.degradedWrites,
        fences: l2?.fences ?? 0,
        repairPending: pending,
      },
      bus: {
        enabled: c.bus !== undefined,
        connected: c.bus?.connected ?? false,
        received: c.bus?.received ?? 0,
        gaps: c.bus?.gaps ?? 0,
      },
    };
  }

  *#allRepairs(): Generator<number> {
    const r = this.#repair;
    if (r !== undefined) yield r.keys.size + r.tags.size + (r.clear ? 1 : 0);
    for (const child of this.#children.values()) yield* child.#allRepairs();
  }

  /**
   * Closes the cache. On the root: every namespace closes, loads in flight are abandoned (their
   * callers get `E_CLOSED`), the bus subscriber and the breaker the cache created are closed.
   * Your Redis connection stays open. On a child namespace: only that namespace stops accepting
   * calls. Idempotent.
   */
  close(): Promise<void> {
    this.#closed = true;
    if (!this.#root) return Promise.resolve();
    const c = this.#c;
    c.closing ??= (async () => {
      c.closed = true;
      const error = new ClosedError('Cache');
      for (const flight of [...c.flights]) flight.abandon(error);
      c.repairs.clear();
      await c.bus?.close();
      await c.ownBreaker?.close();
      c.channels.clear();
      c.hitEm.clear();
      c.missEm.clear();
      c.loadEm.clear();
      c.writeEm.clear();
      c.invalidateEm.clear();
      c.errorEm.clear();
    })();
    return c.closing;
  }

  /** Same as {@link Cache.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The more recent of two graced candidates still within grace. */
function newer(a: Entry | undefined, b: Entry, now: number): Entry | undefined {
  if (now >= b.staleUntil) return a;
  if (a === undefined || b.createdAt > a.createdAt) return b;
  return a;
}

/** How long Redis keeps an entry: its graced lifetime plus slack (Redis's TTL is garbage collection only). */
function lifetimeOf(entry: Entry, now: number): number {
  return entry.staleUntil - now + L2_SLACK;
}

function payloadBytes(payload: string | Uint8Array): number {
  return typeof payload === 'string' ? payload.length * 2 : payload.byteLength;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

function betaOrZero(value: unknown): number {
  try {
    return betaOf(value, 'earlyRefresh');
  } catch {
    return 0;
  }
}

function noop(): void {}
