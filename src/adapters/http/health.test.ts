import { describe, expect, it } from 'vitest';
import { circuitBreaker } from '../../breaker/circuit-breaker.js';
import { breakerRegistry } from '../../breaker/registry.js';
import { createCache } from '../../cache/cache.js';
import type { RedisConnection } from '../../core/redis.js';
import type { PgCluster, PgClusterStats, PgNodeStats } from '../../pool/cluster.js';
import { createQueue } from '../../queue/queue.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { createHealth } from './health.js';

function node(over: Partial<PgNodeStats>): PgNodeStats {
  return {
    name: 'primary',
    role: 'primary',
    address: '127.0.0.1:5432/test',
    total: 1,
    idle: 1,
    inUse: 0,
    waiting: 0,
    max: 10,
    healthy: true,
    ejected: false,
    ejectReason: undefined,
    lagMs: undefined,
    lsn: undefined,
    inRecovery: false,
    replayPaused: undefined,
    breaker: 'closed',
    lastCheckAt: 0,
    consecutiveFailures: 0,
    lastError: undefined,
    acquired: 0,
    timeouts: 0,
    rejectedFull: 0,
    errors: 0,
    ...over,
  };
}
function cluster(primary: Partial<PgNodeStats>, replicas: Partial<PgNodeStats>[] = []): PgCluster {
  const stats = {
    name: 'db',
    closed: false,
    primary: node(primary),
    replicas: replicas.map((r, i) => node({ name: `replica-${i}`, role: 'replica', ...r })),
  };
  return { stats: () => stats as unknown as PgClusterStats } as unknown as PgCluster;
}
const redis = (ping: () => Promise<string>, status = 'ready') =>
  ({ ping, status }) as unknown as RedisConnection;

describe('createHealth', () => {
  it('liveness touches nothing', () => {
    const health = createHealth({ redis: { main: redis(() => Promise.reject(new Error('down'))) } });
    expect(health.liveness().status).toBe('ok');
  });

  it('reports each component and the worst status', async () => {
    const health = createHealth({
      redis: { main: redis(async () => 'PONG') },
      postgres: { main: cluster({}, [{ lagMs: 20 }, { lagMs: 30_000 }]) },
      breakers: { payments: circuitBreaker({ name: 'payments' }) },
      queues: { emails: createQueue('emails') },
      caches: { app: createCache() },
      checks: { custom: () => ({ status: 'ok', version: 3 }) },
    });
    const report = await health.readiness();
    expect(report.status).toBe('degraded');
    expect(report.checks['redis:main']).toMatchObject({ status: 'ok', connection: 'ready' });
    expect(report.checks['postgres:main']).toMatchObject({
      status: 'degraded',
      reason: 'replica-1 lags 30000ms',
    });
    expect((report.checks['postgres:main']!.nodes as { lagMs: number }[]).map((n) => n.lagMs)).toEqual([
      undefined,
      20,
      30_000,
    ]);
    expect(report.checks.breakers).toMatchObject({ status: 'ok', states: { payments: 'closed' } });
    expect(report.checks['queue:emails']).toMatchObject({
      status: 'ok',
      waiting: 0,
      active: 0,
      delayed: 0,
      failed: 0,
    });
    expect(report.checks['cache:app']).toMatchObject({ status: 'ok', l2: 'off' });
    expect(report.checks.custom).toMatchObject({ status: 'ok', version: 3 });
  });

  it('a primary that failed its check is down; an open breaker, an ejected replica or a deep queue are degraded', async () => {
    const breaker = circuitBreaker({ name: 'p' });
    breaker.isolate();
    const queue = createQueue<number>('q');
    await queue.add(1);
    await queue.add(2);
    const health = createHealth({
      postgres: {
        a: cluster({ healthy: false, lastError: 'ECONNREFUSED' }),
        b: cluster({}, [{ ejected: true, ejectReason: 'lag' }]),
      },
      breakers: { p: breaker },
      queues: { q: queue },
      maxQueueDepth: 1,
    });
    const report = await health.readiness();
    expect(report.status).toBe('down');
    expect(report.checks['postgres:a']).toMatchObject({ status: 'down', reason: 'ECONNREFUSED' });
    expect(report.checks['postgres:b']).toMatchObject({
      status: 'degraded',
      reason: 'replica-0 ejected (lag)',
    });
    expect(report.checks.breakers).toMatchObject({ status: 'degraded', states: { p: 'isolated' } });
    expect(report.checks['queue:q']).toMatchObject({ status: 'degraded', waiting: 2 });
  });

  it('a registry reports every breaker it holds', async () => {
    const registry = breakerRegistry({ create: (key: string) => ({ name: key }) });
    registry.get('a');
    const report = await createHealth({ breakers: registry }).readiness();
    expect(report.checks.breakers).toMatchObject({ states: { a: 'closed' } });
  });

  it('a check that does not answer within the deadline is down (timeout); one that throws is down with its message', async () => {
    const clock = new FakeClock();
    const health = createHealth({
      clock,
      timeout: '1s',
      redis: {
        slow: redis(() => new Promise(() => {})),
        broken: redis(() => Promise.reject(new Error('ECONNRESET'))),
      },
    });
    const pending = health.readiness();
    await clock.advanceAsync(1000);
    const report = await pending;
    expect(report.checks['redis:slow']).toEqual({ status: 'down', reason: 'timeout' });
    expect(report.checks['redis:broken']).toEqual({ status: 'down', reason: 'ECONNRESET' });
  });

  it('validates its options, naming them', () => {
    expect(() => createHealth({ redis: { x: {} as never } })).toThrow(/health\.redis/);
    expect(() => createHealth({ postgres: { x: {} as never } })).toThrow(/health\.postgres\.x/);
    expect(() => createHealth({ checks: { x: 1 as never } })).toThrow(/health\.checks\.x/);
    expect(() => createHealth({ timeout: -1 })).toThrow(/health\.timeout/);
    expect(() => createHealth({ extra: 1 } as never)).toThrow(/health\.extra/);
  });
});
