import { AsyncLocalStorage } from 'node:async_hooks';
import type { Pool, PoolClient, PoolConfig, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import {
  type CircuitBreakerOptions,
  type CircuitState,
  circuitBreaker,
  consecutive,
  isBrokenCircuitError,
} from '../breaker/index.js';
import { onAbort } from '../core/abort.js';
import type { Clock, Timer } from '../core/clock.js';
import { announce, channel, lifecycle } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ClosedError, InvalidOptionError, isAbortedError } from '../core/errors.js';
import { type Disposable, Emitter, type Event } from '../core/events.js';
import { type Stopwatch, stopwatch } from '../core/hr-time.js';
import { canAbort } from '../core/signals.js';
import {
  bool,
  clockOption,
  duration,
  integer,
  knownKeys,
  nonEmptyString,
  oneOf,
  optionsObject,
} from '../core/validate.js';
import { classifySql, type SqlClassification } from './classify.js';
import { PgBouncerUnsupportedError, PgConnectionError, PgQueryError } from './errors.js';
import {
  CANCEL_SQL,
  HealthProbe,
  PRIMARY_CHECK_SQL,
  REPLAY_LSN_SQL,
  REPLICA_CHECK_SQL,
} from './internal/health.js';
import { LagTracker } from './internal/lag.js';
import { formatLsn, parseLsn } from './internal/lsn.js';
import { type EjectReason, PgNode } from './internal/node.js';
import { resolveNode } from './internal/options.js';
import { destroyClient, isConnectionFailure, toPgError } from './internal/pg.js';
import { Redactor, sanitizeForMessage } from './internal/redact.js';
import { chooseReplica, NOT_CAUGHT_UP } from './internal/route.js';
import { type ConsistencyPosition, decodeToken, PgSession, type SessionHost } from './session.js';

export type { EjectReason } from './internal/node.js';

/** Where a statement is sent: `'auto'` by its text, `'primary'`, or `'replica'` (a replica when one can serve it). */
export type Route = 'auto' | 'primary' | 'replica';

/**
 * How reads see a session's own writes: `'lsn'` by WAL position, `'sticky'` by keeping the
 * session's reads on the primary for `stickyWindow` after each write, `'off'` not at all.
 */
export type ReadYourWrites = 'lsn' | 'sticky' | 'off';

/** Transaction isolation levels. */
export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/** The pg Pool class: `pg.Pool`, or any class with its interface. */
export type PgPoolConstructor = new (config?: PoolConfig) => Pool;

/** A node: a connection string, a pg `PoolConfig` (built with `Pool`), or a `pg.Pool` you own. */
export type PgNodeConfig = string | PoolConfig | Pool;

/** Options of {@link createPgCluster}. */
export interface PgClusterOptions {
  /**
   * pg's `Pool` class. Needed when any node is a config or a connection string: buttress never
   * imports pg itself (it is an optional peer), so it builds pools with the class you pass.
   * @example import pg from 'pg'; createPgCluster({ Pool: pg.Pool, primary: '...' })
   */
  Pool?: PgPoolConstructor;
  /** The primary: every write, transaction and unsure statement goes here. */
  primary: PgNodeConfig;
  /** Streaming read replicas of the primary. @default [] */
  replicas?: readonly PgNodeConfig[];
  /** How a session's reads see its own writes. @default 'lsn' */
  readYourWrites?: ReadYourWrites;
  /**
   * How long a session's reads stay on the primary after a write in `'sticky'` mode (and in
   * `'lsn'` mode when a write's position could not be learned, or a token was malformed).
   * @default maxReplicaLag + healthCheckInterval
   */
  stickyWindow?: Duration;
  /** A replica lagging more than this is ejected until it catches up. @default '2s' */
  maxReplicaLag?: Duration;
  /** How often every node's health and WAL position are checked. @default '1s' */
  healthCheckInterval?: Duration;
  /** Deadline of one health check (connect and query); a node missing it is unreachable. @default '2s' */
  healthCheckTimeout?: Duration;
  /**
   * How long a caller may wait for a connection before `E_POOL_TIMEOUT` (pg-pool waits forever).
   * Also bounds opening a new connection of the pools built here.
   * @default '5s'
   */
  acquireTimeout?: Duration;
  /** Callers that may wait for a connection, per node; more are rejected at once with `E_POOL_FULL`. @default 100 */
  maxWaiting?: number;
  /**
   * Connections are closed on release once this old (spread over the last 10%), so load
   * rebalances onto new or recovered replicas. `false` or `0`: never. @default '30m'
   */
  maxLifetime?: Duration | false;
  /** `'transaction'`: refuse session-level features PgBouncer's transaction pooling breaks. @default false */
  pgbouncer?: false | 'transaction';
  /** Track the current session through AsyncLocalStorage (`session.run(fn)`). @default false */
  asyncContext?: boolean;
  /**
   * Names of your own functions that neither write nor read session state: a SELECT calling them
   * may go to a replica (an unknown function sends it to the primary).
   */
  readOnlyFunctions?: readonly string[];
  /**
   * The circuit breaker of each replica (`buttress/breaker` options): a replica whose connections
   * keep failing is skipped until a trial read succeeds. Only connection failures count.
   * `false`: no breaker. @default { strategy: consecutive(3), halfOpenAfter: '5s' }
   */
  breaker?: false | Omit<CircuitBreakerOptions, 'clock' | 'shared' | 'initialState'>;
  /** Name shown in events, stats and breaker names. @default 'pg' */
  name?: string;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Options of {@link PgCluster.query}. */
export interface PgQueryOptions {
  /** @default 'auto' */
  route?: Route;
  /** The read-your-writes session (default: the current one, with `asyncContext`). */
  session?: PgSession;
  /**
   * Aborting rejects with `E_ABORTED` at once, whether the call waits for a connection or its
   * statement runs; a running statement's connection is destroyed (the server stops it when it
   * notices; set a `statement_timeout` to bound that).
   */
  signal?: AbortSignal;
}

/** Options of {@link PgCluster.transaction}. */
export interface PgTransactionOptions {
  /** @default the server's default (read committed) */
  isolation?: IsolationLevel;
  /** @default false */
  readOnly?: boolean;
  /** With `serializable` and `readOnly`: wait for a snapshot free of serialization failures. @default false */
  deferrable?: boolean;
  /** `'replica'` is allowed for read-only transactions. @default 'primary' */
  route?: 'primary' | 'replica';
  session?: PgSession;
  signal?: AbortSignal;
}

/** Options of {@link PgCluster.connect}. */
export interface PgConnectOptions {
  /** @default 'primary' */
  route?: 'primary' | 'replica';
  session?: PgSession;
  signal?: AbortSignal;
}

/** The handle a {@link PgCluster.transaction} callback works with. */
export interface PgTransaction {
  /** Runs a statement inside the transaction. Errors are typed (`E_PG_QUERY`, `E_PG_CONNECTION`). */
  query<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>>;
  /** The pg client the transaction runs on, for your own driver calls (cursors, COPY, ...). Do not release it. */
  readonly client: PoolClient;
  /** Which node it runs on: `'primary'`, `'replica-0'`, ... */
  readonly node: string;
  /** The transaction's abort signal, if one was given. */
  readonly signal: AbortSignal | undefined;
}

/** One node in {@link PgClusterStats}. */
export interface PgNodeStats {
  /** `'primary'`, `'replica-0'`, ... */
  name: string;
  role: 'primary' | 'replica';
  /** `host:port/database`. */
  address: string;
  /** Connections the pool holds, idle or not (pg-pool's `totalCount`). */
  total: number;
  /** Idle connections (pg-pool's `idleCount`). */
  idle: number;
  /** Connections checked out (or being opened) through the cluster. */
  inUse: number;
  /** Callers waiting for a connection: at the cluster's gate plus in pg-pool's own queue. */
  waiting: number;
  /** The pool's `max`. */
  max: number;
  /** Whether the last health check succeeded (false until the first one has). */
  healthy: boolean;
  /** Replicas: not serving reads. */
  ejected: boolean;
  ejectReason: EjectReason | undefined;
  /** Replicas: estimated lag in ms (see docs/pool.md); undefined before a primary position is known. */
  lagMs: number | undefined;
  /** Replicas: last replay position seen; primary: last position seen. `'16/B374D848'`. */
  lsn: string | undefined;
  inRecovery: boolean | undefined;
  /** Replicas: `pg_wal_replay_pause()` is in effect. */
  replayPaused: boolean | undefined;
  /** Replicas: the state of their circuit breaker (`'closed'` when there is none). */
  breaker: CircuitState;
  lastCheckAt: number | undefined;
  consecutiveFailures: number;
  /** The last health-check error, passwords redacted. */
  lastError: string | undefined;
  /** Totals since creation. */
  acquired: number;
  timeouts: number;
  rejectedFull: number;
  errors: number;
}

/** Snapshot returned by {@link PgCluster.stats}. */
export interface PgClusterStats {
  name: string;
  readYourWrites: ReadYourWrites;
  closed: boolean;
  primary: PgNodeStats;
  replicas: PgNodeStats[];
  /** Statements routed since creation. */
  routing: {
    /** Sent to the primary because they write, lock, or could not be vouched for. */
    writes: number;
    /** Sent to the primary by `route: 'primary'`. */
    forcedPrimary: number;
    /** Reads: known read-only, or `read()` / `route: 'replica'`. */
    reads: number;
    readsOnReplica: number;
    readsOnPrimary: number;
    /** Reads sent to the primary because no replica had replayed the session's writes (or it was sticky). */
    rywFallbacks: number;
    /** Reads sent to the primary because no replica was healthy. */
    noReplicaFallbacks: number;
    /** Reads re-run on the primary after their replica failed (connection lost, breaker open, recovery conflict). */
    failovers: number;
    transactions: number;
    /** Consistency tokens that could not be parsed (their sessions read from the primary for a while). */
    invalidTokens: number;
  };
  /** Health rounds run. */
  healthChecks: number;
}

/** Event of {@link PgCluster.onEject}. */
export interface PgEjectEvent {
  node: string;
  address: string;
  reason: EjectReason;
  lagMs: number | undefined;
  /** The failure, for `'unreachable'`; passwords redacted. */
  error: Error | undefined;
}

/** Event of {@link PgCluster.onReadmit}. */
export interface PgReadmitEvent {
  node: string;
  address: string;
  lagMs: number | undefined;
}

/** Event of {@link PgCluster.onError}. */
export interface PgClientErrorEvent {
  node: string;
  address: string;
  /**
   * `'idle-client'`: a pooled connection failed while idle (pg-pool drops it); `'client'`: a
   * checked-out one failed between statements (destroyed on release); `'health'`: a node's health
   * check started failing.
   */
  source: 'idle-client' | 'client' | 'health';
  /** `E_PG_CONNECTION` or `E_PG_QUERY` (or `E_TIMEOUT` for a health check), passwords redacted. */
  error: Error;
}

const ISOLATIONS: readonly IsolationLevel[] = ['read committed', 'repeatable read', 'serializable'];
const ROUTES: readonly Route[] = ['auto', 'primary', 'replica'];
const LSN_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';
/** Classifications are cached per statement text; generated SQL beyond this size is classified each time. */
const CACHE_MAX_SQL = 4096;
const CACHE_MAX_ENTRIES = 2048;
/** At most one on-demand replay-position refresh per replica per this many ms. */
const REFRESH_INTERVAL = 5;

const ejectChannel = channel('pool', 'eject');
const readmitChannel = channel('pool', 'readmit');
const errorChannel = channel('pool', 'error');
const queryChannel = channel('pool', 'query');
const lifecycleChannels = lifecycle('pool');

const OPTION_KEYS = [
  'Pool',
  'primary',
  'replicas',
  'readYourWrites',
  'stickyWindow',
  'maxReplicaLag',
  'healthCheckInterval',
  'healthCheckTimeout',
  'acquireTimeout',
  'maxWaiting',
  'maxLifetime',
  'pgbouncer',
  'asyncContext',
  'readOnlyFunctions',
  'breaker',
  'name',
  'clock',
] as const;

/**
 * Creates a PostgreSQL cluster: a primary and its read replicas behind pg-pool, with statement
 * routing (writes, locks and anything unsure to the primary; reads to a healthy replica),
 * read-your-writes by WAL position, replicas ejected by measured lag and health, and pg-pool's
 * unsafe defaults fixed (acquire timeout, bounded waiting, error listeners, connection lifetime,
 * draining `end()`).
 *
 * @example
 * import pg from 'pg';
 * import { createPgCluster } from 'buttress/pool';
 *
 * const db = createPgCluster({
 *   Pool: pg.Pool,
 *   primary: { connectionString: process.env.DATABASE_URL, max: 20 },
 *   replicas: [process.env.REPLICA_URL!],
 *   maxReplicaLag: '2s',
 * });
 * const session = db.session(req.headers['x-consistency']);
 * await session.query('UPDATE accounts SET plan = $1 WHERE id = $2', ['pro', id]);
 * const { rows } = await session.query('SELECT plan FROM accounts WHERE id = $1', [id]); // sees 'pro'
 * res.setHeader('x-consistency', session.consistencyToken());
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option (passwords masked).
 */
export function createPgCluster(options: PgClusterOptions): PgCluster {
  return new PgCluster(options);
}

/** See {@link createPgCluster}. */
export class PgCluster implements SessionHost {
  readonly #name: string;
  readonly #clock: Clock;
  readonly #watch: Stopwatch;
  readonly #primary: PgNode;
  readonly #replicas: readonly PgNode[];
  readonly #nodes: readonly PgNode[];
  readonly #probes = new Map<PgNode, HealthProbe>();
  readonly #redactor: Redactor;
  readonly #lag: LagTracker;
  readonly #ryw: ReadYourWrites;
  readonly #stickyWindow: number;
  readonly #maxLag: number;
  readonly #interval: number;
  readonly #pgbouncer: boolean;
  readonly #als: AsyncLocalStorage<PgSession> | undefined;
  readonly #readOnlyFunctions: ReadonlySet<string>;
  readonly #classCache = new Map<string, SqlClassification>();
  readonly #subscriptions: Disposable[] = [];

  #cursor = 0;
  #healthTimer: Timer | undefined;
  #roundChain: Promise<void> = Promise.resolve();
  #ending: Promise<void> | undefined;
  #closing = false;
  #rounds = 0;
  readonly #lastRefresh = new Map<PgNode, number>();
  readonly #refreshing = new Set<PgNode>();

  #writes = 0;
  #forcedPrimary = 0;
  #reads = 0;
  #readsOnReplica = 0;
  #readsOnPrimary = 0;
  #rywFallbacks = 0;
  #noReplicaFallbacks = 0;
  #failovers = 0;
  #transactions = 0;
  #invalidTokens = 0;

  readonly #ejectEm = new Emitter<PgEjectEvent>();
  readonly #readmitEm = new Emitter<PgReadmitEvent>();
  readonly #errorEm = new Emitter<PgClientErrorEvent>();

  /** Fires when a replica stops serving reads (lag, unreachable, not a standby, breaker open). */
  readonly onEject: Event<PgEjectEvent> = this.#ejectEm.event;
  /** Fires when an ejected replica serves reads again. */
  readonly onReadmit: Event<PgReadmitEvent> = this.#readmitEm.event;
  /**
   * Fires when a connection fails outside any call (idle in the pool, or checked out between two
   * statements) and when a node's health checks start failing. Such errors never crash the process.
   */
  readonly onError: Event<PgClientErrorEvent> = this.#errorEm.event;

  constructor(options: PgClusterOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, OPTION_KEYS);
    this.#name = nonEmptyString(opts.name, 'name', 'pg');
    this.#clock = clockOption(opts.clock);
    this.#watch = stopwatch(this.#clock);
    const acquireTimeout = duration(opts.acquireTimeout, 'acquireTimeout', 5_000, 1);
    const maxWaiting = integer(opts.maxWaiting, 'maxWaiting', 0, 1_000_000, 100);
    const maxLifetime =
      opts.maxLifetime === false || opts.maxLifetime === 0
        ? 0
        : duration(opts.maxLifetime, 'maxLifetime', 30 * 60_000, 1);
    this.#ryw = oneOf(opts.readYourWrites, 'readYourWrites', ['lsn', 'sticky', 'off'], 'lsn');
    this.#maxLag = duration(opts.maxReplicaLag, 'maxReplicaLag', 2_000);
    this.#interval = duration(opts.healthCheckInterval, 'healthCheckInterval', 1_000, 10);
    const healthTimeout = duration(opts.healthCheckTimeout, 'healthCheckTimeout', 2_000, 1);
    this.#stickyWindow = duration(opts.stickyWindow, 'stickyWindow', this.#maxLag + this.#interval);
    if (opts.pgbouncer !== undefined && opts.pgbouncer !== false && opts.pgbouncer !== 'transaction') {
      throw new InvalidOptionError('pgbouncer', opts.pgbouncer, "false or 'transaction'");
    }
    this.#pgbouncer = opts.pgbouncer === 'transaction';
    this.#als = bool(opts.asyncContext, 'asyncContext', false)
      ? new AsyncLocalStorage<PgSession>()
      : undefined;
    this.#readOnlyFunctions = functionNames(opts.readOnlyFunctions);
    const breakerOptions = breakerSettings(opts.breaker);

    if (opts.primary === undefined) {
      throw new InvalidOptionError('primary', undefined, 'a connection string, a pg PoolConfig or a pg.Pool');
    }
    const replicaOptions = opts.replicas ?? [];
    if (!Array.isArray(replicaOptions) || replicaOptions.length > 64) {
      throw new InvalidOptionError(
        'replicas',
        sanitizeForMessage(replicaOptions),
        'an array of at most 64 nodes',
      );
    }
    const Pool = opts.Pool;
    if (Pool !== undefined && typeof Pool !== 'function') {
      throw new InvalidOptionError('Pool', Pool, "pg's Pool class");
    }
    // Pools are built only once every other option has passed. Building one opens nothing
    // (pg-pool connects lazily), so a bad node later in the list leaves nothing behind.
    const specs = [opts.primary, ...replicaOptions].map((node, i) =>
      resolveNode(node, i === 0 ? 'primary' : `replicas[${i - 1}]`, Pool, acquireTimeout),
    );
    this.#redactor = new Redactor(specs.flatMap((s) => s.secrets));
    const settings = {
      acquireTimeout,
      maxWaiting,
      maxLifetime,
      clock: this.#clock,
      redactor: this.#redactor,
      onClientError: (node: PgNode, error: unknown, source: 'client' | 'idle-client') =>
        this.#emitError(node, error, source),
    };
    const nodes = specs.map((spec, i) => {
      const name = i === 0 ? 'primary' : `replica-${i - 1}`;
      const breaker =
        i === 0 || breakerOptions === undefined
          ? undefined
          : circuitBreaker({ ...breakerOptions, name: `${this.#name}:${name}`, clock: this.#clock });
      return new PgNode({
        name,
        role: i === 0 ? 'primary' : 'replica',
        address: spec.address,
        pool: spec.pool,
        owned: spec.owned,
        settings,
        breaker,
      });
    });
    this.#nodes = nodes;
    this.#primary = nodes[0]!;
    this.#replicas = nodes.slice(1);
    for (const node of nodes) this.#probes.set(node, new HealthProbe(node, this.#clock, healthTimeout));
    for (const node of this.#replicas) this.#watchBreaker(node);
    // The history must reach further back than maxReplicaLag for "older than every sample" to mean "too old".
    this.#lag = new LagTracker(Math.min(4096, Math.ceil(this.#maxLag / this.#interval) + 4));
    // Until its first health check answers, a replica takes no reads: its lag is unknown.
    this.#startHealth();
    announce(lifecycleChannels.create, 'pg-cluster', this);
  }

  /** The cluster's name. */
  get name(): string {
    return this.#name;
  }

  // ------------------------------------------------------------------------------------------
  // Queries

  /**
   * Runs a statement on the node its text calls for: the primary for writes, transaction control,
   * locking reads (`FOR UPDATE/SHARE`) and anything the classifier cannot vouch for; a healthy
   * replica for reads (one that has replayed the session's writes, with read-your-writes), the
   * primary when there is none. `route` overrides the classifier.
   *
   * A read whose replica fails before the statement is sent (connection refused, breaker open),
   * or fails in flight when the statement is known read-only, is run again on the primary.
   *
   * @throws {PgQueryError} `E_PG_QUERY` when the server rejects the statement.
   * @throws {PgConnectionError} `E_PG_CONNECTION` when the node cannot be reached.
   * @throws {PoolTimeoutError} `E_POOL_TIMEOUT`, {@link PoolFullError} `E_POOL_FULL`, `E_ABORTED`, `E_CLOSED`.
   * @throws {PgBouncerUnsupportedError} `E_PGBOUNCER_UNSUPPORTED` with `pgbouncer: 'transaction'`.
   */
  query<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
    options?: PgQueryOptions,
  ): Promise<QueryResult<R>> {
    if (this.#closing) return Promise.reject(new ClosedError('PgCluster'));
    let route: Route = 'auto';
    let session: PgSession | undefined;
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      if (options.route !== undefined) {
        if (!ROUTES.includes(options.route)) {
          return Promise.reject(
            new InvalidOptionError('route', options.route, "'auto', 'primary' or 'replica'"),
          );
        }
        route = options.route;
      }
      session = options.session;
      if (canAbort(options.signal)) signal = options.signal;
    }
    if (session === undefined && this.#als !== undefined) session = this.#als.getStore();
    const sql = typeof text === 'string' ? text : (text as QueryConfig | undefined)?.text;
    if (typeof sql !== 'string' || typeof (text as { submit?: unknown }).submit === 'function') {
      return Promise.reject(
        new InvalidOptionError(
          'text',
          text,
          'a SQL string or a QueryConfig { text } (cursors and streams: check a client out with connect())',
        ),
      );
    }
    const info = this.#classify(sql);
    if (this.#pgbouncer) {
      const refused = this.#guard(text, info, false);
      if (refused !== undefined) return Promise.reject(refused);
    }
    if (route === 'replica' || (route === 'auto' && info.kind === 'read')) {
      return this.#read(text, values, signal, session, info.kind === 'read');
    }
    if (route === 'primary') this.#forcedPrimary++;
    else this.#writes++;
    const track = session !== undefined && info.kind === 'write' && this.#ryw !== 'off' ? session : undefined;
    return this.#run(this.#primary, text, values, signal, track);
  }

  /**
   * Runs a read on a replica: one that is healthy and has replayed the session's writes, else the
   * primary. Same as `query(text, values, { route: 'replica' })`: the statement is not checked,
   * so a statement that writes fails on the replica.
   */
  read<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
    options?: Omit<PgQueryOptions, 'route'>,
  ): Promise<QueryResult<R>> {
    return this.query<R>(text, values, {
      session: options?.session,
      signal: options?.signal,
      route: 'replica',
    });
  }

  #classify(sql: string): SqlClassification {
    let info = this.#classCache.get(sql);
    if (info === undefined) {
      info = classifySql(sql, this.#readOnlyFunctions);
      if (sql.length <= CACHE_MAX_SQL) {
        if (this.#classCache.size >= CACHE_MAX_ENTRIES) this.#classCache.clear();
        this.#classCache.set(sql, info);
      }
    }
    return info;
  }

  #guard(
    text: string | QueryConfig,
    info: SqlClassification,
    inTransaction: boolean,
  ): PgBouncerUnsupportedError | undefined {
    if (typeof text !== 'string' && text.name) return new PgBouncerUnsupportedError('named-statement');
    const feature = info.sessionFeature;
    if (feature === undefined || (feature === 'temp-table' && inTransaction)) return undefined;
    return new PgBouncerUnsupportedError(feature);
  }

  #read(
    text: string | QueryConfig,
    values: readonly unknown[] | undefined,
    signal: AbortSignal | undefined,
    session: PgSession | undefined,
    readOnly: boolean,
  ): Promise<QueryResult> {
    this.#reads++;
    const node = this.#replicaFor(session);
    if (node === undefined) {
      this.#readsOnPrimary++;
      return this.#run(this.#primary, text, values, signal, undefined);
    }
    this.#readsOnReplica++;
    return this.#runOnReplica(node, text, values, signal, readOnly);
  }

  /** The replica a read of `session` goes to, or undefined for the primary (counting why). */
  #replicaFor(session: PgSession | undefined): PgNode | undefined {
    const replicas = this.#replicas;
    if (replicas.length === 0) {
      this.#noReplicaFallbacks++;
      return undefined;
    }
    let minLsn: bigint | undefined;
    if (session !== undefined && this.#ryw !== 'off') {
      const until = session.stickyUntil;
      if (until > 0 && this.#clock.now() < until) {
        this.#rywFallbacks++;
        return undefined;
      }
      minLsn = session.position;
    }
    this.#cursor = (this.#cursor + 1) & 0x3fffffff;
    const i = chooseReplica(replicas, minLsn, this.#cursor);
    if (i >= 0) return replicas[i];
    if (i === NOT_CAUGHT_UP) {
      this.#rywFallbacks++;
      this.#refreshReplay(minLsn!);
    } else {
      this.#noReplicaFallbacks++;
    }
    return undefined;
  }

  async #runOnReplica(
    node: PgNode,
    text: string | QueryConfig,
    values: readonly unknown[] | undefined,
    signal: AbortSignal | undefined,
    readOnly: boolean,
  ): Promise<QueryResult> {
    try {
      return node.breaker === undefined
        ? await this.#run(node, text, values, signal, undefined)
        : await node.breaker.execute(() => this.#run(node, text, values, signal, undefined));
    } catch (error) {
      if (this.#closing || !canFailOver(error, readOnly)) throw error;
      this.#failovers++;
      return this.#run(this.#primary, text, values, signal, undefined);
    }
  }

  /** Checks out a client of `node`, runs the statement, releases; records the position of a tracked write. */
  #run(
    node: PgNode,
    text: string | QueryConfig,
    values: readonly unknown[] | undefined,
    signal: AbortSignal | undefined,
    track: PgSession | undefined,
  ): Promise<QueryResult> {
    if (signal === undefined && track === undefined && !queryChannel.hasSubscribers) {
      return this.#runPlain(node, text, values);
    }
    return this.#runAsync(node, text, values, signal, track);
  }

  /**
   * The common case, written with callbacks: no signal, no write to track, nobody tracing. One
   * promise per statement, as `pool.query()` has; the general path below costs a few more (an
   * async frame, pg's own promise), which show on a sub-100 µs round trip.
   */
  #runPlain(
    node: PgNode,
    text: string | QueryConfig,
    values: readonly unknown[] | undefined,
  ): Promise<QueryResult> {
    return new Promise<QueryResult>((resolve, reject) => {
      node.checkout(undefined, (acquireError, client) => {
        if (client === undefined) {
          reject(acquireError);
          return;
        }
        try {
          // pg stores the callback on a config object it is given: hand it a copy, so the caller's
          // object does not carry our callback into its next use. (The callback is written inline:
          // a named per-call closure gets a name-keeping wrapper under some transpilers.)
          client.query(
            (typeof text === 'string' ? text : { ...text }) as string,
            values as unknown[],
            (error: Error | undefined, result: QueryResult) =>
              this.#settle(node, client, error, result, resolve, reject),
          );
        } catch (error) {
          this.#settle(node, client, error as Error, undefined, resolve, reject);
        }
      });
    });
  }

  /** Releases the client of a plain statement and settles its promise. */
  #settle(
    node: PgNode,
    client: PoolClient,
    error: Error | undefined,
    result: QueryResult | undefined,
    resolve: (result: QueryResult) => void,
    reject: (error: unknown) => void,
  ): void {
    if (error === undefined || error === null) {
      client.release();
      resolve(result!);
      return;
    }
    const typed = toPgError(error, node.name, true, this.#redactor);
    client.release(typed instanceof PgConnectionError ? typed : undefined);
    reject(typed);
  }

  async #runAsync(
    node: PgNode,
    text: string | QueryConfig,
    values: readonly unknown[] | undefined,
    signal: AbortSignal | undefined,
    track: PgSession | undefined,
  ): Promise<QueryResult> {
    const traced = queryChannel.hasSubscribers;
    const start = traced ? this.#watch() : 0;
    let failure: unknown;
    let client: PoolClient | undefined;
    try {
      client = await node.acquire(signal);
      const result =
        signal === undefined
          ? await client.query(text as string, values as unknown[])
          : await queryAbortable(node, client, text, values, signal, this.#cancel);
      if (track !== undefined) await this.#afterWrite(client, track);
      return result;
    } catch (error) {
      failure = client === undefined ? error : toPgError(error, node.name, true, this.#redactor);
      // A write whose connection failed (or was aborted) may have committed: stay on the primary a while.
      if (
        track !== undefined &&
        client !== undefined &&
        (failure instanceof PgConnectionError || isAbortedError(failure))
      ) {
        track.stickUntil(this.#clock.now() + this.#stickyWindow);
      }
      throw failure;
    } finally {
      client?.release(failure instanceof PgConnectionError ? failure : undefined);
      if (traced) {
        queryChannel.publish({
          cluster: this.#name,
          node: node.name,
          durationMs: this.#watch() - start,
          error: failure,
        });
      }
    }
  }

  /** After a tracked write: learn its WAL position (or, failing that, stick to the primary for a while). */
  async #afterWrite(client: PoolClient, session: PgSession): Promise<void> {
    if (this.#ryw === 'lsn') {
      try {
        const result = await client.query(LSN_SQL);
        const lsn = parseLsn(result.rows[0]?.lsn);
        if (lsn !== undefined) {
          session.advance(lsn);
          return;
        }
      } catch {
        // The write itself succeeded; only its position is unknown.
      }
    }
    session.stickUntil(this.#clock.now() + this.#stickyWindow);
  }

  // ------------------------------------------------------------------------------------------
  // Transactions and checkouts

  /**
   * Runs `fn` in a transaction on one connection: BEGIN (with the isolation level and access mode
   * asked for), `fn(tx)`, then COMMIT; ROLLBACK if `fn` throws (its error is rethrown). Read-only
   * transactions may run on a replica with `route: 'replica'`; every other one runs on the
   * primary. In a read-your-writes session, a committed write is tracked like a query's.
   *
   * @example
   * const id = await cluster.transaction(async (tx) => {
   *   const { rows } = await tx.query('INSERT INTO orders (total) VALUES ($1) RETURNING id', [total]);
   *   await tx.query('UPDATE stock SET n = n - 1 WHERE sku = $1', [sku]);
   *   return rows[0].id;
   * }, { isolation: 'serializable' });
   * @throws whatever `fn` throws (after ROLLBACK); `E_PG_QUERY` / `E_PG_CONNECTION` from BEGIN or COMMIT;
   *   the acquire errors of {@link PgCluster.query}.
   */
  async transaction<T>(
    fn: (tx: PgTransaction) => Promise<T> | T,
    options?: PgTransactionOptions,
  ): Promise<T> {
    if (this.#closing) throw new ClosedError('PgCluster');
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', fn, 'a function (tx) => Promise<T>');
    const opts = optionsObject(options);
    knownKeys(opts, ['isolation', 'readOnly', 'deferrable', 'route', 'session', 'signal']);
    const isolation =
      opts.isolation === undefined ? undefined : oneOf(opts.isolation, 'isolation', ISOLATIONS);
    const readOnly = bool(opts.readOnly, 'readOnly', false);
    const deferrable = bool(opts.deferrable, 'deferrable', false);
    const route = oneOf(opts.route, 'route', ['primary', 'replica'], 'primary');
    if (route === 'replica' && !readOnly) {
      throw new InvalidOptionError(
        'route',
        route,
        "'primary' unless readOnly is true: a replica cannot write",
      );
    }
    const session = opts.session ?? this.#als?.getStore();
    const signal = canAbort(opts.signal) ? opts.signal : undefined;
    this.#transactions++;
    let node = this.#primary;
    if (route === 'replica') {
      this.#reads++;
      node = this.#replicaFor(session) ?? this.#primary;
      if (node === this.#primary) this.#readsOnPrimary++;
      else this.#readsOnReplica++;
    } else {
      this.#writes++;
    }
    let client: PoolClient;
    try {
      client = await node.acquire(signal);
    } catch (error) {
      // A read-only transaction whose replica cannot be reached runs on the primary instead.
      if (node === this.#primary || this.#closing || !(error instanceof PgConnectionError)) throw error;
      this.#failovers++;
      node = this.#primary;
      client = await node.acquire(signal);
    }
    let broken: unknown;
    const txQuery = async (text: string | QueryConfig, values?: readonly unknown[]): Promise<QueryResult> => {
      try {
        return signal === undefined
          ? await client.query(text as string, values as unknown[])
          : await queryAbortable(node, client, text, values, signal, this.#cancel);
      } catch (error) {
        const typed = toPgError(error, node.name, true, this.#redactor);
        if (typed instanceof PgConnectionError) broken = typed;
        throw typed;
      }
    };
    try {
      await txQuery(beginStatement(isolation, readOnly, deferrable));
      const tx = new Transaction(
        client,
        node.name,
        signal,
        txQuery,
        (text, info) => (this.#pgbouncer ? this.#guard(text, info, true) : undefined),
        (sql) => this.#classify(sql),
      );
      let value: T;
      try {
        value = await fn(tx);
      } catch (error) {
        tx.done = true;
        if (broken === undefined) {
          try {
            await client.query('ROLLBACK');
          } catch (rollbackError) {
            broken = rollbackError;
          }
        }
        throw error;
      }
      tx.done = true;
      try {
        await txQuery('COMMIT');
      } catch (error) {
        // A COMMIT whose connection failed may or may not have committed.
        if (error instanceof PgConnectionError && session !== undefined && !readOnly) {
          session.stickUntil(this.#clock.now() + this.#stickyWindow);
        }
        throw error;
      }
      if (session !== undefined && !readOnly && this.#ryw !== 'off' && node === this.#primary) {
        await this.#afterWrite(client, session);
      }
      return value;
    } finally {
      client.release(broken === undefined ? undefined : (broken as Error));
    }
  }

  /**
   * Checks out a client for your own driver calls (cursors, COPY, LISTEN on a direct
   * connection): from the primary, or with `route: 'replica'` from a replica that can serve the
   * session's reads. Release it with `client.release()`; it is destroyed instead of pooled if it
   * errored, is inside a transaction, or is past `maxLifetime`.
   * @throws the acquire errors of {@link PgCluster.query}.
   */
  connect(options?: PgConnectOptions): Promise<PoolClient> {
    if (this.#closing) return Promise.reject(new ClosedError('PgCluster'));
    if (options === undefined) return this.#primary.acquire();
    let opts: Partial<PgConnectOptions>;
    let route: 'primary' | 'replica';
    try {
      opts = optionsObject(options);
      knownKeys(opts, ['route', 'session', 'signal']);
      route = oneOf(opts.route, 'route', ['primary', 'replica'], 'primary');
    } catch (error) {
      return Promise.reject(error);
    }
    const signal = canAbort(opts.signal) ? opts.signal : undefined;
    if (route === 'primary') return this.#primary.acquire(signal);
    const node = this.#replicaFor(opts.session ?? this.#als?.getStore());
    if (node === undefined) return this.#primary.acquire(signal);
    return node.acquire(signal).catch((error: unknown) => {
      if (this.#closing || !(error instanceof PgConnectionError)) throw error;
      this.#failovers++;
      return this.#primary.acquire(signal);
    });
  }

  /**
   * Stops the server-side statement of an aborted call. Destroying the socket frees the caller,
   * but a backend busy in a long statement only notices the lost client when it next writes, so
   * the statement is cancelled by backend pid over the node's health connection. Not under
   * PgBouncer, whose backend keys are its own: the pid would name some other session's backend.
   */
  readonly #cancel = (node: PgNode, client: PoolClient): void => {
    const pid = (client as { processID?: unknown }).processID;
    if (this.#pgbouncer || this.#closing || typeof pid !== 'number') return;
    this.#probes
      .get(node)
      ?.run(CANCEL_SQL, [pid])
      .catch(() => {
        // best effort: the backend ends anyway once it notices the closed socket
      });
  };

  // ------------------------------------------------------------------------------------------
  // Sessions

  /**
   * A read-your-writes session, fresh or resumed from a consistency token (a cookie, a header).
   * A malformed token is not an error (it usually comes from a client): the session's reads go
   * to the primary for `stickyWindow`, and `stats().routing.invalidTokens` counts it.
   */
  session(token?: string | null): PgSession {
    if (token === undefined || token === null || token === '') return new PgSession(this);
    return new PgSession(this, this.parseToken(token));
  }

  /** The session of the current async context (`session.run(fn)`), with `asyncContext: true`. */
  currentSession(): PgSession | undefined {
    return this.#als?.getStore();
  }

  /** @internal See {@link SessionHost.parseToken}. */
  parseToken(token: unknown): ConsistencyPosition {
    const position = typeof token === 'string' ? decodeToken(token) : undefined;
    if (position !== undefined) return position;
    this.#invalidTokens++;
    return { lsn: undefined, until: this.#clock.now() + this.#stickyWindow };
  }

  /** @internal See {@link SessionHost.runInSession}. */
  runInSession<T>(session: PgSession, fn: () => T): T {
    if (this.#als === undefined) {
      throw new InvalidOptionError('asyncContext', false, 'true to use session.run()');
    }
    return this.#als.run(session, fn);
  }

  // ------------------------------------------------------------------------------------------
  // Health

  #startHealth(): void {
    void this.checkHealth().finally(() => this.#scheduleHealth());
  }

  #scheduleHealth(): void {
    if (this.#closing) return;
    this.#healthTimer = this.#clock.setTimeout(this.#onHealthTimer, this.#interval);
  }

  readonly #onHealthTimer = (): void => {
    this.#healthTimer = undefined;
    void this.checkHealth().finally(() => this.#scheduleHealth());
  };

  /**
   * Runs a health round now (after the one in progress, if any): the primary's WAL position,
   * each replica's replay position, lag, reachability; ejects and re-admits replicas. Rounds
   * also run every `healthCheckInterval` on their own. Never rejects.
   */
  checkHealth(): Promise<void> {
    const round = this.#roundChain.then(() => this.#runRound());
    this.#roundChain = round;
    return round;
  }

  async #runRound(): Promise<void> {
    if (this.#closing) return;
    this.#rounds++;
    const primary = this.#primary;
    const sentAt = this.#clock.now();
    try {
      const row = await this.#probes.get(primary)!.run(PRIMARY_CHECK_SQL);
      primary.lastCheckAt = this.#clock.now();
      primary.probed = true;
      primary.healthy = true;
      primary.consecutiveFailures = 0;
      primary.lastError = undefined;
      primary.inRecovery = row.in_recovery === true;
      const lsn = parseLsn(row.lsn);
      if (lsn !== undefined) {
        primary.replayLsn = lsn;
        this.#lag.record(sentAt, lsn);
      }
    } catch (error) {
      this.#probeFailed(primary, error);
    }
    await Promise.all(this.#replicas.map((node) => this.#probeReplica(node)));
  }

  async #probeReplica(node: PgNode): Promise<void> {
    let row: QueryResultRow;
    try {
      row = await this.#probes.get(node)!.run(REPLICA_CHECK_SQL);
    } catch (error) {
      this.#probeFailed(node, error);
      this.#eject(node, 'unreachable', node.lastError);
      return;
    }
    const now = this.#clock.now();
    node.lastCheckAt = now;
    node.probed = true;
    node.healthy = true;
    node.consecutiveFailures = 0;
    node.lastError = undefined;
    node.inRecovery = row.in_recovery === true;
    node.replayPaused = row.paused === true;
    const replay = parseLsn(row.replay_lsn);
    if (replay !== undefined) node.replayLsn = replay;
    node.lagMs = replay === undefined ? undefined : this.#lag.lagOf(replay, now);
    if (!node.inRecovery) this.#eject(node, 'not-in-recovery', undefined);
    else if (node.lagMs !== undefined && node.lagMs > this.#maxLag) this.#eject(node, 'lag', undefined);
    else this.#readmit(node);
  }

  #probeFailed(node: PgNode, error: unknown): void {
    const typed = toPgError(error, node.name, false, this.#redactor) as Error;
    const wasHealthy = node.healthy || !node.probed;
    node.lastCheckAt = this.#clock.now();
    node.probed = true;
    node.healthy = false;
    node.consecutiveFailures++;
    node.lastError = typed;
    if (wasHealthy) this.#emitTyped(node, typed, 'health');
  }

  /** Reads the replay position of routable replicas behind `lsn`, so sessions return to them soon after they catch up. */
  #refreshReplay(lsn: bigint): void {
    if (this.#closing) return;
    const now = this.#clock.now();
    for (const node of this.#replicas) {
      if (!node.routable || (node.replayLsn !== undefined && node.replayLsn >= lsn)) continue;
      if (this.#refreshing.has(node) || now - (this.#lastRefresh.get(node) ?? -Infinity) < REFRESH_INTERVAL) {
        continue;
      }
      this.#refreshing.add(node);
      this.#lastRefresh.set(node, now);
      this.#probes
        .get(node)!
        .run(REPLAY_LSN_SQL)
        .then(
          (row) => {
            const replay = parseLsn(row.replay_lsn);
            if (replay !== undefined && (node.replayLsn === undefined || replay > node.replayLsn)) {
              node.replayLsn = replay;
            }
          },
          () => {
            // the next health round deals with an unreachable replica
          },
        )
        .finally(() => this.#refreshing.delete(node));
    }
  }

  #watchBreaker(node: PgNode): void {
    const breaker = node.breaker;
    if (breaker === undefined) return;
    this.#subscriptions.push(
      breaker.onBreak(() => {
        node.breakerOpen = true;
        if (!node.ejected) this.#emitEject(node, 'breaker-open', undefined);
      }),
      breaker.onReset(() => {
        node.breakerOpen = false;
        if (!node.ejected && !this.#closing) this.#emitReadmit(node);
      }),
    );
  }

  #eject(node: PgNode, reason: EjectReason, error: Error | undefined): void {
    const was = node.ejected;
    node.ejected = true;
    node.ejectReason = reason;
    if (!was && !(node.breakerOpen && this.#breakerState(node) === 'open'))
      this.#emitEject(node, reason, error);
  }

  #readmit(node: PgNode): void {
    if (!node.ejected) return;
    node.ejected = false;
    node.ejectReason = undefined;
    if (!node.breakerOpen) this.#emitReadmit(node);
  }

  #breakerState(node: PgNode): CircuitState {
    return node.breaker?.state ?? 'closed';
  }

  #emitEject(node: PgNode, reason: EjectReason, error: Error | undefined): void {
    if (this.#closing) return;
    if (this.#ejectEm.size === 0 && !ejectChannel.hasSubscribers) return;
    const event: PgEjectEvent = { node: node.name, address: node.address, reason, lagMs: node.lagMs, error };
    this.#ejectEm.emit(event);
    if (ejectChannel.hasSubscribers) ejectChannel.publish({ cluster: this.#name, ...event });
  }

  #emitReadmit(node: PgNode): void {
    if (this.#closing) return;
    if (this.#readmitEm.size === 0 && !readmitChannel.hasSubscribers) return;
    const event: PgReadmitEvent = { node: node.name, address: node.address, lagMs: node.lagMs };
    this.#readmitEm.emit(event);
    if (readmitChannel.hasSubscribers) readmitChannel.publish({ cluster: this.#name, ...event });
  }

  #emitError(node: PgNode, error: unknown, source: 'client' | 'idle-client'): void {
    if (this.#errorEm.size === 0 && !errorChannel.hasSubscribers) return;
    this.#emitTyped(node, toPgError(error, node.name, true, this.#redactor) as Error, source);
  }

  #emitTyped(node: PgNode, error: Error, source: PgClientErrorEvent['source']): void {
    if (this.#errorEm.size === 0 && !errorChannel.hasSubscribers) return;
    const event: PgClientErrorEvent = { node: node.name, address: node.address, source, error };
    this.#errorEm.emit(event);
    if (errorChannel.hasSubscribers) errorChannel.publish({ cluster: this.#name, ...event });
  }

  // ------------------------------------------------------------------------------------------
  // Stats and lifecycle

  /** Counts, gauges and health of every node, as a plain object. */
  stats(): PgClusterStats {
    return {
      name: this.#name,
      readYourWrites: this.#ryw,
      closed: this.#closing,
      primary: this.#nodeStats(this.#primary),
      replicas: this.#replicas.map((n) => this.#nodeStats(n)),
      routing: {
        writes: this.#writes,
        forcedPrimary: this.#forcedPrimary,
        reads: this.#reads,
        readsOnReplica: this.#readsOnReplica,
        readsOnPrimary: this.#readsOnPrimary,
        rywFallbacks: this.#rywFallbacks,
        noReplicaFallbacks: this.#noReplicaFallbacks,
        failovers: this.#failovers,
        transactions: this.#transactions,
        invalidTokens: this.#invalidTokens,
      },
      healthChecks: this.#rounds,
    };
  }

  #nodeStats(node: PgNode): PgNodeStats {
    const pool = node.pool;
    return {
      name: node.name,
      role: node.role,
      address: node.address,
      total: pool.totalCount ?? 0,
      idle: pool.idleCount ?? 0,
      inUse: node.inUse,
      waiting: node.waiting + (pool.waitingCount ?? 0),
      max: node.max,
      healthy: node.healthy,
      ejected: node.ejected,
      ejectReason: node.ejectReason,
      lagMs: node.lagMs,
      lsn: node.replayLsn === undefined ? undefined : formatLsn(node.replayLsn),
      inRecovery: node.inRecovery,
      replayPaused: node.replayPaused,
      breaker: this.#breakerState(node),
      lastCheckAt: node.lastCheckAt,
      consecutiveFailures: node.consecutiveFailures,
      lastError: node.lastError?.message,
      acquired: node.totalAcquired,
      timeouts: node.totalTimeouts,
      rejectedFull: node.totalFull,
      errors: node.totalErrors,
    };
  }

  /**
   * Stops accepting calls (they reject with `E_CLOSED`, as do callers still waiting for a
   * connection), stops health checks, and lets statements in flight finish for up to `timeout`;
   * then destroys the connections still checked out. Ends the pools it built; pools passed in are
   * yours and stay open. Idempotent.
   * @param options.timeout how long in-flight work may take to drain. @default '10s'
   */
  end(options?: { timeout?: Duration }): Promise<void> {
    if (this.#ending === undefined) {
      const opts = optionsObject(options);
      knownKeys(opts, ['timeout']);
      this.#ending = this.#end(duration(opts.timeout, 'timeout', 10_000));
    }
    return this.#ending;
  }

  /** Same as {@link PgCluster.end} with its default deadline. */
  close(): Promise<void> {
    return this.end();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.end();
  }

  async #end(timeout: number): Promise<void> {
    this.#closing = true;
    announce(lifecycleChannels.close, 'pg-cluster', this);
    if (this.#healthTimer !== undefined) {
      this.#clock.clearTimeout(this.#healthTimer);
      this.#healthTimer = undefined;
    }
    for (const node of this.#nodes) node.close();
    await Promise.all([...this.#probes.values()].map((p) => p.close()));
    await this.#roundChain;
    const drained = await this.#within(Promise.all(this.#nodes.map((n) => n.drained())), timeout);
    if (!drained) for (const node of this.#nodes) node.destroyCheckedOut();
    // pg-pool's end() waits for every checked-out client to come back; after a forced drain, one
    // the user never releases would hold it forever, so it gets a short grace only.
    const ends = this.#nodes.filter((n) => n.owned).map((n) => n.pool.end().catch(noop));
    await this.#within(Promise.all(ends), drained ? timeout : Math.min(timeout, 1_000));
    for (const node of this.#nodes) node.detach();
    for (const sub of this.#subscriptions.splice(0)) sub.dispose();
    await Promise.all(this.#replicas.map((n) => n.breaker?.close()));
    this.#ejectEm.clear();
    this.#readmitEm.clear();
    this.#errorEm.clear();
  }

  /** Resolves true when `promise` settles within `ms`, false otherwise (on the cluster's clock). */
  #within(promise: Promise<unknown>, ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = this.#clock.setTimeout(() => resolve(false), ms);
      promise.then(
        () => {
          this.#clock.clearTimeout(timer);
          resolve(true);
        },
        () => {
          this.#clock.clearTimeout(timer);
          resolve(true);
        },
      );
    });
  }
}

/** The transaction handle: queries go through the transaction's client with typed errors. */
class Transaction implements PgTransaction {
  done = false;
  readonly client: PoolClient;
  readonly node: string;
  readonly signal: AbortSignal | undefined;
  readonly #run: (text: string | QueryConfig, values?: readonly unknown[]) => Promise<QueryResult>;
  readonly #guard: (text: string | QueryConfig, info: SqlClassification) => Error | undefined;
  readonly #classify: (sql: string) => SqlClassification;

  constructor(
    client: PoolClient,
    node: string,
    signal: AbortSignal | undefined,
    run: (text: string | QueryConfig, values?: readonly unknown[]) => Promise<QueryResult>,
    guard: (text: string | QueryConfig, info: SqlClassification) => Error | undefined,
    classify: (sql: string) => SqlClassification,
  ) {
    this.client = client;
    this.node = node;
    this.signal = signal;
    this.#run = run;
    this.#guard = guard;
    this.#classify = classify;
  }

  query<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    if (this.done) return Promise.reject(new ClosedError('The transaction'));
    const sql = typeof text === 'string' ? text : (text as QueryConfig | undefined)?.text;
    if (typeof sql !== 'string') {
      return Promise.reject(new InvalidOptionError('text', text, 'a SQL string or a QueryConfig { text }'));
    }
    const refused = this.#guard(text, this.#classify(sql));
    if (refused !== undefined) return Promise.reject(refused);
    return this.#run(text, values) as Promise<QueryResult<R>>;
  }
}

/** Runs a statement that an abort must interrupt: the caller is released at once and the connection destroyed. */
function queryAbortable(
  node: PgNode,
  client: PoolClient,
  text: string | QueryConfig,
  values: readonly unknown[] | undefined,
  signal: AbortSignal,
  cancel: (node: PgNode, client: PoolClient) => void,
): Promise<QueryResult> {
  if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
  return new Promise<QueryResult>((resolve, reject) => {
    const off = onAbort(signal, (reason) => {
      node.markBroken(client, reason);
      cancel(node, client);
      destroyClient(client);
      reject(new AbortedError(reason));
    });
    client.query(text as string, values as unknown[]).then(
      (result) => {
        off();
        resolve(result);
      },
      (error: unknown) => {
        off();
        reject(error);
      },
    );
  });
}

/** Whether a replica read that failed with `error` may run again on the primary. */
function canFailOver(error: unknown, readOnly: boolean): boolean {
  // Never sent: always safe elsewhere.
  if (isBrokenCircuitError(error)) return true;
  if (error instanceof PgConnectionError) return !error.sent || readOnly;
  // A standby cancels queries that conflict with replay (SQLSTATE 40001); the primary has no such conflict.
  return readOnly && error instanceof PgQueryError && error.sqlState === '40001';
}

function beginStatement(
  isolation: IsolationLevel | undefined,
  readOnly: boolean,
  deferrable: boolean,
): string {
  let sql = 'BEGIN';
  if (isolation !== undefined) sql += ` ISOLATION LEVEL ${isolation.toUpperCase()}`;
  if (readOnly) sql += ' READ ONLY';
  if (deferrable) sql += ' DEFERRABLE';
  return sql;
}

function functionNames(value: unknown): ReadonlySet<string> {
  if (value === undefined) return new Set();
  if (!Array.isArray(value))
    throw new InvalidOptionError('readOnlyFunctions', value, 'an array of function names');
  return new Set(
    value.map((name, i) =>
      nonEmptyString(name, `readOnlyFunctions[${i}]`).toLowerCase().replace(/^.*\./, ''),
    ),
  );
}

function breakerSettings(
  value: unknown,
): Omit<CircuitBreakerOptions, 'clock' | 'shared' | 'initialState'> | undefined {
  if (value === false) return undefined;
  const opts = optionsObject(value as object | undefined, 'breaker') as CircuitBreakerOptions;
  knownKeys(
    opts,
    ['strategy', 'halfOpenAfter', 'halfOpenProbes', 'slowCallDuration', 'isFailure'],
    'breaker',
  );
  const settings = {
    strategy: consecutive(3),
    halfOpenAfter: '5s' as const,
    isFailure: isConnectionFailure,
    ...opts,
  };
  // Validated now, even with no replica to use it yet: a bad option must fail at construction.
  circuitBreaker(settings);
  return settings;
}

function noop(): void {}
