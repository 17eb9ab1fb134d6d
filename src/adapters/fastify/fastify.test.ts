import fastifyCookie from '@fastify/cookie';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreaker } from '../../breaker/circuit-breaker.js';
import { CircuitOpenError } from '../../breaker/errors.js';
import { consecutive } from '../../breaker/strategies/consecutive.js';
import { bulkhead } from '../../bulkhead/bulkhead.js';
import { RateLimitedError } from '../../bulkhead/errors.js';
import { createCache } from '../../cache/cache.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { buttress } from './index.js';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const apps: FastifyInstance[] = [];
async function app(
  register: (f: FastifyInstance) => void | Promise<void>,
  options: Parameters<typeof buttress>[1] = {},
) {
  const f = Fastify();
  apps.push(f);
  await f.register(buttress, options);
  await register(f);
  await f.ready();
  return f;
}
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

describe('response caching (inject)', () => {
  it('the second GET is a hit: same body, ETag, Age and Cache-Control, the handler ran once', async () => {
    const clock = new FakeClock();
    let runs = 0;
    const f = await app(
      (f) => {
        f.get('/p/:id', { config: { buttress: { cache: { ttl: '30s' } } } }, async (req) => {
          runs++;
          return { id: (req.params as { id: string }).id, run: runs };
        });
      },
      { cache: createCache({ clock }), clock },
    );
    const first = await f.inject('/p/1');
    expect(first.statusCode).toBe(200);
    expect(first.headers['cache-control']).toBe('public, max-age=30');
    expect(first.headers['cache-status']).toBe('buttress; fwd=miss; stored');
    expect(first.headers.etag).toMatch(/^"[\w-]{27}"$/);
    clock.advance(10_000);
    const second = await f.inject('/p/1');
    expect(second.statusCode).toBe(200);
    expect(second.json()).toEqual({ id: '1', run: 1 });
    expect(second.headers['content-type']).toBe(first.headers['content-type']);
    expect(second.headers.etag).toBe(first.headers.etag);
    expect(second.headers.age).toBe('10');
    expect(second.headers['cache-control']).toBe('public, max-age=20');
    expect(second.headers['cache-status']).toBe('buttress; hit; ttl=20');
    expect(second.headers['content-length']).toBe(String(first.rawPayload.length));
    expect((await f.inject('/p/2')).json()).toEqual({ id: '2', run: 2 });
    expect(runs).toBe(2);
  });

  it('304 on If-None-Match, both on a hit and for the request that fills the cache', async () => {
    let runs = 0;
    const cache = createCache();
    const f = await app(
      (f) => {
        f.get('/x', { config: { buttress: { cache: true } } }, async () => {
          runs++;
          return 'same body';
        });
      },
      { cache },
    );
    const first = await f.inject('/x');
    const etag = first.headers.etag as string;
    const hit304 = await f.inject({ url: '/x', headers: { 'if-none-match': `"zzz", ${etag}` } });
    expect(hit304.statusCode).toBe(304);
    expect(hit304.body).toBe('');
    expect(hit304.headers.etag).toBe(etag);
    expect(hit304.headers['content-type']).toBeUndefined();
    await cache.clear();
    const lead304 = await f.inject({ url: '/x', headers: { 'if-none-match': etag } });
    expect(lead304.statusCode).toBe(304);
    expect(lead304.body).toBe('');
    expect(runs).toBe(2);
    // The handler saw the full request (no conditional) and the full 200 was cached.
    const full = await f.inject('/x');
    expect(full.statusCode).toBe(200);
    expect(full.body).toBe('same body');
    expect(runs).toBe(2);
    expect((await f.inject({ url: '/x', headers: { 'if-none-match': '"other"' } })).statusCode).toBe(200);
  });

  it('never caches a response that sets a cookie (by header, by @fastify/cookie), or says private / no-store', async () => {
    const runs: Record<string, number> = {};
    const count = (k: string) => (runs[k] = (runs[k] ?? 0) + 1);
    const f = await app(
      async (f) => {
        await f.register(fastifyCookie);
        const config = { buttress: { cache: true } };
        f.get('/header', { config }, async (_req, reply) => {
          reply.header('set-cookie', `n=${count('header')}`);
          return 'x';
        });
        f.get('/plugin', { config }, async (_req, reply) => {
          reply.setCookie('n', String(count('plugin')));
          return 'x';
        });
        f.get('/private', { config }, async (_req, reply) => {
          count('private');
          reply.header('cache-control', 'private, max-age=60');
          return 'x';
        });
        f.get('/nostore', { config }, async (_req, reply) => {
          count('nostore');
          reply.header('cache-control', 'no-store');
          return 'x';
        });
      },
      { cache: createCache() },
    );
    for (const path of ['/header', '/plugin', '/private', '/nostore']) {
      const a = await f.inject(path);
      const b = await f.inject(path);
      expect(a.headers['cache-status']).toBe('buttress; fwd=miss');
      expect(b.headers['cache-status']).toBe('buttress; fwd=miss');
      expect(a.headers['cache-control'] ?? '').not.toContain('public');
    }
    expect(runs).toEqual({ header: 2, plugin: 2, private: 2, nostore: 2 });
    expect((await f.inject('/plugin')).headers['set-cookie']).toMatch(/^n=3/);
  });

  it('never caches a 206, nor answers or fills from a request with Range', async () => {
    let runs = 0;
    const f = await app(
      (f) => {
        f.get('/file', { config: { buttress: { cache: true } } }, async (req, reply) => {
          runs++;
          const body = `whole body ${runs}`;
          const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
          if (range === null && (req.query as { part?: string }).part === undefined) return body;
          const [from, to] = range === null ? [0, 4] : [Number(range[1]), Number(range[2])];
          reply.code(206).header('content-range', `bytes ${from}-${to}/${body.length}`);
          return body.slice(from, to + 1);
        });
      },
      { cache: createCache() },
    );
    const part = await f.inject({ url: '/file', headers: { range: 'bytes=0-4' } });
    expect(part.statusCode).toBe(206);
    expect(part.body).toBe('whole');
    const whole = await f.inject('/file');
    expect(whole.statusCode).toBe(200);
    expect(whole.body).toBe('whole body 2');
    const again = await f.inject({ url: '/file', headers: { range: 'bytes=6-9' } });
    expect(again.statusCode).toBe(206);
    expect(again.body).toBe('body');
    expect(runs).toBe(3);
    expect((await f.inject('/file?part=1')).statusCode).toBe(206);
    expect((await f.inject('/file?part=1')).statusCode).toBe(206);
    expect(runs).toBe(5);
    expect((await f.inject('/file')).body).toBe('whole body 2');
  });

  it('respects Vary: one entry per value of each varied header, and Vary on the response', async () => {
    let runs = 0;
    const f = await app(
      (f) => {
        f.get('/hello', { config: { buttress: { cache: { vary: ['Accept-Language'] } } } }, async (req) => {
          runs++;
          return req.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello';
        });
        f.get('/sneaky', { config: { buttress: { cache: true } } }, async (_req, reply) => {
          runs++;
          reply.header('vary', 'accept-encoding');
          return 'x';
        });
      },
      { cache: createCache() },
    );
    const fr = { 'accept-language': 'fr' };
    expect((await f.inject({ url: '/hello', headers: fr })).body).toBe('bonjour');
    expect((await f.inject({ url: '/hello', headers: { 'accept-language': 'en' } })).body).toBe('hello');
    const again = await f.inject({ url: '/hello', headers: fr });
    expect(again.body).toBe('bonjour');
    expect(again.headers.vary).toBe('accept-language');
    expect(again.headers['cache-status']).toMatch(/^buttress; hit/);
    expect(runs).toBe(2);
    await f.inject('/sneaky');
    await f.inject('/sneaky');
    expect(runs).toBe(4);
  });

  it('HEAD is answered from the GET entry; POST and Authorization bypass the cache', async () => {
    let runs = 0;
    const f = await app(
      (f) => {
        const handler = async () => {
          runs++;
          return 'body!';
        };
        f.get('/r', { config: { buttress: { cache: true } } }, handler);
        f.post('/r', { config: { buttress: { cache: true } } }, handler);
      },
      { cache: createCache() },
    );
    await f.inject('/r');
    const head = await f.inject({ method: 'HEAD', url: '/r' });
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe('5');
    expect(head.headers['cache-status']).toMatch(/hit/);
    await f.inject({ method: 'POST', url: '/r' });
    await f.inject({ url: '/r', headers: { authorization: 'Bearer t' } });
    expect(runs).toBe(3);
  });

  it('stale-while-revalidate: a stale copy for everyone but the request that regenerates', async () => {
    const clock = new FakeClock();
    let version = 1;
    const gate = deferred();
    let wait = false;
    const f = await app(
      (f) => {
        f.get(
          '/s',
          { config: { buttress: { cache: { ttl: '1s', staleWhileRevalidate: '1m' } } } },
          async () => {
            if (wait) await gate.promise;
            return `v${version++}`;
          },
        );
      },
      { cache: createCache({ clock }), clock },
    );
    expect((await f.inject('/s')).body).toBe('v1');
    clock.advance(2000);
    wait = true;
    const regenerating = f.inject('/s');
    await new Promise((r) => setImmediate(r));
    const stale = await f.inject('/s');
    expect(stale.body).toBe('v1');
    expect(stale.headers['cache-control']).toBe('public, max-age=0, stale-while-revalidate=60');
    expect(stale.headers['cache-status']).toBe('buttress; hit; ttl=-1');
    gate.resolve();
    expect((await regenerating).body).toBe('v2');
    expect((await f.inject('/s')).body).toBe('v2');
  });

  it('validates route options when the route is added, naming the route', async () => {
    const f = Fastify();
    apps.push(f);
    await f.register(buttress, { cache: createCache() });
    expect(() =>
      f.get('/a', { config: { buttress: { cache: { ttl: 'soon' as never } } } }, async () => 'x'),
    ).toThrow(/route GET \/a config\.buttress\.cache\.ttl/);
    expect(() => f.get('/b', { config: { buttress: { cahce: true } as never } }, async () => 'x')).toThrow(
      /config\.buttress\.cahce/,
    );
    expect(() => f.get('/c', { config: { buttress: { breaker: 'nope' } } }, async () => 'x')).toThrow(
      /breaker/,
    );
    const g = Fastify();
    apps.push(g);
    await g.register(buttress);
    expect(() => g.get('/d', { config: { buttress: { cache: true } } }, async () => 'x')).toThrow(/cache/);
    await expect(
      Fastify()
        .register(buttress, { shed: {} as never })
        .ready(),
    ).rejects.toThrow(/shed/);
  });
});

describe('over a listening server', () => {
  it('100 concurrent misses for one URL run the handler once', async () => {
    let runs = 0;
    const gate = deferred();
    const f = await app(
      (f) => {
        f.get('/hot', { config: { buttress: { cache: true } } }, async () => {
          runs++;
          await gate.promise;
          return { hot: true };
        });
      },
      { cache: createCache() },
    );
    const base = await f.listen({ port: 0, host: '127.0.0.1' });
    const responses = Array.from({ length: 100 }, () => fetch(`${base}/hot`));
    while (runs === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    gate.resolve();
    const all = await Promise.all(responses);
    expect(all.every((r) => r.status === 200)).toBe(true);
    expect(new Set(await Promise.all(all.map((r) => r.text())))).toEqual(new Set(['{"hot":true}']));
    expect(runs).toBe(1);
  });

  it('sheds a burst with 503 + Retry-After problems while health routes answer', async () => {
    const gate = deferred();
    const limiter = bulkhead({ limit: 2 });
    const f = await app(
      (f) => {
        f.get('/work', async () => {
          await gate.promise;
          return 'done';
        });
        f.get('/free', { config: { buttress: { shed: false } } }, async () => 'free');
      },
      { shed: limiter, health: { checks: { app: () => ({ status: 'ok' }) } } },
    );
    const base = await f.listen({ port: 0, host: '127.0.0.1' });
    const burst = Array.from({ length: 20 }, () => fetch(`${base}/work`));
    const shed = [];
    for (const p of burst.slice(2)) shed.push(await p);
    expect(shed.map((r) => r.status)).toEqual(Array(18).fill(503));
    for (const r of shed) {
      expect(r.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
      expect(r.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(await r.json()).toMatchObject({
        status: 503,
        code: 'E_BULKHEAD_FULL',
        title: 'Service Unavailable',
      });
    }
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok', checks: { app: { status: 'ok' } } });
    expect(await (await fetch(`${base}/free`)).text()).toBe('free');
    gate.resolve();
    const admitted = await Promise.all(burst.slice(0, 2));
    expect(admitted.map((r) => r.status)).toEqual([200, 200]);
    expect(limiter.stats().executing).toBe(0);
    expect((await fetch(`${base}/work`)).status).toBe(200);
  });

  it('a client that leaves frees its slot', async () => {
    const limiter = bulkhead({ limit: 1 });
    const f = await app(
      (f) => {
        f.get('/hang', (_req, _reply) => new Promise(() => {}));
      },
      { shed: limiter },
    );
    const base = await f.listen({ port: 0, host: '127.0.0.1' });
    const controller = new AbortController();
    const hanging = fetch(`${base}/hang`, { signal: controller.signal }).catch(() => undefined);
    while (limiter.stats().executing === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await hanging;
    while (limiter.stats().executing !== 0) await new Promise((r) => setTimeout(r, 5));
    expect(limiter.stats().executing).toBe(0);
  });
});

describe('errors, breakers and timeouts', () => {
  it('maps buttress errors to status, Retry-After and a problem body; other errors stay Fastify', async () => {
    const f = await app(
      (f) => {
        f.get('/open', async () => {
          throw new CircuitOpenError('open', 2500, 'payments');
        });
        f.get('/rate', async () => {
          throw new RateLimitedError('rate', 'k', 1000);
        });
        f.get('/plain', async () => {
          throw new Error('boom');
        });
      },
      { errors: { retryAfterJitter: 0 } },
    );
    const open = await f.inject('/open');
    expect(open.statusCode).toBe(503);
    expect(open.headers['retry-after']).toBe('3');
    expect(open.json()).toEqual({
      type: 'about:blank',
      title: 'Service Unavailable',
      status: 503,
      detail: 'A dependency of this endpoint is failing; it is not being called for now.',
      code: 'E_CIRCUIT_OPEN',
      retryAfter: 3,
    });
    const rate = await f.inject('/rate');
    expect(rate.statusCode).toBe(429);
    expect(rate.headers['retry-after']).toBe('1');
    const plain = await f.inject('/plain');
    expect(plain.statusCode).toBe(500);
    expect(plain.json()).toMatchObject({ statusCode: 500, message: 'boom' });
    expect(f.buttress.problem(new CircuitOpenError('open', 1000))?.status).toBe(503);
  });

  it("the user's own error handler, set later, sees buttress errors too", async () => {
    const f = await app(
      (f) => {
        f.setErrorHandler((error, _req, reply) => {
          const p = f.buttress.problem(error);
          reply.code(p?.status ?? 500).send({ mine: true, code: (error as { code?: string }).code });
        });
        f.get('/open', async () => {
          throw new CircuitOpenError('open', 0);
        });
      },
      { errors: false },
    );
    const r = await f.inject('/open');
    expect(r.statusCode).toBe(503);
    expect(r.json()).toEqual({ mine: true, code: 'E_CIRCUIT_OPEN' });
  });

  it('a route breaker opens on 5xx answers and then answers 503 without calling the handler', async () => {
    const clock = new FakeClock();
    const payments = circuitBreaker({
      name: 'payments',
      strategy: consecutive(3),
      halfOpenAfter: '10s',
      clock,
    });
    let calls = 0;
    const f = await app(
      (f) => {
        f.post('/pay', { config: { buttress: { breaker: 'payments' } } }, async (_req, reply) => {
          calls++;
          reply.code(502);
          return { error: 'upstream' };
        });
      },
      { breakers: { payments }, clock, errors: { retryAfterJitter: 0 } },
    );
    for (let i = 0; i < 3; i++)
      expect((await f.inject({ method: 'POST', url: '/pay' })).statusCode).toBe(502);
    expect(payments.state).toBe('open');
    const rejected = await f.inject({ method: 'POST', url: '/pay' });
    expect(rejected.statusCode).toBe(503);
    expect(rejected.headers['retry-after']).toBe('10');
    expect(rejected.json()).toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    expect(calls).toBe(3);
  });

  it('a route timeout answers 504 and aborts request.buttressSignal', async () => {
    let seen: AbortSignal | undefined;
    const f = await app((f) => {
      f.get('/slow', { config: { buttress: { timeout: '50ms' } } }, async (request) => {
        seen = request.buttressSignal;
        await new Promise((resolve) => request.buttressSignal.addEventListener('abort', resolve));
        return 'late';
      });
      f.get('/plain', async (request) => String(request.buttressSignal.aborted));
    });
    const base = await f.listen({ port: 0, host: '127.0.0.1' });
    const r = await fetch(`${base}/slow`);
    expect(r.status).toBe(504);
    expect(await r.json()).toMatchObject({ status: 504, code: 'E_TIMEOUT', title: 'Gateway Timeout' });
    expect(seen?.aborted).toBe(true);
    expect(await (await fetch(`${base}/plain`)).text()).toBe('false');
  });
});

describe('health and lifecycle', () => {
  it('readiness answers 503 when a check is down, liveness still 200', async () => {
    const f = await app(() => {}, {
      health: {
        path: '/live',
        readyPath: '/readyz',
        checks: { db: () => ({ status: 'down', reason: 'gone' }) },
      },
    });
    expect((await f.inject('/live')).statusCode).toBe(200);
    const ready = await f.inject('/readyz');
    expect(ready.statusCode).toBe(503);
    expect(ready.headers['cache-control']).toBe('no-store');
    expect(ready.json()).toMatchObject({
      status: 'down',
      checks: { db: { status: 'down', reason: 'gone' } },
    });
  });

  it('closes a cache it created from options on close, never a cache it was given', async () => {
    const given = createCache();
    const f = Fastify();
    await f.register(buttress, { cache: given });
    await f.close();
    expect(await given.getOrSet('k', () => 1)).toBe(1);
    const g = Fastify();
    await g.register(buttress, { cache: { namespace: 'own' } });
    const own = g.buttress.cache!;
    await g.close();
    await expect(own.get('k')).rejects.toMatchObject({ code: 'E_CLOSED' });
  });
});
