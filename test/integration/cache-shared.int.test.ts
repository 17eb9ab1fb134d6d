import type { Cluster, Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { type Cache, type CacheOptions, createCache } from '../../src/cache/index.js';
import {
  busBarrier,
  busReady,
  type Cleanup,
  connectCluster,
  connectRedis,
  now,
  sleep,
  uniqueNamespace,
  until,
} from './cache-helpers.js';

// Several cache instances in one process, each with its own connections, stand for several
// servers. Real clock, real Redis (127.0.0.1:6379) and real Redis Cluster (127.0.0.1:7000-7002):
// the timing of the real servers is the thing under test. Nothing skips when a server is down.
// Bounds are generous, for a noisy 2-core machine.

/** How soon another instance must see a write (one bus hop, measured; the bound is for a loaded CI box). */
const HOP_BOUND = 250;

const cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Connection = Redis | Cluster;

const targets: { name: string; connect: () => Promise<Connection> }[] = [
  { name: 'Redis', connect: () => connectRedis(cleanups) },
  { name: 'Redis Cluster', connect: () => connectCluster(cleanups) },
];

describe.each(targets)('caches sharing $name', ({ name, connect }) => {
  /** `n` instances of one namespace, each with its own connection, buses subscribed. */
  async function instances(n: number, options: Partial<CacheOptions> = {}, namespace = uniqueNamespace()) {
    const caches: Cache[] = [];
    for (let i = 0; i < n; i++) {
      const redis = await connect();
      const cache = createCache({ namespace, ...options, l2: { redis, timeout: 200, ...options.l2 } });
      cleanups.push(() => cache.close());
      caches.push(cache);
    }
    await busReady(...caches);
    const admin = await connect();
    cleanups.push(async () => {
      await caches[0]!.clear();
    });
    return { caches, admin, namespace };
  }

  it('coherence: after set resolves on one instance, the others return the new value within one bus hop (measured)', async () => {
    const { caches } = await instances(3);
    const [a, b, c] = caches as [Cache, Cache, Cache];
    const hops: number[] = [];
    const seen = { b: -1, c: -1 };
    for (let i = 0; i < 40; i++) {
      // b and c hold the previous value in L1 (an L1 hit each), so this measures invalidation.
      await b.get('k');
      await c.get('k');
      await a.set('k', i);
      const start = now();
      await until(
        () => {
          void b.get<number>('k').then((v) => {
            if (v !== undefined) {
              // Monotonic reads: an instance never goes back to an older value.
              expect(v).toBeGreaterThanOrEqual(seen.b);
              seen.b = v;
            }
          });
          void c.get<number>('k').then((v) => {
            if (v !== undefined) {
              expect(v).toBeGreaterThanOrEqual(seen.c);
              seen.c = v;
            }
          });
          return seen.b === i && seen.c === i;
        },
        `write ${i} to reach the other instances`,
        HOP_BOUND * 4,
      );
      hops.push(now() - start);
    }
    hops.sort((x, y) => x - y);
    const p50 = hops[Math.floor(hops.length / 2)]!;
    const max = hops[hops.length - 1]!;
    console.log(`[${name}] bus staleness after set: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms`);
    expect(p50).toBeLessThan(HOP_BOUND);
  });

  it('coherence: delete and deleteByTag on one instance reach every other instance', async () => {
    const { caches, admin, namespace } = await instances(3);
    const [a, b, c] = caches as [Cache, Cache, Cache];
    await a.set('plain', 1);
    await a.set('tagged', 2, { tags: ['team:1'] });
    await a.set('other-tag', 3, { tags: ['team:2'] });
    for (const cache of [b, c]) {
      expect(await cache.getMany(['plain', 'tagged', 'other-tag'])).toEqual([1, 2, 3]);
    }
    await b.delete('plain');
    await c.deleteByTag('team:1');
    await busBarrier(admin, namespace, caches);
    for (const cache of [a, b, c]) {
      expect(await cache.getMany(['plain', 'tagged', 'other-tag'])).toEqual([undefined, undefined, 3]);
    }
    // A tagged entry written after the invalidation is valid.
    await a.set('tagged', 4, { tags: ['team:1'] });
    expect(await b.get('tagged')).toBe(4);
  });

  it('1,000 concurrent getOrSet on a cold key over 4 instances run the loader exactly once', async () => {
    const { caches } = await instances(4);
    let calls = 0;
    const loader = async () => {
      calls++;
      await sleep(50);
      return { loaded: true };
    };
    const results = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) => caches[i % 4]!.getOrSet('cold', loader, { ttl: '1m' })),
    );
    expect(calls).toBe(1);
    expect(results.every((r) => r.loaded)).toBe(true);
    const waits = caches.reduce((n, cache) => n + cache.stats().leaseWaits, 0);
    expect(waits).toBeGreaterThan(0);
  });

  it('stale-set race: a delete during a slow load wins; the loaded value reaches its own callers only', async () => {
    const { caches, admin, namespace } = await instances(2);
    const [a, b] = caches as [Cache, Cache];
    await a.set('k', 'v0');
    await busBarrier(admin, namespace, caches);
    await a.delete('k');
    await busBarrier(admin, namespace, caches);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = a.getOrSet('k', async () => {
      await gate;
      return 'stale';
    });
    // The loader is running (it holds the lease): another instance deletes the key.
    await until(() => a.stats().loads === 1, 'the slow load to start');
    await b.delete('k');
    await busBarrier(admin, namespace, caches);
    release();
    expect(await slow).toBe('stale');
    await busBarrier(admin, namespace, caches);
    for (const cache of caches) expect(await cache.get('k')).toBeUndefined();
    expect(a.stats().staleFillsDropped).toBe(1);
    // And a set during a slow load wins in every instance too.
    let release2!: () => void;
    const gate2 = new Promise<void>((resolve) => (release2 = resolve));
    const slow2 = b.getOrSet('k2', async () => {
      await gate2;
      return 'stale';
    });
    await until(() => b.stats().loads === 1, 'the second slow load to start');
    await a.set('k2', 'written');
    release2();
    expect(await slow2).toBe('stale');
    await busBarrier(admin, namespace, caches);
    for (const cache of caches) expect(await cache.get('k2')).toBe('written');
  });

  it('a tag invalidated during a slow load makes the load uncacheable', async () => {
    const { caches, admin, namespace } = await instances(2);
    const [a, b] = caches as [Cache, Cache];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = a.getOrSet(
      'k',
      async () => {
        await gate;
        return 'stale';
      },
      { tags: ['t'] },
    );
    await until(() => a.stats().loads === 1, 'the slow load to start');
    await b.deleteByTag('t');
    release();
    expect(await slow).toBe('stale');
    await busBarrier(admin, namespace, caches);
    for (const cache of caches) expect(await cache.get('k')).toBeUndefined();
  });

  it('L2 hits fill L1 with the remaining TTL, capped by l1.maxTtl', async () => {
    const { caches } = await instances(2, { l1: { maxTtl: 100 } });
    const [a, b] = caches as [Cache, Cache];
    await a.set('short', 's', { ttl: 300 });
    await sleep(150);
    expect(await b.get('short')).toBe('s'); // from L2, ~150 ms left
    const hitsBefore = b.stats().l2Hits;
    expect(await b.get('short')).toBe('s'); // L1 now
    expect(b.stats().l2Hits).toBe(hitsBefore);
    await sleep(200);
    expect(await b.get('short')).toBeUndefined(); // never the full TTL from the L2 read
    await a.set('long', 'l', { ttl: '1m' });
    expect(await b.get('long')).toBe('l');
    await sleep(120);
    const l2Before = b.stats().l2Hits;
    expect(await b.get('long')).toBe('l'); // past the 100 ms cap: asked L2 again
    expect(b.stats().l2Hits).toBe(l2Before + 1);
  });

  it('a corrupt or foreign payload is a miss and an error event, never a crash; getOrSet replaces it', async () => {
    const { caches, admin, namespace } = await instances(1);
    const [a] = caches as [Cache];
    const errors: unknown[] = [];
    a.onError((e) => errors.push(e.error));
    await admin.hset(
      `{${namespace}}:v:garbage`,
      'd',
      '{"__proto__":{"polluted":1},"f":1',
      'e',
      '99999999999999',
    );
    await admin.set(`{${namespace}}:v:string`, 'some other program');
    await admin.hset(`{${namespace}}:v:foreign`, 'd', '{"v":{"__proto__":{"x":1}}}', 'e', '0');
    expect(await a.getMany(['garbage', 'string', 'foreign'])).toEqual([undefined, undefined, undefined]);
    expect(errors.some((e) => (e as { code?: string }).code === 'E_CACHE_CORRUPT')).toBe(true);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    expect(await a.getOrSet('garbage', () => 'fixed')).toBe('fixed');
    expect(await a.getOrSet('string', () => 'fixed too')).toBe('fixed too');
    await a.delete('garbage');
    expect(await a.get('garbage')).toBeUndefined();
    expect(a.stats().l2.corruptPayloads).toBeGreaterThan(0);
  });

  it('clear() deletes this namespace only (SCAN on every master), and reaches every instance', async () => {
    const { caches, admin, namespace } = await instances(2);
    const [a, b] = caches as [Cache, Cache];
    const child = a.namespace('child');
    const otherNs = createCache({ namespace: uniqueNamespace(), l2: { redis: admin }, bus: false });
    cleanups.push(async () => {
      await otherNs.clear();
      await otherNs.close();
    });
    await a.setMany(Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: i, tags: ['t'] })));
    await child.set('c', 'child');
    await otherNs.set('o', 'other');
    expect(await b.get('k7')).toBe(7);
    expect((await a.clear()).degraded).toBe(false);
    await busBarrier(admin, namespace, caches);
    expect(await b.get('k7')).toBeUndefined();
    expect(await a.getMany(['k0', 'k49'])).toEqual([undefined, undefined]);
    expect(await child.get('c')).toBe('child');
    expect(await otherNs.get('o')).toBe('other');
    // Nothing of the namespace is left on any node.
    const nodes =
      'nodes' in admin && typeof admin.nodes === 'function' ? (admin as Cluster).nodes('master') : [admin];
    for (const node of nodes) {
      const [, keys] = await (node as Redis).scan('0', 'MATCH', `{${namespace}}:*`, 'COUNT', 10_000);
      expect(keys).toEqual([]);
    }
  });

  it('namespaces share connections but not keys, across instances', async () => {
    const { caches, admin, namespace } = await instances(2);
    const [a, b] = caches as [Cache, Cache];
    const ua = a.namespace('users');
    const ub = b.namespace('users');
    await busReady(a, b);
    await ua.set('1', 'ann');
    await a.set('1', 'root');
    expect(await ub.get('1')).toBe('ann');
    expect(await b.get('1')).toBe('root');
    await until(() => b.stats().bus.connected, 'the child channel subscription');
    await ub.get('1');
    await ua.set('1', 'bob');
    await busBarrier(admin, `${namespace}:users`, [a, b]);
    expect(await ub.get('1')).toBe('bob');
    await ua.clear();
  });
});
