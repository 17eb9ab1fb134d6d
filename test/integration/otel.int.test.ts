import { randomBytes } from 'node:crypto';
import { context, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCache } from '../../src/cache/index.js';
import { type Instrumentation, instrument } from '../../src/otel/index.js';
import { dropContextManager, parentOf, Telemetry, useContextManager } from '../../src/otel/otel.test-util.js';
import { createQueue, redisBackend, redisQueueKeys } from '../../src/queue/index.js';
import { createTcpProxy } from '../../src/testing/index.js';
import { type Cleanup, connectRedis, REDIS, uniqueNamespace, until } from './cache-helpers.js';

// buttress/otel against the real Redis: L2 latency and bus messages of two cache instances, the
// fleet-wide stampede wait, and a job's trace context carried through the Redis queue backend from
// one Queue object (the producer's process) to another (the worker's). Connections fail the run
// when Redis is down: nothing here skips.

let t: Telemetry;
let otel: Instrumentation;
const cleanups: Cleanup[] = [];

beforeAll(() => useContextManager());
afterAll(() => dropContextManager());

function setup(): void {
  t = new Telemetry();
  otel = instrument({
    meterProvider: t.meterProvider,
    tracerProvider: t.tracerProvider,
    propagator: new W3CTraceContextPropagator(),
  });
}

afterEach(async () => {
  otel.close();
  for (const c of cleanups.splice(0).reverse()) await c();
  await t.shutdown();
});

describe('cache on Redis', () => {
  it('times every L2 call, counts L2 hits, bus messages and fleet waits', async () => {
    setup();
    const namespace = uniqueNamespace('otel');
    const a = createCache({ namespace, l2: { redis: await connectRedis(cleanups) } });
    const b = createCache({ namespace, l2: { redis: await connectRedis(cleanups) } });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await until(() => a.stats().bus.connected && b.stats().bus.connected, 'both buses subscribed');

    // A loads slowly; B asks for the same key meanwhile and waits on A's lease, then reads L2.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const loading = a.getOrSet('k', async () => {
      await gate;
      return 'v';
    });
    await until(() => a.stats().loads === 1, 'A loading');
    const waiting = b.getOrSet('k', () => 'from B');
    await until(() => b.stats().leaseWaits > 0, 'B waiting on the lease');
    release();
    expect(await loading).toBe('v');
    expect(await waiting).toBe('v');

    const name = { 'buttress.cache.name': namespace };
    expect(
      await t.value('buttress.cache.stampede.waits', { ...name, 'buttress.cache.wait': 'fleet' }),
    ).toBeGreaterThan(0);
    expect(
      await t.value('buttress.cache.hits', { ...name, 'buttress.cache.layer': 'l2' }),
    ).toBeGreaterThanOrEqual(1);
    const ops = new Set(
      (await t.points('buttress.cache.l2.duration', name)).map(
        (p) => p.attributes['buttress.cache.operation'],
      ),
    );
    for (const op of ['read-entries', 'get-or-lease', 'fill']) expect(ops.has(op)).toBe(true);
    const [fillPoint] = await t.points('buttress.cache.l2.duration', {
      ...name,
      'buttress.cache.operation': 'fill',
    });
    expect(fillPoint!.value).toMatchObject({ count: 1 });
    expect((fillPoint!.value as { sum: number }).sum).toBeGreaterThan(0);
    // B's fill found A's value in Redis.
    const fills = t.spans().filter((s) => s.name === `getOrSet ${namespace}`);
    expect(fills.map((s) => s.attributes['buttress.cache.source']).sort()).toEqual(['l2', 'loader']);

    // A write on A reaches B over the bus.
    await a.set('k', 'w');
    await until(() => b.stats().bus.received > 0, 'B received the invalidation');
    expect(await t.value('buttress.cache.bus.messages', name)).toBeGreaterThanOrEqual(1);
    expect(
      await t.value('buttress.cache.invalidations', { ...name, 'buttress.cache.invalidation': 'keys' }),
    ).toBeGreaterThanOrEqual(1);
    expect(await t.value('buttress.cache.bus.connected', name)).toBe(2);
  });

  it('reports a failed L2 call with its error type', async () => {
    setup();
    const namespace = uniqueNamespace('otel');
    const proxy = await createTcpProxy({ target: REDIS });
    cleanups.push(() => proxy.close());
    const redis = await connectRedis(cleanups, proxy.address, { retryStrategy: () => 20 });
    const cache = createCache({ namespace, l2: { redis, timeout: 50 }, bus: false });
    cleanups.push(() => cache.close());
    await cache.get('k');
    proxy.delay(150); // every call now misses its 50 ms deadline
    expect(await cache.get('k')).toBeUndefined();
    const name = { 'buttress.cache.name': namespace };
    const failed = await t.points('buttress.cache.l2.duration', { ...name, 'error.type': 'E_REDIS_TIMEOUT' });
    expect(failed).toHaveLength(1);
    expect((failed[0]!.value as { min: number }).min).toBeGreaterThanOrEqual(0.045);
    expect(await t.value('buttress.cache.errors', { ...name, 'buttress.cache.operation': 'read' })).toBe(1);
    proxy.reset();
  });
});

describe('queue on Redis', () => {
  it('carries the trace context from the producer’s queue to another worker’s, and reads the depth', async () => {
    setup();
    const name = `otel-${randomBytes(5).toString('hex')}`;
    const prefix = 'otelint';
    const producerRedis = await connectRedis(cleanups);
    const workerRedis = await connectRedis(cleanups);
    cleanups.push(() => producerRedis.del(...redisQueueKeys(name, prefix)));
    const producer = createQueue<{ to: string }>(name, { backend: redisBackend(producerRedis, { prefix }) });
    const worker = createQueue<{ to: string }>(name, { backend: redisBackend(workerRedis, { prefix }) });
    cleanups.push(
      () => worker.close(),
      () => producer.close(),
    );

    const request = t.tracer.startSpan('POST /signup');
    await context.with(trace.setSpan(context.active(), request), () =>
      producer.add({ to: 'a@example.com' }, { jobId: 'welcome:1' }),
    );
    request.end();
    const dest = { 'messaging.destination.name': name };
    expect(await t.value('buttress.queue.jobs', { ...dest, 'buttress.queue.state': 'waiting' })).toBe(1);

    let seen: string | undefined;
    const done = new Promise<void>((resolve) => {
      worker.process(async (job) => {
        seen = job.payload.to;
        t.tracer.startSpan('smtp').end();
        resolve();
      });
    });
    await done;
    await until(() => t.spans().some((s) => s.name === `process ${name}`), 'the process span ended');
    expect(seen).toBe('a@example.com');
    const send = t.span(`send ${name}`);
    const processed = t.span(`process ${name}`);
    expect(parentOf(send)).toBe(request.spanContext().spanId);
    expect(parentOf(processed)).toBe(send.spanContext().spanId);
    expect(processed.spanContext().traceId).toBe(request.spanContext().traceId);
    expect(parentOf(t.span('smtp'))).toBe(processed.spanContext().spanId);
    expect(processed.attributes['messaging.message.id']).toBe('welcome:1');
    expect(
      await t.value('buttress.queue.processed', { ...dest, 'buttress.queue.outcome': 'completed' }),
    ).toBe(1);
  });
});
