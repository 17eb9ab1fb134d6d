import { describe, expectTypeOf, it } from 'vitest';
import {
  type Cache,
  type CacheStats,
  type CacheWriteResult,
  createCache,
  isFactoryTimeoutError,
  type LoaderContext,
} from './index.js';

declare const cache: Cache;
interface User {
  id: string;
  name: string;
}
declare function findUser(id: string, signal: AbortSignal): Promise<User>;
declare const signal: AbortSignal;

describe('buttress/cache types', () => {
  it('getOrSet infers the value type from what the loader returns', () => {
    expectTypeOf(cache.getOrSet('u:1', ({ signal }) => findUser('1', signal))).toEqualTypeOf<Promise<User>>();
    expectTypeOf(cache.getOrSet('u:1', async (ctx) => findUser('1', ctx.signal))).toEqualTypeOf<
      Promise<User>
    >();
    expectTypeOf(cache.getOrSet('u:1', () => null)).toEqualTypeOf<Promise<null>>();
    // undefined only when the loader can return it (skip() is typed as undefined).
    expectTypeOf(
      cache.getOrSet('u:1', async (ctx) => (Math.random() > 0.5 ? ctx.skip() : findUser('1', ctx.signal))),
    ).toEqualTypeOf<Promise<User | undefined>>();
    expectTypeOf(cache.getOrSet<User>('u:1', async () => findUser('1', signal))).toEqualTypeOf<
      Promise<User>
    >();
    expectTypeOf<LoaderContext['stale']>().toEqualTypeOf<unknown>();
  });

  it('get is undefined on a miss; writes report degradation', () => {
    expectTypeOf(cache.get<User>('u:1')).toEqualTypeOf<Promise<User | undefined>>();
    expectTypeOf(cache.set('u:1', { id: '1' }, { ttl: '5m', tags: ['t'] })).toEqualTypeOf<
      Promise<CacheWriteResult>
    >();
    expectTypeOf(cache.deleteByTag(['a', 'b'])).toEqualTypeOf<Promise<CacheWriteResult>>();
    expectTypeOf(cache.stats()).toEqualTypeOf<CacheStats>();
  });

  it('wrap keeps the wrapped function signature', () => {
    const find = cache.wrap(
      async (id: string, full: boolean) => ({ ...(await findUser(id, signal)), full }),
      {
        key: (id, full) => `user:${id}:${full}`,
        ttl: '1m',
      },
    );
    expectTypeOf(find).toEqualTypeOf<
      (id: string, full: boolean) => Promise<{ id: string; name: string; full: boolean }>
    >();
  });

  it('options are checked at compile time', () => {
    // @ts-expect-error ttl takes a duration
    createCache({ ttl: true });
    // @ts-expect-error l2 needs a Redis connection
    createCache({ l2: {} });
    expectTypeOf(createCache({ l1: { maxEntries: 10 }, grace: false })).toEqualTypeOf<Cache>();
  });

  it('guards narrow', () => {
    const e: unknown = new Error('x');
    if (isFactoryTimeoutError(e)) expectTypeOf(e.timeout).toEqualTypeOf<number>();
  });
});
