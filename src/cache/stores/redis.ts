import type { CircuitBreaker } from '../../breaker/circuit-breaker.js';
import type { Clock } from '../../core/clock.js';
import { channel } from '../../core/diagnostics.js';
import { type Stopwatch, stopwatch } from '../../core/hr-time.js';
import {
  evalScript,
  isCluster,
  isConnectionDown,
  keyPrefixOf,
  type LuaScriptSource,
  type RedisConnection,
  withDeadline,
} from '../../core/redis.js';
import { CacheUnavailableError } from '../errors.js';
import {
  deleteEntries,
  fill,
  getOrLease,
  invalidateTags,
  publish,
  readEntries,
  releaseLease,
  setEntries,
} from '../scripts/index.js';
import type { CacheL2Message } from '../types.js';

/*
 * L2: entries in Redis, one hash per key (`{d: payload, e: expiresAt, t: tag versions}`), every
 * key of a namespace inside one hash tag, `{<namespace>}:v:<key>`, so each multi-key script runs
 * on one Redis Cluster slot (and so a namespace lives on one Cluster master: spread load over
 * several namespaces).
 *
 * Every call goes through the cache's circuit breaker and is raced against `timeout`: a slow or
 * dead Redis costs a caller at most `timeout`, and after a few failures nothing at all until the
 * breaker lets a probe through. A connection that is not ready fails at once instead of queueing.
 *
 * Reads are batched: every read issued in one tick (until control returns to the event loop)
 * goes out as one script call per namespace, so 100 concurrent misses cost one round trip.
 */

const l2Channel = channel('cache', 'l2');

/** Key names of one namespace. */
export class NamespaceKeys {
  /** The hash tag, `{<namespace>}`. */
  readonly tag: string;
  /** Prefix of value keys, as passed to ioredis (which adds the connection's keyPrefix). */
  readonly value: string;
  /** Prefix of lease keys, as passed to ioredis. */
  readonly lease: string;
  /** Prefix of tag version keys, as passed to ioredis. */
  readonly tagKey: string;
  /** Prefix of tag version keys as built inside Lua (with the connection's keyPrefix). */
  readonly tagInLua: string;
  /** Pattern matching every key of the namespace, as SCAN sees them (with the keyPrefix). */
  readonly pattern: string;
  /** The keyPrefix ioredis adds to declared keys. */
  readonly keyPrefix: string;

  constructor(namespace: string, keyPrefix: string) {
    this.tag = `{${namespace}}`;
    this.value = `${this.tag}:v:`;
    this.lease = `${this.tag}:l:`;
    this.tagKey = `${this.tag}:t:`;
    this.tagInLua = `${keyPrefix}${this.tagKey}`;
    this.pattern = `${escapeGlob(keyPrefix + this.tag)}:*`;
    this.keyPrefix = keyPrefix;
  }
}

/** A payload as Redis returns it. */
export type Payload = string | Buffer;

/** The reply of the lease script. */
export type LeaseReply =
  | { readonly status: 'fresh'; readonly payload: Payload }
  | { readonly status: 'acquired'; readonly payload: Payload | null; readonly versions: number[] }
  | { readonly status: 'held'; readonly payload: Payload | null; readonly pttl: number };

/** One entry of a write. */
export interface WriteItem {
  readonly key: string;
  readonly payload: string | Uint8Array;
  /** Milliseconds Redis keeps it. */
  readonly lifetime: number;
  readonly expiresAt: number;
  readonly tags: readonly string[] | undefined;
}

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /** The cache's (root) namespace, for diagnostics. */
  readonly name: string;
  readonly clock: Clock;
  readonly timeout: number;
  /** Undefined for no breaker (`l2.breaker: false`). */
  readonly breaker: CircuitBreaker | undefined;
  readonly binary: boolean;
  readonly batchSize: number;
}

interface Batch {
  readonly keys: NamespaceKeys;
  readonly names: string[];
  readonly waiters: { resolve(p: Payload | null): void; reject(e: unknown): void }[];
}

/** See the module comment. */
export class RedisStore {
  readonly redis: RedisConnection;
  readonly keyPrefix: string;
  readonly #name: string;
  readonly #clock: Clock;
  readonly #watch: Stopwatch;
  readonly #timeout: number;
  readonly #breaker: CircuitBreaker | undefined;
  readonly #binary: boolean;
  readonly #batchSize: number;
  readonly #batches = new Map<NamespaceKeys, Batch>();
  #flushScheduled = false;
  #calls = 0;
  #failures = 0;
  #timeouts = 0;
  #batchesSent = 0;
  #batchedReads = 0;
  #fences = 0;

  constructor(redis: RedisConnection, options: RedisStoreOptions) {
    this.redis = redis;
    this.keyPrefix = keyPrefixOf(redis);
    this.#name = options.name;
    this.#clock = options.clock;
    this.#watch = stopwatch(options.clock);
    this.#timeout = options.timeout;
    this.#breaker = options.breaker;
    this.#binary = options.binary;
    this.#batchSize = options.batchSize;
  }

  /**
   * True when a call may be tried: the connection is not known to be down (a connection still
   * connecting is tried: its calls wait in ioredis's queue, bounded by the deadline) and the
   * breaker is not open.
   */
  get available(): boolean {
    return (
      !isConnectionDown(this.redis.status) && (this.#breaker === undefined || this.#breaker.state !== 'open')
    );
  }

  /** The breaker guarding L2, if any. */
  get breaker(): CircuitBreaker | undefined {
    return this.#breaker;
  }

  /** Counters for stats. */
  counters(): {
    calls: number;
    failures: number;
    timeouts: number;
    batches: number;
    batchedReads: number;
    fences: number;
  } {
    return {
      fences: this.#fences,
      calls: this.#calls,
      failures: this.#failures,
      timeouts: this.#timeouts,
      batches: this.#batchesSent,
      batchedReads: this.#batchedReads,
    };
  }

  /**
   * Reads one entry's payload (null when missing or invalidated by a tag), batched with every
   * other read of the same tick and namespace.
   * @throws {CacheUnavailableError} when Redis cannot be used or the call fails.
   */
  read(keys: NamespaceKeys, key: string): Promise<Payload | null> {
    return new Promise<Payload | null>((resolve, reject) => {
      let batch = this.#batches.get(keys);
      if (batch === undefined) {
        batch = { keys, names: [], waiters: [] };
        this.#batches.set(keys, batch);
      }
      batch.names.push(keys.value + key);
      batch.waiters.push({ resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        // After the current run of callbacks (promise reactions included): every read issued by
        // code resuming from the same I/O event joins the batch.
        process.nextTick(this.#flush);
      }
    });
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const batches = [...this.#batches.values()];
    this.#batches.clear();
    for (const batch of batches) {
      for (let start = 0; start < batch.names.length; start += this.#batchSize) {
        const names = batch.names.slice(start, start + this.#batchSize);
        const waiters = batch.waiters.slice(start, start + this.#batchSize);
        this.#batchesSent++;
        this.#batchedReads += names.length;
        this.#call(readEntries, [...names, batch.keys.tagInLua], names.length).then(
          (reply) => {
            const payloads = Array.isArray(reply) ? reply : [];
            for (let i = 0; i < waiters.length; i++) {
              const p = payloads[i];
              waiters[i]!.resolve(typeof p === 'string' || Buffer.isBuffer(p) ? p : null);
            }
          },
          (error: unknown) => {
            for (const w of waiters) w.reject(error);
          },
        );
      }
    }
  };

  /**
   * Reads `key` and, unless it holds an entry fresh after `freshAfter`, takes its fill lease for
   * `token` (see get-or-lease-2.lua).
   */
  async getOrLease(
    keys: NamespaceKeys,
    key: string,
    token: string,
    leaseTtl: number,
    freshAfter: number,
    tags: readonly string[],
  ): Promise<LeaseReply> {
    const args = [
      keys.value + key,
      keys.lease + key,
      token,
      leaseTtl,
      keys.tagInLua,
      Math.floor(freshAfter),
      ...tags,
    ];
    const reply = await this.#call(getOrLease, args, undefined, (late) => {
      // Timed out, then granted after all (a stalled link, or ioredis resending after a
      // reconnect): give the lease back at once, or every other instance would wait out its TTL.
      late.then((r) => {
        if (Array.isArray(r) && Number(r[0]) === 2) {
          evalScript(this.redis, releaseLease, [keys.lease + key, token, '', ''], 1, this.#binary).catch(
            noop,
          );
        }
      }, noop);
    });
    if (!Array.isArray(reply)) throw new TypeError('unexpected reply from get-or-lease');
    const [status, payload, extra] = reply as [unknown, unknown, unknown];
    const data = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : null;
    switch (Number(status)) {
      case 1:
        if (data === null) break;
        return { status: 'fresh', payload: data };
      case 2:
        return {
          status: 'acquired',
          payload: data,
          versions: Array.isArray(extra) ? extra.map((v) => Number(v)) : [],
        };
      case 3:
        return { status: 'held', payload: data, pttl: Number(extra) };
    }
    throw new TypeError(`unexpected reply from get-or-lease: ${String(status)}`);
  }

  /** Installs a fill's value if its lease still holds (see fill-2.lua): 1, 0 (lease lost) or -1 (tag moved). */
  async fill(
    keys: NamespaceKeys,
    item: WriteItem,
    token: string,
    versions: readonly number[],
    channel: string,
    message: string,
  ): Promise<number> {
    const args: (string | number | Buffer)[] = [
      keys.value + item.key,
      keys.lease + item.key,
      token,
      toArg(item.payload),
      Math.max(1, Math.ceil(item.lifetime)),
      Math.floor(item.expiresAt),
      keys.tagInLua,
      channel,
      message,
    ];
    const tags = item.tags ?? [];
    for (let i = 0; i < tags.length; i++) args.push(tags[i]!, versions[i] ?? 0);
    return Number(
      await this.#call(fill, args, undefined, () => this.#fence(keys, [item.key], channel, message)),
    );
  }

  /** Writes entries, taking their leases away, and publishes `message` (see set-entries-2.lua). */
  async set(
    keys: NamespaceKeys,
    items: readonly WriteItem[],
    channel: string,
    message: string,
  ): Promise<void> {
    const names: string[] = [];
    const args: (string | number | Buffer)[] = [keys.tagInLua, channel, message];
    for (const item of items) {
      names.push(keys.value + item.key, keys.lease + item.key);
      const tags = item.tags ?? [];
      args.push(
        toArg(item.payload),
        Math.max(1, Math.ceil(item.lifetime)),
        Math.floor(item.expiresAt),
        tags.length,
        ...tags,
      );
    }
    await this.#call(setEntries, [...names, ...args], names.length, () =>
      this.#fence(
        keys,
        items.map((i) => i.key),
        channel,
        message,
      ),
    );
  }

  /** Deletes entries and their leases, and publishes `message`. */
  async delete(
    keys: NamespaceKeys,
    names: readonly string[],
    channel: string,
    message: string,
  ): Promise<void> {
    const redisKeys: string[] = [];
    for (const key of names) redisKeys.push(keys.value + key, keys.lease + key);
    await this.#call(deleteEntries, [...redisKeys, channel, message], redisKeys.length, () =>
      this.#fence(keys, names, channel, message),
    );
  }

  /**
   * After a write that was sent but not answered in time: it may still land (a stalled link
   * delivers it late; ioredis resends unanswered commands after a reconnect), after the caller was
   * told it failed and after newer writes of other instances. A delete of the same keys, sent right
   * behind it on the same connection, lands right behind it too, whenever that is: Redis then never
   * keeps the late value for more than a moment. Outside the breaker and without a deadline, on
   * purpose: it must follow the write whenever the link comes back.
   */
  #fence(keys: NamespaceKeys, names: readonly string[], channel: string, message: string): void {
    const redisKeys: string[] = [];
    for (const key of names) redisKeys.push(keys.value + key, keys.lease + key);
    this.#fences++;
    evalScript(
      this.redis,
      deleteEntries,
      [...redisKeys, channel, message],
      redisKeys.length,
      this.#binary,
    ).catch(noop);
  }

  /** Gives back a lease (compare-and-delete) and wakes its waiters. */
  async releaseLease(
    keys: NamespaceKeys,
    key: string,
    token: string,
    channel: string,
    message: string,
  ): Promise<void> {
    await this.#call(releaseLease, [keys.lease + key, token, channel, message]);
  }

  /** Bumps the versions of `tags` and publishes `message`. */
  async invalidateTags(
    keys: NamespaceKeys,
    tags: readonly string[],
    channel: string,
    message: string,
    lifetime: number,
  ): Promise<void> {
    const names = tags.map((t) => keys.tagKey + t);
    await this.#call(
      invalidateTags,
      [...names, channel, message, Math.max(1, Math.ceil(lifetime))],
      names.length,
    );
  }

  /**
   * Publishes `message` on `channel` (for clear, which runs no script), from the node of the
   * namespace's slot, like the write scripts.
   */
  async publish(keys: NamespaceKeys, channel: string, message: string): Promise<void> {
    await this.#call(publish, [`${keys.tag}:bus`, channel, message]);
  }

  /**
   * Deletes every key of the namespace: SCAN (never KEYS) on every master of a Cluster (a
   * namespace lives on one slot, but a resharding may be under way), UNLINK in batches. Each
   * SCAN/UNLINK round trip is bounded by the timeout; the whole may take longer.
   */
  async clear(keys: NamespaceKeys): Promise<void> {
    const redis = this.redis;
    const nodes = isCluster(redis) ? redis.nodes('master') : [redis];
    await this.#guarded('clear', async () => {
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, found] = (await withDeadline(
            node.scan(cursor, 'MATCH', keys.pattern, 'COUNT', 1000),
            this.#timeout,
            this.#clock,
            'Redis SCAN',
          )) as [string, string[]];
          cursor = next;
          if (found.length > 0) {
            // SCAN returns keys with the connection's keyPrefix, which UNLINK would add again.
            const names = found.map((k) =>
              k.startsWith(keys.keyPrefix) ? k.slice(keys.keyPrefix.length) : k,
            );
            await withDeadline(node.unlink(...names), this.#timeout, this.#clock, 'Redis UNLINK');
          }
        } while (cursor !== '0');
      }
    });
  }

  /**
   * Runs a script through the breaker, under the deadline. `onAbandoned`, when given, is called
   * with the raw call when it was sent but then failed or missed the deadline.
   */
  #call(
    script: LuaScriptSource,
    args: (string | number | Buffer)[],
    numKeys?: number,
    onAbandoned?: (call: Promise<unknown>) => void,
  ): Promise<unknown> {
    let sent: Promise<unknown> | undefined;
    const result = this.#guarded(script.name, () => {
      sent = evalScript(this.redis, script, args, numKeys ?? script.numberOfKeys, this.#binary);
      return withDeadline(sent, this.#timeout, this.#clock, `Redis ${script.name}`);
    });
    if (onAbandoned === undefined) return result;
    return result.catch((error: unknown) => {
      if (sent !== undefined) onAbandoned(sent);
      throw error;
    });
  }

  #guarded<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    this.#calls++;
    if (isConnectionDown(this.redis.status)) {
      this.#failures++;
      const error = new Error(`Redis connection is ${this.redis.status}`);
      if (l2Channel.hasSubscribers) this.#report(operation, 0, error);
      return Promise.reject(new CacheUnavailableError(error));
    }
    if (!l2Channel.hasSubscribers) {
      return (this.#breaker === undefined ? fn() : this.#breaker.execute(fn)).catch(this.#failed);
    }
    // Timed only while someone listens: a clock read per call is not free at 100k calls a second.
    const start = this.#watch();
    const call = this.#breaker === undefined ? fn() : this.#breaker.execute(fn);
    return call.then(
      (value) => {
        this.#report(operation, this.#watch() - start, undefined);
        return value;
      },
      (error: unknown) => {
        this.#report(operation, this.#watch() - start, error);
        return this.#failed(error);
      },
    );
  }

  /** Counts a failed call and rethrows it as `E_CACHE_UNAVAILABLE`; bound once, not per call. */
  readonly #failed = (error: unknown): never => {
    this.#failures++;
    if ((error as { code?: unknown }).code === 'E_REDIS_TIMEOUT') this.#timeouts++;
    throw new CacheUnavailableError(error);
  };

  #report(operation: string, duration: number, error: unknown): void {
    if (!l2Channel.hasSubscribers) return;
    const message: CacheL2Message = { namespace: this.#name, operation, duration, error };
    l2Channel.publish(message);
  }
}

function toArg(payload: string | Uint8Array): string | Buffer {
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) return payload;
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** Escapes Redis glob metacharacters, so a namespace is matched literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

function noop(): void {}
