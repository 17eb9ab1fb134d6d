import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buttress, CacheSessionStore } from '../../src/adapters/fastify/index.js';
import { createCache } from '../../src/cache/index.js';
import { type Cleanup, connectRedis, uniqueNamespace } from './cache-helpers.js';

// Two app instances, each with its own Redis connection and cache, sharing one namespace: what
// two pods behind a load balancer do. Nothing skips when Redis is down: the connection fails the test.

declare module 'fastify' {
  interface Session {
    user?: string;
    visits?: number;
  }
}

const SECRET = 'a secret of at least thirty-two characters!';

let cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function instance(namespace: string, routes: (f: FastifyInstance) => void): Promise<string> {
  const redis = await connectRedis(cleanups);
  const cache = createCache({ namespace, l2: { redis } });
  cleanups.push(() => cache.close());
  const f = Fastify();
  cleanups.push(() => f.close());
  await f.register(fastifyCookie);
  await f.register(fastifySession, {
    secret: SECRET,
    store: new CacheSessionStore({ cache }),
    cookie: { secure: false, maxAge: 60_000 },
    saveUninitialized: false,
  });
  await f.register(buttress, { cache });
  routes(f);
  return f.listen({ port: 0, host: '127.0.0.1' });
}

function sessionRoutes(f: FastifyInstance): void {
  f.post('/login', async (request) => {
    request.session.user = 'ada';
    request.session.visits = 1;
    return { ok: true };
  });
  f.get('/me', async (request) => {
    if (request.session.user === undefined) return { user: null };
    request.session.visits = (request.session.visits ?? 0) + 1;
    return { user: request.session.user, visits: request.session.visits };
  });
  f.post('/logout', async (request) => {
    await request.session.destroy();
    return { ok: true };
  });
}

describe('buttress/fastify with the real Redis', () => {
  it('@fastify/session on CacheSessionStore: a session made on one instance is seen and updated on the other', async () => {
    const namespace = uniqueNamespace('fastify-sess');
    const a = await instance(namespace, sessionRoutes);
    const b = await instance(namespace, sessionRoutes);
    const login = await fetch(`${a}/login`, { method: 'POST' });
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    expect(cookie).toMatch(/^sessionId=/);
    expect(await (await fetch(`${b}/me`, { headers: { cookie } })).json()).toEqual({
      user: 'ada',
      visits: 2,
    });
    expect(await (await fetch(`${a}/me`, { headers: { cookie } })).json()).toEqual({
      user: 'ada',
      visits: 3,
    });
    expect(await (await fetch(`${b}/me`, { headers: { cookie } })).json()).toEqual({
      user: 'ada',
      visits: 4,
    });
    await fetch(`${b}/logout`, { method: 'POST', headers: { cookie } });
    expect(await (await fetch(`${a}/me`, { headers: { cookie } })).json()).toEqual({ user: null });
  });

  it('a cached route is filled once for both instances, and never with a session cookie', async () => {
    const namespace = uniqueNamespace('fastify-cache');
    let runs = 0;
    const routes = (f: FastifyInstance) => {
      f.get('/catalog', { config: { buttress: { cache: { ttl: '1m' } } } }, async () => {
        runs++;
        await new Promise((r) => setTimeout(r, 100));
        return { items: [1, 2, 3] };
      });
      f.get('/greeting', { config: { buttress: { cache: true } } }, async (request) => {
        runs++;
        request.session.visits = 1; // a new session: the response sets its cookie
        return 'hi';
      });
    };
    const a = await instance(namespace, routes);
    const b = await instance(namespace, routes);
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => fetch(`${i % 2 ? a : b}/catalog`)));
    expect(new Set(await Promise.all(burst.map((r) => r.text())))).toEqual(new Set(['{"items":[1,2,3]}']));
    expect(runs).toBe(1);
    const hitOnB = await fetch(`${b}/catalog`);
    expect(hitOnB.headers.get('cache-status')).toMatch(/^buttress; hit/);
    runs = 0;
    const g1 = await fetch(`${a}/greeting`);
    const g2 = await fetch(`${b}/greeting`);
    expect(g1.headers.get('set-cookie')).toMatch(/^sessionId=/);
    expect(g2.headers.get('set-cookie')).toMatch(/^sessionId=/);
    expect(g2.headers.get('set-cookie')).not.toBe(g1.headers.get('set-cookie'));
    expect(runs).toBe(2);
  });
});
