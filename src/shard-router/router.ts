import { neverAbortedSignal, raceAbort, throwIfAborted } from '../core/abort.js';
import type { Clock, Timer } from '../core/clock.js';
import { announce, channel, lifecycle, publish } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ClosedError, InvalidOptionError, TimeoutError } from '../core/errors.js';
import { type Disposable, Emitter, type Event } from '../core/events.js';
import { canAbort } from '../core/signals.js';
import {
  bool,
  clockOption,
  duration,
  fn as fnOption,
  knownKeys,
  oneOf,
  optionsObject,
} from '../core/validate.js';
import {
  isStaleShardMapError,
  ShardMapConflictError,
  ShardMapUnavailableError,
  StaleShardMapError,
} from './errors.js';
import {
  accepts,
  defaultSqlConnect,
  enterSql,
  fencePrefix,
  fenceSchemaSql,
  readEnter,
  type SqlClient,
  type SqlConnect,
} from './fence.js';
import type { ShardKey } from './hash/xxh64.js';
import { defaultHasher, type ShardHasher } from './hasher.js';
import { type IdLayout, type IdLayoutOptions, idLayout, shardOfId } from './ids.js';
import { type MoveOptions, type MoveResult, moveShard } from './move.js';
import { type ScatterContext, type ScatterOptions, type ScatterResult, scatter } from './scatter.js';
import { MAX_LOGICAL_SHARDS, ShardMap, type ShardMapSpec } from './shard-map.js';
import type { ShardMapStore } from './stores/store.js';

/**
 * Where a key lives under one map version. The router hands out one frozen object per logical
 * shard and map version, so `shardFor` allocates nothing; compare locations by their fields.
 */
export interface ShardLocation {
  /** The logical shard, in `[0, logicalShards)`. */
  readonly logical: number;
  /** The name of the node that holds it. */
  readonly node: string;
  /** The version of the map this location was read from. */
  readonly mapVersion: number;
}

/** What `run`, `transaction` and `all` take as their target: a key, or a location it resolved to. */
export type ShardTarget = ShardKey | ShardLocation;

/** What `run`'s function receives beside the node. */
export interface RunContext {
  readonly logical: number;
  /** The node's name. */
  readonly node: string;
  readonly mapVersion: number;
  /** The caller's signal (a never-aborting one when none was given). */
  readonly signal: AbortSignal;
}

/** What `transaction`'s function receives beside the client. */
export interface TransactionContext extends RunContext {
  /** 1 for the first attempt; higher when the transaction is run again after `E_STALE_SHARD_MAP`. */
  readonly attempt: number;
}

/** Options of {@link ShardRouter.run}. */
export interface RunOptions {
  signal?: AbortSignal;
}

/** Isolation levels of a fenced transaction. */
export type ShardIsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/** Options of {@link ShardRouter.transaction}. */
export interface TransactionOptions {
  /** @default the server's (read committed) */
  isolation?: ShardIsolationLevel;
  /** BEGIN READ ONLY: for reads that must see the current owner (not an old copy). @default false */
  readOnly?: boolean;
  /** Aborting rejects with `E_ABORTED` (rolling back what is in flight). */
  signal?: AbortSignal;
}

/** Event of {@link ShardRouter.onMapChange}. */
export interface MapChangeEvent {
  readonly previous: ShardMap | undefined;
  readonly current: ShardMap;
  /** `'initial'` (the map option), `'store'` (loaded: pushed or polled), `'local'` (a move made here). */
  readonly source: 'initial' | 'store' | 'local';
}

/** Event of {@link ShardRouter.onStale}. */
export interface StaleEvent {
  readonly error: StaleShardMapError;
  /** The attempt that was refused. */
  readonly attempt: number;
}

/** Snapshot returned by {@link ShardRouter.stats}. */
export interface ShardRouterStats {
  readonly name: string;
  readonly hasher: string;
  readonly logicalShards: number;
  /** The current map's version (0 before one is loaded). */
  readonly mapVersion: number;
  /** Logical shards per node in the current map. */
  readonly shardsPerNode: Readonly<Record<string, number>>;
  /** Maps applied since creation (the initial one included). */
  readonly mapChanges: number;
  /** Loads from the store (pushed, polled or asked for). */
  readonly mapLoads: number;
  /** Store loads that failed, and pushed maps that could not be applied. */
  readonly storeErrors: number;
  /** Fenced transactions begun (first attempts). */
  readonly transactions: number;
  /** Transactions refused by a node's fence with `E_STALE_SHARD_MAP` (each was retried or surfaced). */
  readonly staleRejections: number;
  /** Scatter-gathers run. */
  readonly scatters: number;
  readonly closed: boolean;
}

/** Options of {@link createShardRouter}. */
export interface ShardRouterOptions<N> {
  /**
   * How many logical shards keys hash into: fixed for the life of the data (moving a key to
   * another logical shard means moving its rows). Pick many more than you will ever have nodes:
   * 4096 is common. At most 65536.
   */
  logicalShards: number;
  /** Node name -> what you query: a `pg.Pool`, a buttress `PgCluster`, or any object. */
  nodes: Readonly<Record<string, N>>;
  /**
   * The initial map. Optional with a `store` (call `ready()` before routing, which loads it);
   * with both, the newer of the two wins.
   */
  map?: ShardMap | ShardMapSpec;
  /** Where the shared, versioned map lives; changes are pushed to every router and polled. */
  store?: ShardMapStore;
  /**
   * How often the store is polled for a newer map, as a backstop for lost pushes. `false`: never.
   * @default '30s' (with a store)
   */
  pollInterval?: Duration | false;
  /** Key -> logical shard. @default defaultHasher (XXH64, seed 0, modulo) */
  hash?: ShardHasher;
  /** The layout of IDs `shardForId` reads the logical shard from. @default Instagram's (see createIdGenerator) */
  ids?: IdLayoutOptions;
  /** How SQL connections are opened on a node (fenced transactions, fences, moves). @default defaultSqlConnect */
  connect?: SqlConnect<N>;
  /** Prefix of the fence and change-log tables and functions on each node. @default 'buttress_shard' */
  fencePrefix?: string;
  /**
   * How long a fenced transaction refused with `E_STALE_SHARD_MAP` keeps reloading the map and
   * retrying before it gives up and rejects with that error. A move's switch usually settles
   * within a few milliseconds.
   * @default '10s'
   */
  staleRetryTimeout?: Duration;
  /**
   * How long a transaction waits at a frozen logical shard (a move's final catch-up) before
   * failing with `E_TIMEOUT`. @default '10s'
   */
  freezeWait?: Duration;
  /** Name for stats, events and errors. @default 'shard-router' */
  name?: string;
  /** Time source. @default systemClock */
  clock?: Clock;
}

const OPTION_KEYS = [
  'logicalShards',
  'nodes',
  'map',
  'store',
  'pollInterval',
  'hash',
  'ids',
  'connect',
  'fencePrefix',
  'staleRetryTimeout',
  'freezeWait',
  'name',
  'clock',
] as const;
const ISOLATIONS: readonly ShardIsolationLevel[] = ['read committed', 'repeatable read', 'serializable'];
/** Longest pause between two map reloads while a stale transaction waits for the new map. */
const STALE_MAX_BACKOFF = 200;

const lifecycleChannels = lifecycle('shard-router');
const mapChannel = channel('shard-router', 'map');
const staleChannel = channel('shard-router', 'stale');
const scatterChannel = channel('shard-router', 'all');

/**
 * Creates a shard router: a key (string, number, bigint or bytes) hashes to one of
 * `logicalShards` logical shards, and a versioned {@link ShardMap} assigns logical shards to
 * named nodes. `shardFor` is a hash and two array reads; `run` calls your function with the key's
 * node; `transaction` runs a fenced transaction on it (the way to write: a write routed with a
 * stale map is refused by the node and retried on the new owner); `all` scatter-gathers over every
 * node or logical shard. With a `store`, the map is shared by every router instance, and
 * `moveShard` moves a logical shard to another node online.
 *
 * @example
 * import pg from 'pg';
 * import { createShardRouter, evenShardMap } from 'buttress/shard-router';
 *
 * const nodes = {
 *   a: new pg.Pool({ database: 'shard_0' }),
 *   b: new pg.Pool({ database: 'shard_1' }),
 * };
 * const router = createShardRouter({ logicalShards: 4096, nodes, map: evenShardMap(4096, ['a', 'b']) });
 * await router.installFences(); // once per deployment: fence tables on every node
 *
 * const { rows } = await router.run('user:42', (pool) => pool.query('SELECT * FROM users WHERE id = $1', ['user:42']));
 * await router.transaction('user:42', (client) =>
 *   client.query('UPDATE users SET name = $2 WHERE id = $1', ['user:42', 'Ada']),
 * );
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid option, or a map that does not
 *   fit `logicalShards` or names a node missing from `nodes`.
 */
export function createShardRouter<N>(options: ShardRouterOptions<N>): ShardRouter<N> {
  return new ShardRouter(options);
}

/** See {@link createShardRouter}. */
export class ShardRouter<N = unknown> {
  /** Number of logical shards. */
  readonly logicalShards: number;
  /** The ID layout `shardForId` reads. */
  readonly idLayout: IdLayout;
  readonly #name: string;
  readonly #nodes: Map<string, N>;
  readonly #hasher: ShardHasher;
  readonly #store: ShardMapStore | undefined;
  readonly #pollInterval: number;
  readonly #connect: SqlConnect<N>;
  readonly #prefix: string;
  readonly #staleRetryTimeout: number;
  readonly #freezeWait: number;
  readonly #clock: Clock;

  #map: ShardMap | undefined;
  #locations: readonly ShardLocation[] = [];
  #watch: Disposable | undefined;
  #pollTimer: Timer | undefined;
  #loading: Promise<boolean> | undefined;
  #closed = false;
  /** Waiters for a map at least this new, woken by each applied map. */
  readonly #versionWaiters = new Set<() => void>();

  #mapChanges = 0;
  #mapLoads = 0;
  #storeErrors = 0;
  #transactions = 0;
  #staleRejections = 0;
  #scatters = 0;

  readonly #mapEm = new Emitter<MapChangeEvent>();
  readonly #staleEm = new Emitter<StaleEvent>();
  readonly #errorEm = new Emitter<unknown>();

  /** Fires after a new map is applied. */
  readonly onMapChange: Event<MapChangeEvent> = this.#mapEm.event;
  /** Fires when a node's fence refuses a transaction as routed with a stale map (before it is retried). */
  readonly onStale: Event<StaleEvent> = this.#staleEm.event;
  /** Fires for background failures: a store load or push that failed, a pushed map that could not be applied. */
  readonly onError: Event<unknown> = this.#errorEm.event;

  constructor(options: ShardRouterOptions<N>) {
    const opts = optionsObject(options);
    knownKeys(opts, OPTION_KEYS);
    const logical = opts.logicalShards;
    if (
      typeof logical !== 'number' ||
      !Number.isInteger(logical) ||
      logical < 1 ||
      logical > MAX_LOGICAL_SHARDS
    ) {
      throw new InvalidOptionError(
        'logicalShards',
        logical,
        `an integer between 1 and ${MAX_LOGICAL_SHARDS}`,
      );
    }
    this.logicalShards = logical;
    const nodes = opts.nodes;
    if (
      typeof nodes !== 'object' ||
      nodes === null ||
      Array.isArray(nodes) ||
      Object.keys(nodes).length === 0
    ) {
      throw new InvalidOptionError('nodes', nodes, 'an object of node name -> node (at least one)');
    }
    this.#nodes = new Map(Object.entries(nodes));
    const hasher = opts.hash ?? defaultHasher;
    if (typeof hasher !== 'object' || hasher === null || typeof hasher.logical !== 'function') {
      throw new InvalidOptionError('hash', hasher, 'a ShardHasher ({ name, logical(key, logicalShards) })');
    }
    this.#hasher = hasher;
    const store = opts.store;
    if (
      store !== undefined &&
      (typeof store !== 'object' ||
        store === null ||
        typeof store.load !== 'function' ||
        typeof store.compareAndSet !== 'function' ||
        typeof store.watch !== 'function')
    ) {
      throw new InvalidOptionError('store', store, 'a ShardMapStore ({ load, compareAndSet, watch, close })');
    }
    this.#store = store;
    this.#pollInterval =
      opts.pollInterval === false ? 0 : duration(opts.pollInterval, 'pollInterval', 30_000, 1);
    this.idLayout = idLayout(opts.ids);
    if (2 ** this.idLayout.shardBits < logical) {
      throw new InvalidOptionError(
        'ids.shardBits',
        this.idLayout.shardBits,
        `enough bits for ${logical} logical shards (at least ${Math.ceil(Math.log2(logical))})`,
      );
    }
    this.#connect = fnOption<SqlConnect<N>>(opts.connect, 'connect', defaultSqlConnect as SqlConnect<N>);
    this.#prefix = fencePrefix(opts.fencePrefix);
    this.#staleRetryTimeout = duration(opts.staleRetryTimeout, 'staleRetryTimeout', 10_000);
    this.#freezeWait = duration(opts.freezeWait, 'freezeWait', 10_000, 1);
    this.#name = typeof opts.name === 'string' && opts.name.length > 0 ? opts.name : 'shard-router';
    this.#clock = clockOption(opts.clock);
    if (opts.map !== undefined) {
      const map = this.#validate(opts.map, 'map');
      this.#install(map, 'initial');
    } else if (store === undefined) {
      throw new InvalidOptionError('map', undefined, 'a shard map (or a store to load one from)');
    }
    if (store !== undefined) {
      this.#watch = store.watch((version) => this.#onPush(version));
      this.#schedulePoll();
    }
    announce(lifecycleChannels.create, 'shard-router', this);
  }

  // ------------------------------------------------------------------------------------------
  // Routing

  /** The current map. @throws {ShardMapUnavailableError} `E_SHARD_MAP_UNAVAILABLE` before one is loaded. */
  get map(): ShardMap {
    const map = this.#map;
    if (map === undefined) throw this.#noMap();
    return map;
  }

  /** The current map's version, 0 before one is loaded. */
  get mapVersion(): number {
    return this.#map?.version ?? 0;
  }

  /** The router's hasher. */
  get hasher(): ShardHasher {
    return this.#hasher;
  }

  /**
   * Where `key` lives now: its logical shard, the node holding it and the map version. Allocates
   * nothing: the location is a frozen object shared by every key of the logical shard.
   *
   * @example
   * // 4096 logical shards, the first 1024 on node 'a':
   * router.shardFor('user:42'); // { logical: 450, node: 'a', mapVersion: 3 }
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a key that is not a string, a safe
   *   integer, a bigint in [-2^63, 2^64) or a Uint8Array.
   * @throws {ShardMapUnavailableError} `E_SHARD_MAP_UNAVAILABLE` before a map is loaded.
   */
  shardFor(key: ShardKey): ShardLocation {
    const location = this.#locations[this.#hasher.logical(key, this.logicalShards)];
    if (location === undefined) throw this.#noMap();
    return location;
  }

  /** Where logical shard `logical` lives now. @throws {InvalidOptionError} for a shard out of range. */
  locate(logical: number): ShardLocation {
    const location = this.#locations[logical];
    if (location === undefined) {
      if (this.#map === undefined) throw this.#noMap();
      throw new InvalidOptionError('logical', logical, `a logical shard in [0, ${this.logicalShards - 1}]`);
    }
    return location;
  }

  /**
   * Where the data an ID names lives, read from the logical shard the ID carries (minted by an
   * {@link IdGenerator} with the router's `ids` layout): no lookup, no hashing.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a malformed ID, or one whose shard is not below `logicalShards`.
   */
  shardForId(id: bigint | string | number): ShardLocation {
    const logical = shardOfId(id, this.idLayout);
    if (logical >= this.logicalShards) {
      throw new InvalidOptionError(
        'id',
        id,
        `an ID whose logical shard (${logical}) is below ${this.logicalShards}`,
      );
    }
    return this.locate(logical);
  }

  /** The node object named `name`. @throws {InvalidOptionError} for an unknown name. */
  node(name: string): N {
    const node = this.#nodes.get(name);
    if (node === undefined && !this.#nodes.has(name)) {
      throw new InvalidOptionError('node', name, `one of ${[...this.#nodes.keys()].join(', ')}`);
    }
    return node as N;
  }

  /** Names of every configured node. */
  get nodeNames(): readonly string[] {
    return [...this.#nodes.keys()];
  }

  /**
   * Registers a node, so maps naming it can be applied (before moving shards onto it).
   * @throws {InvalidOptionError} `E_INVALID_OPTION` when the name is taken.
   */
  addNode(name: string, node: N): void {
    if (typeof name !== 'string' || name.length === 0 || this.#nodes.has(name)) {
      throw new InvalidOptionError('name', name, 'a new, non-empty node name');
    }
    this.#nodes.set(name, node);
  }

  /** Resolves a target (a key, or a location from any map version) against the current map. */
  #resolve(target: ShardTarget): ShardLocation {
    if (typeof target === 'object' && target !== null && !(target instanceof Uint8Array)) {
      const logical = (target as ShardLocation).logical;
      if (typeof logical !== 'number') {
        throw new InvalidOptionError('target', target, 'a shard key or a ShardLocation');
      }
      return this.locate(logical);
    }
    return this.shardFor(target as ShardKey);
  }

  /**
   * Calls `fn` with the node that holds `target` (a key, or a location from `shardFor`,
   * `shardForId` or `locate`), and the routing context. Not fenced: use it for reads that may see
   * an old copy for a moment after a move (until this router learns the new map), and for nodes
   * that are not PostgreSQL. Writes to PostgreSQL go through {@link ShardRouter.transaction}.
   *
   * @example
   * const user = await router.run(userId, async (pool, { logical }) => {
   *   const { rows } = await pool.query('SELECT * FROM users WHERE id = $1', [userId]);
   *   return rows[0];
   * });
   * @throws whatever `fn` throws; `E_ABORTED` when `signal` is already aborted; the errors of `shardFor`.
   */
  async run<T>(
    target: ShardTarget,
    fn: (node: N, context: RunContext) => Promise<T> | T,
    options?: RunOptions,
  ): Promise<T> {
    if (this.#closed) throw new ClosedError('ShardRouter');
    const signal = options?.signal;
    throwIfAborted(signal);
    const location = this.#resolve(target);
    return fn(this.#nodes.get(location.node) as N, {
      logical: location.logical,
      node: location.node,
      mapVersion: location.mapVersion,
      signal: signal ?? neverAbortedSignal,
    });
  }

  /**
   * Runs `fn` in a fenced transaction on the node that holds `target`: BEGIN and a check of the
   * node's fence row for the logical shard (under a shared row lock, held to COMMIT), then
   * `fn(client, context)`, then COMMIT; ROLLBACK if `fn` throws. When the node no longer owns the
   * shard (it moved, or is being switched), the transaction is refused before `fn` runs, the map
   * is reloaded, and it runs again on the new owner: `fn` may thus be called more than once, but
   * only one of its runs commits. While a move freezes the shard, the transaction waits at its
   * fence check (at most `freezeWait`).
   *
   * This is how writes must go: a write routed with an old map is never applied to the old node.
   * Use it with `readOnly: true` for reads that must see the current owner.
   *
   * Needs SQL nodes (a `pg.Pool`, a `PgCluster`, or the router's `connect`) with fences installed
   * ({@link ShardRouter.installFences}).
   *
   * @example
   * await router.transaction(userId, async (client, { logical }) => {
   *   await client.query('INSERT INTO orders (user_id, logical, total) VALUES ($1, $2, $3)', [userId, logical, 42]);
   * });
   * @throws {StaleShardMapError} `E_STALE_SHARD_MAP` when no owner could be reached within
   *   `staleRetryTimeout`; `E_TIMEOUT` after `freezeWait` at a frozen shard; whatever `fn` throws
   *   (after ROLLBACK); the driver's errors; `E_ABORTED`.
   */
  async transaction<T>(
    target: ShardTarget,
    fn: (client: SqlClient, context: TransactionContext) => Promise<T> | T,
    options?: TransactionOptions,
  ): Promise<T> {
    if (this.#closed) throw new ClosedError('ShardRouter');
    if (typeof fn !== 'function')
      throw new InvalidOptionError('fn', fn, 'a function (client, context) => Promise<T>');
    const opts = optionsObject(options);
    const isolation =
      opts.isolation === undefined ? undefined : oneOf(opts.isolation, 'isolation', ISOLATIONS);
    const readOnly = bool(opts.readOnly, 'readOnly', false);
    const begin = `BEGIN${isolation === undefined ? '' : ` ISOLATION LEVEL ${isolation.toUpperCase()}`}; SET LOCAL lock_timeout = ${Math.ceil(this.#freezeWait)}`;
    const signal = canAbort(opts.signal) ? opts.signal : undefined;
    throwIfAborted(signal);
    this.#transactions++;
    const deadline = this.#clock.now() + this.#staleRetryTimeout;
    let location = this.#resolve(target);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#attempt(location, fn, begin, readOnly, signal, attempt);
      } catch (error) {
        if (!isStaleShardMapError(error)) throw error;
        this.#staleRejections++;
        if (this.#staleEm.size > 0) this.#staleEm.emit({ error, attempt });
        publish(staleChannel, () => ({ router: this.#name, error, attempt }));
        const now = this.#clock.now();
        if (now >= deadline || this.#closed) throw error;
        // The new map may not be stored yet (the old node is fenced a moment before the map
        // switches): reload until a map places the shard elsewhere, or the fence says it is ours.
        await this.#awaitNewerMap(
          error,
          location,
          Math.min(deadline - now, STALE_MAX_BACKOFF * attempt),
          signal,
        );
        location = this.#resolve(location);
      }
    }
  }

  async #attempt<T>(
    location: ShardLocation,
    fn: (client: SqlClient, context: TransactionContext) => Promise<T> | T,
    begin: string,
    readOnly: boolean,
    signal: AbortSignal | undefined,
    attempt: number,
  ): Promise<T> {
    const node = this.#nodes.get(location.node) as N;
    const client = await this.#connect(node, location.node, signal);
    let broken: Error | undefined;
    let open = false;
    try {
      let row: ReturnType<typeof readEnter>;
      try {
        open = true;
        row = readEnter(await client.query(enterSql(this.#prefix, location.logical, begin, readOnly)));
      } catch (error) {
        throw this.#enterError(error, location);
      }
      if (!accepts(row.state)) {
        throw new StaleShardMapError(
          location.logical,
          location.node,
          location.mapVersion,
          row.state,
          row.mapVersion,
        );
      }
      if (signal?.aborted) throw new AbortedError(signal.reason);
      const value = await fn(client, {
        logical: location.logical,
        node: location.node,
        mapVersion: location.mapVersion,
        signal: signal ?? neverAbortedSignal,
        attempt,
      });
      if (signal?.aborted) throw new AbortedError(signal.reason);
      await client.query('COMMIT');
      open = false;
      return value;
    } catch (error) {
      if (open) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        }
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /** Maps a failure of the fence check to what the caller should see. */
  #enterError(error: unknown, location: ShardLocation): unknown {
    const code =
      (error as { code?: unknown; sqlState?: unknown } | null)?.code ??
      (error as { sqlState?: unknown })?.sqlState;
    // lock_timeout: the shard stayed frozen longer than freezeWait.
    if (code === '55P03') {
      const timeout = new TimeoutError(
        this.#freezeWait,
        `Waiting for frozen logical shard ${location.logical}`,
      );
      (timeout as { cause?: unknown }).cause = error;
      return timeout;
    }
    // A repeatable-read or serializable transaction whose fence row changed under it: the shard
    // moved while it waited.
    if (code === '40001') {
      return new StaleShardMapError(location.logical, location.node, location.mapVersion, 'moved', undefined);
    }
    // No fence table: fences were never installed on this node.
    if (code === '42883' || code === '42P01') {
      return new StaleShardMapError(
        location.logical,
        location.node,
        location.mapVersion,
        'missing',
        undefined,
      );
    }
    return error;
  }

  /** After a refusal: reloads the map until it places `location`'s shard differently, or `ms` pass. */
  async #awaitNewerMap(
    error: StaleShardMapError,
    location: ShardLocation,
    ms: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const wanted = error.fenceVersion ?? location.mapVersion + 1;
    if (this.mapVersion >= wanted && this.map.nodeOf(location.logical) !== location.node) return;
    if (this.#store !== undefined) {
      try {
        await this.refresh(signal);
      } catch (loadError) {
        if (isAbortedErrorLike(loadError)) throw loadError;
        this.#reportError(loadError);
      }
      if (this.mapVersion >= wanted && this.map.nodeOf(location.logical) !== location.node) return;
    }
    // Not there yet: wait for a push (or a local move) or a short pause, whichever comes first.
    await this.#waitForChange(Math.max(1, ms), signal);
  }

  #waitForChange(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: Timer | undefined;
      const done = () => {
        this.#versionWaiters.delete(done);
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        this.#versionWaiters.delete(done);
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        reject(new AbortedError(signal?.reason));
      };
      this.#versionWaiters.add(done);
      timer = this.#clock.setTimeout(done, ms);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  /**
   * Scatter-gather: calls `fn` once per node of the current map (`by: 'node'`, the default, with
   * the node's logical shards in `context.logicals`) or once per logical shard (`by: 'logical'`),
   * at most `concurrency` at a time, within `timeout`. With `partial: 'fail'` (the default) the
   * first failure aborts the other calls' signal and rejects with `E_SCATTER_FAILED`; with
   * `'allow'` every target's result or error is returned.
   *
   * @example
   * const { results, failures } = await router.all(
   *   async (pool, { logicals, signal }) => {
   *     const { rows } = await pool.query('SELECT count(*)::int AS n FROM users WHERE logical = ANY($1)', [logicals]);
   *     return rows[0].n as number;
   *   },
   *   { concurrency: 8, timeout: '2s', partial: 'allow' },
   * );
   * const total = results.reduce((sum, r) => sum + r.value, 0);
   * @throws {ScatterError} `E_SCATTER_FAILED` with `partial: 'fail'` when a target failed.
   */
  async all<T>(
    fn: (node: N, context: ScatterContext) => Promise<T> | T,
    options?: ScatterOptions,
  ): Promise<ScatterResult<T>> {
    if (this.#closed) throw new ClosedError('ShardRouter');
    const map = this.map;
    this.#scatters++;
    const traced = scatterChannel.hasSubscribers;
    const result = await scatter(map, this.#nodes, fn, options, this.#clock);
    if (traced) {
      scatterChannel.publish({
        router: this.#name,
        mapVersion: map.version,
        results: result.results.length,
        failures: result.failures.length,
      });
    }
    return result;
  }

  // ------------------------------------------------------------------------------------------
  // The map

  /**
   * Loads the map from the store and applies it if it is newer. Concurrent calls share one load.
   * Resolves true when a newer map was applied.
   * @throws the store's errors; {@link ShardMapUnavailableError} for a stored map this router
   *   cannot use (another shard count, an unknown node).
   */
  refresh(signal?: AbortSignal): Promise<boolean> {
    if (this.#closed) return Promise.reject(new ClosedError('ShardRouter'));
    if (this.#store === undefined) return Promise.resolve(false);
    // One load serves every caller; each caller's signal only ends its own wait.
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
    return raceAbort(this.#loading, signal);
  }

  async #load(): Promise<boolean> {
    this.#mapLoads++;
    const spec = await this.#store!.load();
    if (spec === undefined || spec.version <= this.mapVersion) return false;
    let map: ShardMap;
    try {
      map = this.#validate(spec, 'stored map');
    } catch (error) {
      throw new ShardMapUnavailableError(
        `The stored shard map (version ${spec.version}) cannot be used: ${(error as Error).message}`,
        error,
      );
    }
    return this.#install(map, 'store');
  }

  /**
   * Resolves once a map is loaded: at once with a `map` option, after the first store load
   * otherwise (with a store and a map, it also loads the stored map, which wins if newer).
   * @throws the errors of {@link ShardRouter.refresh}; `E_SHARD_MAP_UNAVAILABLE` when the store holds no map.
   */
  async ready(signal?: AbortSignal): Promise<this> {
    if (this.#store !== undefined) await this.refresh(signal);
    if (this.#map === undefined)
      throw new ShardMapUnavailableError(`The store ${this.#store?.name} holds no shard map`);
    return this;
  }

  /**
   * Stores `map` as the shared map (compare-and-set on the current version) and applies it: for
   * the first map of a deployment, or a change made by hand. Moves make their own.
   * @throws {ShardMapConflictError} `E_SHARD_MAP_CONFLICT` when the store holds another version.
   */
  async publishMap(map: ShardMap | ShardMapSpec, signal?: AbortSignal): Promise<void> {
    const next = this.#validate(map, 'map');
    if (this.#store !== undefined) {
      const stored = await this.#store.load(signal);
      const expected = stored?.version;
      if (expected !== undefined && next.version <= expected) {
        throw new ShardMapConflictError(next.version - 1, expected);
      }
      if (!(await this.#store.compareAndSet(expected, next.toJSON(), signal))) {
        throw new ShardMapConflictError(expected ?? 0, undefined);
      }
    } else if (this.#map !== undefined && next.version <= this.#map.version) {
      throw new ShardMapConflictError(next.version - 1, this.#map.version);
    }
    // With a store, its compare-and-set decided; publishing the map this router started with is fine.
    this.#install(next, 'local');
  }

  /** Validates a map for this router: the right shard count, only known nodes. */
  #validate(map: ShardMap | ShardMapSpec, option: string): ShardMap {
    const m = ShardMap.from(map, option);
    if (m.logicalShards !== this.logicalShards) {
      throw new InvalidOptionError(
        `${option}.logicalShards`,
        m.logicalShards,
        `${this.logicalShards}, the router's logicalShards`,
      );
    }
    for (const node of m.nodes) {
      if (!this.#nodes.has(node)) {
        throw new InvalidOptionError(
          `${option}.assignments`,
          node,
          `nodes the router knows (${[...this.#nodes.keys()].join(', ')})`,
        );
      }
    }
    return m;
  }

  /** Makes `map` current if it is newer; returns whether it did. */
  #install(map: ShardMap, source: MapChangeEvent['source']): boolean {
    const previous = this.#map;
    if (previous !== undefined && map.version <= previous.version) return false;
    const locations = new Array<ShardLocation>(map.logicalShards);
    for (let s = 0; s < map.logicalShards; s++) {
      locations[s] = Object.freeze({ logical: s, node: map.nodes[map.owners[s]!]!, mapVersion: map.version });
    }
    this.#map = map;
    this.#locations = locations;
    this.#mapChanges++;
    for (const wake of [...this.#versionWaiters]) wake();
    if (this.#mapEm.size > 0) this.#mapEm.emit({ previous, current: map, source });
    publish(mapChannel, () => ({
      router: this.#name,
      previous: previous?.version,
      current: map.version,
      source,
    }));
    return true;
  }

  /** @internal Applies a map this router's own move stored. */
  applyLocal(map: ShardMap): void {
    this.#install(map, 'local');
  }

  #onPush(version: number): void {
    if (this.#closed || version <= this.mapVersion) return;
    this.refresh().catch((error: unknown) => this.#reportError(error));
  }

  #schedulePoll(): void {
    if (this.#pollInterval === 0 || this.#closed) return;
    this.#pollTimer = this.#clock.setTimeout(() => {
      this.#pollTimer = undefined;
      this.refresh()
        .catch((error: unknown) => this.#reportError(error))
        .finally(() => this.#schedulePoll());
    }, this.#pollInterval);
  }

  #reportError(error: unknown): void {
    if (this.#closed) return;
    this.#storeErrors++;
    if (this.#errorEm.size > 0) this.#errorEm.emit(error);
  }

  #noMap(): ShardMapUnavailableError {
    return new ShardMapUnavailableError(
      this.#closed ? 'The shard router is closed' : 'No shard map loaded yet: await router.ready() first',
    );
  }

  // ------------------------------------------------------------------------------------------
  // Fences and moves

  /**
   * Creates the fence table, the change log and their functions on every node of the current map
   * (idempotent), and an `owned` fence row for each logical shard the map gives the node and it
   * has no row for yet. Run it once per deployment before fenced transactions, and again after
   * adding nodes. Rows a node already has (a shard that moved away) are left alone.
   * @throws the driver's errors.
   */
  async installFences(signal?: AbortSignal): Promise<void> {
    // The newest stored map, not the one this router may still hold: fences installed from an
    // older map would make a node an owner of a shard moved away from it.
    if (this.#store !== undefined) await this.refresh(signal);
    const map = this.map;
    for (const name of map.nodes) {
      await this.withClient(name, signal, async (client) => {
        await client.query(`BEGIN; ${fenceSchemaSql(this.#prefix)}`);
        try {
          const shards = map.shardsOf(name);
          await client.query(
            `INSERT INTO ${this.#prefix}_fence (logical, state, map_version)
             SELECT s, 'owned', $2 FROM unnest($1::int[]) AS s
             ON CONFLICT (logical) DO NOTHING`,
            [shards, map.version],
          );
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        }
      });
    }
  }

  /**
   * Moves logical shard `logical` to node `to`, online (see docs/shard-router.md, "Moving a
   * logical shard"): copy with writes flowing, catch up, a short write freeze of that shard only,
   * switch the map (stored and pushed to every router), unfreeze. Writes routed with the old map
   * are refused by the old node and retried on the new one.
   *
   * @throws {ShardMoveError} `E_SHARD_MOVE_FAILED` when the move stopped before its switch (the
   *   shard stays where it was); {@link ShardMapConflictError} `E_SHARD_MAP_CONFLICT` when the map
   *   changed under the move.
   */
  moveShard(logical: number, to: string, options: MoveOptions<N>): Promise<MoveResult> {
    if (this.#closed) return Promise.reject(new ClosedError('ShardRouter'));
    return moveShard(
      {
        router: this,
        store: this.#store,
        prefix: this.#prefix,
        clock: this.#clock,
        name: this.#name,
      },
      logical,
      to,
      options,
    );
  }

  /** @internal Opens a SQL connection on node `name`, runs `fn`, releases it (destroyed if `fn` failed on it). */
  async withClient<T>(
    name: string,
    signal: AbortSignal | undefined,
    fn: (client: SqlClient) => Promise<T>,
  ): Promise<T> {
    const client = await this.#connect(this.node(name), name, signal);
    let failure: Error | undefined;
    try {
      return await fn(client);
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      throw error;
    } finally {
      client.release(failure);
    }
  }

  /** @internal Opens a SQL connection on node `name` (the caller releases it). */
  openClient(name: string, signal: AbortSignal | undefined): Promise<SqlClient> {
    return this.#connect(this.node(name), name, signal);
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle

  /** A plain snapshot of the router's state and counters. */
  stats(): ShardRouterStats {
    const shardsPerNode: Record<string, number> = {};
    const map = this.#map;
    if (map !== undefined) {
      for (const node of map.nodes) shardsPerNode[node] = 0;
      for (let s = 0; s < map.owners.length; s++) shardsPerNode[map.nodes[map.owners[s]!]!]!++;
    }
    return {
      name: this.#name,
      hasher: this.#hasher.name,
      logicalShards: this.logicalShards,
      mapVersion: this.mapVersion,
      shardsPerNode,
      mapChanges: this.#mapChanges,
      mapLoads: this.#mapLoads,
      storeErrors: this.#storeErrors,
      transactions: this.#transactions,
      staleRejections: this.#staleRejections,
      scatters: this.#scatters,
      closed: this.#closed,
    };
  }

  /**
   * Stops watching the store and polling. The nodes and the store are yours: they are not closed.
   * Later calls reject with `E_CLOSED`.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#watch?.dispose();
    this.#watch = undefined;
    if (this.#pollTimer !== undefined) this.#clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    for (const wake of [...this.#versionWaiters]) wake();
    this.#mapEm.clear();
    this.#staleEm.clear();
    this.#errorEm.clear();
    announce(lifecycleChannels.close, 'shard-router', this);
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function isAbortedErrorLike(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'E_ABORTED';
}
