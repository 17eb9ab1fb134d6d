import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import session from 'express-session';
import express4 from 'express4';
import { afterEach, describe, expect, it } from 'vitest';
import { expressSessionStore, healthRoutes, responseCache } from '../../src/adapters/express/index.js';
import { createCache } from '../../src/cache/index.js';
import { type Cleanup, connectRedis, uniqueNamespace } from './cache-helpers.js';

// Two Express app instances, each with its own Redis connection and cache on one namespace:
// what two pods behind a load balancer do. Nothing skips: without Redis the connection fails the test.

declare module 'express-session' {
  interface SessionData {
    user?: string;
    visits?: number;
  }
}

let cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

type App = ReturnType<typeof express>;

async function instance(
  namespace: string,
  routes: (app: App, cache: ReturnType<typeof createCache>) => void,
  framework: typeof express = express,
): Promise<string> {
  const redis = await connectRedis(cleanups);
  const cache = createCache({ namespace, l2: { redis } });
  cleanups.push(() => cache.close());
  const app = framework();
  routes(app, cache);
  const server = app.listen(0, '127.0.0.1');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function sessionRoutes(app: App, cache: ReturnType<typeof createCache>): void {
  app.use(
    session({
      store: expressSessionStore(session, { cache }),
      secret: 'a secret of at least thirty-two characters!',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 60_000 },
    }),
  );
  app.post('/login', (req, res) => {
    req.session.user = 'ada';
    req.session.visits = 1;
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => {
    if (req.session.user === undefined) {
      res.json({ user: null });
      return;
    }
    req.session.visits = (req.session.visits ?? 0) + 1;
    res.json({ user: req.session.user, visits: req.session.visits });
  });
  app.post('/logout', (req, res) => {
    req.session.destroy(() => res.json({ ok: true }));
  });
}

describe('Express sessions through the real Redis', () => {
  it.each([
    ['Express 5', express],
    ['Express 4', express4 as unknown as typeof express],
  ])(
    '%s: a session made on one instance is read, changed and destroyed on the other',
    async (_name, framework) => {
      const ns = uniqueNamespace('express-sess');
      const a = await instance(ns, sessionRoutes, framework);
      const b = await instance(ns, sessionRoutes, framework);
      const login = await fetch(`${a}/login`, { method: 'POST' });
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      expect(cookie).toMatch(/^connect\.sid=/);
      const headers = { cookie };
      expect(await (await fetch(`${b}/me`, { headers })).json()).toEqual({ user: 'ada', visits: 2 });
      expect(await (await fetch(`${a}/me`, { headers })).json()).toEqual({ user: 'ada', visits: 3 });
      expect(await (await fetch(`${b}/me`, { headers })).json()).toEqual({ user: 'ada', visits: 4 });
      await fetch(`${b}/logout`, { method: 'POST', headers });
      expect(await (await fetch(`${a}/me`, { headers })).json()).toEqual({ user: null });
    },
  );
});

describe('Express response caching through the real Redis', () => {
  it('concurrent misses spread over two instances run the handler once; both then answer from Redis', async () => {
    const ns = uniqueNamespace('express-http');
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const routes = (app: App, cache: ReturnType<typeof createCache>) => {
      app.get('/catalog', responseCache({ cache, ttl: '30s' }), async (_req, res) => {
        runs++;
        await gate;
        res.json({ items: ['a', 'b'], runs });
      });
    };
    const a = await instance(ns, routes);
    const b = await instance(ns, routes);
    const all = Array.from({ length: 40 }, (_, i) => fetch(`${i % 2 ? a : b}/catalog`).then((r) => r.text()));
    const start = Date.now();
    while (runs === 0 && Date.now() - start < 5_000) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 100));
    release();
    const bodies = await Promise.all(all);
    expect(runs).toBe(1);
    expect(new Set(bodies)).toEqual(new Set(['{"items":["a","b"],"runs":1}']));
    const etagA = (await fetch(`${a}/catalog`)).headers.get('etag');
    const fromB = await fetch(`${b}/catalog`, { headers: { 'if-none-match': etagA! } });
    expect(fromB.status).toBe(304);
    expect(runs).toBe(1);
  });

  it('a response with Set-Cookie is never shared between instances', async () => {
    const ns = uniqueNamespace('express-cookie');
    let runs = 0;
    const routes = (app: App, cache: ReturnType<typeof createCache>) => {
      app.get('/hello', responseCache({ cache }), (_req, res) => {
        runs++;
        res.cookie('visitor', String(runs)).json({ runs });
      });
    };
    const a = await instance(ns, routes);
    const b = await instance(ns, routes);
    const one = await fetch(`${a}/hello`);
    const two = await fetch(`${b}/hello`);
    expect(one.headers.get('set-cookie')).toBe('visitor=1; Path=/');
    expect(two.headers.get('set-cookie')).toBe('visitor=2; Path=/');
    expect(runs).toBe(2);
  });
});

describe('Express readiness through the real Redis', () => {
  it('reports the Redis round trip, and 503 once the connection is gone', async () => {
    const redis = await connectRedis(cleanups);
    const app = express();
    app.use(healthRoutes({ redis: { main: redis } }));
    const server = app.listen(0, '127.0.0.1');
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as {
      status: string;
      checks: Record<string, { status: string; latencyMs: number }>;
    };
    expect(body.status).toBe('ok');
    expect(body.checks['redis:main']!.status).toBe('ok');
    expect(body.checks['redis:main']!.latencyMs).toBeGreaterThanOrEqual(0);
    redis.disconnect();
    const down = await fetch(`${url}/ready`);
    expect(down.status).toBe(503);
    expect(
      ((await down.json()) as { checks: Record<string, { status: string }> }).checks['redis:main']!.status,
    ).toBe('down');
  });
});
