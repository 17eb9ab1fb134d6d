import type { Clock } from '../../core/clock.js';
import { InvalidOptionError } from '../../core/errors.js';
import { isRedisConnection, type RedisConnection } from '../../core/redis.js';
import {
  bool,
  clockOption,
  duration,
  fn,
  integer,
  knownKeys,
  nonEmptyString,
  numberIn,
  optionsObject,
} from '../../core/validate.js';
import type { CacheOptions, CacheSetOptions, GetOrSetOptions } from '../types.js';
import { richSerializer, type Serializer } from './serializer.js';

/** Longest TTL, grace or timeout accepted: about 24.8 days (the timer range). */
const MAX_MS = 2 ** 31 - 1;

/** createCache's options, validated, with defaults applied. */
export interface ResolvedOptions {
  namespace: string;
  l1: {
    maxEntries: number;
    maxBytes: number | undefined;
    maxEntryBytes: number | undefined;
    maxTtl: number;
    sizeOf: ((value: unknown) => number) | undefined;
  };
  l2:
    | {
        redis: RedisConnection;
        timeout: number;
        leaseTtl: number;
        breaker: unknown;
        batchSize: number;
      }
    | undefined;
  bus: boolean;
  /** Bus heartbeat interval (ms), 0 for none. */
  busHeartbeat: number;
  ttl: number;
  grace: number;
  graceBackoff: number;
  jitter: number;
  beta: number;
  serializer: Serializer;
  clock: Clock;
}

/** Per-call write options, validated. */
export interface WriteOptions {
  ttl: number;
  grace: number;
  jitter: number;
  tags: readonly string[] | undefined;
  signal: AbortSignal | undefined;
}

/** Per-call getOrSet options, validated. */
export interface LoadOptions extends WriteOptions {
  timeout: number | undefined;
  hardTimeout: number | undefined;
  beta: number;
  graceBackoff: number;
  leaderWaits: boolean;
}

/** Checks a namespace name: non-empty, no hash-tag braces, no control character we use as a separator. */
export function namespaceName(value: unknown, option: string, fallback?: string): string {
  const name = nonEmptyString(value, option, fallback);
  if (name.includes('{') || name.includes('}') || name.includes('\u0000') || name.includes('\u0001')) {
    throw new InvalidOptionError(option, value, 'a namespace without braces or control characters');
  }
  return name;
}

/** β of early refresh: `true` is 1, `false`/0 is off. */
export function betaOf(value: unknown, option: string): number {
  if (value === undefined || value === false) return 0;
  if (value === true) return 1;
  return numberIn(value, option, 0, 1_000);
}

/** Validates createCache's options. */
export function resolveOptions(options: CacheOptions | undefined): ResolvedOptions {
  const opts = optionsObject(options);
  knownKeys(opts, [
    'namespace',
    'l1',
    'l2',
    'bus',
    'ttl',
    'grace',
    'graceBackoff',
    'jitter',
    'earlyRefresh',
    'serializer',
    'clock',
  ]);
  const namespace = namespaceName(opts.namespace, 'namespace', 'cache');

  const l1 = optionsObject(opts.l1, 'l1');
  knownKeys(l1, ['maxEntries', 'maxBytes', 'maxEntryBytes', 'maxTtl', 'sizeOf'], 'l1');
  const maxBytes = l1.maxBytes === undefined ? undefined : integer(l1.maxBytes, 'l1.maxBytes', 1, 2 ** 52);
  const maxEntryBytes =
    l1.maxEntryBytes === undefined ? maxBytes : integer(l1.maxEntryBytes, 'l1.maxEntryBytes', 1, 2 ** 52);

  let l2: ResolvedOptions['l2'];
  if (opts.l2 !== undefined) {
    const o = optionsObject(opts.l2, 'l2');
    knownKeys(o, ['redis', 'timeout', 'leaseTtl', 'breaker', 'batchSize'], 'l2');
    if (!isRedisConnection(o.redis)) {
      throw new InvalidOptionError('l2.redis', o.redis, 'an ioredis Redis or Cluster instance');
    }
    const breaker = o.breaker;
    if (
      breaker !== undefined &&
      breaker !== false &&
      (typeof breaker !== 'object' || breaker === null || Array.isArray(breaker))
    ) {
      throw new InvalidOptionError('l2.breaker', breaker, 'a CircuitBreaker, CircuitBreakerOptions or false');
    }
    l2 = {
      redis: o.redis,
      timeout: duration(o.timeout, 'l2.timeout', 50, 1, 60_000),
      leaseTtl: Math.ceil(duration(o.leaseTtl, 'l2.leaseTtl', 5_000, 1, MAX_MS)),
      breaker,
      batchSize: integer(o.batchSize, 'l2.batchSize', 1, 10_000, 25),
    };
  }

  const serializer = (opts.serializer ?? richSerializer) as Serializer;
  if (
    typeof serializer !== 'object' ||
    serializer === null ||
    typeof serializer.serialize !== 'function' ||
    typeof serializer.deserialize !== 'function'
  ) {
    throw new InvalidOptionError('serializer', serializer, 'a Serializer ({ name, serialize, deserialize })');
  }

  const clock = clockOption(opts.clock);

  let bus: boolean;
  let busHeartbeat = 1_000;
  if (typeof opts.bus === 'object' && opts.bus !== null) {
    const b = optionsObject(opts.bus, 'bus');
    knownKeys(b, ['heartbeat'], 'bus');
    busHeartbeat = b.heartbeat === false ? 0 : duration(b.heartbeat, 'bus.heartbeat', 1_000, 10, 3_600_000);
    bus = true;
  } else {
    bus = bool(opts.bus, 'bus', l2 !== undefined);
  }
  if (bus && l2 === undefined) throw new InvalidOptionError('bus', opts.bus, 'false when there is no l2');

  return {
    namespace,
    l1: {
      maxEntries: integer(l1.maxEntries, 'l1.maxEntries', 1, 2 ** 30, 10_000),
      maxBytes,
      maxEntryBytes,
      maxTtl:
        l1.maxTtl === undefined ? Number.POSITIVE_INFINITY : duration(l1.maxTtl, 'l1.maxTtl', undefined, 1),
      sizeOf: l1.sizeOf === undefined ? undefined : fn<(value: unknown) => number>(l1.sizeOf, 'l1.sizeOf'),
    },
    l2,
    bus,
    busHeartbeat,
    ttl: duration(opts.ttl, 'ttl', 60_000, 1, MAX_MS),
    grace: graceOf(opts.grace, 'grace', 0),
    graceBackoff: duration(opts.graceBackoff, 'graceBackoff', 10_000, 0, MAX_MS),
    jitter: numberIn(opts.jitter, 'jitter', 0, 0.99, 0),
    beta: betaOf(opts.earlyRefresh, 'earlyRefresh'),
    serializer,
    clock,
  };
}

function graceOf(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (value === false) return 0;
  return duration(value, option, undefined, 0, MAX_MS);
}

function tagsOf(value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((t) => typeof t === 'string' && t.length > 0)) {
    throw new InvalidOptionError('tags', value, 'an array of non-empty strings');
  }
  return value.length === 0 ? undefined : [...new Set(value as string[])];
}

function signalOf(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new InvalidOptionError('signal', value, 'an AbortSignal');
  return value;
}

const WRITE_KEYS = ['ttl', 'grace', 'jitter', 'tags', 'signal'] as const;
const LOAD_KEYS = [
  ...WRITE_KEYS,
  'timeout',
  'hardTimeout',
  'earlyRefresh',
  'graceBackoff',
  'leaderWaits',
] as const;

/** Validates a write's options against the cache's defaults. */
export function resolveWrite(
  options: CacheSetOptions | undefined,
  d: ResolvedOptions,
  known: readonly string[] = WRITE_KEYS,
): WriteOptions {
  if (options === undefined)
    return { ttl: d.ttl, grace: d.grace, jitter: d.jitter, tags: undefined, signal: undefined };
  const o = optionsObject(options);
  knownKeys(o, known);
  return {
    ttl: duration(o.ttl, 'ttl', d.ttl, 1, MAX_MS),
    grace: graceOf(o.grace, 'grace', d.grace),
    jitter: numberIn(o.jitter, 'jitter', 0, 0.99, d.jitter),
    tags: tagsOf(o.tags),
    signal: signalOf(o.signal),
  };
}

/** Validates getOrSet's options against the cache's defaults. */
export function resolveLoad(options: GetOrSetOptions | undefined, d: ResolvedOptions): LoadOptions {
  const write = resolveWrite(options, d, LOAD_KEYS);
  const o = (options ?? {}) as GetOrSetOptions;
  return {
    ...write,
    timeout: o.timeout === undefined ? undefined : duration(o.timeout, 'timeout', undefined, 0, MAX_MS),
    hardTimeout:
      o.hardTimeout === undefined ? undefined : duration(o.hardTimeout, 'hardTimeout', undefined, 1, MAX_MS),
    beta: o.earlyRefresh === undefined ? d.beta : betaOf(o.earlyRefresh, 'earlyRefresh'),
    graceBackoff: duration(o.graceBackoff, 'graceBackoff', d.graceBackoff, 0, MAX_MS),
    leaderWaits: bool(o.leaderWaits, 'leaderWaits', false),
  };
}

/** A TTL with ± `jitter` spread. */
export function jittered(ttl: number, jitter: number): number {
  return jitter === 0 ? ttl : Math.max(1, ttl * (1 + jitter * (2 * Math.random() - 1)));
}
