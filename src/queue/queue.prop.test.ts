import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { createQueue } from './queue.js';

// Ordering invariants of the memory backend, under a FakeClock. (The Redis backend's are checked
// against real Redis in test/integration/queue-order.int.test.ts.)

const settle = async (rounds = 3) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('queue ordering properties (memory)', () => {
  it('runs waiting jobs by priority, lower first, FIFO within a priority', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 40 }),
        async (prios) => {
          const clock = new FakeClock(0);
          const q = createQueue<number>('p', { clock });
          // Half added one by one, half in bulk: both paths keep the order.
          const half = Math.floor(prios.length / 2);
          for (let i = 0; i < half; i++) await q.add(i, { priority: prios[i]! });
          await q.addBulk(prios.slice(half).map((p, k) => ({ payload: half + k, options: { priority: p } })));
          const order: number[] = [];
          q.process((job) => {
            order.push(job.payload);
          });
          for (let i = 0; i < 20 && order.length < prios.length; i++) await settle();
          const expected = prios.map((p, i) => [p, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
          expect(order).toEqual(expected.map(([, i]) => i));
          await q.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('never runs a delayed job before it is due, and runs due jobs in due order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 15 }),
        async (delays) => {
          const clock = new FakeClock(0);
          const q = createQueue<number>('d', { clock });
          await q.addBulk(delays.map((d, i) => ({ payload: i, options: { delay: d } })));
          const runs: { i: number; at: number }[] = [];
          q.process((job) => {
            runs.push({ i: job.payload, at: clock.now() });
          });
          await settle();
          for (let t = 0; t <= 310 && runs.length < delays.length; t++) {
            clock.advance(1);
            await settle(2);
          }
          expect(runs.length).toBe(delays.length);
          for (const r of runs) {
            expect(r.at).toBeGreaterThanOrEqual(delays[r.i]!);
            // and not much later: when due plus the worker's timer rounding
            expect(r.at - delays[r.i]!).toBeLessThanOrEqual(3);
          }
          const expected = delays.map((d, i) => [d, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
          expect(runs.map((r) => r.i)).toEqual(expected.map(([, i]) => i));
          await q.close();
        },
      ),
      { numRuns: 40 },
    );
  });
});
