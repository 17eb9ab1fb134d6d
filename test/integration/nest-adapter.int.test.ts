import 'reflect-metadata';
import { Controller, Get, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ButtressModule, Cached, InjectPool, InjectQueue } from '../../src/adapters/nest/index.js';
import { createCache } from '../../src/cache/index.js';
import { createPgCluster, type PgCluster } from '../../src/pool/index.js';
import { createQueue, type Queue, redisBackend } from '../../src/queue/index.js';
import { type Cleanup, connectRedis, uniqueNamespace } from './cache-helpers.js';
import { PRIMARY, REPLICA, uniqueName, waitFor } from './pool-helpers.js';

// ButtressModule against the real services: the shared PostgreSQL primary and its replica (read
// only here: nothing is paused or stopped), Redis behind the cache and the queue. Nothing skips.

let cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

let dbRuns = 0;

@Controller()
class Reports {
  constructor(
    @InjectPool() private readonly db: PgCluster,
    @InjectQueue('reports') private readonly queue: Queue<{ id: number }>,
  ) {}

  @Get('answer')
  @Cached({ ttl: '30s' })
  async answer() {
    dbRuns++;
    const { rows } = await this.db.query<{ answer: number; replica: boolean }>(
      'SELECT 42 AS answer, pg_is_in_recovery() AS replica',
    );
    return rows[0];
  }

  @Get('enqueue')
  async enqueue() {
    return { id: (await this.queue.add({ id: 1 })).id };
  }
}

async function app(namespace: string): Promise<{ url: string; db: PgCluster }> {
  const redis = await connectRedis(cleanups);
  const cache = createCache({ namespace, l2: { redis } });
  const db = createPgCluster({
    Pool: pg.Pool,
    primary: { ...PRIMARY, application_name: uniqueName('nest'), max: 2 },
    replicas: [{ ...REPLICA, application_name: uniqueName('nest'), max: 2 }],
    healthCheckInterval: '200ms',
  });
  const queue = createQueue<{ id: number }>('reports', {
    backend: redisBackend(redis, { prefix: namespace }),
  });
  cleanups.push(() => db.end());
  cleanups.push(() => queue.close());
  cleanups.push(() => cache.close());
  await db.checkHealth();
  await waitFor(
    () => db.stats().replicas[0]?.healthy === true && !db.stats().replicas[0]!.ejected,
    'the replica',
  );
  const moduleRef = await Test.createTestingModule({
    imports: [
      ButtressModule.forRoot({
        cache,
        pool: db,
        queues: { reports: queue },
        health: { redis: { main: redis } },
      }),
    ],
    controllers: [Reports],
  }).compile();
  const nest: INestApplication = moduleRef.createNestApplication({ logger: false });
  cleanups.push(() => nest.close());
  await nest.listen(0, '127.0.0.1');
  return { url: (await nest.getUrl()).replace('[::1]', '127.0.0.1'), db };
}

describe('ButtressModule with the real PostgreSQL and Redis', () => {
  it('injects the pool and the queue; readiness reports every node with its replica lag, the queue depth and Redis', async () => {
    const namespace = uniqueNamespace('nest-int');
    const { url } = await app(namespace);
    const runs = dbRuns;
    const answer = await (await fetch(`${url}/answer`)).json();
    expect(answer).toEqual({ answer: 42, replica: true });
    expect(await (await fetch(`${url}/answer`)).json()).toEqual(answer);
    expect(dbRuns).toBe(runs + 1);
    await fetch(`${url}/enqueue`);
    await fetch(`${url}/enqueue`);

    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(200);
    const report = (await ready.json()) as {
      status: string;
      checks: Record<
        string,
        { status: string; nodes?: { role: string; lagMs?: number; healthy: boolean }[]; waiting?: number }
      >;
    };
    expect(report.status).toBe('ok');
    const nodes = report.checks['postgres:main']!.nodes!;
    expect(nodes.map((n) => n.role)).toEqual(['primary', 'replica']);
    expect(nodes.every((n) => n.healthy)).toBe(true);
    expect(typeof nodes[1]!.lagMs).toBe('number');
    expect(report.checks['queue:reports']).toMatchObject({ status: 'ok', waiting: 2 });
    expect(report.checks['redis:main']!.status).toBe('ok');
    expect(report.checks['cache:main']!.status).toBe('ok');
  });

  it('two instances on one Redis namespace share one cached answer', async () => {
    const namespace = uniqueNamespace('nest-int');
    const a = await app(namespace);
    const b = await app(namespace);
    const runs = dbRuns;
    const first = await fetch(`${a.url}/answer`);
    const etag = first.headers.get('etag')!;
    const fromB = await fetch(`${b.url}/answer`, { headers: { 'if-none-match': etag } });
    expect(fromB.status).toBe(304);
    expect(dbRuns).toBe(runs + 1);
  });
});
