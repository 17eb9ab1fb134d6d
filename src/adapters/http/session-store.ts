import { EventEmitter } from 'node:events';
import type { Cache } from '../../cache/cache.js';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import {
  bool,
  clockOption,
  duration,
  knownKeys,
  nonEmptyString,
  optionsObject,
} from '../../core/validate.js';

/** Options of a session store on the buttress cache. */
export interface SessionStoreOptions {
  /**
   * The cache sessions live in: give it an `l2` (Redis) so every instance of the app sees every
   * session, and the bus (on by default with `l2`) so an instance's L1 copy is dropped as soon
   * as another instance changes the session. Sessions go in a child namespace (see `prefix`).
   */
  cache: Cache;
  /** Child namespace of `cache` holding the sessions. @default 'sess' */
  prefix?: string;
  /**
   * Lifetime of a session whose cookie has no expiry (a browser-session cookie); sessions with
   * one live until it. @default '1d'
   */
  ttl?: Duration;
  /** Skip the write `touch` makes (express-session's `rolling`, `resave: false`): fewer writes, sessions expire by their last save. @default false */
  disableTouch?: boolean;
  /** Time source for expiries. @default systemClock */
  clock?: Clock;
}

const STORE_KEYS = ['cache', 'prefix', 'ttl', 'disableTouch', 'clock'] as const;

/** The tag every session carries, so that `clear()` removes them all in one invalidation. */
const ALL_TAG = 'buttress:sessions';

/** The callback of a store write, `destroy` and `clear`: called with the error, or with nothing on success. */
export type SessionCallback = (error?: unknown) => void;
/** The callback of a store `get`: the error, or the session (undefined when there is none). */
export type SessionGetCallback = (error: unknown, session?: any) => void;

/** A session as both middlewares hand it over: data, and a cookie with an expiry or a max age. */
export interface SessionLike {
  cookie?: { expires?: Date | string | null | false; maxAge?: number | null; originalMaxAge?: number | null };
}

/**
 * Sessions on the buttress cache: L1 in the process, Redis behind it, so the app tier stays
 * stateless and any instance serves any user. Implements the store interface of
 * `@fastify/session` (`get`, `set`, `destroy`, with callbacks) as it is, and the one of
 * `express-session` through {@link expressSessionStore}-style subclassing (its `Store` base
 * class adds `createSession`, `regenerate` and `load`).
 *
 * Sessions are written as JSON text: every `get` returns a fresh object, so a request mutating
 * its session never changes the copy another request (or L1) holds. A write that reached L1 only
 * (Redis down: `degraded`) is reported to the callback as an error (`E_CACHE_UNAVAILABLE`): the
 * other instances would not see it, and a session that silently lives in one process only is
 * a user logged out at the next request another instance serves.
 *
 * @example
 * const store = new CacheSessionStore({ cache: createCache({ namespace: 'app', l2: { redis } }) });
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid option.
 */
export class CacheSessionStore extends EventEmitter {
  readonly #cache: Cache;
  readonly #ttl: number;
  readonly #touch: boolean;
  readonly #clock: Clock;
  /**
   * The touches under way, by session id. A touch reads the session and writes it back; a
   * `destroy` (or a `set`) landing between the two marks them void, so that a touch never
   * brings back a session destroyed meanwhile, nor writes an older copy over a newer save.
   */
  readonly #touches = new Map<string, Set<{ void: boolean }>>();

  constructor(options: SessionStoreOptions) {
    super();
    const o = optionsObject(options, 'options');
    knownKeys(o, STORE_KEYS);
    const cache = o.cache as Cache | undefined;
    if (typeof cache?.getOrSet !== 'function' || typeof cache.namespace !== 'function') {
      throw new InvalidOptionError('cache', cache, 'a Cache (buttress/cache createCache())');
    }
    this.#cache = cache.namespace(nonEmptyString(o.prefix, 'prefix', 'sess'));
    this.#ttl = duration(o.ttl, 'ttl', 86_400_000, 1);
    this.#touch = !bool(o.disableTouch, 'disableTouch', false);
    this.#clock = clockOption(o.clock);
  }

  /** The session under `sid`, or `undefined` (never an error for a missing one). */
  get(sid: string, callback: SessionGetCallback): void {
    this.#cache.get<string>(sid).then(
      (text) => {
        let session: unknown;
        try {
          session = text === undefined ? undefined : JSON.parse(text);
        } catch (error) {
          callback(error);
          return;
        }
        callback(null, session);
      },
      (error) => callback(error),
    );
  }

  /** Saves a session until its cookie expires (or for `ttl`); an expired one is destroyed. */
  set(sid: string, session: SessionLike, callback?: SessionCallback): void {
    this.#voidTouches(sid);
    const ttl = this.#ttlOf(session);
    if (ttl <= 0) {
      this.destroy(sid, callback);
      return;
    }
    let text: string;
    try {
      text = JSON.stringify(session);
    } catch (error) {
      callback?.(error);
      return;
    }
    this.#cache.set(sid, text, { ttl, tags: [ALL_TAG] }).then(
      (result) => callback?.(result.degraded ? result.error : undefined),
      (error) => callback?.(error),
    );
  }

  /**
   * Extends a session's life to its cookie's new expiry (express-session calls it on each request
   * that does not save). Rewrites what the store holds, not the session given: a save another
   * instance made meanwhile is kept. Only a session the store still holds is extended: a touch
   * never brings back one that is gone, including one this store destroys while the touch reads it.
   */
  touch(sid: string, session: SessionLike, callback?: SessionCallback): void {
    if (!this.#touch) {
      callback?.();
      return;
    }
    const ttl = this.#ttlOf(session);
    if (ttl <= 0) {
      this.destroy(sid, callback);
      return;
    }
    const token = { void: false };
    let running = this.#touches.get(sid);
    if (running === undefined) this.#touches.set(sid, (running = new Set()));
    running.add(token);
    const done = (): void => {
      const set = this.#touches.get(sid);
      set?.delete(token);
      if (set?.size === 0) this.#touches.delete(sid);
    };
    this.#cache
      .get<string>(sid)
      .then(
        (text) => {
          done();
          // Only an existing session is extended: one destroyed (or saved) meanwhile is left as it is.
          if (text === undefined || token.void) return callback?.();
          return this.#cache
            .set(sid, text, { ttl, tags: [ALL_TAG] })
            .then((result) => callback?.(result.degraded ? result.error : undefined));
        },
        (error) => {
          done();
          callback?.(error);
        },
      )
      .catch((error) => callback?.(error));
  }

  /** Deletes a session, in every instance. */
  destroy(sid: string, callback?: SessionCallback): void {
    this.#voidTouches(sid);
    this.#cache.delete(sid).then(
      (result) => callback?.(result.degraded ? result.error : undefined),
      (error) => callback?.(error),
    );
  }

  /** Deletes every session of this store, in every instance. */
  clear(callback?: SessionCallback): void {
    for (const sid of [...this.#touches.keys()]) this.#voidTouches(sid);
    this.#cache.deleteByTag(ALL_TAG).then(
      () => callback?.(),
      (error) => callback?.(error),
    );
  }

  #voidTouches(sid: string): void {
    const running = this.#touches.get(sid);
    if (running === undefined) return;
    for (const token of running) token.void = true;
    this.#touches.delete(sid);
  }

  #ttlOf(session: SessionLike): number {
    const cookie = session?.cookie;
    if (cookie === undefined || cookie === null) return this.#ttl;
    const expires = cookie.expires;
    if (expires !== undefined && expires !== null && expires !== false) {
      const at = expires instanceof Date ? expires.getTime() : Date.parse(expires);
      if (Number.isFinite(at)) return Math.min(2 ** 31 - 1, Math.ceil(at - this.#clock.now()));
    }
    if (typeof cookie.maxAge === 'number') return Math.min(2 ** 31 - 1, cookie.maxAge);
    return this.#ttl;
  }
}
