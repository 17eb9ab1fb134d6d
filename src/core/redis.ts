import type { Cluster, Redis } from 'ioredis';
import type { Clock } from './clock.js';
import { withDeadline as withWheelDeadline } from './deadline.js';
import { TimeoutError } from './errors.js';

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

/**
 * True when `value` has the two commands {@link evalScript} sends: all that a module which only
 * runs scripts (no subscriber, no readiness check) asks of a connection, so a thin wrapper or a
 * test double with just these passes.
 */
export function hasScriptCommands(value: unknown): boolean {
  const r = value as Partial<ScriptConnection> | null;
  return (
    typeof r === 'object' && r !== null && typeof r.evalsha === 'function' && typeof r.eval === 'function'
  );
}

/** True when `value` looks like an ioredis `Redis` or `Cluster` (duck-typed: ioredis is only a peer). */
export function isRedisConnection(value: unknown): value is RedisConnection {
  if (!hasScriptCommands(value)) return false;
  const r = value as { duplicate?: unknown; status?: unknown };
  return typeof r.duplicate === 'function' && typeof r.status === 'string';
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

/**
 * Settles like `call`, or rejects with a `TimeoutError` (`E_REDIS_TIMEOUT`, message
 * "`what` timed out after `ms`ms") after `ms`: ioredis may otherwise hold a command in its offline
 * queue for as long as the connection is down, or wait forever on a stalled link. The deadline
 * lives on the clock's shared timer wheel (see `./deadline.ts`: an O(1) insert and cancel, no
 * libuv timer per call). The command itself is not cancelled.
 */
export function withDeadline<T>(call: Promise<T>, ms: number, clock: Clock, what: string): Promise<T> {
  return withWheelDeadline(call, ms, clock, () => new TimeoutError(ms, what, 'E_REDIS_TIMEOUT'));
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

/** The listeners a module puts on its subscriber connection (see {@link watchSubscriber}). */
export interface SubscriberListeners {
  /** A message on one of the subscribed channels. */
  readonly message: (channel: string, raw: string) => void;
  /** The connection is ready, at first or after a reconnect: time to (re)subscribe. */
  readonly ready: () => void;
  /** The connection closed: nothing is received until the next `ready`. */
  readonly close: () => void;
}

/**
 * Puts `listeners` on a subscriber connection of ours, then gets it going: `ready` is called at
 * once when it already is, and a connection still waiting (`lazyConnect`) is connected. `ready`
 * may thus run before this returns: store `sub` where `ready` looks for it first.
 */
export function watchSubscriber(sub: SubscriberConnection, listeners: SubscriberListeners): void {
  // ioredis reports connection errors here and reconnects on its own; without a listener it
  // would print each of them.
  sub.on('error', noop);
  sub.on('message', listeners.message);
  sub.on('close', listeners.close);
  sub.on('ready', listeners.ready);
  if (sub.status === 'ready') listeners.ready();
  else if (sub.status === 'wait') sub.connect().catch(noop);
}

/**
 * Takes the `listeners` {@link watchSubscriber} put on `sub` off again, then disconnects it as
 * {@link disconnectQuietly} does. The error listener stays: errors may still come while the
 * socket winds down.
 */
export function closeSubscriber(
  sub: SubscriberConnection,
  listeners: SubscriberListeners,
  clock: Clock,
  ms: number,
): Promise<void> {
  sub.off('message', listeners.message);
  sub.off('ready', listeners.ready);
  sub.off('close', listeners.close);
  return disconnectQuietly(sub, clock, ms);
}

function noop(): void {}

/**
 * Statuses in which ioredis has no connection and is not making one right now: a call would only
 * wait in its offline queue (or be refused), so callers fail it at once instead.
 */
export function isConnectionDown(status: string): boolean {
  return status === 'reconnecting' || status === 'close' || status === 'end';
}
