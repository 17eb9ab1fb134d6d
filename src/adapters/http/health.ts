import type { CircuitBreaker, CircuitState } from '../../breaker/circuit-breaker.js';
import type { BreakerRegistry } from '../../breaker/registry.js';
import type { Cache } from '../../cache/cache.js';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import type { RedisConnection } from '../../core/redis.js';
import { clockOption, duration, integer, knownKeys, optionsObject } from '../../core/validate.js';
import type { PgCluster, PgNodeStats } from '../../pool/cluster.js';
import type { Queue } from '../../queue/queue.js';
import { timeout as timeoutPolicy } from '../../retry/timeout.js';

/** How one component is doing. `degraded`: it answers, but not as well as it should. */
export type HealthStatus = 'ok' | 'degraded' | 'down';

/** One check's outcome: its status and what it measured. */
export interface CheckResult {
  status: HealthStatus;
  /** Why it is not `ok`, in plain words. */
  reason?: string;
  [detail: string]: unknown;
}

/** A check of your own: resolve with a result (or nothing, meaning ok), throw for down. */
export type HealthCheck = (signal: AbortSignal) => Promise<CheckResult | undefined> | CheckResult | undefined;

/** What the readiness endpoint answers. */
export interface HealthReport {
  /** The worst status of all checks. */
  status: HealthStatus;
  /** ms since the epoch, the adapter's clock. */
  checkedAt: number;
  checks: Record<string, CheckResult>;
}

/** Options of {@link createHealth}. */
export interface HealthOptions {
  /** Redis connections to ping, by name (`{ cache: redis }`). Down when the ping fails or times out. */
  redis?: Record<string, RedisConnection>;
  /**
   * PostgreSQL clusters (buttress/pool), by name. Read from `stats()`, the cluster's own health
   * rounds, so a readiness probe sends no query: the primary is down when its last check failed;
   * a replica is degraded when ejected (lag, unreachable) or lagging more than `maxReplicaLag`.
   */
  postgres?: Record<string, PgCluster>;
  /** Circuit breakers, by name, or a registry (every breaker in it). An open breaker is degraded. */
  breakers?: Record<string, CircuitBreaker> | BreakerRegistry;
  /** Queues, by name: their depth. Degraded past `maxQueueDepth` waiting jobs; down when stats fail. */
  queues?: Record<string, Queue<any>>;
  /** Caches, by name: the Redis layer's breaker and the invalidation bus. Degraded when L2 or the bus is down. */
  caches?: Record<string, Cache>;
  /** Checks of your own, by name. */
  checks?: Record<string, HealthCheck>;
  /** Deadline of each check. @default '2s' */
  timeout?: Duration;
  /** Replica lag past which a replica counts as degraded. @default '10s' */
  maxReplicaLag?: Duration;
  /** Waiting jobs past which a queue counts as degraded. @default Infinity (never) */
  maxQueueDepth?: number;
  /** Time source. @default systemClock */
  clock?: Clock;
}

const HEALTH_KEYS = [
  'redis',
  'postgres',
  'breakers',
  'queues',
  'caches',
  'checks',
  'timeout',
  'maxReplicaLag',
  'maxQueueDepth',
  'clock',
] as const;

const RANK: Record<HealthStatus, number> = { ok: 0, degraded: 1, down: 2 };

/**
 * Creates the checks behind the health endpoints. `liveness()` says the process runs (it never
 * touches a dependency: a database outage must not get every instance restarted);
 * `readiness()` runs every check concurrently, each under its deadline, and reports each
 * component and the worst status. The adapters answer readiness 503 when it is `down`, else 200.
 *
 * @example
 * const health = createHealth({ redis: { main: redis }, postgres: { main: db }, breakers: { payments } });
 * const report = await health.readiness(); // { status: 'ok', checks: { 'redis:main': { status: 'ok', latencyMs: 0.4 }, ... } }
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid option.
 */
export function createHealth(options?: HealthOptions): Health {
  return new Health(options);
}

/** See {@link createHealth}. */
export class Health {
  readonly #checks: [string, HealthCheck][] = [];
  readonly #clock: Clock;
  readonly #timeout: ReturnType<typeof timeoutPolicy>;

  constructor(options?: HealthOptions) {
    const o = optionsObject(options, 'health');
    knownKeys(o, HEALTH_KEYS, 'health');
    this.#clock = clockOption(o.clock, 'health.clock');
    const ms = duration(o.timeout, 'health.timeout', 2000, 1);
    this.#timeout = timeoutPolicy(ms, { clock: this.#clock, strategy: 'aggressive' });
    const maxLag = duration(o.maxReplicaLag, 'health.maxReplicaLag', 10_000);
    const maxDepth =
      o.maxQueueDepth === undefined || o.maxQueueDepth === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : integer(o.maxQueueDepth, 'health.maxQueueDepth', 0, Number.MAX_SAFE_INTEGER);
    for (const [name, redis] of entries(o.redis, 'health.redis')) {
      this.#checks.push([`redis:${name}`, redisCheck(redis, this.#clock)]);
    }
    for (const [name, cluster] of entries(o.postgres, 'health.postgres')) {
      if (typeof (cluster as PgCluster)?.stats !== 'function') {
        throw new InvalidOptionError(`health.postgres.${name}`, cluster, 'a PgCluster (buttress/pool)');
      }
      this.#checks.push([`postgres:${name}`, () => postgresCheck(cluster, maxLag)]);
    }
    if (o.breakers !== undefined) this.#checks.push(['breakers', breakersCheck(o.breakers)]);
    for (const [name, queue] of entries(o.queues, 'health.queues')) {
      if (typeof (queue as Queue)?.stats !== 'function') {
        throw new InvalidOptionError(`health.queues.${name}`, queue, 'a Queue (buttress/queue)');
      }
      this.#checks.push([`queue:${name}`, (signal) => queueCheck(queue, maxDepth, signal)]);
    }
    for (const [name, cache] of entries(o.caches, 'health.caches')) {
      if (typeof (cache as Cache)?.stats !== 'function') {
        throw new InvalidOptionError(`health.caches.${name}`, cache, 'a Cache (buttress/cache)');
      }
      this.#checks.push([`cache:${name}`, () => cacheCheck(cache)]);
    }
    for (const [name, check] of entries(o.checks, 'health.checks')) {
      if (typeof check !== 'function')
        throw new InvalidOptionError(`health.checks.${name}`, check, 'a function');
      this.#checks.push([name, check]);
    }
  }

  /** Names of the checks `readiness()` runs. */
  get names(): string[] {
    return this.#checks.map(([name]) => name);
  }

  /** The process is up. Touches no dependency. */
  liveness(): { status: 'ok'; checkedAt: number } {
    return { status: 'ok', checkedAt: this.#clock.now() };
  }

  /**
   * Runs every check at once, each under the deadline (a check that does not answer in time is
   * `down` with `reason: 'timeout'`), and reports them with the worst status.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts first.
   */
  async readiness(signal?: AbortSignal): Promise<HealthReport> {
    const results = await Promise.all(
      this.#checks.map(async ([name, check]): Promise<[string, CheckResult]> => {
        try {
          const result = await this.#timeout.execute(({ signal: s }) => check(s), signal);
          return [name, result ?? { status: 'ok' }];
        } catch (error) {
          if (signal?.aborted) throw error;
          return [name, { status: 'down', reason: reasonOf(error) }];
        }
      }),
    );
    let status: HealthStatus = 'ok';
    const checks: Record<string, CheckResult> = {};
    for (const [name, result] of results) {
      checks[name] = result;
      if (RANK[result.status] > RANK[status]) status = result.status;
    }
    return { status, checkedAt: this.#clock.now(), checks };
  }
}

function entries<T>(value: Record<string, T> | undefined, option: string): [string, T][] {
  if (value === undefined) return [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(option, value, 'an object of named entries');
  }
  return Object.entries(value);
}

function reasonOf(error: unknown): string {
  if (error instanceof Error)
    return (error as { code?: unknown }).code === 'E_TIMEOUT' ? 'timeout' : error.message;
  return String(error);
}

function redisCheck(redis: RedisConnection, clock: Clock): HealthCheck {
  if (typeof (redis as { ping?: unknown })?.ping !== 'function') {
    throw new InvalidOptionError('health.redis', redis, 'an ioredis Redis or Cluster');
  }
  return async () => {
    const started = clock.now();
    await redis.ping();
    return { status: 'ok', latencyMs: clock.now() - started, connection: redis.status };
  };
}

function nodeOf(n: PgNodeStats) {
  return {
    name: n.name,
    role: n.role,
    address: n.address,
    healthy: n.healthy,
    ejected: n.ejected,
    ejectReason: n.ejectReason,
    lagMs: n.lagMs,
    replayPaused: n.replayPaused,
    breaker: n.breaker,
    inUse: n.inUse,
    idle: n.idle,
    waiting: n.waiting,
    max: n.max,
    lastError: n.lastError,
  };
}

function postgresCheck(cluster: PgCluster, maxLag: number): CheckResult {
  const stats = cluster.stats();
  const primary = stats.primary;
  const nodes = [nodeOf(primary), ...stats.replicas.map(nodeOf)];
  if (stats.closed) return { status: 'down', reason: 'cluster closed', nodes };
  if (!primary.healthy) return { status: 'down', reason: primary.lastError ?? 'primary not healthy', nodes };
  const lagging = stats.replicas.filter(
    (r) => r.ejected || !r.healthy || (r.lagMs !== undefined && r.lagMs > maxLag),
  );
  if (lagging.length > 0) {
    return {
      status: 'degraded',
      reason: lagging
        .map(
          (r) =>
            `${r.name} ${r.ejected ? `ejected (${r.ejectReason})` : !r.healthy ? 'unhealthy' : `lags ${r.lagMs}ms`}`,
        )
        .join('; '),
      nodes,
    };
  }
  return { status: 'ok', nodes };
}

function breakersCheck(breakers: Record<string, CircuitBreaker> | BreakerRegistry): HealthCheck {
  const registry =
    typeof (breakers as BreakerRegistry).keys === 'function' &&
    typeof (breakers as BreakerRegistry).get === 'function';
  if (!registry) {
    for (const [name, b] of entries(breakers as Record<string, CircuitBreaker>, 'health.breakers')) {
      if (typeof b?.stats !== 'function')
        throw new InvalidOptionError(`health.breakers.${name}`, b, 'a CircuitBreaker');
    }
  }
  return () => {
    const states: Record<string, CircuitState> = {};
    if (registry) {
      for (const [name, s] of Object.entries((breakers as BreakerRegistry).stats().breakers))
        states[name] = s.state;
    } else {
      for (const [name, b] of Object.entries(breakers as Record<string, CircuitBreaker>))
        states[name] = b.state;
    }
    const open = Object.entries(states).filter(([, s]) => s !== 'closed');
    return open.length === 0
      ? { status: 'ok', states }
      : { status: 'degraded', reason: open.map(([n, s]) => `${n} ${s}`).join('; '), states };
  };
}

async function queueCheck(queue: Queue<any>, maxDepth: number, signal: AbortSignal): Promise<CheckResult> {
  const s = await queue.stats({ signal });
  const depth = { waiting: s.waiting, active: s.active, delayed: s.delayed, failed: s.failed };
  return s.waiting > maxDepth
    ? { status: 'degraded', reason: `${s.waiting} jobs waiting (more than ${maxDepth})`, ...depth }
    : { status: 'ok', ...depth };
}

function cacheCheck(cache: Cache): CheckResult {
  const s = cache.stats();
  const detail = {
    l2: s.l2.enabled
      ? s.l2.breaker === 'closed' || s.l2.breaker === undefined
        ? 'up'
        : `breaker ${s.l2.breaker}`
      : 'off',
    bus: s.bus.enabled ? (s.bus.connected ? 'connected' : 'disconnected') : 'off',
    l1Entries: s.l1.entries,
    inflight: s.inflight,
  };
  if (s.l2.enabled && s.l2.breaker !== undefined && s.l2.breaker !== 'closed') {
    return { status: 'degraded', reason: 'Redis layer unavailable: serving from L1', ...detail };
  }
  if (s.bus.enabled && !s.bus.connected) {
    return { status: 'degraded', reason: 'invalidation bus disconnected', ...detail };
  }
  return { status: 'ok', ...detail };
}
