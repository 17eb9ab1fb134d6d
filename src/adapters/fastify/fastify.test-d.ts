import type { SessionStore } from '@fastify/session';
import Fastify from 'fastify';
import { describe, expectTypeOf, it } from 'vitest';
import { circuitBreaker } from '../../breaker/circuit-breaker.js';
import { adaptiveLimiter } from '../../bulkhead/adaptive-limiter.js';
import { type Cache, createCache } from '../../cache/cache.js';
import {
  type ButtressRouteConfig,
  buttress,
  type CacheSessionStore,
  type Health,
  type Problem,
} from './index.js';

describe('buttress/fastify types', () => {
  it('registers with typed options', async () => {
    const app = Fastify();
    await app.register(buttress, {
      cache: createCache(),
      cacheDefaults: { ttl: '30s', vary: ['accept-language'] },
      shed: adaptiveLimiter({ maxLimit: 100 }),
      breakers: { payments: circuitBreaker() },
      errors: { exposeMessages: false },
      health: { path: '/health', readyPath: '/ready', checks: { app: () => ({ status: 'ok' }) } },
    });
    await app.register(buttress, { cache: { namespace: 'own' } });
    // @ts-expect-error: unknown option
    await app.register(buttress, { cahce: createCache() });
    // @ts-expect-error: shed must be a policy
    await app.register(buttress, { shed: 10 });
  });

  it('decorates the instance and the request', () => {
    const app = Fastify();
    expectTypeOf(app.buttress.cache).toEqualTypeOf<Cache | undefined>();
    expectTypeOf(app.buttress.health).toEqualTypeOf<Health | undefined>();
    expectTypeOf(app.buttress.problem(new Error())).toEqualTypeOf<Problem | undefined>();
    app.get('/x', async (request) => {
      expectTypeOf(request.buttressSignal).toEqualTypeOf<AbortSignal>();
      return 'x';
    });
  });

  it('types the route config', () => {
    const app = Fastify();
    app.get(
      '/a',
      {
        config: {
          buttress: { cache: { ttl: '1m', staleWhileRevalidate: '5m', vary: ['accept'] }, timeout: '2s' },
        },
      },
      async () => 'a',
    );
    app.get(
      '/b',
      { config: { buttress: { cache: true, shed: false, breaker: 'payments' } } },
      async () => 'b',
    );
    app.get(
      '/c',
      { config: { buttress: { breaker: circuitBreaker(), limiter: adaptiveLimiter() } } },
      async () => 'c',
    );
    // @ts-expect-error: ttl is a duration
    app.get('/d', { config: { buttress: { cache: { ttl: true } } } }, async () => 'd');
    // @ts-expect-error: shed is a boolean
    app.get('/e', { config: { buttress: { shed: 'no' } } }, async () => 'e');
    expectTypeOf<ButtressRouteConfig['timeout']>().toEqualTypeOf<
      import('../../core/duration.js').Duration | undefined
    >();
  });

  it('the session store is an @fastify/session store', () => {
    expectTypeOf<CacheSessionStore>().toMatchTypeOf<SessionStore>();
  });
});
