import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQueue, type Queue, redisBackend, redisQueueKeys } from '../../src/queue/index.js';
import { type Cleanup, connectRedis, uniqueNamespace } from './cache-helpers.js';

// The Redis backend under load, on the shared Redis: a graceful close while jobs run, and the
// ordering invariants (priorities, delays) as properties against real Redis.

const PREFIX = 'qload';
const cleanups: Cleanup[] = [];
let redis: Redis;
const names: string[] = [];

beforeAll(async () => {
  redis = await connectRedis(cleanups);
});
afterAll(async () => {
  for (const name of names) await redis.del(...redisQueueKeys(name, PREFIX));
  for (const c of cleanups.reverse()) await c();
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, what: string, timeout = 20_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await sleep(10);
  }
}

function queue<T>(name: string): Queue<T> {
  const q = createQueue<T>(name, { backend: redisBackend(redis, { prefix: PREFIX }) });
  cleanups.push(() => q.close({ timeout: 0 }));
  return q;
}

describe('queue on Redis under load', () => {
  it('a worker closed under load finishes what it can, releases the rest at its deadline, loses nothing', async () => {
    const name = uniqueNamespace('close');
    names.push(name);
    const a = queue<number>(name);
    const b = queue<number>(name);
    const total = 3000;
    await a.addBulk(Array.from({ length: total }, (_, i) => ({ payload: i })));
    const completed = new Map<number, number>();
    const aborted: number[] = [];
    const handler = async (job: { payload: number }, { signal }: { signal: AbortSignal }) => {
      // Every 50th job is long and stops only when its signal aborts.
      const ms = job.payload % 50 === 0 ? 60_000 : 1 + (job.payload % 7);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => {
          clearTimeout(t);
          reject(signal.reason);
        });
      });
      completed.set(job.payload, (completed.get(job.payload) ?? 0) + 1);
    };
    const wa = a.process(
      async (job, ctx) => {
        try {
          await handler(job, ctx);
        } catch (error) {
          aborted.push(job.payload);
          throw error;
        }
      },
      { concurrency: 20, lockDuration: 30_000 },
    );
    await until(() => completed.size >= 300, 'some progress');
    // Worker B joins; A closes while about 20 of its jobs run, some of them long.
    // B runs the long jobs quickly, so the test need not wait for them.
    const wb = b.process(
      async (job, ctx) => {
        if (job.payload % 50 !== 0) return handler(job, ctx);
        completed.set(job.payload, (completed.get(job.payload) ?? 0) + 1);
      },
      { concurrency: 20, lockDuration: 30_000 },
    );
    await until(() => wa.running === 20, 'A to be busy');
    const t0 = Date.now();
    await wa.close({ timeout: 300 });
    const closeMs = Date.now() - t0;
    expect(closeMs).toBeGreaterThanOrEqual(250);
    expect(closeMs).toBeLessThan(3000);
    expect(wa.running).toBe(0);
    expect(aborted.length).toBeGreaterThan(0);
    // The released jobs are taken by B at once, far sooner than the 30 s lock.
    await until(() => completed.size === total, 'every job', 20_000);
    expect([...completed.values()].every((n) => n === 1)).toBe(true);
    let stats = await a.stats();
    for (let i = 0; i < 100 && stats.completed < total; i++) {
      await sleep(20);
      stats = await a.stats();
    }
    expect(stats).toMatchObject({ waiting: 0, active: 0, failed: 0, completed: total, stalled: 0 });
    await wb.close();
  }, 60_000);

  it('runs waiting jobs by priority, lower first, FIFO within a priority (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 30 }),
        async (prios) => {
          const name = uniqueNamespace('prio');
          names.push(name);
          const q = queue<number>(name);
          await q.addBulk(prios.map((p, i) => ({ payload: i, options: { priority: p } })));
          const order: number[] = [];
          const w = q.process((job) => {
            order.push(job.payload);
          });
          await until(() => order.length === prios.length, 'every job', 10_000);
          await w.close();
          const expected = prios.map((p, i) => [p, i] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
          expect(order).toEqual(expected.map(([, i]) => i));
        },
      ),
      { numRuns: 15 },
    );
  }, 60_000);

  it('never runs a delayed job before it is due (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 250 }), { minLength: 1, maxLength: 10 }),
        async (delays) => {
          const name = uniqueNamespace('delay');
          names.push(name);
          const q = queue<number>(name);
          const ran = new Map<number, number>();
          const w = q.process(
            (job) => {
              ran.set(job.payload, Date.now());
            },
            { concurrency: 10 },
          );
          const t0 = Date.now();
          await q.addBulk(delays.map((d, i) => ({ payload: i, options: { delay: d } })));
          await until(() => ran.size === delays.length, 'every job', 10_000);
          await w.close();
          for (const [i, at] of ran) {
            // Redis times delays by its own clock; 5 ms covers the two clocks' reads on one host.
            expect(at - t0).toBeGreaterThanOrEqual(delays[i]! - 5);
          }
        },
      ),
      { numRuns: 8 },
    );
  }, 60_000);
});
