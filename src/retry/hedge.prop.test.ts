import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { hedge } from './hedge.js';
import { retryBudget } from './retry-budget.js';

const attempt = fc.record({ latency: fc.integer({ min: 0, max: 200 }), ok: fc.boolean() });

test.prop([
  fc.integer({ min: 0, max: 80 }),
  fc.integer({ min: 1, max: 4 }),
  fc.array(attempt, { minLength: 5, maxLength: 5 }),
  fc.boolean(),
  fc.integer({ min: 0, max: 300 }),
])(
  'hedging never exceeds maxHedges and every loser sees its signal abort',
  async (delay, maxHedges, plan, budgetSpent, abortAt) => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock, ...(budgetSpent ? { ratio: 0, minPerSecond: 0 } : {}) });
    const h = hedge({ delay, maxHedges, budget, clock });
    const caller = new AbortController();
    const signals: AbortSignal[] = [];
    let winner = -1;
    const p = h
      .execute((ctx) => {
        const { latency, ok } = plan[ctx.attempt]!;
        const signal = ctx.signal;
        signals.push(signal);
        return new Promise<number>((resolve, reject) => {
          const t = clock.setTimeout(
            () => (ok ? resolve(ctx.attempt) : reject(new Error(`${ctx.attempt}`))),
            latency,
          );
          signal.addEventListener('abort', () => {
            clock.clearTimeout(t);
            reject(signal.reason);
          });
        });
      }, caller.signal)
      .then((v) => {
        winner = v;
      })
      .catch(() => {});
    clock.setTimeout(() => caller.abort('caller'), abortAt);
    await clock.advanceAsync(1000);
    await p;
    expect(signals.length).toBeLessThanOrEqual(1 + maxHedges);
    if (budgetSpent) expect(signals.length).toBe(1);
    for (const [i, s] of signals.entries()) expect(s.aborted).toBe(i !== winner);
  },
);
