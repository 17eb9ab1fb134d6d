import dc from 'node:diagnostics_channel';
import { afterEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { circuitBreaker, consecutive } from '../breaker/index.js';
import { adaptiveLimiter, bulkhead, rateLimiter } from '../bulkhead/index.js';
import { createCache } from '../cache/index.js';
import { createPgCluster } from '../pool/index.js';
import { FakePoolClass, FakeServer } from '../pool/internal/fake-pg.test-util.js';
import { createQueue, memoryBackend, type NewJob, type QueueBackend } from '../queue/index.js';
import { adaptiveThrottle, hedge, retry, retryBudget, timeout } from '../retry/index.js';
import { FakeClock } from '../testing/fake-clock.js';
import { instrument } from './index.js';
import { allChannelNames, declaredChannels, subscribed, Telemetry } from './otel.test-util.js';

/*
 * "Nothing is paid when instrument() is not called": before it, no buttress channel has a
 * subscriber, and a workload through every module publishes nothing, enters no store and builds
 * no message (the builders run only inside publish); jobs carry no headers. After close(), the
 * channels are back to no subscriber at all.
 */

const settle = async (rounds = 5) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** Spies on every way a channel can be used: publish, and runStores (tracing channels' start). */
function spyOnChannels(names: readonly string[]): () => string[] {
  const spies: [string, MockInstance][] = [];
  for (const name of names) {
    const ch = dc.channel(name);
    spies.push(
      [`${name} publish`, vi.spyOn(ch, 'publish')],
      [`${name} runStores`, vi.spyOn(ch, 'runStores')],
    );
  }
  return () => spies.filter(([, spy]) => spy.mock.calls.length > 0).map(([what]) => what);
}

/** Runs every module through the paths that report something when observed. */
async function workload(records: string[]): Promise<void> {
  const clock = new FakeClock(0);

  const cache = createCache({ namespace: 'w', clock, ttl: 100, grace: 1000 });
  await cache.get('a');
  await cache.getOrSet('a', () => 1);
  await cache.getOrSet('a', () => 1);
  clock.advance(200);
  await cache.getOrSet('a', () => Promise.reject(new Error('x')));
  await cache.set('b', 2);
  await cache.deleteByTag('t');
  await cache.close();

  const breaker = circuitBreaker({ name: 'w', strategy: consecutive(1), halfOpenAfter: 10, clock });
  await breaker.execute(() => Promise.reject(new Error('x'))).catch(() => {});
  await breaker.execute(() => 1).catch(() => {});
  clock.advance(10);
  await breaker.execute(() => 1);
  await breaker.close();

  const b = bulkhead({ name: 'w', limit: 1 });
  const held = b.execute(() => settle(1));
  await b.execute(() => 1).catch(() => {});
  await held;
  await b.close();
  const limiter = adaptiveLimiter({
    name: 'w',
    algorithm: 'aimd',
    initialLimit: 2,
    window: false,
    timeout: 1,
    clock,
  });
  const slow = [1, 2].map(() =>
    limiter.execute(async () => {
      await settle(1);
      clock.advance(5);
    }),
  );
  await limiter.execute(() => 1).catch(() => {});
  await Promise.all(slow);
  if (limiter.limit !== 1) throw new Error('the workload expects the limiter to have shrunk');
  await limiter.close();
  const rate = rateLimiter({ name: 'w', rate: 1, per: '1h', clock });
  await rate.execute(() => 1);
  await rate.execute(() => 1).catch(() => {});

  const budget = retryBudget({ ratio: 0, minPerSecond: 0, clock });
  await retry({ name: 'w', maxAttempts: 1 })
    .execute(({ attempt }) => (attempt === 0 ? Promise.reject(new Error('x')) : 1))
    .catch(() => {});
  await retry({ maxAttempts: 1, budget, clock })
    .execute(() => Promise.reject(new Error('x')))
    .catch(() => {});
  const h = hedge({ delay: 5, clock });
  const hedged = h.execute(({ attempt }) => (attempt === 0 ? new Promise(() => {}) : Promise.resolve(1)));
  clock.advance(5);
  await hedged;
  const deadline = timeout(5, { clock }).execute(() => new Promise(() => {}));
  clock.advance(5);
  await deadline.catch(() => {});
  const throttle = adaptiveThrottle({ clock, random: () => 0 });
  for (let i = 0; i < 5; i++) await throttle.execute(() => Promise.reject(new Error('x'))).catch(() => {});

  const primary = new FakeServer('primary', 'primary');
  const replica = new FakeServer('replica-0', 'replica');
  replica.lsn = primary.lsn;
  const cluster = createPgCluster({
    Pool: FakePoolClass as never,
    primary: { server: primary } as never,
    replicas: [{ server: replica } as never],
    clock,
  });
  await cluster.checkHealth();
  await cluster.query('SELECT 1');
  replica.up = false;
  replica.killConnections();
  await cluster.checkHealth();
  await cluster.end();

  const inner = memoryBackend({ clock });
  const backend: QueueBackend = {
    kind: 'recording',
    open(name, options) {
      const store = inner.open(name, options);
      return new Proxy(store, {
        get(target, prop, receiver) {
          if (prop === 'add') {
            return (jobs: readonly NewJob[], window: number) => {
              for (const job of jobs) records.push(job.record);
              return target.add(jobs, window);
            };
          }
          const value = Reflect.get(target, prop, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    },
  };
  const queue = createQueue<number>('w', { clock, backend, defaults: { attempts: 1 } });
  await queue.add(1);
  await queue.addBulk([{ payload: 2 }, { payload: 3 }]);
  let n = 0;
  queue.process((job) => {
    n++;
    if (job.payload === 2) throw new Error('x');
  });
  for (let i = 0; i < 20 && n < 3; i++) await settle(2);
  await queue.close();
}

afterEach(() => vi.restoreAllMocks());

describe('before instrument()', () => {
  it('the source declares the channels docs/observability.md lists (sanity of the scan)', () => {
    const { plain, traced, lifecycle } = declaredChannels();
    expect(plain).toContain('buttress:cache:l2');
    expect(traced).toEqual([
      'buttress:cache:fill',
      'buttress:cache:loader',
      'buttress:queue:add',
      'buttress:queue:process',
    ]);
    expect(lifecycle).toContain('buttress:pool:create');
  });

  it('no channel has a subscriber, and a workload through every module publishes nothing', async () => {
    const names = allChannelNames();
    expect(subscribed(names)).toEqual([]);
    const used = spyOnChannels(names);
    const records: string[] = [];
    await workload(records);
    expect(used()).toEqual([]);
    // Jobs nobody traced carry no headers: the record's header line has its eight fields.
    expect(records).toHaveLength(3);
    for (const record of records) expect(record.slice(0, record.indexOf('\n')).split(',')).toHaveLength(8);
  });
});

describe('instrument() and close()', () => {
  it('subscribes while open and leaves nothing subscribed after close', async () => {
    const names = allChannelNames();
    const t = new Telemetry();
    const otel = instrument({ meterProvider: t.meterProvider, tracerProvider: t.tracerProvider });
    const on = subscribed(names);
    // Every lifecycle channel, every traced operation's start and asyncEnd, the event channels.
    for (const { lifecycle, traced } of [declaredChannels()]) {
      expect(on).toEqual(expect.arrayContaining(lifecycle));
      for (const op of traced)
        expect(on).toEqual(expect.arrayContaining([`tracing:${op}:start`, `tracing:${op}:asyncEnd`]));
    }
    for (const name of [
      'buttress:cache:l2',
      'buttress:breaker:state',
      'buttress:queue:failed',
      'buttress:retry:budget-exhausted',
    ]) {
      expect(on).toContain(name);
    }
    // While instrumented, the same workload publishes on every module's channels: the workload
    // does reach them, so the first test's "nothing" is not for want of trying.
    const usedWhileOn = spyOnChannels(names);
    await workload([]);
    const seen = usedWhileOn();
    vi.restoreAllMocks();
    expect(seen).toEqual(
      expect.arrayContaining([
        'buttress:cache:create publish',
        'buttress:cache:load publish',
        'tracing:buttress:cache:fill:start runStores',
        'tracing:buttress:cache:loader:start runStores',
        'buttress:breaker:state publish',
        'buttress:breaker:reject publish',
        'buttress:bulkhead:reject publish',
        'buttress:bulkhead:limit publish',
        'buttress:bulkhead:rate-limit publish',
        'buttress:retry:retry publish',
        'buttress:retry:budget-exhausted publish',
        'buttress:retry:hedge publish',
        'buttress:retry:timeout publish',
        'buttress:retry:throttle publish',
        'buttress:pool:create publish',
        'buttress:pool:query publish',
        'buttress:pool:eject publish',
        'buttress:queue:create publish',
        'tracing:buttress:queue:add:start runStores',
        'tracing:buttress:queue:process:start runStores',
        'buttress:queue:failed publish',
        'buttress:queue:completed publish',
      ]),
    );
    otel.close();
    expect(subscribed(names)).toEqual([]);
    // The same workload after close publishes nothing again.
    const used = spyOnChannels(names);
    await workload([]);
    expect(used()).toEqual([]);
    await t.shutdown();
  });

  it('with metrics and traces off, subscribes to nothing', () => {
    const names = allChannelNames();
    const otel = instrument({ meterProvider: false, tracerProvider: false });
    expect(subscribed(names)).toEqual([]);
    otel.close();
    expect(subscribed(names)).toEqual([]);
  });
});
