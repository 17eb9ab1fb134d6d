/**
 * The flash-sale demo (`npm run demo`), run for real so that it cannot silently rot: its building
 * blocks through Fastify, and its quick surge through autocannon on loopback against both stores.
 */
import { describe, expect, it } from 'vitest';
import { protectedStore } from '../examples/flash-sale/protected.js';
import { formatTable, summarize, tableRows, verdict } from '../examples/flash-sale/report.js';
import { type RunResult, runScenario } from '../examples/flash-sale/scenario.js';
import type { StoreServices } from '../examples/flash-sale/store.js';
import { quickSurge } from '../examples/flash-sale/surge.js';
import { unprotectedStore } from '../examples/flash-sale/unprotected.js';
import { catalogue, Mailer, PaymentService, SimulatedDatabase } from '../examples/flash-sale/world.js';

const services = (payments = new PaymentService()): StoreServices => ({
  db: new SimulatedDatabase(catalogue(5)),
  payments,
  mailer: new Mailer({ flakiness: 0 }),
});

describe('flash-sale building blocks', () => {
  it('100 concurrent reads of a product that is not cached run the page handler once and make one database query (single-flight)', async () => {
    const plain = services();
    const guarded = services();
    const stores = [unprotectedStore(plain), protectedStore(guarded)];
    try {
      const [a, b] = await Promise.all(
        stores.map((store) =>
          Promise.all(
            Array.from({ length: 100 }, () => store.app.inject({ method: 'GET', url: '/products/3' })),
          ),
        ),
      );
      for (const responses of [a!, b!]) {
        expect(responses.every((r) => r.statusCode === 200 && r.json().id === 3)).toBe(true);
      }
      expect(plain.db.reads).toBe(100);
      expect(guarded.db.reads).toBe(1);
      // The plugin's response cache ran the page handler once; the other 99 shared its response.
      expect(stores[1]!.details().pagesFromCache).toBe(99);
      const again = await stores[1]!.app.inject({ method: 'GET', url: '/products/3' });
      expect(again.headers['cache-status']).toMatch(/^buttress; hit/);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('a checkout while the payments circuit is open is answered 503 with Retry-After, and the provider is not called', async () => {
    // Down for the whole test: every charge is slow and fails.
    const payments = new PaymentService({
      brownout: { from: 0, until: 60_000 },
      downFailureRate: 1,
      downLatencyMs: [1, 2],
      flakiness: 0,
    });
    const world = services(payments);
    const store = protectedStore(world);
    const checkout = () =>
      store.app.inject({ method: 'POST', url: '/checkout', payload: { productId: 1, customer: 'ann' } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await checkout()).statusCode);
      // Failures first (502: the provider failed; each retried within the budget), then the breaker opens.
      expect(statuses[0]).toBe(502);
      expect(statuses.at(-1)).toBe(503);
      expect(statuses.indexOf(503)).toBeLessThan(8);
      const calls = payments.calls;
      const refused = await checkout();
      expect(refused.statusCode).toBe(503);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json()).toMatchObject({ status: 503, code: 'E_CIRCUIT_OPEN' });
      expect(payments.calls).toBe(calls);
      expect(store.details().breakerOpened).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('checkouts over the limit are shed at once with 503, Retry-After and E_BULKHEAD_FULL; the rest are paid', async () => {
    // A slow but healthy provider with room for all: only the limiter (8 at once, 8 waiting up to
    // 50 ms) turns checkouts away.
    const payments = new PaymentService({ capacity: 100, latencyMs: [200, 200], flakiness: 0 });
    const store = protectedStore(services(payments));
    try {
      const responses = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          store.app.inject({
            method: 'POST',
            url: '/checkout',
            payload: { productId: 1, customer: `c${i}` },
          }),
        ),
      );
      const shed = responses.filter((r) => r.statusCode === 503);
      const paid = responses.filter((r) => r.statusCode === 201);
      expect(shed.length + paid.length).toBe(40);
      expect(paid.length).toBeGreaterThanOrEqual(8);
      expect(shed.length).toBeGreaterThanOrEqual(24);
      for (const r of shed) {
        expect(r.json()).toMatchObject({ status: 503, code: 'E_BULKHEAD_FULL' });
        expect(r.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      }
      expect(store.counters.ordersPaid).toBe(paid.length);
    } finally {
      await store.close();
    }
  });

  it('a paid order gets exactly one email through the queue although the mailer fails often', async () => {
    const world = { ...services(), mailer: new Mailer({ flakiness: 0.5 }) };
    const store = protectedStore(world);
    try {
      const statuses: number[] = [];
      // One at a time, within the limiter and the provider's capacity: all paid (a flaky charge
      // is retried).
      for (let i = 0; i < 20; i++) {
        const response = await store.app.inject({
          method: 'POST',
          url: '/checkout',
          payload: { productId: 2, customer: `c${i}` },
        });
        statuses.push(response.statusCode);
      }
      expect(statuses).toEqual(Array(20).fill(201));
      await store.settle(10_000);
      expect(store.counters.ordersPaid).toBe(20);
      expect(world.mailer.delivered.size).toBe(20);
      expect(world.mailer.failures).toBeGreaterThan(0);
      expect(store.counters.emailsLost).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe('flash-sale quick surge, both stores over loopback', () => {
  it('buttress sheds with 503 + Retry-After, opens the payments breaker, spares the database and delivers every email', async () => {
    const plain: RunResult = await runScenario('unprotected', quickSurge);
    const guarded: RunResult = await runScenario('protected', quickSurge);
    const a = summarize(plain);
    const b = summarize(guarded);
    const table = formatTable(['', 'without', 'with'], tableRows(a, b));

    // The database: the cache and single-flight answer nearly every product read.
    expect(b.dbReads * 5, table).toBeLessThan(a.dbReads);
    // Shedding: deliberate 503s, every one with Retry-After, fast compared with the plain store.
    expect(b.shed, table).toBeGreaterThan(0);
    expect(guarded.load.browse.unavailable + guarded.load.buy.unavailable).toBe(0);
    expect(b.breakerP50, table).toBeLessThan(a.p50);
    // Payments: the breaker opened during the outage, and the provider saw far fewer calls while down.
    expect(guarded.details.breakerOpened, table).toBeGreaterThanOrEqual(1);
    expect(b.shedByBreaker, table).toBeGreaterThan(0);
    expect(b.paymentCallsWhileDown * 2, table).toBeLessThan(a.paymentCallsWhileDown);
    // Emails: every paid order got one; none were lost.
    expect(b.ordersPaid, table).toBeGreaterThan(0);
    expect(guarded.emails.sent, table).toBe(guarded.counters.ordersPaid);
    expect(guarded.counters.emailsLost).toBe(0);
    // Nobody charged without an order: the payments timeout is above the provider's slowest answer.
    expect(guarded.payments.charged, table).toBe(guarded.counters.ordersPaid);
    // Shoppers: faster answers and fewer failures with buttress.
    expect(b.p50, table).toBeLessThan(a.p50);
    expect(b.errors, table).toBeLessThan(a.errors);

    // The verdict is made of these numbers.
    const words = verdict(a, b, guarded).join(' ');
    expect(words).toContain(b.dbReads.toLocaleString('en-US'));
    expect(words).toContain(a.dbReads.toLocaleString('en-US'));
  }, 40_000);
});

describe('verdict', () => {
  it('follows the numbers, whichever way they go', async () => {
    const guarded = await runScenarioStub();
    const base = summarize(guarded);
    const worse = { ...base, throughput: base.throughput / 2, p99: base.p99 * 3 };
    const better = verdict(worse, base, guarded)[0]!;
    const reversed = verdict(base, worse, guarded)[0]!;
    expect(better).toMatch(/as many successful requests/);
    expect(reversed).toMatch(/fewer successful requests/);
    expect(reversed).toMatch(/latency was higher/);
    expect(verdict(base, base, guarded)[0]).toMatch(/about as many/);
  });
});

/** A protected run's result without running a surge: the shape `verdict` reads. */
async function runScenarioStub(): Promise<RunResult> {
  const load = () => ({
    latencies: [1, 2, 3, 4],
    statuses: new Map([[200, 4]]),
    shed: new Map<string, number>(),
    cacheHits: 0,
    unavailable: 0,
    shedLatencies: new Map<string, number[]>(),
    timeouts: 0,
    connectionErrors: 0,
  });
  return {
    variant: 'protected',
    profile: quickSurge,
    load: { browse: load(), buy: load(), elapsedMs: quickSurge.durationMs },
    counters: { ordersPaid: 4, emailsLost: 0, sharedLoads: 0 },
    db: { kind: 'simulated', reads: 10, writes: 4 },
    payments: { calls: 4, failures: 0, callsWhileDown: 0, charged: 4, downMs: 0 },
    emails: { sent: 4, calls: 4 },
    details: { breakerOpened: 0 },
    settleMs: 0,
  };
}
