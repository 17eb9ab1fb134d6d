import { deserialize, serialize } from 'node:v8';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Cache, createCache, type Serializer } from '../../src/cache/index.js';
import {
  busBarrier,
  busReady,
  type Cleanup,
  connectCluster,
  connectRedis,
  sleep,
  uniqueNamespace,
  until,
} from './cache-helpers.js';

// Lifecycle, bus gaps, serializers, key prefixes and batching, against the real Redis (and the
// Cluster where the topology matters). Real clock; nothing skips when a server is down.

const cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.restoreAllMocks();
});

function track(cache: Cache): Cache {
  cleanups.push(async () => {
    await cache.clear().catch(() => {});
    await cache.close();
  });
  return cache;
}

/** Polls an async condition until it holds; fails with `what` after `timeout` ms. */
async function eventually(condition: () => Promise<boolean>, what: string, timeout = 2_000): Promise<void> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > timeout) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

async function clientsNamed(admin: { client(...args: string[]): Promise<unknown> }, name: string) {
  const list = String(await admin.client('LIST'));
  return list.split('\n').filter((line) => line.includes(` name=${name} `));
}

describe('cache lifecycle and bus gaps (Redis)', () => {
  it('close() closes the subscriber it opened, never the connection it was given', async () => {
    const name = uniqueNamespace('conn');
    const redis = await connectRedis(cleanups, undefined, { connectionName: name });
    const admin = await connectRedis(cleanups);
    const cache = createCache({ namespace: uniqueNamespace(), l2: { redis } });
    await busReady(cache);
    expect(await clientsNamed(admin, name)).toHaveLength(2); // the user's connection and our duplicate
    await cache.set('k', 1);
    await cache.close();
    await until(() => true, 'nothing');
    expect(redis.status).toBe('ready');
    expect(await redis.ping()).toBe('PONG');
    await until(() => true, 'nothing');
    const left = await clientsNamed(admin, name);
    expect(left).toHaveLength(1);
    await expect(cache.get('k')).rejects.toMatchObject({ code: 'E_CLOSED' });
  });

  it('a dropped subscriber is a gap: L1 is no longer served as fresh, and the bus comes back on its own', async () => {
    const name = uniqueNamespace('sub');
    const namespace = uniqueNamespace();
    const redis = await connectRedis(cleanups, undefined, { connectionName: name });
    const admin = await connectRedis(cleanups);
    const a = track(createCache({ namespace, l2: { redis } }));
    // A writer whose writes tell nobody: only a gap can make A look again.
    const silent = track(createCache({ namespace, l2: { redis: admin }, bus: false }));
    await busReady(a);
    await a.set('k', 'v1');
    expect(await a.get('k')).toBe('v1');
    await silent.set('k', 'v2');
    expect(await a.get('k')).toBe('v1'); // L1, unaware
    const gaps = a.stats().bus.gaps;
    // Kill A's subscriber connection (the one in subscribe mode with A's connection name).
    const list = String(await admin.client('LIST'));
    const sub = list.split('\n').find((l) => l.includes(` name=${name} `) && /sub=[1-9]/.test(l));
    expect(sub).toBeDefined();
    await admin.client('KILL', 'ID', /id=(\d+)/.exec(sub!)![1]!);
    await until(() => a.stats().bus.gaps > gaps, 'the gap to be noticed');
    expect(await a.get('k')).toBe('v2');
    await until(() => a.stats().bus.connected, 'the bus to resubscribe');
    await a.set('k', 'v3');
    expect(await a.get('k')).toBe('v3');
  });

  it('a malformed bus message is an error event, not a crash', async () => {
    const namespace = uniqueNamespace();
    const redis = await connectRedis(cleanups);
    const admin = await connectRedis(cleanups);
    const a = track(createCache({ namespace, l2: { redis } }));
    await busReady(a);
    const errors: unknown[] = [];
    a.onError((e) => errors.push(e.error));
    await admin.publish(`{${namespace}}:bus`, 'not json');
    await admin.publish(`{${namespace}}:bus`, '{"o":"x","k":[1]}');
    await until(() => errors.length === 2, 'both errors');
    await busBarrier(admin, namespace, [a]);
    await a.set('k', 1);
    expect(await a.get('k')).toBe(1);
  });

  it('reads issued in one tick go out as one batched call per namespace', async () => {
    const namespace = uniqueNamespace();
    const redis = await connectRedis(cleanups);
    const a = track(createCache({ namespace, l1: { maxEntries: 1 }, l2: { redis, batchSize: 100 } }));
    await a.setMany(Array.from({ length: 60 }, (_, i) => ({ key: `k${i}`, value: i })));
    const before = a.stats().l2.batches;
    const values = await a.getMany(Array.from({ length: 60 }, (_, i) => `k${i}`));
    expect(values).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(a.stats().l2.batches - before).toBe(1);
  });

  it('honours a connection keyPrefix: keys, tags, clear and the bus all work under it', async () => {
    const namespace = uniqueNamespace();
    const prefixed = await connectRedis(cleanups, undefined, { keyPrefix: 'app1:' });
    const prefixed2 = await connectRedis(cleanups, undefined, { keyPrefix: 'app1:' });
    const admin = await connectRedis(cleanups);
    const a = track(createCache({ namespace, l2: { redis: prefixed } }));
    const b = track(createCache({ namespace, l2: { redis: prefixed2 } }));
    await busReady(a, b);
    await a.set('k', 1, { tags: ['t'] });
    expect(await admin.exists(`app1:{${namespace}}:v:k`)).toBe(1);
    expect(await admin.exists(`app1:{${namespace}}:t:t`)).toBe(1);
    expect(await b.get('k')).toBe(1);
    await b.deleteByTag('t');
    // The channel carries the keyPrefix too: wait for A to hear it.
    await eventually(async () => (await a.get('k')) === undefined, 'the tag invalidation to reach A');
    await a.set('x', 2);
    await a.clear();
    expect(await admin.keys(`app1:{${namespace}}:v:*`)).toEqual([]);
  });

  it('a binary serializer (node:v8) round-trips through Redis', async () => {
    const v8Serializer: Serializer = {
      name: 'v8',
      binary: true,
      serialize: (value) => serialize(value),
      deserialize: (data) => deserialize(data as Buffer),
    };
    const namespace = uniqueNamespace();
    const r1 = await connectRedis(cleanups);
    const r2 = await connectRedis(cleanups);
    const a = track(createCache({ namespace, l2: { redis: r1 }, serializer: v8Serializer }));
    const b = track(createCache({ namespace, l2: { redis: r2 }, serializer: v8Serializer }));
    const value = { at: new Date(5), m: new Map([[1, new Set([2n])]]), bytes: new Uint8Array([0, 255, 10]) };
    await a.set('k', value, { tags: ['t'] });
    expect(await b.get('k')).toEqual(value);
    expect(await b.getOrSet('k2', () => value)).toEqual(value);
    expect(await a.get('k2')).toEqual(value);
  });

  it('early refresh through L2: one instance refreshes shortly before expiry, the other picks up the new value', async () => {
    const namespace = uniqueNamespace();
    const r1 = await connectRedis(cleanups);
    const r2 = await connectRedis(cleanups);
    const admin = await connectRedis(cleanups);
    const a = track(createCache({ namespace, l2: { redis: r1 }, earlyRefresh: 1 }));
    const b = track(createCache({ namespace, l2: { redis: r2 } }));
    await busReady(a, b);
    let version = 0;
    const loader = async () => {
      await sleep(20);
      return ++version;
    };
    expect(await a.getOrSet('k', loader, { ttl: 300 })).toBe(1);
    vi.spyOn(Math, 'random').mockReturnValue(1e-9); // -ln(rand) ≈ 20.7: refresh as soon as within ~400 ms
    let cached = 0;
    a.onLoad((e) => {
      if (e.cached) cached++;
    });
    expect(await a.getOrSet('k', loader, { ttl: 300 })).toBe(1); // served now, refreshed in the background
    await until(() => a.stats().earlyRefreshes === 1 && cached === 1, 'the early refresh to be written');
    vi.restoreAllMocks();
    await busBarrier(admin, namespace, [a, b]);
    expect(await b.getOrSet('k', loader, { ttl: 300 })).toBe(2);
    expect(version).toBe(2);
  });
});

describe('cache on the Redis Cluster', () => {
  it('namespaces spread over the masters; clear() scans every master and leaves other namespaces alone', async () => {
    const cluster = await connectCluster(cleanups);
    const masters = cluster.nodes('master');
    expect(masters).toHaveLength(3);
    // Namespaces until they sit on every master (each namespace is one slot, so one master).
    const owner = new Map<Cache, number>();
    const caches: Cache[] = [];
    for (let i = 0; i < 40 && new Set(owner.values()).size < 3; i++) {
      const namespace = uniqueNamespace();
      const cache = track(createCache({ namespace, l2: { redis: cluster } }));
      await cache.setMany(Array.from({ length: 20 }, (_, k) => ({ key: `k${k}`, value: k })));
      for (const [m, node] of masters.entries()) {
        const [, keys] = await node.scan('0', 'MATCH', `{${namespace}}:*`, 'COUNT', 1000);
        if (keys.length > 0) owner.set(cache, m);
      }
      caches.push(cache);
    }
    expect(new Set(owner.values()).size).toBe(3);
    // Clear them one by one: each clear empties its namespace, on whatever master, and no other.
    for (const [i, cache] of caches.entries()) {
      expect((await cache.clear()).degraded).toBe(false);
      expect(await cache.get('k1')).toBeUndefined();
      for (const later of caches.slice(i + 1)) expect(await later.get('k1')).toBe(1);
    }
  });
});
