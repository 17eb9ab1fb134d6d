import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Cluster, Redis } from 'ioredis';
import type { Cache } from '../../src/cache/index.js';
import type { TcpAddress } from '../../src/testing/index.js';

// Shared by the cache integration tests. Every connection fails the test when its server cannot
// be reached: nothing here skips (CI runs them with the servers up, see scripts/services.sh).

export const REDIS: TcpAddress = { host: '127.0.0.1', port: 6379 };
export const CLUSTER: TcpAddress[] = [7000, 7001, 7002].map((port) => ({ host: '127.0.0.1', port }));

/** A fresh namespace per test, so tests never see each other's keys. */
export function uniqueNamespace(prefix = 'cache-int'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export type Cleanup = () => unknown;

/** A connection of one "server" to the plain Redis (or to `address`, a proxy). */
export async function connectRedis(
  cleanups: Cleanup[],
  address: TcpAddress = REDIS,
  options: Record<string, unknown> = {},
): Promise<Redis> {
  const redis = new Redis({ ...address, lazyConnect: true, connectTimeout: 2_000, ...options });
  // Connection errors are expected in the fault tests; ioredis would print each one.
  redis.on('error', () => {});
  cleanups.push(async () => {
    // Between two reconnection attempts there is no socket, and disconnect() emits no 'end'.
    const socket = redis.status !== 'end' && redis.status !== 'reconnecting' && redis.status !== 'wait';
    const ended = socket ? once(redis, 'end') : undefined;
    redis.disconnect();
    await ended;
  });
  await redis.connect();
  return redis;
}

/** A connection of one "server" to the Redis Cluster on 7000-7002. */
export async function connectCluster(cleanups: Cleanup[]): Promise<Cluster> {
  const cluster = new Cluster(CLUSTER, {
    lazyConnect: true,
    redisOptions: { connectTimeout: 2_000 },
    clusterRetryStrategy: (times) => (times > 3 ? null : 100),
  });
  cluster.on('error', () => {});
  cleanups.push(async () => {
    const ended = cluster.status === 'end' ? undefined : once(cluster, 'end');
    cluster.disconnect();
    await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 2_000))]);
  });
  await cluster.connect();
  return cluster;
}

/** Polls `condition` on every turn of the event loop; fails with `what` after `timeout` ms. Returns the ms waited. */
export async function until(condition: () => boolean, what: string, timeout = 5_000): Promise<number> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeout)
      throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return performance.now() - start;
}

/** Waits until every cache's bus is subscribed (before that, nothing L2-backed enters L1). */
export async function busReady(...caches: Cache[]): Promise<void> {
  await until(() => caches.every((c) => c.stats().bus.connected), 'the cache buses to connect');
}

/**
 * A barrier through the bus: publishes a no-op message on the namespace's channel and waits until
 * every cache has received it. Redis delivers one node's messages in order, so each cache has then
 * also applied every invalidation published before. The barrier is published from a script on the
 * namespace's slot, like the caches' own messages: on a Cluster a plain PUBLISH may leave from
 * another node, and messages from two nodes are not ordered.
 */
export async function busBarrier(redis: Redis | Cluster, namespace: string, caches: Cache[]): Promise<void> {
  const seen = new Set<Cache>();
  const subs = caches.map((cache) =>
    cache.onInvalidate((e) => {
      if (e.keys?.length === 0) seen.add(cache);
    }),
  );
  try {
    await redis.eval(
      "return redis.call('PUBLISH', ARGV[1], ARGV[2])",
      1,
      `{${namespace}}:barrier`,
      `{${namespace}}:bus`,
      JSON.stringify({ o: 'test-barrier', k: [] }),
    );
    await until(() => seen.size === caches.length, 'the bus barrier');
  } finally {
    for (const sub of subs) sub.dispose();
  }
}

/** Milliseconds since an arbitrary origin, from the high-resolution clock. */
export const now = (): number => performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
