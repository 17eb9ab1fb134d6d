import Fastify from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buttress } from '../../src/adapters/fastify/index.js';
import { circuitBreaker } from '../../src/breaker/index.js';
import { createCache } from '../../src/cache/index.js';
import { createPgCluster, type PgCluster } from '../../src/pool/index.js';
import { createQueue, redisBackend } from '../../src/queue/index.js';
import { type Cleanup, connectRedis, uniqueNamespace } from './cache-helpers.js';
import { adminQuery, startThrowawayPair, type ThrowawayPair, uniqueName, waitFor } from './pool-helpers.js';

// Readiness through a real Fastify server against real services: Redis, a PostgreSQL primary and
// its streaming replica (a throwaway pair of our own, since this test pauses the replica's replay
// and stops it: the shared servers are never touched), a Redis-backed queue and a breaker.

let pair: ThrowawayPair;
let db: PgCluster;
const cleanups: Cleanup[] = [];

beforeAll(async () => {
  pair = await startThrowawayPair();
  await adminQuery(pair.primary, 'CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)');
  await adminQuery(pair.primary, "INSERT INTO kv VALUES ('x', 0)");
  db = createPgCluster({
    Pool: pg.Pool,
    primary: { ...pair.primary, application_name: uniqueName('health'), max: 4 },
    replicas: [{ ...pair.replica, application_name: uniqueName('health'), max: 4 }],
    healthCheckInterval: '200ms',
    healthCheckTimeout: '1s',
    maxReplicaLag: '600ms',
  });
  await db.checkHealth();
  await waitFor(
    () => db.stats().replicas[0]!.healthy && !db.stats().replicas[0]!.ejected,
    'the replica',
    20_000,
  );
}, 120_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await db?.end({ timeout: '5s' });
  await pair?.destroy();
}, 60_000);

async function server() {
  const redis = await connectRedis(cleanups);
  const cache = createCache({ namespace: uniqueNamespace('health'), l2: { redis } });
  cleanups.push(() => cache.close());
  const queue = createQueue<{ to: string }>(uniqueNamespace('emails'), { backend: redisBackend(redis) });
  cleanups.push(() => queue.close());
  const payments = circuitBreaker({ name: 'payments' });
  const app = Fastify();
  cleanups.push(() => app.close());
  await app.register(buttress, {
    cache,
    health: {
      redis: { main: redis },
      postgres: { main: db },
      breakers: { payments },
      queues: { emails: queue },
      caches: { app: cache },
      maxReplicaLag: '600ms',
    },
  });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  return { base, queue, payments };
}

const ready = async (base: string) => {
  const r = await fetch(`${base}/ready`);
  return { status: r.status, body: (await r.json()) as { status: string; checks: Record<string, any> } };
};

describe('readiness with the real services', () => {
  it('reports Redis, the primary and replica with their lag, breakers, queue depth and the cache', async () => {
    const { base, queue, payments } = await server();
    await queue.add({ to: 'a@example.com' });
    await queue.add({ to: 'b@example.com' });
    const r = await ready(base);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ok');
    expect(r.body.checks['redis:main']).toMatchObject({ status: 'ok', connection: 'ready' });
    expect(r.body.checks['redis:main'].latencyMs).toBeGreaterThanOrEqual(0);
    const nodes = r.body.checks['postgres:main'].nodes;
    expect(nodes.map((n: { role: string }) => n.role)).toEqual(['primary', 'replica']);
    expect(nodes[1]).toMatchObject({ healthy: true, ejected: false });
    expect(typeof nodes[1].lagMs).toBe('number');
    expect(r.body.checks['queue:emails']).toMatchObject({ status: 'ok', waiting: 2 });
    expect(r.body.checks['cache:app']).toMatchObject({ status: 'ok', l2: 'up', bus: 'connected' });
    const isolation = payments.isolate();
    expect((await ready(base)).body.checks.breakers).toMatchObject({
      status: 'degraded',
      states: { payments: 'isolated' },
    });
    isolation.dispose();
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('a replica whose replay is paused under writes shows its lag and makes readiness degraded (still 200)', async () => {
    const { base } = await server();
    await adminQuery(pair.replica, 'SELECT pg_wal_replay_pause()');
    try {
      await waitFor(
        async () => {
          await db.query("UPDATE kv SET v = v + 1 WHERE k = 'x'");
          return (await ready(base)).body.checks['postgres:main'].status === 'degraded';
        },
        'the replica to show as lagging',
        15_000,
      );
      const r = await ready(base);
      expect(r.status).toBe(200);
      expect(r.body.status).toBe('degraded');
      expect(r.body.checks['postgres:main'].nodes[1].lagMs).toBeGreaterThan(600);
      expect(r.body.checks['postgres:main'].reason).toMatch(/replica-0/);
    } finally {
      await adminQuery(pair.replica, 'SELECT pg_wal_replay_resume()');
    }
    await waitFor(async () => (await ready(base)).body.status === 'ok', 'the replica to catch up', 15_000);
  });

  it('a stopped replica is degraded; a primary that cannot be reached makes readiness 503, liveness stays 200', async () => {
    const { base } = await server();
    await pair.stopReplica();
    try {
      await waitFor(
        async () => (await ready(base)).body.checks['postgres:main'].status !== 'ok',
        'the replica to fail',
        15_000,
      );
      const r = await ready(base);
      expect(r.status).toBe(200);
      expect(r.body.checks['postgres:main'].status).toBe('degraded');
    } finally {
      await pair.startReplica();
    }
    // A primary on a port nobody listens on: its health check fails.
    const dead = createPgCluster({
      Pool: pg.Pool,
      primary: { ...pair.primary, port: 1, max: 1 },
      healthCheckInterval: '200ms',
    });
    cleanups.push(() => dead.end({ timeout: '1s' }));
    await dead.checkHealth().catch(() => {});
    const app = Fastify();
    cleanups.push(() => app.close());
    await app.register(buttress, { health: { postgres: { main: dead } } });
    const deadBase = await app.listen({ port: 0, host: '127.0.0.1' });
    const r = await ready(deadBase);
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ status: 'down', checks: { 'postgres:main': { status: 'down' } } });
    expect((await fetch(`${deadBase}/health`)).status).toBe(200);
  });
});
