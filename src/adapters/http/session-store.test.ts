import { describe, expect, it } from 'vitest';
import { createCache } from '../../cache/cache.js';
import { FakeClock, flushMicrotasks } from '../../testing/fake-clock.js';
import { CacheSessionStore } from './session-store.js';

const call = <T>(fn: (cb: (err: unknown, value?: T) => void) => void) =>
  new Promise<T | undefined>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));

describe('CacheSessionStore', () => {
  it('keeps a session until its cookie expires, and returns a fresh copy on each get', async () => {
    const clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'));
    const cache = createCache({ clock });
    const store = new CacheSessionStore({ cache, clock });
    const session = { cookie: { expires: new Date(clock.now() + 60_000).toISOString() }, user: { id: 1 } };
    await call((cb) => store.set('s1', session, cb));
    const a = await call<typeof session>((cb) => store.get('s1', cb));
    a!.user.id = 2;
    const b = await call<typeof session>((cb) => store.get('s1', cb));
    expect(b!.user.id).toBe(1);
    clock.advance(60_001);
    expect(await call((cb) => store.get('s1', cb))).toBeUndefined();
  });

  it('a max age, or the store ttl for browser-session cookies, bounds the life; touch extends it', async () => {
    const clock = new FakeClock();
    const store = new CacheSessionStore({ cache: createCache({ clock }), clock, ttl: '10s' });
    await call((cb) => store.set('m', { cookie: { maxAge: 5000 } }, cb));
    await call((cb) => store.set('t', { cookie: {} }, cb));
    clock.advance(5001);
    expect(await call((cb) => store.get('m', cb))).toBeUndefined();
    expect(await call((cb) => store.get('t', cb))).toEqual({ cookie: {} });
    await call((cb) => store.touch('t', { cookie: { maxAge: 20_000 } }, cb));
    clock.advance(15_000);
    expect(await call((cb) => store.get('t', cb))).toBeDefined();
  });

  it('touch keeps what the store holds, not the (older) session it is handed', async () => {
    const clock = new FakeClock();
    const store = new CacheSessionStore({ cache: createCache({ clock }), clock });
    await call((cb) => store.set('s', { cookie: { maxAge: 1000 }, cart: 2 } as never, cb));
    await call((cb) => store.touch('s', { cookie: { maxAge: 60_000 }, cart: 1 } as never, cb));
    clock.advance(30_000);
    expect(await call((cb) => store.get('s', cb))).toMatchObject({ cart: 2 });
    await call((cb) => store.touch('gone', { cookie: { maxAge: 60_000 } }, cb));
    expect(await call((cb) => store.get('gone', cb))).toBeUndefined();
  });

  it('an already expired session is destroyed, not written', async () => {
    const clock = new FakeClock();
    const store = new CacheSessionStore({ cache: createCache({ clock }), clock });
    await call((cb) => store.set('x', { cookie: {} }, cb));
    await call((cb) => store.set('x', { cookie: { expires: new Date(clock.now() - 1) } }, cb));
    expect(await call((cb) => store.get('x', cb))).toBeUndefined();
  });

  it('destroy and clear remove sessions; disableTouch skips the write', async () => {
    const clock = new FakeClock();
    const cache = createCache({ clock });
    const store = new CacheSessionStore({ cache, clock, disableTouch: true, prefix: 'web' });
    await call((cb) => store.set('a', { cookie: { maxAge: 1000 } }, cb));
    await call((cb) => store.set('b', { cookie: {} }, cb));
    await call((cb) => store.touch('a', { cookie: { maxAge: 100_000 } }, cb));
    clock.advance(1001);
    expect(await call((cb) => store.get('a', cb))).toBeUndefined();
    await call((cb) => store.destroy('b', cb));
    expect(await call((cb) => store.get('b', cb))).toBeUndefined();
    await call((cb) => store.set('c', { cookie: {} }, cb));
    await call((cb) => store.clear(cb));
    expect(await call((cb) => store.get('c', cb))).toBeUndefined();
    // Sessions live in their own namespace: the app's keys are untouched.
    await cache.set('c', 'app value');
    expect(await cache.get('c')).toBe('app value');
  });

  it('reports unserializable sessions and corrupt payloads to the callback', async () => {
    const cache = createCache();
    const store = new CacheSessionStore({ cache });
    const cyclic: Record<string, unknown> = { cookie: {} };
    cyclic.self = cyclic;
    await expect(call((cb) => store.set('x', cyclic as never, cb))).rejects.toThrow(TypeError);
    await cache.namespace('sess').set('bad', '{not json');
    await expect(call((cb) => store.get('bad', cb))).rejects.toThrow(SyntaxError);
    await flushMicrotasks();
  });

  it('validates its options', () => {
    expect(() => new CacheSessionStore({ cache: {} as never })).toThrow(/cache/);
    expect(() => new CacheSessionStore({ cache: createCache(), ttl: 'x' as never })).toThrow(/ttl/);
    expect(() => new CacheSessionStore({ cache: createCache(), extra: 1 } as never)).toThrow(/extra/);
  });
});
