import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express5 from 'express';
import session from 'express-session';
import express4 from 'express4';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreaker } from '../../breaker/circuit-breaker.js';
import { CircuitOpenError } from '../../breaker/errors.js';
import { consecutive } from '../../breaker/strategies/consecutive.js';
import { bulkhead } from '../../bulkhead/bulkhead.js';
import { BulkheadFullError, RateLimitedError } from '../../bulkhead/errors.js';
import { type Cache, createCache } from '../../cache/cache.js';
import { type ButtressError, TimeoutError } from '../../core/errors.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { deferred, until } from '../http/test-helpers.js';
import {
  expressSessionStore,
  healthRoutes,
  loadShedder,
  problemHandler,
  responseCache,
  routeGuard,
  signalOf,
} from './index.js';

// Every behaviour through Express for real: a listening server, supertest (and fetch for the
// bursts), under Express 5 and Express 4 (installed as `express4`).

type Express = typeof express5;
const frameworks: [string, Express][] = [
  ['Express 5', express5],
  ['Express 4', express4 as unknown as Express],
];

const servers: Server[] = [];
const caches: Cache[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
  for (const c of caches.splice(0)) await c.close();
});

async function listen(app: ReturnType<Express>): Promise<{ server: Server; url: string }> {
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function cacheWith(clock = new FakeClock()) {
  const cache = createCache({ clock, namespace: `express-${Math.random().toString(36).slice(2)}` });
  caches.push(cache);
  return { cache, clock };
}

describe.each(frameworks)('%s', (_name, express) => {
  describe('responseCache', () => {
    function app(
      options: Partial<Parameters<typeof responseCache>[0]> = {},
      handler?: express5.RequestHandler,
    ) {
      const { cache, clock } = cacheWith();
      const a = express();
      const calls = { n: 0 };
      a.get(
        '/p/:id',
        responseCache({ cache, clock, ttl: '10s', ...options }),
        handler ??
          ((req, res) => {
            calls.n++;
            res.json({ id: req.params.id, n: calls.n, lang: req.headers['accept-language'] ?? null });
          }),
      );
      a.post('/p/:id', responseCache({ cache, clock }), (_req, res) => {
        calls.n++;
        res.json({ posted: calls.n });
      });
      return { app: a, calls, cache, clock };
    }

    it('a miss runs the handler and stores the response; the next request is a hit with ETag, Age, Cache-Control', async () => {
      const { app: a, calls, clock } = app();
      const { server } = await listen(a);
      const first = await request(server).get('/p/1').expect(200);
      expect(first.body).toEqual({ id: '1', n: 1, lang: null });
      expect(first.headers.etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
      expect(first.headers['cache-control']).toBe('public, max-age=10');
      expect(first.headers['cache-status']).toBe('buttress; fwd=miss; stored');
      clock.advance(3_000);
      const second = await request(server).get('/p/1').expect(200);
      expect(second.body).toEqual(first.body);
      expect(second.headers.etag).toBe(first.headers.etag);
      expect(second.headers.age).toBe('3');
      expect(second.headers['cache-control']).toBe('public, max-age=7');
      expect(second.headers['cache-status']).toBe('buttress; hit; ttl=7');
      expect(second.headers['content-type']).toMatch(/^application\/json/);
      expect(calls.n).toBe(1);
      clock.advance(7_000);
      await request(server).get('/p/1').expect(200);
      expect(calls.n).toBe(2);
    });

    it('304 flows: a matching If-None-Match (strong, weak or *) gets 304 with no body, on hits and on the miss that refills', async () => {
      const { app: a, calls, clock } = app();
      const { server } = await listen(a);
      const { headers } = await request(server).get('/p/1').expect(200);
      const etag = headers.etag as string;
      for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
        const r = await request(server).get('/p/1').set('if-none-match', inm).expect(304);
        expect(r.text).toBe('');
        expect(r.headers.etag).toBe(etag);
        expect(r.headers['content-type']).toBeUndefined();
      }
      await request(server).get('/p/1').set('if-none-match', '"other"').expect(200);
      // Expired: the refill (same content, same strong ETag) answers the conditional with a 304.
      clock.advance(10_000);
      const refill = await request(server).get('/p/1').set('if-none-match', etag);
      expect(calls.n).toBe(2);
      // n changed, so the body and its ETag changed: a full 200 is right.
      expect(refill.status).toBe(200);
      expect(refill.headers.etag).not.toBe(etag);
      const again = await request(server)
        .get('/p/1')
        .set('if-none-match', refill.headers.etag as string);
      expect(again.status).toBe(304);
    });

    it('the refilling request gets a 304 when the new response has the ETag it holds', async () => {
      const {
        app: a,
        calls,
        clock,
      } = app({}, (req, res) => {
        calls.n++;
        res.json({ id: req.params.id });
      });
      const { server } = await listen(a);
      const { headers } = await request(server).get('/p/1').expect(200);
      clock.advance(10_000);
      await request(server)
        .get('/p/1')
        .set('if-none-match', headers.etag as string)
        .expect(304);
      expect(calls.n).toBe(2);
    });

    it('If-Modified-Since against the handler’s Last-Modified', async () => {
      const { app: a } = app({}, (_req, res) => {
        res.setHeader('last-modified', 'Tue, 01 Dec 2026 10:00:00 GMT');
        res.send('text');
      });
      const { server } = await listen(a);
      await request(server).get('/p/1').expect(200);
      await request(server).get('/p/1').set('if-modified-since', 'Tue, 01 Dec 2026 10:00:00 GMT').expect(304);
      await request(server).get('/p/1').set('if-modified-since', 'Mon, 30 Nov 2026 10:00:00 GMT').expect(200);
    });

    it('never caches a response that sets a cookie', async () => {
      const { app: a, calls } = app({}, (_req, res) => {
        calls.n++;
        res.cookie('sid', `s${calls.n}`).json({ n: calls.n });
      });
      const { server } = await listen(a);
      const one = await request(server).get('/p/1').expect(200);
      const two = await request(server).get('/p/1').expect(200);
      expect(one.headers['set-cookie']).toEqual(['sid=s1; Path=/']);
      expect(two.headers['set-cookie']).toEqual(['sid=s2; Path=/']);
      expect(two.body).toEqual({ n: 2 });
      expect(two.headers['cache-control']).toBeUndefined();
      expect(calls.n).toBe(2);
    });

    it('never caches a response whose cookie express-session adds as the headers go out', async () => {
      const { cache, clock } = cacheWith();
      const a = express();
      const calls = { n: 0 };
      // saveUninitialized: every new visitor gets a session, its Set-Cookie written at writeHead.
      a.use(session({ secret: 'test', resave: false, saveUninitialized: true }));
      a.get('/home', responseCache({ cache, clock, ttl: '10s' }), (_req, res) => {
        calls.n++;
        res.json({ n: calls.n });
      });
      const { server } = await listen(a);
      const one = await request(server).get('/home').expect(200);
      const two = await request(server).get('/home').expect(200);
      expect(one.headers['set-cookie']).toHaveLength(1);
      expect(two.headers['set-cookie']).toHaveLength(1);
      expect(two.headers['set-cookie']).not.toEqual(one.headers['set-cookie']);
      // Neither response says a shared cache may keep it, and the handler ran for each.
      for (const r of [one, two]) {
        expect(r.headers['cache-control'] ?? '').not.toMatch(/public|max-age|s-maxage/);
        expect(r.headers.etag).toBeUndefined();
      }
      expect(two.body).toEqual({ n: 2 });
      expect(calls.n).toBe(2);
    });

    it('never caches a 206, nor answers or fills from a request with Range', async () => {
      const { app: a, calls } = app({}, (req, res) => {
        calls.n++;
        const body = `whole body ${calls.n}`;
        const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        if (range === null && req.query.part === undefined) {
          res.send(body);
          return;
        }
        const [from, to] = range === null ? [0, 4] : [Number(range[1]), Number(range[2])];
        res.status(206).setHeader('content-range', `bytes ${from}-${to}/${body.length}`);
        res.send(body.slice(from, to + 1));
      });
      const { server } = await listen(a);
      const part = await request(server).get('/p/1').set('range', 'bytes=0-4').expect(206);
      expect(part.text).toBe('whole');
      // The 206 did not fill the entry of the whole representation.
      const whole = await request(server).get('/p/1').expect(200);
      expect(whole.text).toBe('whole body 2');
      expect(calls.n).toBe(2);
      // With an entry present, a range request is not answered with the whole body from it.
      const again = await request(server).get('/p/1').set('range', 'bytes=6-9').expect(206);
      expect(again.text).toBe('body');
      expect(calls.n).toBe(3);
      // A 206 is never cached, even without a Range header.
      await request(server).get('/p/2?part=1').expect(206);
      await request(server).get('/p/2?part=1').expect(206);
      expect(calls.n).toBe(5);
      expect((await request(server).get('/p/1')).text).toBe('whole body 2');
    });

    it('never caches Cache-Control private or no-store, non-2xx, POST, or a request with Authorization', async () => {
      let cc = 'private';
      let status = 200;
      const { app: a, calls } = app({}, (_req, res) => {
        calls.n++;
        res.setHeader('cache-control', cc);
        res.status(status).json({ n: calls.n });
      });
      const { server } = await listen(a);
      await request(server).get('/p/1');
      await request(server).get('/p/1');
      expect(calls.n).toBe(2);
      cc = 'no-store';
      await request(server).get('/p/2');
      await request(server).get('/p/2');
      expect(calls.n).toBe(4);
      cc = 'public, max-age=60';
      status = 404;
      await request(server).get('/p/3').expect(404);
      await request(server).get('/p/3').expect(404);
      expect(calls.n).toBe(6);
      status = 200;
      await request(server).get('/p/4').set('authorization', 'Bearer a').expect(200);
      await request(server).get('/p/4').set('authorization', 'Bearer b').expect(200);
      expect(calls.n).toBe(8);
      await request(server).post('/p/5').expect(200);
      await request(server).post('/p/5').expect(200);
      expect(calls.n).toBe(10);
    });

    it('the handler’s own max-age sets the TTL', async () => {
      const {
        app: a,
        calls,
        clock,
      } = app({}, (_req, res) => {
        calls.n++;
        res.setHeader('cache-control', 'public, max-age=2');
        res.json({ n: calls.n });
      });
      const { server } = await listen(a);
      await request(server).get('/p/1');
      clock.advance(1_500);
      const hit = await request(server).get('/p/1');
      expect(hit.body).toEqual({ n: 1 });
      expect(hit.headers['cache-control']).toBe('public, max-age=2');
      clock.advance(600);
      expect((await request(server).get('/p/1')).body).toEqual({ n: 2 });
    });

    it('Vary is respected: one entry per value of a varied header, Vary sent; an unlisted Vary is not cached', async () => {
      const { app: a, calls } = app({ vary: ['accept-language'] });
      const { server } = await listen(a);
      const en = await request(server).get('/p/1').set('accept-language', 'en');
      const fr = await request(server).get('/p/1').set('accept-language', 'fr');
      expect(en.body.lang).toBe('en');
      expect(fr.body.lang).toBe('fr');
      expect(en.headers.vary).toBe('accept-language');
      expect((await request(server).get('/p/1').set('accept-language', 'en')).body).toEqual(en.body);
      expect((await request(server).get('/p/1').set('accept-language', 'fr')).body).toEqual(fr.body);
      expect(calls.n).toBe(2);

      const other = app({}, (_req, res) => {
        other.calls.n++;
        res.setHeader('vary', 'accept-encoding');
        res.json({ n: other.calls.n });
      });
      const { server: s2 } = await listen(other.app);
      await request(s2).get('/p/1');
      await request(s2).get('/p/1');
      expect(other.calls.n).toBe(2);
    });

    it('the key ignores query parameter order, keeps their values apart', async () => {
      const { app: a, calls } = app();
      const { server } = await listen(a);
      await request(server).get('/p/1?a=1&b=2');
      await request(server).get('/p/1?b=2&a=1');
      expect(calls.n).toBe(1);
      await request(server).get('/p/1?a=2&b=2');
      expect(calls.n).toBe(2);
    });

    it('a HEAD is answered from the GET entry, with its headers and no body', async () => {
      const { app: a, calls } = app();
      const { server } = await listen(a);
      const get = await request(server).get('/p/1');
      const head = await request(server).head('/p/1').expect(200);
      expect(head.headers.etag).toBe(get.headers.etag);
      expect(head.headers['content-length']).toBe(String(Buffer.byteLength(JSON.stringify(get.body))));
      expect(head.text).toBeUndefined();
      expect(calls.n).toBe(1);
    });

    it('100 concurrent misses for one URL run the handler once and all get its response', async () => {
      const arrived = { n: 0 };
      const gate = deferred();
      const { cache, clock } = cacheWith();
      const a = express();
      let runs = 0;
      a.use((_req, _res, next) => {
        arrived.n++;
        next();
      });
      a.get('/slow', responseCache({ cache, clock, ttl: '1m' }), async (_req, res) => {
        runs++;
        await gate.promise;
        res.json({ runs });
      });
      const { url } = await listen(a);
      const all = Array.from({ length: 100 }, () =>
        fetch(`${url}/slow`).then(async (r) => [r.status, await r.text()]),
      );
      await until(() => arrived.n === 100, 'all 100 requests to arrive');
      // Every request has reached the cache and is waiting on the one load.
      await new Promise((r) => setTimeout(r, 20));
      gate.resolve();
      const results = await Promise.all(all);
      expect(runs).toBe(1);
      expect(new Set(results.map(([s, b]) => `${s} ${b}`))).toEqual(new Set(['200 {"runs":1}']));
    });

    it('stale-while-revalidate: the request finding the entry stale refreshes it; those arriving meanwhile get the stale copy at once', async () => {
      const gate = deferred();
      let runs = 0;
      let hold = false;
      const { app: a, clock } = app({ ttl: '10s', staleWhileRevalidate: '1m' }, async (_req, res) => {
        runs++;
        if (hold) await gate.promise;
        res.json({ runs });
      });
      const { server, url } = await listen(a);
      const first = await request(server).get('/p/1');
      expect(first.headers['cache-control']).toBe('public, max-age=10, stale-while-revalidate=60');
      clock.advance(15_000);
      hold = true;
      const refreshing = fetch(`${url}/p/1`).then((r) => r.json());
      await until(() => runs === 2, 'the refresh to start');
      const stale = await request(server).get('/p/1').expect(200);
      expect(stale.body).toEqual({ runs: 1 });
      expect(stale.headers.age).toBe('15');
      gate.resolve();
      expect(await refreshing).toEqual({ runs: 2 });
      expect((await request(server).get('/p/1')).body).toEqual({ runs: 2 });
      expect(runs).toBe(2);
    });

    it('a 5xx is not cached; while it fails, the stale copy stands in for the requests waiting on it', async () => {
      let fail = false;
      const gate = deferred();
      let runs = 0;
      const { app: a, clock } = app({ ttl: '10s', staleWhileRevalidate: '1m' }, async (_req, res) => {
        runs++;
        if (fail) {
          await gate.promise;
          res.status(503).json({ down: true });
        } else res.json({ runs });
      });
      const { url } = await listen(a);
      expect(await (await fetch(`${url}/p/1`)).json()).toEqual({ runs: 1 });
      clock.advance(20_000);
      fail = true;
      const leader = fetch(`${url}/p/1`);
      await until(() => runs === 2, 'the refresh to start');
      const waiting = fetch(`${url}/p/1`);
      gate.resolve();
      expect((await leader).status).toBe(503);
      const w = await waiting;
      expect(w.status).toBe(200);
      expect(await w.json()).toEqual({ runs: 1 });
    });

    it('a streamed response is sent whole and not cached; a body over maxBodyBytes is not cached', async () => {
      const { cache, clock } = cacheWith();
      const a = express();
      let runs = 0;
      a.get('/stream', responseCache({ cache, clock }), (_req, res) => {
        runs++;
        res.write('part1,');
        res.end('part2');
      });
      a.get('/big', responseCache({ cache, clock, maxBodyBytes: 10 }), (_req, res) => {
        runs++;
        res.send('x'.repeat(11));
      });
      const { server } = await listen(a);
      expect((await request(server).get('/stream')).text).toBe('part1,part2');
      expect((await request(server).get('/stream')).text).toBe('part1,part2');
      expect(runs).toBe(2);
      await request(server).get('/big');
      await request(server).get('/big');
      expect(runs).toBe(4);
    });

    it('validates its options', () => {
      const { cache } = cacheWith();
      expect(() => responseCache({ cache, ttl: -1 as never })).toThrow(/responseCache\.ttl/);
      expect(() => responseCache({ cache: {} as Cache })).toThrow(/responseCache\.cache/);
      expect(() => responseCache({ cache, vary: ['bad header'] })).toThrow(/responseCache\.vary/);
    });
  });

  describe('loadShedder', () => {
    it('sheds a burst over the limit with 503, Retry-After and a problem body; health routes stay exempt', async () => {
      const limiter = bulkhead({ limit: 2, queue: 1 });
      const gate = deferred();
      let entered = 0;
      const a = express();
      a.use(loadShedder({ limiter }));
      a.use(healthRoutes());
      a.get('/work', async (_req, res) => {
        entered++;
        await gate.promise;
        res.json({ ok: true });
      });
      const { url } = await listen(a);
      const burst = Array.from({ length: 10 }, () => fetch(`${url}/work`));
      await until(
        () => entered === 2 && limiter.queued === 1 && limiter.stats().totalRejected === 7,
        'the burst to be shed',
      );
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok' });
      gate.resolve();
      const responses = await Promise.all(burst);
      const shed = responses.filter((r) => r.status === 503);
      expect(shed).toHaveLength(7);
      expect(responses.filter((r) => r.status === 200)).toHaveLength(3);
      for (const r of shed) {
        expect(r.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
        expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(await r.json()).toMatchObject({
          status: 503,
          code: 'E_BULKHEAD_FULL',
          title: 'Service Unavailable',
          instance: '/work',
        });
      }
      expect(limiter.executing).toBe(0);
    });

    it("onReject 'next' hands the rejection to the error handler", async () => {
      const limiter = bulkhead({ limit: 1 });
      const gate = deferred();
      const a = express();
      a.use(loadShedder({ limiter, onReject: 'next' }));
      a.get('/work', async (_req, res) => {
        await gate.promise;
        res.send('ok');
      });
      a.use((err: unknown, _req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
        res.status(599).send((err as ButtressError).code);
      });
      const { url } = await listen(a);
      const first = fetch(`${url}/work`);
      await until(() => limiter.executing === 1, 'the slot to be taken');
      const second = await fetch(`${url}/work`);
      expect(second.status).toBe(599);
      expect(await second.text()).toBe('E_BULKHEAD_FULL');
      gate.resolve();
      expect((await first).status).toBe(200);
    });
  });

  describe('routeGuard', () => {
    it('a breaker opened by 5xx answers 503 with Retry-After without running the handler', async () => {
      const clock = new FakeClock();
      const breaker = circuitBreaker({ strategy: consecutive(2), halfOpenAfter: '30s', clock });
      let runs = 0;
      const a = express();
      a.get('/pay', routeGuard({ breaker }), (_req, res) => {
        runs++;
        res.status(502).send('upstream down');
      });
      const { server } = await listen(a);
      await request(server).get('/pay').expect(502);
      await request(server).get('/pay').expect(502);
      expect(breaker.state).toBe('open');
      const r = await request(server).get('/pay').expect(503);
      expect(runs).toBe(2);
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(30);
      expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(45);
      expect(r.body).toMatchObject({ code: 'E_CIRCUIT_OPEN', status: 503 });
    });

    it('past the timeout: 504 at once, the handler’s signal aborts, its late answer is dropped', async () => {
      const clock = new FakeClock();
      let signal: AbortSignal | undefined;
      const late = deferred();
      const answered = deferred();
      const a = express();
      a.get('/slow', routeGuard({ timeout: '2s', clock }), async (req, res) => {
        signal = signalOf(req);
        await late.promise;
        res.json({ late: true });
        answered.resolve();
      });
      const { url } = await listen(a);
      const pending = fetch(`${url}/slow`);
      await until(() => signal !== undefined, 'the handler to start');
      expect(signal!.aborted).toBe(false);
      await clock.advanceAsync(2_000);
      const r = await pending;
      expect(r.status).toBe(504);
      expect(await r.json()).toMatchObject({ code: 'E_TIMEOUT', status: 504 });
      expect(signal!.aborted).toBe(true);
      late.resolve();
      await answered.promise; // the late res.json is a no-op, not a crash
    });

    it('validates its options', () => {
      expect(() => routeGuard({})).toThrow(/routeGuard/);
      expect(() => routeGuard({ breaker: {} as never })).toThrow(/routeGuard\.breaker/);
      expect(() => routeGuard({ timeout: 'soon' as never })).toThrow(/routeGuard\.timeout/);
    });
  });

  describe('problemHandler', () => {
    it('maps buttress errors to status, Retry-After and an RFC 9457 body; other errors go on', async () => {
      const a = express();
      const errors: Record<string, unknown> = {
        open: new CircuitOpenError('open', 12_000, 'payments'),
        full: new BulkheadFullError('full', 300, 10),
        rate: new RateLimitedError('rate', 'tenant', 2_500),
        timeout: new TimeoutError(2000),
        plain: new Error('secret internals'),
      };
      a.get('/e/:kind', (req, _res, next) => next(errors[req.params.kind as string]));
      a.use(problemHandler({ retryAfterJitter: 0 }));
      a.use((err: Error, _req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
        res.status(500).send(`fallback: ${err.message}`);
      });
      const { server } = await listen(a);
      const open = await request(server).get('/e/open').expect(503);
      expect(open.headers['retry-after']).toBe('12');
      expect(open.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(open.body).toMatchObject({
        type: 'about:blank',
        title: 'Service Unavailable',
        status: 503,
        code: 'E_CIRCUIT_OPEN',
        retryAfter: 12,
        instance: '/e/open',
      });
      expect((await request(server).get('/e/full').expect(503)).headers['retry-after']).toBe('1');
      const rate = await request(server).get('/e/rate').expect(429);
      expect(rate.headers['retry-after']).toBe('3');
      expect(rate.body.code).toBe('E_RATE_LIMITED');
      const timeout = await request(server).get('/e/timeout').expect(504);
      expect(timeout.headers['retry-after']).toBeUndefined();
      expect(timeout.body.code).toBe('E_TIMEOUT');
      expect((await request(server).get('/e/plain').expect(500)).text).toBe('fallback: secret internals');
    });

    it('with all: every error is a problem, without its message', async () => {
      const a = express();
      a.get('/boom', () => {
        throw new Error('secret internals');
      });
      a.use(problemHandler({ all: true }));
      const { server } = await listen(a);
      const r = await request(server).get('/boom').expect(500);
      expect(r.body).toEqual({
        type: 'about:blank',
        title: 'Internal Server Error',
        status: 500,
        detail: 'The server could not complete the request.',
        instance: '/boom',
      });
    });
  });

  describe('healthRoutes', () => {
    it('liveness is 200 without touching anything; readiness reports each check and is 503 when one is down', async () => {
      const clock = new FakeClock();
      const payments = circuitBreaker({ name: 'payments', clock });
      let down = false;
      const a = express();
      a.use(
        healthRoutes({
          breakers: { payments },
          checks: {
            db: () => {
              if (down) throw new Error('no connection');
              return { status: 'ok' };
            },
          },
          clock,
        }),
      );
      const { server } = await listen(a);
      const live = await request(server).get('/health').expect(200);
      expect(live.body.status).toBe('ok');
      expect(live.headers['cache-control']).toBe('no-store');
      const ready = await request(server).get('/ready').expect(200);
      expect(ready.body.status).toBe('ok');
      expect(Object.keys(ready.body.checks)).toEqual(['breakers', 'db']);
      payments.isolate();
      expect((await request(server).get('/ready').expect(200)).body.status).toBe('degraded');
      down = true;
      const failing = await request(server).get('/ready').expect(503);
      expect(failing.body.checks.db).toEqual({ status: 'down', reason: 'no connection' });
      await request(server).get('/other').expect(404);
    });
  });

  describe('expressSessionStore', () => {
    it('keeps express-session sessions in the buttress cache', async () => {
      const { cache } = cacheWith();
      const store = expressSessionStore(session, { cache });
      const a = express();
      a.use(session({ store, secret: 'test', resave: false, saveUninitialized: false }));
      a.post('/login', (req, res) => {
        (req.session as unknown as { user: string }).user = 'ada';
        res.send('ok');
      });
      a.get('/me', (req, res) => {
        res.json({ user: (req.session as unknown as { user?: string }).user ?? null });
      });
      a.post('/logout', (req, res) => req.session.destroy(() => res.send('bye')));
      const { server } = await listen(a);
      const login = await request(server).post('/login').expect(200);
      const cookie = login.headers['set-cookie'] as unknown as string[];
      expect(cookie[0]).toMatch(/^connect\.sid=/);
      expect((await request(server).get('/me').set('Cookie', cookie)).body).toEqual({ user: 'ada' });
      expect((await request(server).get('/me')).body).toEqual({ user: null });
      await request(server).post('/logout').set('Cookie', cookie).expect(200);
      expect((await request(server).get('/me').set('Cookie', cookie)).body).toEqual({ user: null });
    });

    it('a touch racing a logout does not bring the destroyed session back', async () => {
      const { cache } = cacheWith();
      // The store's reads can be held, to put the logout between a touch's read and its write.
      let armed = false;
      let held = false;
      const release = deferred();
      const holding = (c: Cache): Cache =>
        new Proxy(c, {
          get(target, prop) {
            if (prop === 'namespace') return (name: string) => holding(target.namespace(name));
            if (prop === 'get')
              return async (key: string, options?: never) => {
                const value = await target.get(key, options);
                if (armed) {
                  armed = false;
                  held = true;
                  await release.promise;
                }
                return value;
              };
            const v = Reflect.get(target, prop) as unknown;
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
      const store = expressSessionStore(session, { cache: holding(cache) });
      const a = express();
      a.use(session({ store, secret: 'test', resave: false, saveUninitialized: false }));
      const inHandler = deferred();
      const answer = deferred();
      a.post('/login', (req, res) => {
        (req.session as unknown as { user: string }).user = 'ada';
        res.send('ok');
      });
      a.get('/slow', async (req, res) => {
        inHandler.resolve();
        await answer.promise;
        res.json({ user: (req.session as unknown as { user?: string }).user ?? null });
      });
      a.get('/me', (req, res) => {
        res.json({ user: (req.session as unknown as { user?: string }).user ?? null });
      });
      a.post('/logout', (req, res) => req.session.destroy(() => res.send('bye')));
      const { server, url } = await listen(a);
      const login = await request(server).post('/login').expect(200);
      const cookie = login.headers['set-cookie'] as unknown as string[];
      const slow = fetch(`${url}/slow`, { headers: { cookie: cookie[0]!.split(';')[0]! } });
      await inHandler.promise;
      // The unmodified session is touched when /slow ends: hold the touch's read.
      armed = true;
      answer.resolve();
      await until(() => held, 'the touch to read the session');
      await request(server).post('/logout').set('Cookie', cookie).expect(200);
      release.resolve();
      expect(await (await slow).json()).toEqual({ user: 'ada' });
      expect((await request(server).get('/me').set('Cookie', cookie)).body).toEqual({ user: null });
    });

    it('needs express-session', () => {
      const { cache } = cacheWith();
      expect(() => expressSessionStore({} as never, { cache })).toThrow(/session/);
    });
  });

  it.each([
    ['no guard', undefined],
    ['a route guard with a long timeout', 60_000],
  ])('signalOf aborts when the client goes away (%s)', async (_case, deadline) => {
    let signal: AbortSignal | undefined;
    const a = express();
    const guard: express5.RequestHandler[] =
      deadline === undefined ? [] : [routeGuard({ timeout: deadline, limiter: bulkhead({ limit: 5 }) })];
    a.get('/hang', ...guard, (req) => {
      signal = signalOf(req);
    });
    const { url } = await listen(a);
    const controller = new AbortController();
    const pending = fetch(`${url}/hang`, { signal: controller.signal }).catch(() => 'aborted');
    await until(() => signal !== undefined, 'the handler');
    controller.abort();
    expect(await pending).toBe('aborted');
    await until(() => signal!.aborted, 'the signal to abort');
  });
});
