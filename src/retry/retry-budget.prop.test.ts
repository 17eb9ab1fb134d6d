import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { retryBudget } from './retry-budget.js';

const config = fc.record({
  ratio: fc.oneof(fc.constantFrom(0, 0.1, 0.2, 0.25, 0.5, 1, 2), fc.double({ min: 0, max: 3, noNaN: true })),
  minPerSecond: fc.oneof(fc.constantFrom(0, 1, 10), fc.double({ min: 0, max: 5, noNaN: true })),
  ttl: fc.constantFrom(1000, 2000, 10_000),
});
const op = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'call' as const }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'retry' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
  },
);

test.prop([config, fc.array(op, { maxLength: 400 })])(
  'a retry budget never allows more than ratio·calls + minPerSecond·ttl retries in any window',
  ({ ratio, minPerSecond, ttl }, ops) => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock, ratio, minPerSecond, ttl });
    const bucket = ttl / 10;
    const calls: number[] = [];
    const retries: number[] = [];
    for (const o of ops) {
      if (o.kind === 'wait') clock.advance(o.ms);
      else if (o.kind === 'call') {
        budget.deposit();
        calls.push(clock.now());
      } else if (budget.tryWithdraw()) {
        const t = clock.now();
        retries.push(t);
        // The window of length ttl ending at this retry; calls count over it widened by one bucket
        // (deposits live between ttl and ttl + ttl/10).
        const inWindow = retries.filter((r) => r > t - ttl).length;
        const callsInWindow = calls.filter((c) => c > t - ttl - bucket).length;
        expect(inWindow).toBeLessThanOrEqual(ratio * callsInWindow + minPerSecond * (ttl / 1000) + 1e-9);
      }
    }
  },
);

test.prop([config, fc.array(op, { maxLength: 300 })])(
  'a retry budget grants exactly what a reference ledger of bucketed deposits and withdrawals allows',
  ({ ratio, minPerSecond, ttl }, ops) => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock, ratio, minPerSecond, ttl });
    const width = ttl / 10;
    const scale = 1_000_000;
    const deposit = Math.floor(ratio * scale);
    const reserve = Math.floor(minPerSecond * (ttl / 1000) * scale);
    const ledger: { bucket: number; amount: number }[] = [];
    const live = () => {
      const b = Math.floor(clock.now() / width);
      return ledger.filter((e) => e.bucket >= b - 10).reduce((sum, e) => sum + e.amount, 0);
    };
    for (const o of ops) {
      if (o.kind === 'wait') clock.advance(o.ms);
      else if (o.kind === 'call') {
        budget.deposit();
        ledger.push({ bucket: Math.floor(clock.now() / width), amount: deposit });
      } else {
        const allowed = reserve + live() >= scale;
        expect(budget.tryWithdraw()).toBe(allowed);
        if (allowed) ledger.push({ bucket: Math.floor(clock.now() / width), amount: -scale });
      }
      expect(budget.balance).toBe(Math.max(0, Math.floor((reserve + live()) / scale)));
    }
  },
);
