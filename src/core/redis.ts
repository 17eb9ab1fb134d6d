import type { Cluster, Redis } from 'ioredis';
import type { Clock } from './clock.js';
import { TimeoutError } from './errors.js';
import { sharedTimerWheel, TimerEntry } from './timer-wheel.js';

/*
 * What every Redis-backed module does the same way: EVALSHA with an EVAL fallback, a deadline
 * on every call, the user's `keyPrefix`, and a subscriber connection of our own. ioredis is
 * reached through `import type` only: the package must load with no peer installed, and the
 * connection is always one the user passed in.
 */

/** An ioredis connection: a `Redis` or a `Cluster`. It stays the caller's; buttress never closes it. */
export type RedisConnection = Redis | Cluster;

/** A Lua script as embedded by `scripts/gen-lua.mjs` (structurally, so any module's scripts fit). */
export interface LuaScriptSource {
  readonly name: string;
  readonly numberOfKeys: number;
  readonly sha1: string;
  readonly lua: string;
}

/** The commands we send on the user's connection (a `Redis` and a `Cluster` both have them). */
export interface ScriptConnection {
  readonly status: string;
  evalsha(sha1: string, numkeys: number, ...args: (string | number | Buffer)[]): Promise<unknown>;
  eval(script: string, numkeys: number, ...args: (string | number | Buffer)[]): Promise<unknown>;
}

/** What we use of a subscriber connection of ours. */
export interface SubscriberConnection {
  readonly status: string;
  subscribe(...channels: string[]): Promise<unknown>;
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
  connect(): Promise<void>;
  disconnect(): void;
}

/** True when `value` looks like an ioredis `Redis` or `Cluster` (duck-typed: ioredis is only a peer). */
export function isRedisConnection(value: unknown): value is RedisConnection {
  const r = value as Partial<ScriptConnection & { duplicate: unknown }> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.evalsha === 'function' &&
    typeof r.eval === 'function' &&
    typeof r.duplicate === 'function' &&
    typeof r.status === 'string'
  );
}

/** True for an ioredis `Cluster`. */
export function isCluster(redis: RedisConnection): redis is Cluster {
  return (redis as Cluster).isCluster === true;
}

/** True for the error a server answers EVALSHA with when it does not know the script yet. */
export function isNoScriptError(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/** True for an error Redis itself replied with (a script error, WRONGTYPE...), as opposed to a transport failure. */
export function isReplyError(error: unknown): boolean {
  return error instanceof Error && error.name === 'ReplyError';
}

/**
 * The `keyPrefix` ioredis adds to declared keys (and not to keys a Lua script builds, to SCAN
 * patterns or to channels), so that code building keys itself can add it too.
 */
export function keyPrefixOf(redis: RedisConnection): string {
  const options = (redis as { options?: { keyPrefix?: unknown; redisOptions?: { keyPrefix?: unknown } } })
    .options;
  const prefix = isCluster(redis) ? options?.redisOptions?.keyPrefix : options?.keyPrefix;
  return typeof prefix === 'string' ? prefix : '';
}

/**
 * Runs `script` by SHA1, falling back to sending its text the first time a server does not know
 * it (NOSCRIPT). `numKeys` defaults to the script's own count; variadic scripts pass theirs.
 * With `buffers`, bulk replies come back as Buffers (for binary payloads).
 */
export function evalScript(
  redis: RedisConnection,
  script: LuaScriptSource,
  args: readonly (string | number | Buffer)[],
  numKeys: number = script.numberOfKeys,
  buffers = false,
): Promise<unknown> {
  const conn = redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const evalsha = buffers ? 'evalshaBuffer' : 'evalsha';
  const evalText = buffers ? 'evalBuffer' : 'eval';
  try {
    return conn[evalsha]!(script.sha1, numKeys, ...args).catch((error: unknown) => {
      if (!isNoScriptError(error)) throw error;
      return conn[evalText]!(script.lua, numKeys, ...args);
    });
  } catch (error) {
    return Promise.reject(error);
  }
}

/** One deadline: the wheel node and the promise's settle functions in one object. */
class Deadline<T> extends TimerEntry {
  settled = false;
  constructor(
    readonly resolve: (value: T) => void,
    readonly reject: (error: unknown) => void,
    readonly ms: number,
    readonly what: string,
  ) {
    super();
  }
  fire(): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(new TimeoutError(this.ms, this.what, 'E_REDIS_TIMEOUT'));
  }
}

/**
 * Settles like `call`, or rejects with a `TimeoutError` (`E_REDIS_TIMEOUT`) after `ms`: ioredis
 * may otherwise hold a command in its offline queue for as long as the connection is down, or
 * wait forever on a stalled link. The deadline lives on the clock's shared timer wheel (an O(1)
 * insert and cancel, no libuv timer per call). The command itself is not cancelled.
 */
export function withDeadline<T>(call: Promise<T>, ms: number, clock: Clock, what: string): Promise<T> {
  const wheel = sharedTimerWheel(clock);
  return new Promise<T>((resolve, reject) => {
    const deadline = new Deadline<T>(resolve, reject, ms, what);
    wheel.insert(deadline, ms);
    call.then(
      (value) => {
        if (deadline.settled) return;
        deadline.settled = true;
        wheel.cancel(deadline);
        resolve(value);
      },
      (error: unknown) => {
        if (deadline.settled) return;
        deadline.settled = true;
        wheel.cancel(deadline);
        reject(error);
      },
    );
  });
}

/**
 * A subscriber connection of our own, duplicated from the user's: it connects now whatever their
 * `lazyConnect`, and queues SUBSCRIBE while connecting whatever their offline queue setting.
 */
export function duplicateSubscriber(redis: RedisConnection): SubscriberConnection {
  const duplicate = isCluster(redis)
    ? redis.duplicate()
    : redis.duplicate({ lazyConnect: false, enableOfflineQueue: true });
  return duplicate as unknown as SubscriberConnection;
}

/**
 * Disconnects a connection of ours (no QUIT round trip, which a stalled link would make wait) and
 * resolves once it has ended, or after `ms` at the latest: closing must not hang either.
 */
export function disconnectQuietly(sub: SubscriberConnection, clock: Clock, ms: number): Promise<void> {
  if (sub.status === 'end' || sub.status === 'wait' || sub.status === 'reconnecting') {
    // No socket to wait for ('reconnecting' is the pause between two attempts, which disconnect()
    // cancels without emitting 'end').
    sub.disconnect();
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    const timer = clock.setTimeout(resolve, ms);
    sub.once('end', () => {
      clock.clearTimeout(timer);
      resolve();
    });
    sub.disconnect();
  });
}
