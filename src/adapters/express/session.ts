import type { SessionData, Store } from 'express-session';
import { InvalidOptionError } from '../../core/errors.js';
import { CacheSessionStore, type SessionStoreOptions } from '../http/session-store.js';

/** What {@link expressSessionStore} needs of express-session: its `Store` class. */
export interface ExpressSessionModule {
  Store: abstract new () => Store;
}

/** An express-session store on a buttress cache. */
export interface ButtressExpressStore extends Store {
  /** The store underneath (the same one `buttress/fastify` hands to @fastify/session). */
  readonly sessions: CacheSessionStore;
}

/**
 * An express-session `Store` keeping sessions in a buttress cache (L1 + Redis), so any instance
 * serves any session and the app tier stays stateless. Pass express-session itself: its `Store`
 * class is extended (as `connect-redis` does) without buttress importing it.
 *
 * Sessions live until their cookie expires, else for `ttl`.
 *
 * @example
 * import session from 'express-session';
 * app.use(session({ store: expressSessionStore(session, { cache }), secret, resave: false, saveUninitialized: false }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option, or when `session` has no `Store`.
 */
export function expressSessionStore(
  session: ExpressSessionModule,
  options: SessionStoreOptions,
): ButtressExpressStore {
  const Base = (session as ExpressSessionModule | undefined)?.Store;
  if (typeof Base !== 'function') {
    throw new InvalidOptionError(
      'session',
      session,
      "express-session (import session from 'express-session')",
    );
  }
  const sessions = new CacheSessionStore(options);
  const Concrete = Base as unknown as new () => Store;
  class CacheStore extends Concrete implements ButtressExpressStore {
    readonly sessions = sessions;

    override get(sid: string, callback: (err: any, session?: SessionData | null) => void): void {
      sessions.get(sid, (error, value) =>
        callback(error ?? null, (value as SessionData | undefined) ?? null),
      );
    }

    override set(sid: string, value: SessionData, callback?: (err?: any) => void): void {
      sessions.set(sid, value, callback);
    }

    override touch(sid: string, value: SessionData, callback?: (err?: any) => void): void {
      sessions.touch(sid, value, callback);
    }

    override destroy(sid: string, callback?: (err?: any) => void): void {
      sessions.destroy(sid, callback);
    }

    override clear(callback?: (err?: any) => void): void {
      sessions.clear(callback);
    }
  }
  return new CacheStore();
}
