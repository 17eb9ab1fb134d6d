import { describe, expect, it } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { retryBudget } from './retry-budget.js';

describe('retryBudget', () => {
  it('starts with the minPerSecond reserve: minPerSecond * ttl retries', () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock });
    expect(budget.balance).toBe(100);
    for (let i = 0; i < 100; i++) expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
    expect(budget.balance).toBe(0);
  });

  it('lends ratio retries per deposit', () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock, ratio: 0.2, minPerSecond: 0 });
    expect(budget.tryWithdraw()).toBe(false);
    for (let i = 0; i < 4; i++) budget.deposit();
    expect(budget.tryWithdraw()).toBe(false);
    budget.deposit();
    expect(budget.balance).toBe(1);
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
    expect(budget.stats()).toEqual({ balance: 0, deposits: 5, withdrawals: 1, refusals: 3 });
  });

  it('expires deposits and withdrawals after ttl (within one tenth of it)', () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock, ratio: 1, minPerSecond: 0, ttl: '10s' });
    for (let i = 0; i < 10; i++) budget.deposit();
    expect(budget.balance).toBe(10);
    clock.advance(9_999);
    expect(budget.balance).toBe(10);
    clock.advance(1_000);
    expect(budget.balance).toBe(10);
    clock.advance(1);
    expect(budget.balance).toBe(0);
  });

  it('refills the reserve as old withdrawals expire', () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock, ratio: 0, minPerSecond: 1, ttl: '1s' });
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
    clock.advance(1_100);
    expect(budget.tryWithdraw()).toBe(true);
  });

  it('never lends with ratio 0 and minPerSecond 0', () => {
    const budget = retryBudget({ ratio: 0, minPerSecond: 0, clock: new FakeClock(0) });
    for (let i = 0; i < 100; i++) budget.deposit();
    expect(budget.tryWithdraw()).toBe(false);
  });

  it.each([
    [{ ratio: -0.1 }, 'ratio'],
    [{ ratio: 1001 }, 'ratio'],
    [{ ratio: Number.NaN }, 'ratio'],
    [{ minPerSecond: -1 }, 'minPerSecond'],
    [{ ttl: '500ms' }, 'ttl'],
    [{ ttl: '2h' }, 'ttl'],
    [{ ttl: 'long' }, 'ttl'],
    [{ clock: 1 }, 'clock'],
    [{ ration: 0.2 }, 'ration'],
  ])('rejects %j with E_INVALID_OPTION naming the option', (options, option) => {
    expect(() => retryBudget(options as never)).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION', option }),
    );
  });
});
