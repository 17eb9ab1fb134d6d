import { afterEach, describe, expect, it, vi } from 'vitest';
import { hasCode, InvalidOptionError } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { type Cache, createCache } from './cache.js';
import { isFactoryTimeoutError } from './errors.js';
import type { CacheOptions, LoaderContext } from './types.js';

// L1 only (no Redis) under a FakeClock: the cross-instance and Redis behaviour is in
// test/integration/cache*.int.test.ts.

const caches: Cache[] = [];
afterEach(async () => {
  for (const cache of caches.splice(0)) await cache.close();
  vi.restoreAllMocks();
});

function make(options: CacheOptions = {}): { cache: Cache; clock: FakeClock } {
  const clock = new FakeClock();
  const cache = createCache({ clock, ...options });
  caches.push(cache);
  return { cache, clock };
}

/** A loader whose result the test settles by hand. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('createCache options', () => {
  it('validates every option, naming it and the value received', () => {
    const bad: [CacheOptions, string][] = [
      [{ ttl: -1 } as CacheOptions, 'ttl'],
      [{ namespace: 'a{b}' }, 'namespace'],
      [{ namespace: '' }, 'namespace'],
      [{ jitter: 1 }, 'jitter'],
      [{ earlyRefresh: -1 }, 'earlyRefresh'],
      [{ l1: { maxEntries: 0 } }, 'l1.maxEntries'],
      [{ l1: { maxTtl: 'soon' as never } }, 'l1.maxTtl'],
      [{ l1: { nope: 1 } as never }, 'l1.nope'],
      [{ l2: { redis: {} as never } }, 'l2.redis'],
      [{ bus: true }, 'bus'],
      [{ serializer: {} as never }, 'serializer'],
      [{ clock: {} as never }, 'clock'],
      [{ ttlz: 1 } as never, 'ttlz'],
    ];
    for (const [options, option] of bad) {
      let caught: unknown;
      try {
        createCache(options);
      } catch (error) {
        caught = error;
      }
      expect(caught, option).toBeInstanceOf(InvalidOptionError);
      expect((caught as InvalidOptionError).option).toBe(option);
    }
  });

  it('validates per-call options on the slow path', async () => {
    const { cache } = make();
    await expect(cache.getOrSet('k', () => 1, { ttl: 'x' as never })).rejects.toMatchObject({
      option: 'ttl',
    });
    await expect(cache.set('k', 1, { tags: [''] })).rejects.toMatchObject({ option: 'tags' });
    await expect(cache.set('k', 1, { tll: 5 } as never)).rejects.toMatchObject({ option: 'tll' });
    await expect(cache.get(5 as never)).rejects.toMatchObject({ option: 'key' });
    await expect(cache.getOrSet('k', 'nope' as never)).rejects.toMatchObject({ option: 'loader' });
  });
});

describe('get / set / delete / has', () => {
  it('returns what was set until its TTL passes, then undefined', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    expect(await cache.set('a', { x: 1 })).toEqual({ degraded: false });
    expect(await cache.get('a')).toEqual({ x: 1 });
    expect(await cache.has('a')).toBe(true);
    clock.advance(999);
    expect(await cache.get('a')).toEqual({ x: 1 });
    clock.advance(1);
    expect(await cache.get('a')).toBeUndefined();
    expect(await cache.has('a')).toBe(false);
  });

  it('honours a per-call ttl', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    await cache.set('a', 1, { ttl: '5s' });
    clock.advance(4_999);
    expect(await cache.get('a')).toBe(1);
    clock.advance(1);
    expect(await cache.get('a')).toBeUndefined();
  });

  it('caches null, and treats set(undefined) as a delete', async () => {
    const { cache } = make();
    await cache.set('n', null);
    expect(await cache.get('n')).toBeNull();
    expect(await cache.has('n')).toBe(true);
    await cache.set('n', undefined);
    expect(await cache.has('n')).toBe(false);
  });

  it('delete and deleteMany remove entries', async () => {
    const { cache } = make();
    await cache.setMany([
      { key: 'a', value: 1 },
      { key: 'b', value: 2, ttl: 10 },
      { key: 'c', value: 3 },
    ]);
    expect(await cache.getMany(['a', 'b', 'c', 'd'])).toEqual([1, 2, 3, undefined]);
    await cache.delete('a');
    await cache.deleteMany(['b', 'c']);
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual([undefined, undefined, undefined]);
  });

  it('hands every L1 hit the same resolved promise (no allocation per hit)', async () => {
    const { cache } = make();
    await cache.set('a', 1);
    const first = cache.get('a');
    expect(cache.get('a')).toBe(first);
    expect(cache.getOrSet('a', () => 2)).toBe(first);
    expect(await first).toBe(1);
  });

  it('spreads TTLs by ± jitter', async () => {
    const { cache, clock } = make({ ttl: 1_000, jitter: 0.5 });
    vi.spyOn(Math, 'random').mockReturnValue(0); // the shortest: ttl * (1 - 0.5)
    await cache.set('a', 1);
    clock.advance(499);
    expect(await cache.get('a')).toBe(1);
    clock.advance(1);
    expect(await cache.get('a')).toBeUndefined();
  });

  it('evicts the least recently used entry beyond maxEntries', async () => {
    const { cache } = make({ l1: { maxEntries: 2 } });
    await cache.set('a', 1);
    await cache.set('b', 2);
    await cache.get('a');
    await cache.set('c', 3);
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual([1, undefined, 3]);
  });

  it('bounds L1 by estimated bytes and skips entries bigger than maxEntryBytes', async () => {
    const { cache } = make({ l1: { maxBytes: 10_000, maxEntryBytes: 2_000 } });
    await cache.set('big', 'x'.repeat(5_000));
    expect(await cache.get('big')).toBeUndefined();
    for (let i = 0; i < 20; i++) await cache.set(`k${i}`, 'y'.repeat(200));
    const { l1 } = cache.stats();
    expect(l1.bytes).toBeGreaterThan(0);
    expect(l1.bytes).toBeLessThanOrEqual(10_000);
    expect(l1.entries).toBeLessThan(20);
    expect(await cache.get('k19')).toBe('y'.repeat(200));
  });

  it('uses a custom sizeOf', async () => {
    const sizeOf = vi.fn(() => 10);
    const { cache } = make({ l1: { maxBytes: 1_000, sizeOf } });
    await cache.set('a', { any: 'thing' });
    expect(sizeOf).toHaveBeenCalledWith({ any: 'thing' });
  });
});

describe('getOrSet', () => {
  it('loads on a miss, caches, and serves hits without calling the loader', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    const loader = vi.fn(() => 'v');
    expect(await cache.getOrSet('k', loader)).toBe('v');
    expect(await cache.getOrSet('k', loader)).toBe('v');
    expect(loader).toHaveBeenCalledTimes(1);
    clock.advance(1_000);
    expect(await cache.getOrSet('k', loader)).toBe('v');
    expect(loader).toHaveBeenCalledTimes(2);
    expect(cache.stats()).toMatchObject({ loads: 2, l1Hits: 1, misses: 0 });
  });

  it('runs the loader once for concurrent callers (local single-flight)', async () => {
    const { cache } = make();
    const d = deferred<number>();
    const loader = vi.fn(() => d.promise);
    const calls = Array.from({ length: 100 }, () => cache.getOrSet('k', loader));
    await flushMicrotasks();
    d.resolve(7);
    expect(await Promise.all(calls)).toEqual(Array(100).fill(7));
    expect(loader).toHaveBeenCalledTimes(1);
  });

  it('caches null (negative caching) but not undefined, skip() or a failure', async () => {
    const { cache } = make();
    const nul = vi.fn(() => null);
    expect(await cache.getOrSet('n', nul)).toBeNull();
    expect(await cache.getOrSet('n', nul)).toBeNull();
    expect(nul).toHaveBeenCalledTimes(1);

    const undef = vi.fn(() => undefined);
    expect(await cache.getOrSet('u', undef)).toBeUndefined();
    expect(await cache.getOrSet('u', undef)).toBeUndefined();
    expect(undef).toHaveBeenCalledTimes(2);

    const skip = vi.fn((ctx: LoaderContext): number | undefined => ctx.skip());
    expect(await cache.getOrSet('s', skip)).toBeUndefined();
    await cache.getOrSet('s', skip);
    expect(skip).toHaveBeenCalledTimes(2);

    const boom = new Error('boom');
    await expect(cache.getOrSet('e', () => Promise.reject(boom))).rejects.toBe(boom);
    await expect(
      cache.getOrSet('e', () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await cache.getOrSet('e', () => 1)).toBe(1);
    expect(cache.stats().loadErrors).toBe(2);
  });

  it('lets the loader choose its TTL with setTtl', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    await cache.getOrSet('k', (ctx) => {
      ctx.setTtl('10s');
      return 1;
    });
    clock.advance(9_999);
    expect(await cache.get('k')).toBe(1);
    clock.advance(1);
    expect(await cache.get('k')).toBeUndefined();
  });

  it('serves the graced value when the loader fails (stale-if-error), then backs off for graceBackoff', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: '1h', graceBackoff: 5_000 });
    await cache.getOrSet('k', () => 'v1');
    clock.advance(1_000);
    const failing = vi.fn((ctx: LoaderContext): string => {
      expect(ctx.stale).toBe('v1');
      throw new Error('source down');
    });
    const errors: unknown[] = [];
    cache.onError((e) => errors.push(e.error));
    expect(await cache.getOrSet('k', failing)).toBe('v1');
    expect(errors).toHaveLength(1);
    // Within graceBackoff the source is left alone.
    expect(await cache.getOrSet('k', failing)).toBe('v1');
    expect(failing).toHaveBeenCalledTimes(1);
    // get() only returns fresh values.
    expect(await cache.get('k')).toBeUndefined();
    clock.advance(5_000);
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v2');
    expect(cache.stats().gracedHits).toBe(2);
  });

  it('rethrows the loader error once grace has run out', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: 2_000 });
    await cache.getOrSet('k', () => 'v1');
    clock.advance(3_000);
    await expect(cache.getOrSet('k', () => Promise.reject(new Error('down')))).rejects.toThrow('down');
  });

  it('soft timeout: returns the graced value after `timeout` and installs the refreshed one later', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: '1h' });
    await cache.getOrSet('k', () => 'old');
    clock.advance(1_000);
    const d = deferred<string>();
    const call = cache.getOrSet('k', () => d.promise, { timeout: 100 });
    let settled: unknown;
    void call.then((v) => (settled = v));
    await clock.advanceAsync(99);
    expect(settled).toBeUndefined();
    await clock.advanceAsync(1);
    expect(settled).toBe('old');
    d.resolve('new');
    await flushMicrotasks();
    expect(await cache.get('k')).toBe('new');
  });

  it('timeout 0 is stale-while-revalidate', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: '1h' });
    await cache.getOrSet('k', () => 'old');
    clock.advance(1_500);
    const d = deferred<string>();
    expect(await cache.getOrSet('k', () => d.promise, { timeout: 0 })).toBe('old');
    d.resolve('new');
    await flushMicrotasks();
    expect(await cache.getOrSet('k', () => 'x', { timeout: 0 })).toBe('new');
  });

  it('leaderWaits: the caller that starts the load waits for it, the callers joining it get the graced value', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: '1h' });
    await cache.getOrSet('k', () => 'old');
    clock.advance(1_500);
    const d = deferred<string>();
    const joiner = vi.fn(() => 'joiner');
    let leaderGot: unknown;
    const leader = cache.getOrSet('k', () => d.promise, { timeout: 0, leaderWaits: true });
    void leader.then((v) => (leaderGot = v));
    // Joiners arrive while the load runs: the stale copy at once, their loaders never run.
    expect(await cache.getOrSet('k', joiner, { timeout: 0, leaderWaits: true })).toBe('old');
    const later = cache.getOrSet('k', joiner, { timeout: 50, leaderWaits: true });
    await clock.advanceAsync(50);
    expect(await later).toBe('old');
    expect(leaderGot).toBeUndefined();
    d.resolve('new');
    expect(await leader).toBe('new');
    expect(joiner).not.toHaveBeenCalled();
    expect(await cache.get('k')).toBe('new');
  });

  it('leaderWaits with a soft timeout: the leader is not answered from the stale copy when the timeout passes', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: '1h' });
    await cache.getOrSet('k', () => 'old');
    clock.advance(1_500);
    const d = deferred<string>();
    let leaderGot: unknown;
    void cache
      .getOrSet('k', () => d.promise, { timeout: 10, leaderWaits: true })
      .then((v) => (leaderGot = v));
    await clock.advanceAsync(100);
    expect(leaderGot).toBeUndefined();
    d.resolve('new');
    await flushMicrotasks();
    expect(leaderGot).toBe('new');
  });

  it('leaderWaits is validated', async () => {
    const { cache } = make();
    await expect(
      cache.getOrSet('k', () => 1, { leaderWaits: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({
      code: 'E_INVALID_OPTION',
      option: 'leaderWaits',
    });
  });

  it('without a graced value, a soft timeout waits for the load', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    const d = deferred<string>();
    const call = cache.getOrSet('k', () => d.promise, { timeout: 10 });
    await clock.advanceAsync(1_000);
    d.resolve('v');
    expect(await call).toBe('v');
  });

  it('hard timeout: rejects with E_FACTORY_TIMEOUT and aborts the loader signal', async () => {
    const { cache, clock } = make();
    let signal: AbortSignal | undefined;
    const call = cache.getOrSet(
      'k',
      (ctx) => {
        signal = ctx.signal;
        return new Promise<string>(() => {});
      },
      { hardTimeout: 200 },
    );
    const outcome = call.catch((e: unknown) => e);
    await clock.advanceAsync(200);
    const error = await outcome;
    expect(isFactoryTimeoutError(error)).toBe(true);
    expect(hasCode(error, 'E_FACTORY_TIMEOUT')).toBe(true);
    expect(signal?.aborted).toBe(true);
    expect(await cache.get('k')).toBeUndefined();
    expect(clock.pending).toBe(0);
  });

  it('hard timeout with a graced value serves it', async () => {
    const { cache, clock } = make({ ttl: 1_000, grace: '1h' });
    await cache.getOrSet('k', () => 'old');
    clock.advance(2_000);
    const call = cache.getOrSet('k', () => new Promise<string>(() => {}), { hardTimeout: 50 });
    await clock.advanceAsync(50);
    expect(await call).toBe('old');
  });

  it('an aborted caller rejects with E_ABORTED; the load goes on for the others', async () => {
    const { cache } = make();
    const d = deferred<string>();
    const controller = new AbortController();
    const loader = vi.fn(() => d.promise);
    const aborted = cache.getOrSet('k', loader, { signal: controller.signal });
    const other = cache.getOrSet('k', loader);
    controller.abort(new Error('bye'));
    await expect(aborted).rejects.toMatchObject({ code: 'E_ABORTED' });
    d.resolve('v');
    expect(await other).toBe('v');
    expect(loader).toHaveBeenCalledTimes(1);
    // An already-aborted signal rejects at once, hit or not.
    await expect(cache.getOrSet('k', loader, { signal: controller.signal })).rejects.toMatchObject({
      code: 'E_ABORTED',
    });
    await expect(cache.get('k', { signal: controller.signal })).rejects.toMatchObject({ code: 'E_ABORTED' });
  });

  it('when every caller has aborted, the loader is aborted and nothing is cached', async () => {
    const { cache } = make();
    const controller = new AbortController();
    let signal: AbortSignal | undefined;
    const d = deferred<string>();
    const call = cache.getOrSet(
      'k',
      (ctx) => {
        signal = ctx.signal;
        return d.promise;
      },
      { signal: controller.signal },
    );
    await flushMicrotasks();
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(signal?.aborted).toBe(true);
    d.resolve('late');
    await flushMicrotasks();
    expect(await cache.get('k')).toBeUndefined();
  });

  it('stale-set guard: a delete during the load wins; the loader value goes to its own callers only', async () => {
    const { cache } = make();
    const d = deferred<string>();
    const first = cache.getOrSet('k', () => d.promise);
    await flushMicrotasks();
    await cache.delete('k');
    // A caller arriving after the delete does not join the superseded load.
    const late = vi.fn(() => 'fresh');
    const second = cache.getOrSet('k', late);
    d.resolve('stale');
    expect(await first).toBe('stale');
    expect(await second).toBe('fresh');
    expect(late).toHaveBeenCalledTimes(1);
    expect(await cache.get('k')).toBe('fresh');
    expect(cache.stats().staleFillsDropped).toBe(1);
  });

  it('stale-set guard: a set during the load wins', async () => {
    const { cache } = make();
    const d = deferred<string>();
    const load = cache.getOrSet('k', () => d.promise);
    await flushMicrotasks();
    await cache.set('k', 'written');
    d.resolve('loaded');
    expect(await load).toBe('loaded');
    expect(await cache.get('k')).toBe('written');
  });

  it('stale-set guard: deleteByTag and clear during a load win', async () => {
    const { cache } = make();
    const d1 = deferred<string>();
    const l1 = cache.getOrSet('a', () => d1.promise, { tags: ['t'] });
    await flushMicrotasks();
    await cache.deleteByTag('t');
    d1.resolve('stale');
    expect(await l1).toBe('stale');
    expect(await cache.get('a')).toBeUndefined();

    const d2 = deferred<string>();
    const l2 = cache.getOrSet('b', () => d2.promise);
    await flushMicrotasks();
    await cache.clear();
    d2.resolve('stale');
    expect(await l2).toBe('stale');
    expect(await cache.get('b')).toBeUndefined();
  });

  it('early refresh (XFetch) refreshes a hot entry in the background before it expires', async () => {
    const { cache, clock } = make({ ttl: 1_000, earlyRefresh: 1 });
    await cache.getOrSet('k', async () => {
      await clock.advanceAsync(100); // a 100 ms load: Δ = 100
      return 'v1';
    });
    const random = vi.spyOn(Math, 'random');
    // With rand = e^-1, the refresh fires once remaining <= β·Δ·1 = 100 ms.
    random.mockReturnValue(Math.exp(-1));
    clock.advance(850); // 150 ms left
    const loader = vi.fn(() => 'v2');
    expect(await cache.getOrSet('k', loader)).toBe('v1');
    expect(loader).not.toHaveBeenCalled();
    clock.advance(60); // 90 ms left
    expect(await cache.getOrSet('k', loader)).toBe('v1');
    expect(loader).toHaveBeenCalledTimes(1);
    await flushMicrotasks();
    expect(await cache.getOrSet('k', loader)).toBe('v2');
    expect(cache.stats().earlyRefreshes).toBe(1);
  });

  it('early refresh is off by default and per call', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    await cache.getOrSet('k', () => 'v1');
    vi.spyOn(Math, 'random').mockReturnValue(1e-300);
    clock.advance(999);
    const loader = vi.fn(() => 'v2');
    await cache.getOrSet('k', loader);
    expect(loader).not.toHaveBeenCalled();
    await cache.getOrSet('k', loader, { earlyRefresh: true });
    expect(loader).toHaveBeenCalledTimes(1);
  });

  it('wrap caches a function by the key of its arguments', async () => {
    const { cache } = make();
    const fn = vi.fn(async (a: number, b: number) => a + b);
    const add = cache.wrap(fn, { key: (a, b) => `add:${a}:${b}`, ttl: '1m' });
    expect(await add(1, 2)).toBe(3);
    expect(await add(1, 2)).toBe(3);
    expect(await add(2, 2)).toBe(4);
    expect(fn).toHaveBeenCalledTimes(2);
    expect(() => cache.wrap(fn, {} as never)).toThrow(InvalidOptionError);
  });
});

describe('tags and namespaces', () => {
  it('deleteByTag removes exactly the entries carrying the tag', async () => {
    const { cache } = make();
    await cache.set('a', 1, { tags: ['x', 'y'] });
    await cache.set('b', 2, { tags: ['y'] });
    await cache.set('c', 3);
    await cache.getOrSet('d', () => 4, { tags: ['x'] });
    await cache.deleteByTag('x');
    expect(await cache.getMany(['a', 'b', 'c', 'd'])).toEqual([undefined, 2, 3, undefined]);
    await cache.deleteByTag(['y', 'z']);
    expect(await cache.getMany(['b', 'c'])).toEqual([undefined, 3]);
    await expect(cache.deleteByTag([])).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('a tagged entry overwritten without the tag is not deleted by it', async () => {
    const { cache } = make();
    await cache.set('a', 1, { tags: ['x'] });
    await cache.set('a', 2);
    await cache.deleteByTag('x');
    expect(await cache.get('a')).toBe(2);
  });

  it('namespaces isolate keys, tags and clear', async () => {
    const { cache } = make();
    const users = cache.namespace('users');
    expect(cache.namespace('users')).toBe(users);
    expect(users.name).toBe('cache:users');
    await cache.set('1', 'root');
    await users.set('1', 'user', { tags: ['t'] });
    await cache.set('2', 'root2', { tags: ['t'] });
    expect(await cache.get('1')).toBe('root');
    expect(await users.get('1')).toBe('user');
    await users.deleteByTag('t');
    expect(await users.get('1')).toBeUndefined();
    expect(await cache.get('2')).toBe('root2');
    await users.set('1', 'user');
    await cache.clear();
    expect(await cache.get('1')).toBeUndefined();
    expect(await users.get('1')).toBe('user');
    // A root key that looks like a separator never collides with a child's key.
    await cache.set('\u0001cache:users\u00011', 'sneaky');
    expect(await users.get('1')).toBe('user');
    expect(() => cache.namespace('a{b')).toThrow(InvalidOptionError);
  });
});

describe('events, stats, lifecycle', () => {
  it('emits hit, miss, load and write events', async () => {
    const { cache } = make();
    const seen: string[] = [];
    cache.onHit((e) => seen.push(`hit:${e.key}:${e.layer}`));
    cache.onMiss((e) => seen.push(`miss:${e.key}`));
    cache.onLoad((e) => seen.push(`load:${e.key}:${e.cached}`));
    cache.onWrite((e) => seen.push(`${e.operation}:${e.keys.join(',')}`));
    await cache.get('a');
    await cache.getOrSet('a', () => 1);
    await cache.get('a');
    await cache.delete('a');
    expect(seen).toEqual(['miss:a', 'load:a:true', 'hit:a:l1', 'delete:a']);
  });

  it('reports stats as a plain object', async () => {
    const { cache } = make();
    await cache.set('a', 1);
    await cache.get('a');
    await cache.get('b');
    const stats = cache.stats();
    expect(stats).toMatchObject({ l1Hits: 1, misses: 1, l1: { entries: 1, maxEntries: 10_000 } });
    expect(stats.l2.enabled).toBe(false);
    expect(stats.bus.enabled).toBe(false);
    expect(JSON.parse(JSON.stringify(stats))).toEqual(stats);
  });

  it('after close every call rejects with E_CLOSED, loads in flight too, and no timer is left', async () => {
    const { cache, clock } = make({ ttl: 1_000 });
    await cache.set('a', 1);
    const pending = cache.getOrSet('b', () => new Promise(() => {}), { hardTimeout: 10_000 });
    await flushMicrotasks();
    await cache.close();
    await expect(pending).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(cache.get('a')).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(cache.getOrSet('a', () => 1)).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(cache.set('a', 1)).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(cache.deleteByTag('t')).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(cache.clear()).rejects.toMatchObject({ code: 'E_CLOSED' });
    expect(() => cache.namespace('x')).toThrow();
    await cache.close();
    await cache[Symbol.asyncDispose]();
    clock.advance(60_000);
    expect(clock.pending).toBe(0);
  });

  it('closing a child namespace leaves the parent working', async () => {
    const { cache } = make();
    const child = cache.namespace('c');
    await child.close();
    await expect(child.get('a')).rejects.toMatchObject({ code: 'E_CLOSED' });
    await cache.set('a', 1);
    expect(await cache.get('a')).toBe(1);
  });
});

describe('loader context', () => {
  it('setTtl and skip work when destructured from the context', async () => {
    const clock = new FakeClock();
    const cache = createCache({ namespace: 'ctx', clock });
    const value = await cache.getOrSet(
      'k',
      async ({ setTtl }) => {
        setTtl(1_000);
        return 'v';
      },
      { ttl: '1h' },
    );
    expect(value).toBe('v');
    clock.advance(1_001);
    expect(await cache.get('k')).toBeUndefined();
    await cache.close();
  });
});
