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

type Callback = (error?: unknown) => void;
type GetCallback = (error: unknown, session?: any) => void;

/** A session as both middlewares hand it over: data, and a cookie with an expiry or a max age. */
interface SessionLike {
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
  get(sid: string, callback: GetCallback): void {
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
  set(sid: string, session: SessionLike, callback?: Callback): void {
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
   * instance made meanwhile is kept.
   */
  touch(sid: string, session: SessionLike, callback?: Callback): void {
    if (!this.#touch) {
      callback?.();
      return;
    }
    const ttl = this.#ttlOf(session);
    if (ttl <= 0) {
      this.destroy(sid, callback);
      return;
    }
    this.#cache
      .get<string>(sid)
      .then(
        (text) => {
          if (text === undefined) return callback?.();
          return this.#cache
            .set(sid, text, { ttl, tags: [ALL_TAG] })
            .then((result) => callback?.(result.degraded ? result.error : undefined));
        },
        (error) => callback?.(error),
      )
      .catch((error) => callback?.(error));
  }

  /** Deletes a session, in every instance. */
  destroy(sid: string, callback?: Callback): void {
    this.#cache.delete(sid).then(
      (result) => callback?.(result.degraded ? result.error : undefined),
      (error) => callback?.(error),
    );
  }

  /** Deletes every session of this store, in every instance. */
  clear(callback?: Callback): void {
    this.#cache.deleteByTag(ALL_TAG).then(
      () => callback?.(),
      (error) => callback?.(error),
    );
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
