import { describe, expect, it } from 'vitest';
import { createCache } from '../../cache/cache.js';
import { FakeClock, flushMicrotasks } from '../../testing/fake-clock.js';
import {
  type CachedResponse,
  type Capture,
  HIT,
  LEAD,
  type LookupOutcome,
  PASS,
  type ResponseHeaders,
  RouteCache,
  resolveRouteCache,
  stripConditionals,
} from './response-cache.js';

function setup(options: Parameters<typeof resolveRouteCache>[0] = {}) {
  const clock = new FakeClock();
  const cache = createCache({ clock, namespace: 'http-test' });
  const route = new RouteCache(cache, resolveRouteCache(options, undefined, 'cache'), clock);
  return { clock, cache, route };
}

function headersOf(h: Record<string, string | string[]>): ResponseHeaders {
  return { get: (n) => h[n], names: () => Object.keys(h) };
}

function lookup(
  route: RouteCache,
  key: string,
  head = false,
): Promise<[LookupOutcome, CachedResponse | Capture | undefined]> {
  return new Promise((resolve) => route.lookup(key, head, (o, v) => resolve([o, v])));
}

describe('RouteCache', () => {
  it('one request leads, its response fills the entry, the next ones hit', async () => {
    const { route } = setup({ ttl: '10s' });
    const key = route.key('GET', '/p?b=1&a=2', {})!;
    const [outcome, capture] = await lookup(route, key);
    expect(outcome).toBe(LEAD);
    const c = capture as Capture;
    const decision = c.build(
      200,
      headersOf({ 'content-type': 'application/json', 'x-trace': 'a' }),
      '{"ok":true}',
    );
    expect(decision.entry).toBeDefined();
    expect(decision.headers).toMatchObject({
      'cache-control': 'public, max-age=10',
      'cache-status': 'buttress; fwd=miss; stored',
    });
    expect(decision.headers.etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    c.end(headersOf({}));
    const [o2, entry] = await lookup(route, key);
    expect(o2).toBe(HIT);
    expect((entry as CachedResponse).headers).toEqual({ 'content-type': 'application/json', 'x-trace': 'a' });
    expect(Buffer.from((entry as CachedResponse).body).toString()).toBe('{"ok":true}');
  });

  it('100 concurrent lookups of one key have one leader; the others get its entry', async () => {
    const { route } = setup();
    const key = route.key('GET', '/hot', {})!;
    const outcomes = Array.from({ length: 100 }, () => lookup(route, key));
    await flushMicrotasks();
    const first = await outcomes[0]!;
    expect(first[0]).toBe(LEAD);
    const c = first[1] as Capture;
    c.build(200, headersOf({}), 'hot');
    c.end();
    const rest = await Promise.all(outcomes.slice(1));
    expect(rest.every(([o]) => o === HIT)).toBe(true);
  });

  it('a response that sets a cookie, says private or no-store, or is not 2xx is not kept; waiters pass', async () => {
    for (const [status, headers] of [
      [200, { 'set-cookie': 'sid=1' }],
      [200, { 'cache-control': 'private, max-age=60' }],
      [200, { 'cache-control': 'no-store' }],
      [404, {}],
      [304, {}],
    ] as const) {
      const { route } = setup();
      const key = route.key('GET', '/x', {})!;
      const lead = lookup(route, key);
      const waiter = lookup(route, key);
      const [, c] = await lead;
      const decision = (c as Capture).build(status, headersOf(headers as Record<string, string>), 'body');
      expect(decision.entry).toBeUndefined();
      expect(decision.headers).toEqual({ 'cache-status': 'buttress; fwd=miss' });
      (c as Capture).end();
      expect((await waiter)[0]).toBe(PASS);
      expect((await lookup(route, key))[0]).toBe(LEAD);
    }
  });

  it('a cookie set after build (a late hook) still vetoes the entry', async () => {
    const { route } = setup();
    const key = route.key('GET', '/x', {})!;
    const [, c] = await lookup(route, key);
    expect((c as Capture).build(200, headersOf({}), 'b').entry).toBeDefined();
    (c as Capture).end(headersOf({ 'set-cookie': ['a=1'] }));
    await flushMicrotasks();
    expect((await lookup(route, key))[0]).toBe(LEAD);
  });

  it("the response's own max-age sets the TTL; max-age=0 is not kept", async () => {
    const { route, clock } = setup({ ttl: '1h' });
    const key = route.key('GET', '/x', {})!;
    const [, c] = await lookup(route, key);
    const d = (c as Capture).build(200, headersOf({ 'cache-control': 'public, max-age=5' }), 'b');
    expect(d.entry!.ttl).toBe(5000);
    expect(d.headers['cache-control']).toBeUndefined();
    (c as Capture).end();
    expect((await lookup(route, key))[0]).toBe(HIT);
    clock.advance(5001);
    const [o, c2] = await lookup(route, key);
    expect(o).toBe(LEAD);
    expect(
      (c2 as Capture).build(200, headersOf({ 'cache-control': 'max-age=0' }), 'b').entry,
    ).toBeUndefined();
  });

  it('a response varying on a header the key does not cover is not kept', async () => {
    const { route } = setup({ vary: ['Accept-Language'] });
    const key = route.key('GET', '/x', { 'accept-language': 'fr' })!;
    const [, c] = await lookup(route, key);
    expect((c as Capture).build(200, headersOf({ vary: 'accept-language' }), 'b').entry?.headers.vary).toBe(
      'accept-language',
    );
    const { route: r2 } = setup({ vary: ['accept-language'] });
    const [, c2] = await lookup(r2, key);
    expect((c2 as Capture).build(200, headersOf({ vary: 'cookie' }), 'b').entry).toBeUndefined();
  });

  it('hits write ETag, Age and Cache-Control; a matching If-None-Match answers 304 with no body headers', async () => {
    const { route, clock } = setup({ ttl: '60s', staleWhileRevalidate: '30s' });
    const key = route.key('GET', '/x', {})!;
    const [, c] = await lookup(route, key);
    const d = (c as Capture).build(
      200,
      headersOf({ 'content-type': 'text/plain', 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT' }),
      'b',
    );
    (c as Capture).end();
    await flushMicrotasks();
    clock.advance(12_500);
    const [, e] = await lookup(route, key);
    const entry = e as CachedResponse;
    const set: Record<string, unknown> = {};
    expect(route.writeHit(entry, undefined, undefined, (n, v) => (set[n] = v))).toBe(200);
    expect(set).toMatchObject({
      'content-type': 'text/plain',
      etag: d.entry!.etag,
      age: '12',
      'cache-control': 'public, max-age=47, stale-while-revalidate=30',
      'cache-status': 'buttress; hit; ttl=47',
    });
    const s304: Record<string, unknown> = {};
    expect(route.writeHit(entry, `W/${entry.etag}`, undefined, (n, v) => (s304[n] = v))).toBe(304);
    expect(s304['content-type']).toBeUndefined();
    expect(s304.etag).toBe(entry.etag);
    expect(route.writeHit(entry, undefined, 'Wed, 21 Oct 2015 07:28:00 GMT', () => {})).toBe(304);
    expect(route.writeHit(entry, '"other"', 'Wed, 21 Oct 2015 07:28:00 GMT', () => {})).toBe(200);
  });

  it('the leading request gets its 304 from the stripped conditionals', async () => {
    const { route } = setup();
    const key = route.key('GET', '/x', {})!;
    const [, c1] = await lookup(route, key);
    const etag = (c1 as Capture).build(200, headersOf({}), 'same').entry!.etag;
    (c1 as Capture).end();
    await route.cache.clear();
    const headers: Record<string, string | undefined> = { 'if-none-match': etag };
    const [, c2] = await lookup(route, key);
    (c2 as Capture).conditionals = stripConditionals(headers);
    expect(headers['if-none-match']).toBeUndefined();
    expect((c2 as Capture).build(200, headersOf({}), 'same').notModified).toBe(true);
  });

  it('stale-while-revalidate: while one request regenerates, the others get the stale entry', async () => {
    const { route, clock } = setup({ ttl: '1s', staleWhileRevalidate: '1m' });
    const key = route.key('GET', '/x', {})!;
    const [, c] = await lookup(route, key);
    (c as Capture).build(200, headersOf({}), 'v1');
    (c as Capture).end();
    await flushMicrotasks();
    clock.advance(2000);
    const [o, lead] = await lookup(route, key);
    expect(o).toBe(LEAD);
    expect(Buffer.from((lead as Capture).stale!.body).toString()).toBe('v1');
    const [o2, stale] = await lookup(route, key);
    expect(o2).toBe(HIT);
    expect(Buffer.from((stale as CachedResponse).body).toString()).toBe('v1');
    const set: Record<string, unknown> = {};
    route.writeHit(stale as CachedResponse, undefined, undefined, (n, v) => (set[n] = v));
    expect(set['cache-status']).toBe('buttress; hit; ttl=-1');
    expect(set['cache-control']).toBe('public, max-age=0, stale-while-revalidate=60');
    (lead as Capture).build(200, headersOf({}), 'v2');
    (lead as Capture).end();
    await flushMicrotasks();
    const [, fresh] = await lookup(route, key);
    expect(Buffer.from((fresh as CachedResponse).body).toString()).toBe('v2');
  });

  it('a 5xx from the leader serves waiters the stale copy (stale-if-error) or lets them pass', async () => {
    const { route, clock } = setup({ ttl: '1s', staleWhileRevalidate: '1m' });
    const key = route.key('GET', '/x', {})!;
    const [, c] = await lookup(route, key);
    (c as Capture).build(200, headersOf({}), 'v1');
    (c as Capture).end();
    await flushMicrotasks();
    clock.advance(2000);
    const [, lead] = await lookup(route, key);
    (lead as Capture).build(503, headersOf({}), 'down');
    (lead as Capture).end();
    await flushMicrotasks();
    const [o, v] = await lookup(route, key);
    expect(o).toBe(HIT);
    expect(Buffer.from((v as CachedResponse).body).toString()).toBe('v1');

    const fresh = setup();
    const k2 = fresh.route.key('GET', '/y', {})!;
    const l = lookup(fresh.route, k2);
    const w = lookup(fresh.route, k2);
    const [, cap] = await l;
    (cap as Capture).build(500, headersOf({}), 'x');
    (cap as Capture).end();
    expect((await w)[0]).toBe(PASS);
  });

  it('HEAD is answered from the GET entry and never leads', async () => {
    const { route } = setup();
    const key = route.key('HEAD', '/x', {})!;
    expect(key).toBe(route.key('GET', '/x', {}));
    expect((await lookup(route, key, true))[0]).toBe(PASS);
    const [, c] = await lookup(route, key);
    (c as Capture).build(200, headersOf({}), 'b');
    (c as Capture).end();
    await flushMicrotasks();
    expect((await lookup(route, key, true))[0]).toBe(HIT);
  });

  it('requests that must not use the cache get no key', () => {
    const { route } = setup();
    expect(route.key('POST', '/x', {})).toBeUndefined();
    expect(route.key('GET', '/x', { authorization: 'Bearer a' })).toBeUndefined();
    expect(
      setup({ vary: ['authorization'] }).route.key('GET', '/x', { authorization: 'Bearer a' }),
    ).toContain('Bearer a');
    expect(setup({ authorized: true }).route.key('GET', '/x', { authorization: 'Bearer a' })).toBe('GET /x');
    expect(
      setup({ key: (r) => (r.url === '/skip' ? undefined : `k:${r.url}`) }).route.key('GET', '/skip', {}),
    ).toBeUndefined();
  });

  it('bodies over maxBodyBytes and streamed bodies are not kept', async () => {
    const { route } = setup({ maxBodyBytes: 3 });
    const [, c] = await lookup(route, route.key('GET', '/x', {})!);
    expect((c as Capture).build(200, headersOf({}), 'four').entry).toBeUndefined();
    const [, c2] = await lookup(setup().route, 'k');
    expect((c2 as Capture).build(200, headersOf({}), undefined).entry).toBeUndefined();
  });

  it('validates its options, naming them', () => {
    expect(() => resolveRouteCache({ ttl: -1 } as never, undefined, 'cache')).toThrow(/cache\.ttl/);
    expect(() => resolveRouteCache({ vary: ['bad header'] }, undefined, 'cache')).toThrow(/cache\.vary\[0\]/);
    expect(() => resolveRouteCache({ vary: 'accept' as never }, undefined, 'cache')).toThrow(/cache\.vary/);
    expect(() => resolveRouteCache({ tags: [''] }, undefined, 'cache')).toThrow(/cache\.tags/);
    expect(() => resolveRouteCache({ ttll: 1 } as never, undefined, 'cache')).toThrow(/cache\.ttll/);
    const d = resolveRouteCache({ ttl: '5s', vary: ['accept'] }, undefined, 'defaults');
    expect(resolveRouteCache(true, d, 'cache')).toMatchObject({ ttl: 5000, vary: ['accept'] });
    expect(resolveRouteCache({ staleWhileRevalidate: false }, d, 'cache').swr).toBe(0);
  });
});
