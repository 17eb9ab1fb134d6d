import { readFileSync } from 'node:fs';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { circuitBreaker, consecutive } from '../breaker/index.js';
import { adaptiveLimiter, bulkhead, rateLimiter } from '../bulkhead/index.js';
import { createCache } from '../cache/index.js';
import { createPgCluster } from '../pool/index.js';
import { FakePoolClass, FakeServer } from '../pool/internal/fake-pg.test-util.js';
import { createQueue, memoryBackend } from '../queue/index.js';
import { adaptiveThrottle, hedge, retry, retryBudget, timeout } from '../retry/index.js';
import { createShardRouter, evenShardMap } from '../shard-router/index.js';
import { FakeClock } from '../testing/fake-clock.js';
import { type Instrumentation, instrument, SCOPE_NAME, SCOPE_VERSION } from './index.js';
import { dropContextManager, parentOf, Telemetry, useContextManager } from './otel.test-util.js';

/*
 * The bridge against the OpenTelemetry SDK's in-memory pieces: every instrument the docs promise,
 * read back from a MetricReader, and every span from an InMemorySpanExporter, with an
 * AsyncLocalStorage context manager as NodeSDK installs one.
 */

const settle = async (rounds = 5) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

let t: Telemetry;
let otel: Instrumentation | undefined;

beforeAll(() => useContextManager());
afterAll(() => dropContextManager());

function setup(options: Parameters<typeof instrument>[0] = {}): Telemetry {
  t = new Telemetry();
  otel = instrument({
    meterProvider: t.meterProvider,
    tracerProvider: t.tracerProvider,
    propagator: new W3CTraceContextPropagator(),
    ...options,
  });
  return t;
}

afterEach(async () => {
  otel?.close();
  otel = undefined;
  await t?.shutdown();
});

describe('instrument() options', () => {
  it.each([
    [{ meterProvider: {} }, 'meterProvider'],
    [{ tracerProvider: 42 }, 'tracerProvider'],
    [{ propagator: { inject() {} } }, 'propagator'],
    [{ modules: ['cache', 'nope'] }, 'modules[1]'],
    [{ modules: 'cache' }, 'modules'],
    [{ jobContext: 'child' }, 'jobContext'],
    [{ cacheKeys: 'yes' }, 'cacheKeys'],
    [{ observe: [{}] }, 'observe[0]'],
    [{ tracing: true }, 'tracing'],
  ])('rejects %o naming %s', (options, name) => {
    expect(() => instrument(options as never)).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION', option: name }),
    );
  });

  it('names its meter and tracer after the package, at its version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      name: string;
      version: string;
    };
    expect([SCOPE_NAME, SCOPE_VERSION]).toEqual([pkg.name, pkg.version]);
  });

  it('close() is idempotent and works with `using`', () => {
    const telemetry = new Telemetry();
    {
      using handle = instrument({ meterProvider: telemetry.meterProvider, tracerProvider: false });
      expect(handle.closed).toBe(false);
      handle.close();
      expect(handle.closed).toBe(true);
    }
    const other = instrument({ meterProvider: false, tracerProvider: false });
    other.dispose();
    other.dispose();
    expect(other.closed).toBe(true);
  });

  it('bridges only the modules asked for', async () => {
    setup({ modules: ['breaker'] });
    const cache = createCache({ namespace: 'only' });
    await cache.getOrSet('k', () => 1);
    const breaker = circuitBreaker({ name: 'only' });
    await breaker.execute(() => 1);
    const all = await t.collect();
    expect(all.has('buttress.cache.hits')).toBe(false);
    expect(await t.value('buttress.breaker.calls', { 'buttress.breaker.name': 'only' })).toBe(1);
    expect(t.spans()).toEqual([]);
    await cache.close();
  });
});

describe('cache', () => {
  it('counts hits by layer and misses, and the hit ratio of the interval', async () => {
    setup();
    const cache = createCache({ namespace: 'shop' });
    await cache.get('absent'); // miss
    await cache.getOrSet('k', () => 'v'); // miss + load
    await cache.getOrSet('k', () => 'v'); // L1 hit
    await cache.get('k'); // L1 hit
    const name = { 'buttress.cache.name': 'shop' };
    expect(await t.value('buttress.cache.hits', { ...name, 'buttress.cache.layer': 'l1' })).toBe(2);
    expect(await t.value('buttress.cache.hits', { ...name, 'buttress.cache.layer': 'l2' })).toBe(0);
    expect(await t.value('buttress.cache.misses', name)).toBe(2);
    expect(await t.value('buttress.cache.misses', { ...name, 'buttress.cache.layer': 'l1' })).toBe(2);
    expect(await t.value('buttress.cache.misses', { ...name, 'buttress.cache.layer': 'l2' })).toBeUndefined();
    expect(await t.value('buttress.cache.misses', { ...name, 'buttress.cache.operation': 'getOrSet' })).toBe(
      1,
    );
    // The last collection saw everything since creation; now only the next interval counts.
    for (let i = 0; i < 3; i++) await cache.get('k');
    await cache.get('absent');
    expect(await t.value('buttress.cache.hit_ratio', name)).toBeCloseTo(0.75);
    expect(await t.value('buttress.cache.loads', { ...name, 'buttress.cache.outcome': 'ok' })).toBe(1);
    expect(await t.value('buttress.cache.l1.entries', name)).toBe(1);
    await cache.close();
  });

  it('records load durations, graced hits and loader errors', async () => {
    setup();
    const clock = new FakeClock(0);
    const cache = createCache({ namespace: 'g', clock, ttl: 100, grace: 10_000 });
    await cache.getOrSet('k', async () => {
      clock.advance(30);
      return 1;
    });
    clock.advance(200); // past the TTL, within grace
    await cache.getOrSet('k', () => {
      throw Object.assign(new Error('db down'), { code: 'E_DB' });
    });
    const name = { 'buttress.cache.name': 'g' };
    expect(await t.value('buttress.cache.hits', { ...name, 'buttress.cache.layer': 'grace' })).toBe(1);
    expect(await t.value('buttress.cache.loads', { ...name, 'buttress.cache.outcome': 'error' })).toBe(1);
    const [ok] = await t.points('buttress.cache.load.duration', { ...name, 'buttress.cache.cached': true });
    expect(ok!.value).toMatchObject({ count: 1, sum: 0.03 });
    expect(await t.value('buttress.cache.load.duration', { ...name, 'error.type': 'E_DB' })).toBe(1);
    expect(await t.value('buttress.cache.errors', { ...name, 'buttress.cache.operation': 'load' })).toBe(1);
    await cache.close();
  });

  it('counts callers that joined a load in flight as stampede waits', async () => {
    setup();
    const cache = createCache({ namespace: 'stampede' });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const loader = async () => {
      calls++;
      await gate;
      return 'v';
    };
    const all = Promise.all(Array.from({ length: 10 }, () => cache.getOrSet('hot', loader)));
    await settle();
    release();
    await all;
    expect(calls).toBe(1);
    expect(
      await t.value('buttress.cache.stampede.waits', {
        'buttress.cache.name': 'stampede',
        'buttress.cache.wait': 'local',
      }),
    ).toBe(9);
    expect(t.spans().filter((s) => s.name === 'getOrSet stampede')).toHaveLength(1);
    await cache.close();
  });

  it('traces a fill with its loader inside it, and the loader’s own work inside the loader', async () => {
    setup();
    const cache = createCache({ namespace: 'shop' });
    const request = t.tracer.startSpan('GET /product');
    await context.with(trace.setSpan(context.active(), request), () =>
      cache.getOrSet('product:1', async () => {
        await settle(1);
        t.tracer.startSpan('SELECT product').end();
        return { id: 1 };
      }),
    );
    request.end();
    const fill = t.span('getOrSet shop');
    const load = t.span('load shop');
    const query = t.span('SELECT product');
    expect(parentOf(fill)).toBe(request.spanContext().spanId);
    expect(parentOf(load)).toBe(fill.spanContext().spanId);
    expect(parentOf(query)).toBe(load.spanContext().spanId);
    expect(fill.attributes).toMatchObject({
      'buttress.cache.name': 'shop',
      'buttress.cache.key': 'product:1',
      'buttress.cache.source': 'loader',
      'buttress.cache.cached': true,
      'buttress.cache.refresh': false,
    });
    expect(fill.kind).toBe(SpanKind.INTERNAL);
    // A hit makes no span.
    await cache.getOrSet('product:1', () => ({ id: 2 }));
    expect(t.spans()).toHaveLength(4);
    await cache.close();
  });

  it('marks a failed fill and loader as errors, and leaves keys out on request', async () => {
    setup({ cacheKeys: false });
    const cache = createCache({ namespace: 'e' });
    await expect(
      cache.getOrSet('secret:1', () => Promise.reject(Object.assign(new Error('nope'), { code: 'E_X' }))),
    ).rejects.toThrow('nope');
    const fill = t.span('getOrSet e');
    const load = t.span('load e');
    for (const span of [fill, load]) {
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes['error.type']).toBe('E_X');
      expect(span.attributes['buttress.cache.key']).toBeUndefined();
    }
    expect(fill.events.some((e) => e.name === 'exception')).toBe(true);
    await cache.close();
  });

  it('reports caches created before instrument() through observe', async () => {
    const cache = createCache({ namespace: 'early' });
    await cache.get('x');
    setup({ observe: [cache] });
    expect(await t.value('buttress.cache.misses', { 'buttress.cache.name': 'early' })).toBe(1);
    await cache.close();
  });
});

describe('breaker', () => {
  it('reports the state as a gauge, transitions and rejections as counters', async () => {
    setup();
    const clock = new FakeClock(0);
    const breaker = circuitBreaker({ name: 'api', strategy: consecutive(2), halfOpenAfter: 1000, clock });
    const name = { 'buttress.breaker.name': 'api' };
    const state = (s: string) => t.value('buttress.breaker.state', { ...name, 'buttress.breaker.state': s });
    expect(await state('closed')).toBe(1);
    expect(await state('open')).toBe(0);
    for (let i = 0; i < 2; i++) await breaker.execute(() => Promise.reject(new Error('x'))).catch(() => {});
    await breaker.execute(() => 1).catch(() => {});
    expect(await state('open')).toBe(1);
    expect(await state('closed')).toBe(0);
    expect(
      await t.value('buttress.breaker.transitions', {
        ...name,
        'buttress.breaker.state': 'open',
        'buttress.breaker.previous_state': 'closed',
      }),
    ).toBe(1);
    expect(await t.value('buttress.breaker.rejections', { ...name, 'buttress.breaker.reason': 'open' })).toBe(
      1,
    );
    expect(await t.value('buttress.breaker.failures', name)).toBe(2);
    clock.advance(1000);
    await breaker.execute(() => 1);
    expect(await state('closed')).toBe(1);
    expect(
      await t.value('buttress.breaker.transitions', { ...name, 'buttress.breaker.state': 'closed' }),
    ).toBe(1);
  });

  it('keeps totals monotonic when a breaker goes away', async () => {
    setup();
    const a = circuitBreaker({ name: 'svc' });
    const b = circuitBreaker({ name: 'svc' });
    await a.execute(() => 1);
    await b.execute(() => 1);
    await b.execute(() => 1);
    const calls = () => t.value('buttress.breaker.calls', { 'buttress.breaker.name': 'svc' });
    expect(await calls()).toBe(3);
    await b.execute(() => 1); // counted after the last collection, before close: not lost
    await b.close();
    expect(await calls()).toBe(4);
    expect(await calls()).toBe(4);
    await a.execute(() => 1);
    expect(await calls()).toBe(5);
    // Two breakers of one name: one closed in each state, summed.
    expect(
      await t.value('buttress.breaker.state', {
        'buttress.breaker.name': 'svc',
        'buttress.breaker.state': 'closed',
      }),
    ).toBe(1);
  });
});

describe('limiters', () => {
  it('reports a bulkhead’s limit, inflight and queued, and its rejections', async () => {
    setup();
    const b = bulkhead({ name: 'db', limit: 2, queue: 1 });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running = [b.execute(() => gate), b.execute(() => gate), b.execute(() => gate)];
    await expect(b.execute(() => gate)).rejects.toMatchObject({ code: 'E_BULKHEAD_FULL' });
    const attrs = { 'buttress.limiter.name': 'db', 'buttress.limiter.kind': 'bulkhead' };
    expect(await t.value('buttress.limiter.limit', attrs)).toBe(2);
    expect(await t.value('buttress.limiter.inflight', attrs)).toBe(2);
    expect(await t.value('buttress.limiter.queued', attrs)).toBe(1);
    expect(
      await t.value('buttress.limiter.rejections', { ...attrs, 'buttress.limiter.reason': 'full' }),
    ).toBe(1);
    release();
    await Promise.all(running);
    expect(await t.value('buttress.limiter.inflight', attrs)).toBe(0);
    expect(await t.value('buttress.limiter.admitted', attrs)).toBe(3);
    await b.close();
  });

  it('reports an adaptive limiter’s limit per partition, and a rate limiter’s rejections', async () => {
    setup();
    const limiter = adaptiveLimiter({
      name: 'api',
      algorithm: 'aimd',
      initialLimit: 10,
      partitions: { live: 0.8 },
    });
    await limiter.partition('live').execute(() => 1);
    const attrs = { 'buttress.limiter.name': 'api', 'buttress.limiter.kind': 'adaptive' };
    const points = await t.points('buttress.limiter.limit', attrs);
    expect(points.find((p) => p.attributes['buttress.limiter.partition'] === undefined)?.value).toBe(10);
    expect(points.find((p) => p.attributes['buttress.limiter.partition'] === 'live')?.value).toBe(8);
    const rate = rateLimiter({ name: 'tenant', rate: 1, per: '1h', burst: 1 });
    await rate.policy('t1').execute(() => 1);
    await expect(rate.policy('t1').execute(() => 1)).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
    const rateAttrs = { 'buttress.limiter.name': 'tenant', 'buttress.limiter.kind': 'rate' };
    expect(
      await t.value('buttress.limiter.rejections', { ...rateAttrs, 'buttress.limiter.reason': 'rate' }),
    ).toBe(1);
    expect(await t.value('buttress.limiter.admitted', rateAttrs)).toBe(1);
    const rejected = await t.points('buttress.limiter.rejections', rateAttrs);
    expect(Object.keys(rejected[0]!.attributes)).not.toContain('buttress.limiter.key');
    await limiter.close();
  });
});

describe('retry', () => {
  it('counts retries, hedges, budget refusals and timeouts by policy name', async () => {
    setup();
    const clock = new FakeClock(0);
    const budget = retryBudget({ ratio: 0, minPerSecond: 0, clock });
    const policy = retry({ name: 'payments', maxAttempts: 2, clock });
    let n = 0;
    await policy.execute(() => {
      if (n++ < 2) throw new Error('flaky');
      return 'ok';
    });
    expect(await t.value('buttress.retry.retries', { 'buttress.retry.name': 'payments' })).toBe(2);

    const capped = retry({ name: 'capped', maxAttempts: 3, budget, clock });
    await expect(capped.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(
      await t.value('buttress.retry.budget.exhausted', {
        'buttress.retry.name': 'capped',
        'buttress.retry.policy': 'retry',
      }),
    ).toBe(1);

    const h = hedge({ name: 'search', delay: 10, clock });
    let resolveFirst!: (v: string) => void;
    const call = h.execute(({ attempt }) =>
      attempt === 0 ? new Promise<string>((resolve) => (resolveFirst = resolve)) : Promise.resolve('hedged'),
    );
    clock.advance(10);
    await expect(call).resolves.toBe('hedged');
    resolveFirst('late');
    expect(await t.value('buttress.retry.hedges', { 'buttress.retry.name': 'search' })).toBe(1);

    const deadline = timeout(5, { name: 'slow', clock });
    const slow = deadline.execute(() => new Promise(() => {}));
    clock.advance(10);
    await expect(slow).rejects.toMatchObject({ code: 'E_TIMEOUT' });
    expect(
      await t.value('buttress.retry.timeouts', {
        'buttress.timeout.name': 'slow',
        'buttress.timeout.strategy': 'aggressive',
      }),
    ).toBe(1);

    const throttle = adaptiveThrottle({ name: 'backend', clock, random: () => 0 });
    for (let i = 0; i < 5; i++)
      await throttle.execute(() => Promise.reject(new Error('503'))).catch(() => {});
    expect(
      await t.value('buttress.retry.throttle.rejections', { 'buttress.throttle.name': 'backend' }),
    ).toBeGreaterThan(0);
  });
});

describe('pool', () => {
  it('reports per-node connections, waiting callers, lag and health', async () => {
    setup();
    const clock = new FakeClock(1_000_000);
    const primary = new FakeServer('primary', 'primary');
    const replica = new FakeServer('replica-0', 'replica');
    replica.lsn = primary.lsn;
    const cluster = createPgCluster({
      name: 'main',
      Pool: FakePoolClass as never,
      primary: { server: primary, max: 4 } as never,
      replicas: [{ server: replica, max: 3 } as never],
      clock,
    });
    await cluster.checkHealth();
    await cluster.query('SELECT 1');
    await cluster.query('UPDATE t SET x = 1');
    const primaryPool = { 'db.client.connection.pool.name': 'main/primary' };
    const replicaPool = { 'db.client.connection.pool.name': 'main/replica-0' };
    expect(await t.value('db.client.connection.max', primaryPool)).toBe(4);
    expect(await t.value('db.client.connection.max', replicaPool)).toBe(3);
    expect(
      await t.value('db.client.connection.count', { ...primaryPool, 'db.client.connection.state': 'idle' }),
    ).toBe(1);
    expect(await t.value('db.client.connection.pending_requests', primaryPool)).toBe(0);
    expect(await t.value('buttress.pool.node.healthy', replicaPool)).toBe(1);
    expect(await t.value('buttress.pool.node.ejected', replicaPool)).toBe(0);
    expect(await t.value('buttress.pool.replica.lag', replicaPool)).toBeGreaterThanOrEqual(0);
    expect(await t.value('buttress.pool.statements', { 'buttress.pool.route': 'read-replica' })).toBe(1);
    expect(await t.value('buttress.pool.statements', { 'buttress.pool.route': 'write' })).toBe(1);
    expect(
      await t.value('db.client.operation.duration', { ...primaryPool, 'db.system.name': 'postgresql' }),
    ).toBe(1);

    // The replica falls 3 s behind: ejected for lag, and the lag shows.
    primary.write(0x1000n);
    await cluster.checkHealth();
    clock.advance(3000);
    await cluster.checkHealth();
    expect(await t.value('buttress.pool.replica.lag', replicaPool)).toBeGreaterThan(2);
    expect(await t.value('buttress.pool.node.ejected', replicaPool)).toBe(1);
    expect(await t.value('buttress.pool.ejections', { ...replicaPool, 'buttress.pool.reason': 'lag' })).toBe(
      1,
    );
    await cluster.end();
    // An ended cluster is read once more (for its totals), then no longer.
    const stats = vi.spyOn(cluster, 'stats');
    await t.collect();
    expect(stats).toHaveBeenCalledTimes(1);
    await t.collect();
    expect(stats).toHaveBeenCalledTimes(1);
  });
});

describe('shard-router', () => {
  const nodes = { a: { id: 'a' }, b: { id: 'b' } };

  it('reports the map version, shards per node, scatters and their failures', async () => {
    setup();
    const router = createShardRouter({
      name: 'users',
      logicalShards: 64,
      nodes,
      map: evenShardMap(64, ['a', 'b']),
    });
    const name = { 'buttress.shard_router.name': 'users' };
    expect(await t.value('buttress.shard_router.map.version', name)).toBe(1);
    expect(
      await t.value('buttress.shard_router.shards', { ...name, 'buttress.shard_router.node': 'a' }),
    ).toBe(32);
    expect(
      await t.value('buttress.shard_router.shards', { ...name, 'buttress.shard_router.node': 'b' }),
    ).toBe(32);
    expect(await t.value('buttress.shard_router.map.changes', name)).toBe(1);

    await router.all((node) => node.id);
    const result = await router.all(
      (node) => {
        if (node.id === 'b') throw new Error('down');
        return node.id;
      },
      { partial: 'allow' },
    );
    expect(result.failures).toHaveLength(1);
    expect(await t.value('buttress.shard_router.scatters', name)).toBe(2);
    expect(await t.value('buttress.shard_router.scatter.failures', name)).toBe(1);

    // Everything onto node a: the gauges follow the new map.
    await router.publishMap({ version: 2, logicalShards: 64, assignments: { a: [[0, 63]], b: [] } });
    expect(await t.value('buttress.shard_router.map.version', name)).toBe(2);
    expect(
      await t.value('buttress.shard_router.shards', { ...name, 'buttress.shard_router.node': 'a' }),
    ).toBe(64);
    expect(
      await t.value('buttress.shard_router.shards', { ...name, 'buttress.shard_router.node': 'b' }),
    ).toBe(0);
    expect(await t.value('buttress.shard_router.map.changes', name)).toBe(2);
    await router.close();
  });

  it('finds routers created before instrument() through observe', async () => {
    const router = createShardRouter({ name: 'early', logicalShards: 8, nodes, map: evenShardMap(8, ['a']) });
    setup({ observe: [router] });
    expect(await t.value('buttress.shard_router.shards', { 'buttress.shard_router.node': 'a' })).toBe(8);
    await router.close();
  });

  it('reports nothing for the shard router when it is left out of modules', async () => {
    setup({ modules: ['cache'] });
    const router = createShardRouter({ name: 'off', logicalShards: 8, nodes, map: evenShardMap(8, ['a']) });
    await router.all((node) => node.id);
    expect(await t.value('buttress.shard_router.scatters')).toBeUndefined();
    await router.close();
  });
});

describe('queue', () => {
  it('carries the trace context from add to the worker, and times the handler', async () => {
    setup();
    const queue = createQueue<{ n: number }>('emails');
    const request = t.tracer.startSpan('POST /signup');
    await context.with(trace.setSpan(context.active(), request), () =>
      queue.add({ n: 1 }, { jobId: 'welcome:1' }),
    );
    request.end();
    const handled = new Promise<void>((resolve) => {
      queue.process(async () => {
        await settle(1);
        t.tracer.startSpan('send email').end();
        resolve();
      });
    });
    await handled;
    await settle(10);
    const send = t.span('send emails');
    const process = t.span('process emails');
    const inner = t.span('send email');
    expect(send.kind).toBe(SpanKind.PRODUCER);
    expect(process.kind).toBe(SpanKind.CONSUMER);
    expect(parentOf(send)).toBe(request.spanContext().spanId);
    expect(parentOf(process)).toBe(send.spanContext().spanId);
    expect(process.spanContext().traceId).toBe(request.spanContext().traceId);
    expect(parentOf(inner)).toBe(process.spanContext().spanId);
    expect(send.attributes).toMatchObject({
      'messaging.system': 'buttress',
      'messaging.destination.name': 'emails',
      'messaging.operation.type': 'send',
      'messaging.message.id': 'welcome:1',
    });
    expect(process.attributes).toMatchObject({
      'messaging.operation.type': 'process',
      'messaging.message.id': 'welcome:1',
      'buttress.queue.attempt': 1,
    });
    const dest = { 'messaging.destination.name': 'emails' };
    expect(await t.value('messaging.process.duration', dest)).toBe(1);
    expect(
      await t.value('buttress.queue.processed', { ...dest, 'buttress.queue.outcome': 'completed' }),
    ).toBe(1);
    expect(await t.value('messaging.client.sent.messages', dest)).toBe(1);
    await queue.close();
  });

  it('links instead of parenting with jobContext: link; addBulk items are traced one by one', async () => {
    setup({ jobContext: 'link' });
    const queue = createQueue<number>('bulk');
    const request = t.tracer.startSpan('batch');
    await context.with(trace.setSpan(context.active(), request), () =>
      queue.addBulk([{ payload: 1 }, { payload: 2 }]),
    );
    request.end();
    let done = 0;
    const handled = new Promise<void>((resolve) => {
      queue.process(
        () => {
          if (++done === 2) resolve();
        },
        { concurrency: 2 },
      );
    });
    await handled;
    await settle(10);
    const sends = t.spans().filter((s) => s.name === 'send bulk');
    const processes = t.spans().filter((s) => s.name === 'process bulk');
    expect(sends).toHaveLength(2);
    expect(processes).toHaveLength(2);
    for (const p of processes) {
      expect(parentOf(p)).toBeUndefined();
      expect(p.spanContext().traceId).not.toBe(request.spanContext().traceId);
      expect(p.links).toHaveLength(1);
      expect(sends.map((s) => s.spanContext().spanId)).toContain(p.links[0]!.context.spanId);
    }
    expect(sends.map((s) => s.attributes['messaging.message.id']).sort()).toEqual(['1', '2']);
    await queue.close();
  });

  it('carries a traceparent even with no propagator configured', async () => {
    setup({ propagator: propagation }); // the global one, which is a no-op here
    const queue = createQueue<number>('plain');
    const request = t.tracer.startSpan('request');
    await context.with(trace.setSpan(context.active(), request), () => queue.add(1));
    request.end();
    await new Promise<void>((resolve) => queue.process(() => resolve()));
    await settle(10);
    expect(parentOf(t.span('process plain'))).toBe(t.span('send plain').spanContext().spanId);
    await queue.close();
  });

  it('counts failures, dead letters and stalls, and reports the depth', async () => {
    setup();
    const clock = new FakeClock(0);
    const backend = memoryBackend({ clock });
    const queue = createQueue<number>('work', {
      clock,
      backend,
      defaults: { attempts: 2, backoff: { delay: 10, jitter: 0 } },
    });
    await queue.addBulk([{ payload: 1 }, { payload: 2 }, { payload: 3, options: { delay: 60_000 } }]);
    const dest = { 'messaging.destination.name': 'work' };
    expect(await t.value('buttress.queue.jobs', { ...dest, 'buttress.queue.state': 'waiting' })).toBe(2);
    expect(await t.value('buttress.queue.jobs', { ...dest, 'buttress.queue.state': 'delayed' })).toBe(1);
    queue.process(
      (job) => {
        if (job.payload === 1) throw Object.assign(new Error('bad'), { code: 'E_BAD' });
      },
      { lockDuration: 100 },
    );
    for (let i = 0; i < 20; i++) {
      clock.advance(5);
      await settle(3);
    }
    expect(await t.value('buttress.queue.processed', { ...dest, 'buttress.queue.outcome': 'retry' })).toBe(1);
    expect(
      await t.value('buttress.queue.processed', { ...dest, 'buttress.queue.outcome': 'dead-letter' }),
    ).toBe(1);
    expect(await t.value('buttress.queue.dead_letters', dest)).toBe(1);
    expect(await t.value('messaging.process.duration', { ...dest, 'error.type': 'E_BAD' })).toBe(2);
    expect(await t.value('buttress.queue.jobs', { ...dest, 'buttress.queue.state': 'dead-letter' })).toBe(1);
    const failed = t
      .spans()
      .filter((s) => s.name === 'process work' && s.status.code === SpanStatusCode.ERROR);
    expect(failed.map((s) => s.attributes['buttress.queue.last_attempt']).sort()).toEqual([false, true]);

    expect(await t.value('buttress.queue.worker.running', dest)).toBe(0);
    await queue.close();
  });

  it('counts an expired lease as a stall, and running handlers as a gauge', async () => {
    setup();
    const clock = new FakeClock(0);
    const backend = memoryBackend({ clock });
    const queue = createQueue<number>('stall', { clock, backend });
    await queue.add(1);
    // A dead worker: leases the job and never renews it.
    await backend.open('stall', { clock }).fetch({
      token: 'dead',
      max: 1,
      lockDuration: 100,
      rateLimit: undefined,
      completed: [],
      retention: { count: 10, age: 1000 },
    });
    let release!: () => void;
    queue.process(() => new Promise<void>((resolve) => (release = resolve)), { lockDuration: 100 });
    for (let i = 0; i < 20 && release === undefined; i++) {
      clock.advance(10);
      await settle(3);
    }
    const dest = { 'messaging.destination.name': 'stall' };
    expect(await t.value('buttress.queue.stalls', { ...dest, 'buttress.queue.outcome': 'requeued' })).toBe(1);
    expect(await t.value('buttress.queue.worker.running', dest)).toBe(1);
    release();
    await settle(5);
    expect(await t.value('buttress.queue.worker.running', dest)).toBe(0);
    await queue.close();
  });
});

describe('close', () => {
  it('ends the spans of operations still running, marked unfinished', async () => {
    setup();
    const cache = createCache({ namespace: 'open' });
    let release!: (v: number) => void;
    const pending = cache.getOrSet('k', () => new Promise<number>((resolve) => (release = resolve)));
    await settle();
    otel!.close();
    expect(t.spans().map((s) => [s.name, s.attributes['buttress.unfinished']])).toEqual([
      ['load open', true],
      ['getOrSet open', true],
    ]);
    release(1);
    await pending;
    expect(t.spans()).toHaveLength(2);
    await cache.close();
  });
});

describe('independence', () => {
  it('two handles report independently, and closing one leaves the other', async () => {
    const a = new Telemetry();
    const b = new Telemetry();
    const ha = instrument({ meterProvider: a.meterProvider, tracerProvider: a.tracerProvider });
    const hb = instrument({ meterProvider: b.meterProvider, tracerProvider: b.tracerProvider });
    const breaker = circuitBreaker({ name: 'two' });
    await breaker.execute(() => 1);
    ha.close();
    await breaker.execute(() => Promise.reject(new Error('x'))).catch(() => {});
    expect(await a.value('buttress.breaker.calls', { 'buttress.breaker.name': 'two' })).toBeUndefined();
    expect(await b.value('buttress.breaker.calls', { 'buttress.breaker.name': 'two' })).toBe(2);
    hb.close();
    await a.shutdown();
    await b.shutdown();
  });
});
