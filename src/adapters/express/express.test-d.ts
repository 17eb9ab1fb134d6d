import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import session from 'express-session';
import express4 from 'express4';
import { describe, expectTypeOf, it } from 'vitest';
import { circuitBreaker } from '../../breaker/index.js';
import { adaptiveLimiter } from '../../bulkhead/index.js';
import { createCache } from '../../cache/index.js';
import {
  type ButtressExpressStore,
  expressSessionStore,
  type HealthMiddleware,
  healthRoutes,
  loadShedder,
  problemHandler,
  responseCache,
  routeGuard,
  signalOf,
} from './index.js';

describe('buttress/express types', () => {
  const cache = createCache();

  it('the factories return Express middleware and a four-argument error handler', () => {
    expectTypeOf(responseCache({ cache, ttl: '30s' })).toEqualTypeOf<RequestHandler>();
    expectTypeOf(loadShedder({ limiter: adaptiveLimiter() })).toEqualTypeOf<RequestHandler>();
    expectTypeOf(routeGuard({ breaker: circuitBreaker(), timeout: '2s' })).toEqualTypeOf<RequestHandler>();
    expectTypeOf(problemHandler()).toEqualTypeOf<ErrorRequestHandler>();
    expectTypeOf(healthRoutes()).toMatchTypeOf<RequestHandler>();
    expectTypeOf(healthRoutes().paths).toEqualTypeOf<readonly string[]>();
    expectTypeOf(expressSessionStore(session, { cache })).toEqualTypeOf<ButtressExpressStore>();
    expectTypeOf(expressSessionStore(session, { cache })).toMatchTypeOf<session.Store>();
  });

  it('they mount on Express 5 and on Express 4', () => {
    const app = express();
    app.use(loadShedder({ limiter: adaptiveLimiter() }), healthRoutes());
    app.get('/p', responseCache({ cache }), routeGuard({ timeout: 10 }), (req, res) => {
      expectTypeOf(signalOf(req)).toEqualTypeOf<AbortSignal>();
      res.json({});
    });
    app.use(problemHandler());
    app.use(session({ secret: 's', store: expressSessionStore(session, { cache }) }));
    const app4 = express4();
    // This repository has @types/express 4 (as express4) and 5 side by side, two copies of
    // express-serve-static-core that TypeScript keeps apart. A user has one: the declarations
    // import `express`, which then is theirs, 4 or 5. Here the handler is cast across the copies.
    const handler = responseCache({ cache }) as unknown as express4.RequestHandler;
    app4.get('/p', handler, (_req, res) => res.json({}));
    expectTypeOf<HealthMiddleware>().toMatchTypeOf<RequestHandler>();
  });

  it('options are checked', () => {
    // @ts-expect-error the cache is required
    responseCache({ ttl: '1m' });
    // @ts-expect-error a limiter is required
    loadShedder({});
    // @ts-expect-error onReject is 'respond' or 'next'
    routeGuard({ timeout: 1, onReject: 'throw' });
    // @ts-expect-error session store options need a cache
    expressSessionStore(session, {});
  });
});
