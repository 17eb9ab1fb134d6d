import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import {
  type RedisConnection as AnyRedisConnection,
  evalScript,
  hasScriptCommands,
  withDeadline,
} from '../../core/redis.js';
import {
  clockOption,
  duration,
  knownKeys,
  nonEmptyString,
  oneOf,
  optionsObject,
} from '../../core/validate.js';
import type { GcraParams, RateLimitDecision, RateLimitStore } from '../rate-limit-store.js';
import { gcraTake as gcraTakeScript } from '../scripts/index.js';

/** An ioredis connection: a `Redis` or a `Cluster`. */
export type RedisConnection = AnyRedisConnection;

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /** Prefix of every key: `{<namespace>:rl:<key>}`. @default 'buttress' */
  namespace?: string;
  /** Each call to Redis that has not answered within this rejects with `E_REDIS_TIMEOUT`. @default '250ms' */
  timeout?: Duration;
  /**
   * Whose clock GCRA reads. `'redis'`: the server's `TIME`, inside the script, so instances whose
   * clocks disagree still share one schedule. `'client'`: the limiter's clock (for tests with a
   * `FakeClock`, or a fleet with trusted clocks); keys then outlive their TAT by a minute, since the
   * server's clock still decides when they expire.
   * @default 'redis'
   */
  time?: 'redis' | 'client';
  /** Time source of the timeout. @default systemClock */
  clock?: Clock;
}

/** How long keys outlive their TAT when the client's clock is used. */
const CLIENT_TIME_KEEP = 60_000;

/**
 * A rate-limit store on Redis, shared by every instance using the same namespace: one key per
 * rate-limited key, holding its TAT and expiring with it, updated by one atomic Lua script
 * (`gcra-take-1.lua`: EVALSHA, falling back to EVAL once per server). Two instances each with
 * their own connection admit together exactly what one would.
 *
 * Keys are `{<namespace>:rl:<key>}`: the hash tag spans the whole key, so the single-key script
 * runs on Redis Cluster and the keys spread over its slots. Every call is bounded by `timeout`
 * (ioredis may otherwise hold a command in its offline queue for as long as the connection is
 * down); the limiter then decides by its `failOpen` setting. `redis` stays yours: it is never
 * closed, and nothing is added to it.
 *
 * @example
 * import { Redis } from 'ioredis';
 * const limiter = rateLimiter({ rate: 100, per: '1m', store: redisStore(new Redis(), { namespace: 'api' }) });
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid connection or option.
 */
export function redisStore(redis: RedisConnection, options?: RedisStoreOptions): RateLimitStore {
  return new RedisRateLimitStore(redis, options);
}

class RedisRateLimitStore implements RateLimitStore {
  readonly name = 'redis';
  readonly timeout: number;
  readonly #redis: RedisConnection;
  readonly #prefix: string;
  readonly #clientTime: boolean;
  readonly #clock: Clock;

  constructor(redis: RedisConnection, options?: RedisStoreOptions) {
    // Only the script commands, not isRedisConnection(): this store never subscribes nor checks
    // readiness, so a connection without duplicate() or status (a wrapper, a test double) is fine.
    if (!hasScriptCommands(redis)) {
      throw new InvalidOptionError('redis', redis, 'an ioredis Redis or Cluster instance');
    }
    const opts = optionsObject(options);
    knownKeys(opts, ['namespace', 'timeout', 'time', 'clock']);
    const namespace = nonEmptyString(opts.namespace, 'namespace', 'buttress');
    this.timeout = duration(opts.timeout, 'timeout', 250, 1, 60_000);
    this.#clientTime = oneOf(opts.time, 'time', ['redis', 'client'], 'redis') === 'client';
    this.#clock = clockOption(opts.clock);
    this.#redis = redis;
    this.#prefix = `{${namespace}:rl:`;
  }

  take(key: string, cost: number, params: GcraParams, now: number): Promise<RateLimitDecision> {
    const args = [
      params.interval,
      params.scale,
      params.burst,
      cost,
      this.#clientTime ? Math.floor(now) : '',
      this.#clientTime ? CLIENT_TIME_KEEP : 0,
    ];
    const call = evalScript(this.#redis, gcraTakeScript, [`${this.#prefix}${key}}`, ...args]);
    return withDeadline(call, this.timeout, this.#clock, 'Redis rate-limit call').then(parseReply);
  }
}

function parseReply(reply: unknown): RateLimitDecision {
  if (!Array.isArray(reply) || reply.length !== 4) {
    throw new Error(`unexpected reply from gcra-take: ${JSON.stringify(reply)}`);
  }
  const [allowed, retryAfter, remaining, resetAfter] = reply.map(Number) as [number, number, number, number];
  return { allowed: allowed === 1, retryAfter, remaining, resetAfter };
}
