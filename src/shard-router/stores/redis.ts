import { throwIfAborted } from '../../core/abort.js';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { ClosedError, InvalidOptionError } from '../../core/errors.js';
import type { Disposable } from '../../core/events.js';
import {
  closeSubscriber,
  duplicateSubscriber,
  evalScript,
  isRedisConnection,
  keyPrefixOf,
  type RedisConnection,
  type SubscriberConnection,
  type SubscriberListeners,
  watchSubscriber,
  withDeadline,
} from '../../core/redis.js';
import { clockOption, duration, knownKeys, nonEmptyString, optionsObject } from '../../core/validate.js';
import { compareAndSetMap } from '../scripts/index.js';
import type { ShardMapSpec } from '../shard-map.js';
import { parseStoredMap, type ShardMapStore, VersionWatchers } from './store.js';

/** Options of {@link redisShardMapStore}. */
export interface RedisShardMapStoreOptions {
  /** Which map: routers sharing a name share a map. @default 'default' */
  name?: string;
  /** Prefix of the keys, inside a hash tag: `{<namespace>:shard-map:<name>}:map`. @default 'buttress' */
  namespace?: string;
  /** Deadline of every Redis call. @default '1s' */
  timeout?: Duration;
  /** Time source for the deadlines. @default systemClock */
  clock?: Clock;
}

/**
 * A shard map store on Redis (a `Redis` or a `Cluster`): the map in a hash
 * `{<namespace>:shard-map:<name>}:map` (fields `version`, `map`), changed by a compare-and-set
 * Lua script that also PUBLISHes the new version on `{<namespace>:shard-map:<name>}:events`.
 * Routers watching subscribe on a connection of the store's own (a `duplicate()` of `redis`);
 * on every (re)subscription the stored version is read, so a push missed while disconnected is
 * caught up at once. Every call has a deadline (`timeout`): an unreachable Redis fails the call,
 * it never hangs it. `redis` stays yours: `close()` closes only the subscriber.
 *
 * @example
 * import { Redis } from 'ioredis';
 * import { createShardRouter, redisShardMapStore } from 'buttress/shard-router';
 *
 * const store = redisShardMapStore(new Redis(), { name: 'users' });
 * declare const nodes: Record<string, import('pg').Pool>;
 * const router = await createShardRouter({ logicalShards: 4096, nodes, store }).ready();
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a connection that is not an ioredis client, or a bad option.
 */
export function redisShardMapStore(
  redis: RedisConnection,
  options?: RedisShardMapStoreOptions,
): RedisShardMapStore {
  return new RedisShardMapStore(redis, options);
}

/** See {@link redisShardMapStore}. */
export class RedisShardMapStore implements ShardMapStore {
  readonly name: string;
  readonly #redis: RedisConnection;
  readonly #key: string;
  readonly #channel: string;
  readonly #timeout: number;
  readonly #clock: Clock;
  readonly #watchers = new VersionWatchers();
  #sub: SubscriberConnection | undefined;
  #closed = false;
  readonly #subListeners: SubscriberListeners = {
    message: (channel, raw) => {
      if (channel !== this.#channel) return;
      const version = Number(raw);
      if (Number.isSafeInteger(version)) this.#watchers.emit(version);
    },
    ready: () => this.#onReady(),
    close: () => {},
  };

  constructor(redis: RedisConnection, options?: RedisShardMapStoreOptions) {
    if (!isRedisConnection(redis))
      throw new InvalidOptionError('redis', redis, 'an ioredis Redis or Cluster');
    const opts = optionsObject(options);
    knownKeys(opts, ['name', 'namespace', 'timeout', 'clock']);
    const name = nonEmptyString(opts.name, 'name', 'default');
    const namespace = nonEmptyString(opts.namespace, 'namespace', 'buttress');
    if (/[{}]/.test(name) || /[{}]/.test(namespace)) {
      throw new InvalidOptionError(
        /[{}]/.test(name) ? 'name' : 'namespace',
        /[{}]/.test(name) ? name : namespace,
        'no braces (the keys use a hash tag)',
      );
    }
    this.#redis = redis;
    const base = `{${namespace}:shard-map:${name}}`;
    this.#key = `${base}:map`;
    // ioredis prefixes keys, not channels: the script publishes on the prefixed name itself.
    this.#channel = `${keyPrefixOf(redis)}${base}:events`;
    this.#timeout = duration(opts.timeout, 'timeout', 1000, 1);
    this.#clock = clockOption(opts.clock);
    this.name = `redis:${base}`;
  }

  async load(signal?: AbortSignal): Promise<ShardMapSpec | undefined> {
    if (this.#closed) throw new ClosedError('RedisShardMapStore');
    throwIfAborted(signal);
    const raw = await withDeadline(
      (this.#redis as unknown as { hget(k: string, f: string): Promise<string | null> }).hget(
        this.#key,
        'map',
      ),
      this.#timeout,
      this.#clock,
      'Loading the shard map from Redis',
    );
    return raw === null ? undefined : parseStoredMap(raw);
  }

  async compareAndSet(
    expected: number | undefined,
    next: ShardMapSpec,
    signal?: AbortSignal,
  ): Promise<boolean> {
    if (this.#closed) throw new ClosedError('RedisShardMapStore');
    throwIfAborted(signal);
    const reply = await withDeadline(
      evalScript(this.#redis, compareAndSetMap, [
        this.#key,
        expected === undefined ? '' : String(expected),
        String(next.version),
        JSON.stringify(next),
        this.#channel,
      ]),
      this.#timeout,
      this.#clock,
      'Storing the shard map in Redis',
    );
    return Number(reply) === 1;
  }

  watch(listener: (version: number) => void): Disposable {
    if (this.#closed) throw new ClosedError('RedisShardMapStore');
    const watching = this.#watchers.add(listener);
    if (this.#sub === undefined) {
      this.#sub = duplicateSubscriber(this.#redis);
      watchSubscriber(this.#sub, this.#subListeners);
    }
    return watching;
  }

  /** Subscribes (again, after a reconnect) and reads the stored version: pushes missed meanwhile are caught up. */
  #onReady(): void {
    const sub = this.#sub;
    if (sub === undefined || this.#closed) return;
    sub.subscribe(this.#channel).catch(() => {
      // The next 'ready' subscribes again; polling covers the gap.
    });
    withDeadline(
      (this.#redis as unknown as { hget(k: string, f: string): Promise<string | null> }).hget(
        this.#key,
        'version',
      ),
      this.#timeout,
      this.#clock,
      'Reading the shard map version from Redis',
    ).then(
      (raw) => {
        const version = Number(raw);
        if (raw !== null && Number.isSafeInteger(version)) this.#watchers.emit(version);
      },
      () => {},
    );
  }

  /** Closes the store's subscriber connection (never `redis`). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watchers.close();
    const sub = this.#sub;
    this.#sub = undefined;
    if (sub !== undefined) await closeSubscriber(sub, this.#subListeners, this.#clock, this.#timeout);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
