import { type Clock, systemClock } from '../core/clock.js';
import { InvalidOptionError } from '../core/errors.js';
import { type Disposable, toDisposable } from '../core/events.js';
import {
  disconnectQuietly,
  duplicateSubscriber,
  evalScript,
  isCluster,
  isConnectionDown,
  isRedisConnection,
  keyPrefixOf,
  type LuaScriptSource,
  type RedisConnection,
  type SubscriberConnection,
  withDeadline,
} from '../core/redis.js';
import { duration, knownKeys, oneOf, optionsObject } from '../core/validate.js';
import type {
  BackendStats,
  FailedAttempt,
  FetchRequest,
  FetchResult,
  LeasedJob,
  NewJob,
  QueueBackend,
  QueueStore,
  Retention,
  StoredDeadLetter,
} from './backend.js';
import { QueueEvictionPolicyError, QueueUnavailableError } from './errors.js';
import * as scripts from './scripts/index.js';

/*
 * The Redis backend. Substrate: sorted sets and hashes, one Lua script per transition (BullMQ's
 * layout), chosen over Streams + consumer groups because a queue needs priorities (a stream is
 * FIFO only: one stream per priority and a scan across them), per-job retry and stall counts
 * (a PEL's delivery count rises on every claim, heartbeats included) and random-access removal
 * (dead letters, retention, dedupe); with sorted sets each of those is one command.
 *
 * Where the speed comes from (see docs/queue.md): jobs are fields of a few hashes rather than a
 * hash per job, so a batch of 50 touches ~20 keys with variadic commands (ZPOPMIN n, HMGET, HSET,
 * ZADD, HDEL) instead of ~10 commands per job; a worker acknowledges what it finished and leases
 * its next batch in one script call (one round trip per batch, not per job); a lease is a deadline
 * in the `active` zset, so there is no lock key per job and the stalled check is one range query;
 * and nothing is written per job for events (BullMQ appends to an events stream per transition).
 *
 * Every key of a queue carries one hash tag, `{<prefix>:<name>}`, so every script runs on one
 * Cluster slot. Time is Redis's (TIME inside scripts): leases and delays do not depend on the
 * clocks of the workers' machines agreeing.
 */

/** Options of {@link redisBackend}. */
export interface RedisBackendOptions {
  /** First part of every key's hash tag: `{<prefix>:<queue name>}:...`. @default 'buttress' */
  prefix?: string;
  /**
   * What to do when Redis's `maxmemory-policy` is not `noeviction` (Redis may then evict job keys
   * under memory pressure): `'warn'` emits a process warning once, `'refuse'` makes every queue
   * operation reject with `E_QUEUE_EVICTION_POLICY`.
   * @default 'warn'
   */
  maxmemoryPolicy?: 'warn' | 'refuse';
  /** Deadline of every Redis call (`E_QUEUE_UNAVAILABLE` with an `E_REDIS_TIMEOUT` cause). @default '5s' */
  timeout?: number | string;
}

/** Jobs per add script call: keeps each call short and its argument list within Lua's stack. */
const ADD_CHUNK = 500;
/** Acknowledgements, failures or renewals per script call. */
const BATCH = 1000;

class Keys {
  readonly tag: string;
  readonly wait: string;
  readonly active: string;
  readonly delayed: string;
  readonly jobs: string;
  readonly lease: string;
  readonly tries: string;
  readonly done: string;
  readonly dead: string;
  readonly errors: string;
  readonly meta: string;
  readonly dedupe: string;
  readonly rate: string;
  readonly channel: string;

  constructor(prefix: string, name: string, keyPrefix: string) {
    const t = `{${prefix}:${name}}`;
    this.tag = t;
    this.wait = `${t}:wait`;
    this.active = `${t}:active`;
    this.delayed = `${t}:delayed`;
    this.jobs = `${t}:jobs`;
    this.lease = `${t}:lease`;
    this.tries = `${t}:tries`;
    this.done = `${t}:done`;
    this.dead = `${t}:dead`;
    this.errors = `${t}:errors`;
    this.meta = `${t}:meta`;
    this.dedupe = `${t}:dedupe`;
    this.rate = `${t}:rate`;
    // Channels get no keyPrefix from ioredis; add it so two apps sharing a server stay apart.
    this.channel = `${keyPrefix}${t}:wake`;
  }

  /** Every key, for tests and clean-up. */
  all(): string[] {
    return [
      this.wait,
      this.active,
      this.delayed,
      this.jobs,
      this.lease,
      this.tries,
      this.done,
      this.dead,
      this.errors,
      this.meta,
      this.dedupe,
      this.rate,
    ];
  }
}

class RedisStore implements QueueStore {
  readonly #backend: RedisBackend;
  readonly #redis: RedisConnection;
  readonly #keys: Keys;
  readonly #clock: Clock;
  readonly #timeout: number;
  readonly #wakeups = new Set<Disposable>();

  constructor(backend: RedisBackend, name: string, clock: Clock) {
    this.#backend = backend;
    this.#redis = backend.redis;
    this.#keys = new Keys(backend.prefix, name, keyPrefixOf(backend.redis));
    this.#clock = clock;
    this.#timeout = backend.timeout;
  }

  /** The queue's keys (for tests and tools). */
  get keys(): readonly string[] {
    return this.#keys.all();
  }

  ready(): Promise<void> {
    return this.#backend.checkPolicy(this.#clock);
  }

  /** Runs a script under the deadline; `sent` receives the raw call (which may still land later). */
  #call(
    script: LuaScriptSource,
    args: (string | number)[],
    operation: string,
    sent?: (call: Promise<unknown>) => void,
  ): Promise<unknown> {
    const redis = this.#redis;
    if (isConnectionDown(redis.status)) {
      return Promise.reject(
        new QueueUnavailableError(operation, new Error(`Redis connection is ${redis.status}`)),
      );
    }
    const call = evalScript(redis, script, args);
    sent?.(call);
    return withDeadline(call, this.#timeout, this.#clock, `Redis ${script.name}`).catch((error: unknown) => {
      throw new QueueUnavailableError(operation, error);
    });
  }

  async add(jobs: readonly NewJob[], dedupeWindow: number): Promise<{ id: string; added: boolean }[]> {
    const k = this.#keys;
    const calls: Promise<unknown>[] = [];
    for (let start = 0; start < jobs.length; start += ADD_CHUNK) {
      const args: (string | number)[] = [
        k.wait,
        k.delayed,
        k.jobs,
        k.meta,
        k.dedupe,
        k.channel,
        dedupeWindow,
      ];
      const end = Math.min(jobs.length, start + ADD_CHUNK);
      for (let i = start; i < end; i++) {
        const j = jobs[i]!;
        args.push(j.id ?? '', `${j.priority};${j.record}`, j.priority, j.delay);
      }
      // Every chunk goes out at once: ioredis pipelines them on the connection.
      calls.push(this.#call(scripts.add, args, 'add'));
    }
    const replies = await Promise.all(calls);
    const out: { id: string; added: boolean }[] = [];
    for (const reply of replies) {
      const r = reply as (string | number)[];
      for (let i = 0; i < r.length; i += 2) out.push({ id: String(r[i]), added: Number(r[i + 1]) === 1 });
    }
    return out;
  }

  async fetch(request: FetchRequest): Promise<FetchResult> {
    const k = this.#keys;
    const rate = request.rateLimit;
    const args: (string | number)[] = [
      k.wait,
      k.active,
      k.delayed,
      k.jobs,
      k.lease,
      k.tries,
      k.done,
      k.meta,
      k.rate,
      request.token,
      request.max,
      request.lockDuration,
      rate === undefined ? 0 : rate.max,
      rate === undefined ? 0 : rate.duration,
      request.retention.count,
      request.retention.age,
    ];
    for (const { id, token } of request.completed) args.push(id, token);
    let raw: Promise<unknown> | undefined;
    let reply: unknown;
    try {
      reply = await this.#call(scripts.fetch, args, 'fetch', (call) => {
        raw = call;
      });
    } catch (error) {
      // Timed out, but the script may still run (a stalled link, or ioredis resending it after a
      // reconnect): give back whatever it leased once it answers, or those jobs would wait out
      // their lease as if this worker had died.
      if (request.max > 0) {
        raw?.then((late) => {
          const jobs = parseLeased((late as unknown[] | undefined)?.[0]);
          if (jobs.length > 0) {
            this.release(jobs.map((j) => ({ id: j.id, token: request.token, score: j.score }))).catch(noop);
          }
        }, noop);
      }
      throw error;
    }
    const [leased, nextDelay, limited, refused] = reply as [unknown, number, number, string[]];
    return {
      jobs: parseLeased(leased),
      nextDelay: Number(nextDelay),
      rateLimitedFor: Number(limited),
      refused: Array.isArray(refused) ? refused.map(String) : [],
    };
  }

  async fail(attempts: readonly FailedAttempt[], deadRetention: Retention): Promise<boolean[]> {
    const k = this.#keys;
    const out: boolean[] = [];
    for (let start = 0; start < attempts.length; start += BATCH) {
      const args: (string | number)[] = [
        k.wait,
        k.active,
        k.delayed,
        k.jobs,
        k.lease,
        k.tries,
        k.dead,
        k.errors,
        k.meta,
        k.channel,
        deadRetention.count,
        deadRetention.age,
      ];
      for (const a of attempts.slice(start, start + BATCH)) args.push(a.id, a.token, a.retryIn, a.error);
      const reply = (await this.#call(scripts.fail, args, 'fail')) as number[];
      for (const r of reply) out.push(Number(r) === 1);
    }
    return out;
  }

  async extend(jobs: readonly { id: string; token: string }[], lockDuration: number): Promise<string[]> {
    const k = this.#keys;
    const lost: string[] = [];
    for (let start = 0; start < jobs.length; start += BATCH) {
      const args: (string | number)[] = [k.active, k.lease, lockDuration];
      for (const j of jobs.slice(start, start + BATCH)) args.push(j.id, j.token);
      const reply = (await this.#call(scripts.extend, args, 'extend')) as string[];
      for (const id of reply) lost.push(String(id));
    }
    return lost;
  }

  async release(jobs: readonly { id: string; token: string; score: number | string }[]): Promise<number> {
    const k = this.#keys;
    let released = 0;
    for (let start = 0; start < jobs.length; start += BATCH) {
      const args: (string | number)[] = [k.wait, k.active, k.lease, k.channel];
      for (const j of jobs.slice(start, start + BATCH)) args.push(j.id, j.token, j.score);
      released += Number(await this.#call(scripts.release, args, 'release'));
    }
    return released;
  }

  async recoverStalled(
    maxStalls: number,
    limit: number,
    deadRetention: Retention,
    error: string,
  ): Promise<{ requeued: string[]; deadLettered: string[] }> {
    const k = this.#keys;
    const reply = (await this.#call(
      scripts.recoverStalled,
      [
        k.wait,
        k.active,
        k.jobs,
        k.lease,
        k.tries,
        k.dead,
        k.errors,
        k.meta,
        maxStalls,
        limit,
        k.channel,
        deadRetention.count,
        deadRetention.age,
        error,
      ],
      'recover',
    )) as [string[], string[]];
    return { requeued: (reply[0] ?? []).map(String), deadLettered: (reply[1] ?? []).map(String) };
  }

  async deadLetters(offset: number, limit: number): Promise<StoredDeadLetter[]> {
    const k = this.#keys;
    const reply = (await this.#call(
      scripts.deadLetters,
      [k.dead, k.jobs, k.errors, offset, limit],
      'deadLetters',
    )) as string[];
    const out: StoredDeadLetter[] = [];
    for (let i = 0; i < reply.length; i += 4) {
      out.push({
        id: String(reply[i]),
        failedAt: Number(reply[i + 1]),
        record: stripPriority(String(reply[i + 2])),
        error: String(reply[i + 3]),
      });
    }
    return out;
  }

  async retry(id: string): Promise<boolean> {
    const k = this.#keys;
    const reply = await this.#call(
      scripts.retry,
      [k.wait, k.dead, k.jobs, k.errors, k.tries, k.meta, id, k.channel],
      'retry',
    );
    return Number(reply) === 1;
  }

  async purge(): Promise<number> {
    const k = this.#keys;
    let total = 0;
    for (;;) {
      const n = Number(await this.#call(scripts.purge, [k.dead, k.jobs, k.errors, BATCH], 'purge'));
      total += n;
      if (n < BATCH) return total;
    }
  }

  async stats(): Promise<BackendStats> {
    const k = this.#keys;
    const r = (
      (await this.#call(
        scripts.stats,
        [k.wait, k.active, k.delayed, k.dead, k.done, k.meta],
        'stats',
      )) as unknown[]
    ).map(Number);
    return {
      waiting: r[0]!,
      active: r[1]!,
      delayed: r[2]!,
      failed: r[3]!,
      retained: r[4]!,
      completed: r[5]!,
      deadLettered: r[6]!,
      stalled: r[7]!,
      recentCompletions: r[8]!,
    };
  }

  onWake(listener: () => void): Disposable {
    const sub = this.#backend.subscribe(this.#keys.channel, listener);
    this.#wakeups.add(sub);
    return toDisposable(() => {
      this.#wakeups.delete(sub);
      sub.dispose();
    });
  }

  async close(): Promise<void> {
    for (const sub of [...this.#wakeups]) sub.dispose();
    this.#wakeups.clear();
    await this.#backend.idle();
  }
}

function stripPriority(value: string): string {
  return value.slice(value.indexOf(';') + 1);
}

function parseLeased(leased: unknown): LeasedJob[] {
  if (!Array.isArray(leased)) return [];
  const jobs: LeasedJob[] = [];
  for (let i = 0; i + 4 < leased.length; i += 5) {
    jobs.push({
      id: String(leased[i]),
      record: stripPriority(String(leased[i + 1])),
      score: String(leased[i + 2]),
      failures: Number(leased[i + 3]),
      stalls: Number(leased[i + 4]),
    });
  }
  return jobs;
}

class RedisBackend implements QueueBackend {
  readonly kind = 'redis';
  readonly redis: RedisConnection;
  readonly prefix: string;
  readonly timeout: number;
  readonly #policy: 'warn' | 'refuse';
  #checked: Promise<void> | undefined;
  #warned = false;
  // One subscriber connection per backend, shared by its queues' wake-up channels.
  #sub: SubscriberConnection | undefined;
  #closing: Promise<void> | undefined;
  readonly #channels = new Map<string, Set<() => void>>();

  constructor(redis: RedisConnection, prefix: string, policy: 'warn' | 'refuse', timeout: number) {
    this.redis = redis;
    this.prefix = prefix;
    this.#policy = policy;
    this.timeout = timeout;
  }

  open(name: string, context: { readonly clock: Clock }): QueueStore {
    if (name.includes('{') || name.includes('}')) {
      throw new InvalidOptionError('name', name, 'a queue name without { or } (it goes inside a hash tag)');
    }
    return new RedisStore(this, name, context.clock);
  }

  /**
   * Checks `maxmemory-policy` once per backend (on every master of a Cluster), through INFO rather
   * than CONFIG GET, which managed services often rename. A failed check (Redis down) is retried
   * by the next operation; a refused policy stays refused.
   */
  checkPolicy(clock: Clock): Promise<void> {
    if (this.#checked !== undefined) return this.#checked;
    const check = this.#readPolicies(clock).then((policies) => {
      const bad = policies.find((p) => p !== 'noeviction');
      if (bad === undefined) return;
      if (this.#policy === 'refuse') throw new QueueEvictionPolicyError(bad);
      if (!this.#warned) {
        this.#warned = true;
        process.emitWarning(
          `Redis maxmemory-policy is "${bad}": under memory pressure Redis may evict queue keys and lose jobs. Set it to "noeviction".`,
          { code: 'BUTTRESS_QUEUE_EVICTION_POLICY' },
        );
      }
    });
    this.#checked = check.catch((error: unknown) => {
      if (error instanceof QueueEvictionPolicyError) throw error;
      this.#checked = undefined;
      throw error instanceof QueueUnavailableError
        ? error
        : new QueueUnavailableError('start-up check', error);
    });
    return this.#checked;
  }

  async #readPolicies(clock: Clock): Promise<string[]> {
    const redis = this.redis;
    if (isConnectionDown(redis.status))
      throw new QueueUnavailableError('start-up check', new Error(`Redis connection is ${redis.status}`));
    const nodes: { info(section: string): Promise<string> }[] = isCluster(redis)
      ? redis.nodes('master')
      : [redis];
    const targets =
      nodes.length > 0 ? nodes : [redis as unknown as { info(section: string): Promise<string> }];
    const infos = await Promise.all(
      targets.map((n) => withDeadline(n.info('memory'), this.timeout, clock, 'Redis INFO memory')),
    );
    return infos.map((info) => /maxmemory_policy:(\S+)/.exec(info)?.[1] ?? 'noeviction');
  }

  /** Adds a wake-up listener on `channel`, opening the shared subscriber on first use. */
  subscribe(channel: string, listener: () => void): Disposable {
    let set = this.#channels.get(channel);
    if (set === undefined) {
      set = new Set();
      this.#channels.set(channel, set);
      // A wake-up published before Redis confirmed the subscription is lost, and a worker that
      // went idle meanwhile would sleep until its pollInterval: once confirmed, wake the
      // channel's listeners to look again.
      this.#ensureSubscriber()
        .subscribe(channel)
        .then(() => this.#onMessage(channel), noop);
    }
    const l = () => listener();
    set.add(l);
    return toDisposable(() => {
      const s = this.#channels.get(channel);
      if (s === undefined) return;
      s.delete(l);
      if (s.size > 0) return;
      this.#channels.delete(channel);
      const sub = this.#sub;
      if (sub === undefined) return;
      if (this.#channels.size === 0) {
        this.#sub = undefined;
        sub.off('message', this.#onMessage);
        sub.off('ready', this.#onReady);
        this.#closing = disconnectQuietly(sub, systemClock, 1000);
      } else {
        (sub as unknown as { unsubscribe(c: string): Promise<unknown> }).unsubscribe(channel).catch(noop);
      }
    });
  }

  /** Resolves once a subscriber being closed has ended. */
  idle(): Promise<void> {
    return this.#closing ?? Promise.resolve();
  }

  #ensureSubscriber(): SubscriberConnection {
    if (this.#sub !== undefined) return this.#sub;
    const sub = duplicateSubscriber(this.redis);
    sub.on('error', noop);
    sub.on('message', this.#onMessage);
    sub.on('ready', this.#onReady);
    this.#sub = sub;
    return sub;
  }

  readonly #onMessage = (channel: string): void => {
    const set = this.#channels.get(channel);
    if (set === undefined) return;
    for (const l of [...set]) l();
  };

  // After a (re)connect, messages may have been missed: wake everyone (ioredis resubscribes).
  readonly #onReady = (): void => {
    for (const set of this.#channels.values()) for (const l of [...set]) l();
  };
}

/**
 * A Redis backend for queues: jobs live in the user's Redis (or Redis Cluster) and are shared by
 * every process using the same queue name and prefix. The connection stays the caller's: it is
 * never closed; one subscriber connection is duplicated from it while workers run.
 *
 * Run Redis with `maxmemory-policy noeviction` (checked at start-up), and with AOF persistence if
 * jobs must survive a Redis restart.
 *
 * @example
 * import { Redis } from 'ioredis';
 * const queue = createQueue('emails', { backend: redisBackend(new Redis(), { prefix: 'shop' }) });
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a missing connection or a bad option.
 */
export function redisBackend(redis: RedisConnection, options?: RedisBackendOptions): QueueBackend {
  if (!isRedisConnection(redis)) {
    throw new InvalidOptionError('redis', redis, 'an ioredis Redis or Cluster instance');
  }
  const o = optionsObject(options);
  knownKeys(o, ['prefix', 'maxmemoryPolicy', 'timeout']);
  const prefix = o.prefix ?? 'buttress';
  if (typeof prefix !== 'string' || prefix.length === 0 || /[{}]/.test(prefix)) {
    throw new InvalidOptionError('prefix', prefix, 'a non-empty string without { or }');
  }
  const policy = oneOf(o.maxmemoryPolicy, 'maxmemoryPolicy', ['warn', 'refuse'], 'warn');
  const timeout = duration(o.timeout, 'timeout', 5000, 1);
  return new RedisBackend(redis, prefix, policy, timeout);
}

/** The Redis keys of queue `name` (for tests and clean-up scripts). */
export function redisQueueKeys(name: string, prefix = 'buttress'): string[] {
  return new Keys(prefix, name, '').all();
}

function noop(): void {}
