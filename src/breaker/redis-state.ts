import { randomBytes } from 'node:crypto';
import { onAbort, throwIfAborted } from '../core/abort.js';
import type { Clock, Timer } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, InvalidOptionError, TimeoutError } from '../core/errors.js';
import { type Disposable, Emitter, type Event, noopDisposable, toDisposable } from '../core/events.js';
import {
  type RedisConnection as AnyRedisConnection,
  closeSubscriber,
  duplicateSubscriber,
  evalScript,
  isRedisConnection,
  type SubscriberConnection,
  type SubscriberListeners,
  watchSubscriber,
} from '../core/redis.js';
import { clockOption, duration, knownKeys, nonEmptyString, optionsObject } from '../core/validate.js';
import {
  acquireLease,
  type LuaScript,
  publishClosed,
  publishOpen,
  readState,
  releaseLease,
} from './scripts/index.js';
import type { SharedCircuitState, SharedStateListener, SharedTransition } from './shared-state.js';

/**
 * A connection {@link redisBreakerState} can use: an ioredis `Redis` or `Cluster`. It stays the
 * caller's; the shared state only sends commands on it and subscribes on a `duplicate()`.
 *
 * @example
 * import { Cluster } from 'ioredis';
 * const cluster: RedisConnection = new Cluster([{ host: '10.0.0.1', port: 6379 }]);
 * const shared = redisBreakerState(cluster, { key: 'search-api' });
 */
export type RedisConnection = AnyRedisConnection;

/**
 * Options of {@link redisBreakerState}.
 *
 * @example
 * const options: RedisBreakerStateOptions = {
 *   key: 'payments-api',
 *   namespace: 'checkout', // keys {checkout:breaker:payments-api}:state, ...:lease, ...:events
 *   timeout: '150ms',
 *   leaseTtl: '30s',
 * };
 */
export interface RedisBreakerStateOptions {
  /** The circuit's name: every instance (in any process) using the same key shares one circuit. */
  key: string;
  /**
   * Prefix of every Redis key and channel, inside a hash tag: `{<namespace>:breaker:<key>}:...`,
   * so the circuit's keys share a Redis Cluster slot.
   * @default 'buttress'
   */
  namespace?: string;
  /**
   * Deadline of every Redis call. A call that misses it is abandoned and the breaker goes on with
   * its local state, so a slow or unreachable Redis never delays a caller by more than this.
   * @default 250 (ms)
   */
  timeout?: Duration;
  /**
   * Lifetime of the half-open probe lease: if its holder dies before giving it back, other
   * instances may probe again after this long.
   * @default '10s'
   */
  leaseTtl?: Duration;
  /** Time source for the Redis call deadlines. @default systemClock */
  clock?: Clock;
}

/**
 * Snapshot returned by {@link RedisBreakerState.stats}.
 *
 * @example
 * const { subscribed, timeouts, localGrants } = shared.stats();
 * if (!subscribed || timeouts > 0) log.warn('breaker state is not shared right now', shared.stats());
 */
export interface RedisBreakerStateStats {
  /** The circuit's key, as given. */
  key: string;
  /** This instance's id: the `origin` of its messages and the token of its probe lease. */
  instanceId: string;
  /** True while the subscriber connection is subscribed to the circuit's channel. */
  subscribed: boolean;
  /** Transitions written to Redis (and published) successfully. */
  published: number;
  /** Transitions received from other instances, by message or by reading the stored state. */
  received: number;
  /** Probe leases Redis granted to this instance. */
  leasesGranted: number;
  /** Probe leases refused because another instance held the lease. */
  leasesDenied: number;
  /** Probes granted locally because Redis was unreachable, too slow or failing. */
  localGrants: number;
  /** Redis calls skipped because the connection was not ready (not queued: they would arrive stale). */
  dropped: number;
  /** Redis calls that missed the `timeout` deadline. */
  timeouts: number;
  /** Redis calls that failed, and malformed messages. */
  errors: number;
}

/** What the breaker's half-open probe may be told when Redis cannot answer in time. */
const TIMED_OUT: unique symbol = Symbol('timed out');
/** Failed or timed-out reads of the stored state tried again per (re)subscription. */
const SYNC_RETRIES = 3;
/** Longest wait between two attempts to read the stored state. */
const SYNC_MAX_DELAY = 5_000;

type Message =
  | { readonly state: 'open'; readonly halfOpenIn: number; readonly origin: string }
  | { readonly state: 'closed'; readonly origin: string };

/**
 * Shares a circuit breaker's state through Redis, so that every instance of a service using the
 * same `key` opens, half-opens and closes together: one instance seeing the upstream fail
 * protects all of them, and only one of them sends the half-open trial calls.
 *
 * - Opening sets `{<namespace>:breaker:<key>}:state` (expiring when the circuit turns half-open)
 *   and publishes on `{<namespace>:breaker:<key>}:events`, in one Lua script; closing deletes the
 *   key and publishes. Each instance ignores its own messages.
 * - A subscriber connection (a `duplicate()` of `redis`, owned and closed by this object) delivers
 *   the other instances' transitions. On every (re)subscription the stored state is read, so an
 *   instance that starts, or reconnects, while the circuit is open learns it.
 * - Half-open trial calls take the lease `{<namespace>:breaker:<key>}:lease` (`SET NX PX`), held
 *   by one instance at a time and given back by compare-and-delete.
 *
 * Redis is never in a caller's way: every call is raced against `timeout` (ioredis may otherwise
 * queue a command for as long as the connection is down, or wait forever on a stalled one), and
 * when Redis is unreachable the breaker runs on its local state and grants its own probe. `redis`
 * stays the caller's: it is never closed, and no listener or command is added to it.
 *
 * Pass it as the breaker's `shared` option; the breaker closes it in its own `close()`.
 *
 * @example
 * import { Redis } from 'ioredis';
 * import { circuitBreaker, consecutive, redisBreakerState } from 'buttress/breaker';
 *
 * const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
 * const breaker = circuitBreaker({
 *   strategy: consecutive(5),
 *   halfOpenAfter: '10s',
 *   shared: redisBreakerState(redis, { key: 'payments-api', timeout: '200ms' }),
 * });
 * await breaker.execute(({ signal }) => fetch(paymentsUrl, { signal }));
 * await breaker.close(); // closes the subscriber connection, never `redis`
 *
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the option, for an invalid `redis`,
 *   `key`, `namespace`, `timeout`, `leaseTtl` or `clock`, or an unknown option.
 */
export function redisBreakerState(
  redis: RedisConnection,
  options: RedisBreakerStateOptions,
): RedisBreakerState {
  return new RedisBreakerState(redis, options);
}

/**
 * A circuit's state shared through Redis; create it with {@link redisBreakerState}.
 *
 * @example
 * await using shared = redisBreakerState(redis, { key: 'payments-api' });
 * shared.onError((error) => log.debug({ error }, 'breaker state: Redis unavailable, running locally'));
 * const breaker = circuitBreaker({ shared });
 */
export class RedisBreakerState implements SharedCircuitState {
  readonly #redis: RedisConnection;
  readonly #key: string;
  readonly #stateKey: string;
  readonly #leaseKey: string;
  readonly #channel: string;
  readonly #timeout: number;
  readonly #leaseTtl: number;
  readonly #clock: Clock;
  readonly #id = randomBytes(9).toString('base64url');

  readonly #listeners = new Set<SharedStateListener>();
  /** Settles every Redis call still pending (as timed out), for `close()`. */
  readonly #pending = new Set<() => void>();
  readonly #errorEm = new Emitter<unknown>();
  #sub: SubscriberConnection | undefined;
  #subscribed = false;
  /** Bumped on each (re)subscription; a state read from an older one is dropped. */
  #syncEpoch = 0;
  #syncRetry: Timer | undefined;
  /** Messages seen on the channel (ours included); a state read overtaken by one is dropped. */
  #messages = 0;
  /** Whether the breaker holds a probe grant of ours (from Redis or local) not yet given back. */
  #probing = false;
  #closing: Promise<void> | undefined;
  /** One object, so that close() takes off exactly the listeners #startSubscriber() put on. */
  readonly #subListeners: SubscriberListeners = {
    message: (channel, raw) => this.#onMessage(channel, raw),
    ready: () => this.#sync(),
    close: () => this.#onClose(),
  };

  #published = 0;
  #received = 0;
  #granted = 0;
  #denied = 0;
  #localGrants = 0;
  #dropped = 0;
  #timeouts = 0;
  #errors = 0;

  /**
   * Fires with each failed Redis call (a `TimeoutError` with code `E_REDIS_TIMEOUT` for a missed
   * deadline) and each malformed message. The breaker has already fallen back to its local state.
   */
  readonly onError: Event<unknown> = this.#errorEm.event;

  /** Prefer {@link redisBreakerState}. @throws {InvalidOptionError} as it does. */
  constructor(redis: RedisConnection, options: RedisBreakerStateOptions) {
    if (!isRedisConnection(redis)) {
      throw new InvalidOptionError('redis', redis, 'an ioredis Redis or Cluster instance');
    }
    const opts = optionsObject(options);
    knownKeys(opts, ['key', 'namespace', 'timeout', 'leaseTtl', 'clock']);
    this.#key = nonEmptyString(opts.key, 'key');
    const namespace = nonEmptyString(opts.namespace, 'namespace', 'buttress');
    this.#timeout = duration(opts.timeout, 'timeout', 250, 1, 60_000);
    this.#leaseTtl = Math.ceil(duration(opts.leaseTtl, 'leaseTtl', 10_000, 1));
    this.#clock = clockOption(opts.clock);
    this.#redis = redis;
    // One hash tag for the circuit's keys and channel: its scripts touch keys of one Cluster slot,
    // and the channel could move to sharded pub/sub (SPUBLISH) without a rename.
    const tag = `{${namespace}:breaker:${this.#key}}`;
    this.#stateKey = `${tag}:state`;
    this.#leaseKey = `${tag}:lease`;
    this.#channel = `${tag}:events`;
  }

  /** The circuit's key, as given. */
  get key(): string {
    return this.#key;
  }

  /**
   * Subscribes to the circuit's channel over a duplicate of the connection, then reads the
   * stored state, and again after every reconnection. Called by the breaker.
   */
  attach(listener: SharedStateListener): Disposable {
    if (this.#closing !== undefined) return noopDisposable;
    this.#listeners.add(listener);
    if (this.#sub === undefined) this.#startSubscriber();
    return toDisposable(() => this.#listeners.delete(listener));
  }

  /**
   * Writes a local transition to Redis and publishes it (one Lua script). Fire and forget: when
   * the connection is not ready the transition is dropped rather than queued, since a queued
   * "open" sent after a long outage would open the fleet's circuits for nothing.
   */
  publish(transition: SharedTransition): void {
    if (this.#closing !== undefined) return;
    let script: LuaScript;
    let args: (string | number)[];
    if (transition.state === 'open') {
      const halfOpenIn = transition.halfOpenIn;
      if (typeof halfOpenIn !== 'number' || !Number.isFinite(halfOpenIn)) return;
      const ms = Math.max(1, Math.ceil(halfOpenIn));
      const message = JSON.stringify({ state: 'open', halfOpenIn: ms, origin: this.#id });
      script = publishOpen;
      args = [this.#channel, message, ms, this.#id];
    } else if (transition.state === 'closed') {
      script = publishClosed;
      args = [this.#channel, JSON.stringify({ state: 'closed', origin: this.#id })];
    } else {
      return;
    }
    if (!this.#ready()) {
      this.#dropped++;
      return;
    }
    this.#guard(evalScript(this.#redis, script, [this.#stateKey, ...args])).then(
      (result) => {
        if (result !== TIMED_OUT) this.#published++;
      },
      (error: unknown) => this.#failed(error),
    );
  }

  /**
   * Asks Redis for the fleet's probe lease. Resolves true when granted, false when another
   * instance holds it, and true (a local grant) when the connection is not ready, the call fails
   * or it misses the `timeout` deadline. Never takes longer than `timeout`.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts first.
   */
  async acquireProbe(signal?: AbortSignal): Promise<boolean> {
    throwIfAborted(signal);
    if (this.#closing !== undefined || !this.#ready()) return this.#localGrant();
    const call = evalScript(this.#redis, acquireLease, [this.#leaseKey, this.#id, this.#leaseTtl]);
    let result: unknown;
    try {
      result = await this.#guard(call, signal);
    } catch (error) {
      if (error instanceof AbortedError) {
        this.#releaseIfGrantedLate(call);
        throw error;
      }
      this.#failed(error);
      return this.#localGrant();
    }
    if (result === TIMED_OUT) {
      this.#releaseIfGrantedLate(call);
      return this.#localGrant();
    }
    if (Number(result) === 1) {
      this.#granted++;
      this.#probing = true;
      return true;
    }
    this.#denied++;
    return false;
  }

  #localGrant(): true {
    this.#localGrants++;
    this.#probing = true;
    return true;
  }

  /**
   * An abandoned SET NX may still run: ioredis sends a command stuck behind a stalled link when
   * the link recovers, and resends unanswered ones after a reconnect. A lease granted that late,
   * once our probe is over (or was never run), is given back at once; else it would keep every
   * other instance from probing for a whole leaseTtl.
   */
  #releaseIfGrantedLate(call: Promise<unknown>): void {
    call.then((late) => {
      if (Number(late) === 1 && !this.#probing) this.releaseProbe();
    }, noop);
  }

  /** Deletes the probe lease if this instance holds it (compare-and-delete). Fire and forget. */
  releaseProbe(): void {
    this.#probing = false;
    if (this.#closing !== undefined) return;
    if (!this.#ready()) {
      // The lease expires on its own after leaseTtl.
      this.#dropped++;
      return;
    }
    this.#guard(evalScript(this.#redis, releaseLease, [this.#leaseKey, this.#id])).then(
      noop,
      (error: unknown) => this.#failed(error),
    );
  }

  /** Counts and connection state as a plain object. */
  stats(): RedisBreakerStateStats {
    return {
      key: this.#key,
      instanceId: this.#id,
      subscribed: this.#subscribed,
      published: this.#published,
      received: this.#received,
      leasesGranted: this.#granted,
      leasesDenied: this.#denied,
      localGrants: this.#localGrants,
      dropped: this.#dropped,
      timeouts: this.#timeouts,
      errors: this.#errors,
    };
  }

  /**
   * Disconnects the subscriber connection (no QUIT round trip, which a stalled link would make
   * wait) and settles pending Redis calls. Leaves no timer, listener or connection of ours; the
   * connection passed in stays open. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@link RedisBreakerState.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#listeners.clear();
    this.#errorEm.clear();
    this.#syncEpoch++;
    this.#subscribed = false;
    this.#cancelSyncRetry();
    for (const settle of [...this.#pending]) settle();
    const sub = this.#sub;
    this.#sub = undefined;
    if (sub === undefined) return;
    // Waits for the socket's end for at most `timeout`, like every Redis call of ours.
    await closeSubscriber(sub, this.#subListeners, this.#clock, this.#timeout);
  }

  #ready(): boolean {
    return this.#redis.status === 'ready';
  }

  #startSubscriber(): void {
    let sub: SubscriberConnection;
    try {
      sub = duplicateSubscriber(this.#redis);
    } catch (error) {
      this.#failed(error);
      return;
    }
    this.#sub = sub;
    watchSubscriber(sub, this.#subListeners);
  }

  #onClose(): void {
    this.#subscribed = false;
    this.#syncEpoch++;
    this.#cancelSyncRetry();
  }

  #cancelSyncRetry(): void {
    if (this.#syncRetry !== undefined) {
      this.#clock.clearTimeout(this.#syncRetry);
      this.#syncRetry = undefined;
    }
  }

  /**
   * (Re)subscribes, then reads the stored state. ioredis re-subscribes on its own after a
   * reconnect, but we subscribe again and wait for the reply, so the read cannot run before the
   * subscription and miss a transition made in between.
   */
  #sync(): void {
    const sub = this.#sub;
    if (sub === undefined || this.#closing !== undefined) return;
    const epoch = ++this.#syncEpoch;
    this.#cancelSyncRetry();
    sub.subscribe(this.#channel).then(
      () => {
        if (epoch !== this.#syncEpoch) return;
        this.#subscribed = true;
        this.#readState(epoch, SYNC_RETRIES);
      },
      // The connection dropped first; its next 'ready' subscribes again.
      noop,
    );
  }

  /**
   * Reads the stored state for the subscription `epoch`. While the command connection is not
   * ready (it may come back after our subscriber does), waits for it, checking at growing
   * intervals; a read that fails or times out is tried again, at most {@link SYNC_RETRIES} times
   * so a stalled link does not pile commands up.
   */
  #readState(epoch: number, retries: number, attempt = 0): void {
    const again = (retriesLeft: number) => {
      if (retriesLeft < 0 || epoch !== this.#syncEpoch) return;
      this.#cancelSyncRetry();
      const delay = Math.min(this.#timeout * 2 ** attempt, SYNC_MAX_DELAY);
      this.#syncRetry = this.#clock.setTimeout(() => {
        this.#syncRetry = undefined;
        this.#readState(epoch, retriesLeft, attempt + 1);
      }, delay);
    };
    if (epoch !== this.#syncEpoch) return;
    if (!this.#ready()) {
      again(retries);
      return;
    }
    const seen = this.#messages;
    this.#guard(evalScript(this.#redis, readState, [this.#stateKey])).then(
      (result) => {
        if (epoch !== this.#syncEpoch) return;
        if (result === TIMED_OUT) {
          again(retries - 1);
          return;
        }
        // A message that arrived meanwhile is at least as new as what was read.
        if (seen !== this.#messages || !Array.isArray(result)) return;
        const [origin, pttl] = result as [unknown, unknown];
        // A missing key does not close the circuit: a local opening is not stored by others.
        if (origin === this.#id || typeof pttl !== 'number' || pttl <= 0) return;
        this.#received++;
        this.#dispatch((l) => l.remoteOpen(pttl));
      },
      (error: unknown) => {
        this.#failed(error);
        again(retries - 1);
      },
    );
  }

  #onMessage(channel: string, raw: string): void {
    if (channel !== this.#channel) return;
    this.#messages++;
    const message = parseMessage(raw);
    if (message === undefined) {
      this.#failed(new Error(`malformed message on ${channel}: ${String(raw).slice(0, 200)}`));
      return;
    }
    if (message.origin === this.#id) return;
    this.#received++;
    if (message.state === 'open') {
      const halfOpenIn = message.halfOpenIn;
      this.#dispatch((l) => l.remoteOpen(halfOpenIn));
    } else {
      this.#dispatch((l) => l.remoteClose());
    }
  }

  #dispatch(call: (listener: SharedStateListener) => void): void {
    for (const listener of this.#listeners) {
      try {
        call(listener);
      } catch (error) {
        // Like every buttress event: a throwing listener neither stops the others nor the
        // subscriber; the process sees its error.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /**
   * Settles with the call's outcome, or with {@link TIMED_OUT} after `timeout` ms (a stalled
   * link, or ioredis holding the command in its offline queue), or rejects with `E_ABORTED` when
   * `signal` aborts. The timer and the abort listener are removed as soon as it settles.
   *
   * Not core/redis.ts's `withDeadline`, on purpose: a missed deadline is an answer here (the
   * breaker grants its own probe), not a rejection; close() must settle every pending call; an
   * abort must win; and the deadline is an exact clock timer, where the shared wheel fires up to
   * a tick late, so "never delays a caller by more than `timeout`" holds to the millisecond.
   */
  #guard<T>(call: Promise<T>, signal?: AbortSignal): Promise<T | typeof TIMED_OUT> {
    return new Promise<T | typeof TIMED_OUT>((resolve, reject) => {
      let settled = false;
      let unlisten = noop;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        this.#clock.clearTimeout(timer);
        unlisten();
        this.#pending.delete(cancel);
        return true;
      };
      const cancel = () => {
        if (finish()) resolve(TIMED_OUT);
      };
      const timer = this.#clock.setTimeout(() => {
        if (!finish()) return;
        this.#timeouts++;
        if (this.#errorEm.size !== 0) {
          this.#errorEm.emit(
            new TimeoutError(this.#timeout, `Redis call on ${this.#stateKey}`, 'E_REDIS_TIMEOUT'),
          );
        }
        resolve(TIMED_OUT);
      }, this.#timeout);
      this.#pending.add(cancel);
      unlisten = onAbort(signal, (reason) => {
        if (finish()) reject(new AbortedError(reason));
      });
      call.then(
        (value) => {
          if (finish()) resolve(value);
        },
        (error: unknown) => {
          if (finish()) reject(error);
        },
      );
    });
  }

  #failed(error: unknown): void {
    this.#errors++;
    if (this.#errorEm.size !== 0) this.#errorEm.emit(error);
  }
}

function parseMessage(raw: unknown): Message | undefined {
  if (typeof raw !== 'string') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const m = value as { state?: unknown; halfOpenIn?: unknown; origin?: unknown };
  if (typeof m.origin !== 'string') return undefined;
  if (m.state === 'closed') return { state: 'closed', origin: m.origin };
  if (
    m.state === 'open' &&
    typeof m.halfOpenIn === 'number' &&
    Number.isFinite(m.halfOpenIn) &&
    m.halfOpenIn >= 0
  ) {
    return { state: 'open', halfOpenIn: m.halfOpenIn, origin: m.origin };
  }
  return undefined;
}

function noop(): void {}
