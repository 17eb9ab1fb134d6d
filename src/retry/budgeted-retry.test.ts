import { ConstantBackoff, handleAll, handleType, handleWhenResult, wrap } from 'cockatiel';
import { describe, expect, it, vi } from 'vitest';
import { circuitBreaker } from '../breaker/index.js';
import { FakeClock } from '../testing/fake-clock.js';
import { budgetedRetry } from './budgeted-retry.js';
import { retryBudget } from './retry-budget.js';
import { timeout } from './timeout.js';

const spent = () => retryBudget({ ratio: 0, minPerSecond: 0, clock: new FakeClock(0) });
class Transient extends Error {}

describe('budgetedRetry', () => {
  it('with the budget exhausted, calls fn once and surfaces the original error', async () => {
    const policy = budgetedRetry(handleAll, { budget: spent(), maxAttempts: 5 });
    const original = new Error('down');
    const fn = vi.fn(() => Promise.reject(original));
    const giveUp = vi.fn();
    const exhausted = vi.fn();
    policy.onGiveUp(giveUp);
    policy.onBudgetExhausted(exhausted);
    await expect(policy.execute(fn)).rejects.toBe(original);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(giveUp).toHaveBeenCalledWith({ error: original });
    expect(exhausted).toHaveBeenCalledWith({ error: original, attempt: 1 });
  });

  it('retries while the budget lasts, then stops mid-call', async () => {
    const budget = retryBudget({ ratio: 0, minPerSecond: 1, ttl: '2s', clock: new FakeClock(0) });
    const policy = budgetedRetry(handleAll, { budget, maxAttempts: 10 });
    const fn = vi.fn(() => Promise.reject(new Error('x')));
    await expect(policy.execute(fn)).rejects.toThrow('x');
    expect(fn).toHaveBeenCalledTimes(3);
    expect(budget.stats()).toMatchObject({ withdrawals: 2, refusals: 1, deposits: 1 });
  });

  it('returns the recovered value and withdraws only for retries really made', async () => {
    const budget = retryBudget({ clock: new FakeClock(0) });
    const policy = budgetedRetry(handleAll, { budget, maxAttempts: 2 });
    let n = 0;
    await expect(policy.execute(() => (++n < 2 ? Promise.reject(new Error('x')) : 'ok'))).resolves.toBe('ok');
    expect(budget.stats().withdrawals).toBe(1);
    // Three failures: two retries withdrawn, none for the last attempt (cockatiel gives up anyway).
    await expect(policy.execute(() => Promise.reject(new Error('y')))).rejects.toThrow('y');
    expect(budget.stats().withdrawals).toBe(3);
    expect(budget.stats().refusals).toBe(0);
  });

  it('does not touch the budget for errors the policy does not handle', async () => {
    const budget = retryBudget({ clock: new FakeClock(0) });
    const policy = budgetedRetry(handleType(Transient), { budget });
    const fatal = new TypeError('bug');
    const fn = vi.fn(() => Promise.reject(fatal));
    await expect(policy.execute(fn)).rejects.toBe(fatal);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(budget.stats().withdrawals).toBe(0);
  });

  it('surfaces a thrown primitive, and the last result for result filters', async () => {
    const primitive = budgetedRetry(handleAll, { budget: spent() });
    await expect(
      primitive.execute(() => {
        throw 'plain string';
      }),
    ).rejects.toBe('plain string');
    const results = budgetedRetry(
      handleWhenResult((r) => r === 'busy'),
      { budget: spent() },
    );
    const fn = vi.fn(() => 'busy');
    await expect(results.execute(fn)).resolves.toBe('busy');
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('keeps cockatiel semantics: attempt numbers, backoff, onRetry, and the caller signal', async () => {
    const budget = retryBudget({ clock: new FakeClock(0) });
    const policy = budgetedRetry(handleAll, { budget, maxAttempts: 3, backoff: new ConstantBackoff(1) });
    const retries = vi.fn();
    policy.onRetry(retries);
    const attempts: number[] = [];
    const ac = new AbortController();
    await policy
      .execute(({ attempt, signal }) => {
        attempts.push(attempt);
        expect(signal).toBe(ac.signal);
        return Promise.reject(new Error('x'));
      }, ac.signal)
      .catch(() => {});
    expect(attempts).toEqual([0, 1, 2, 3]);
    expect(retries).toHaveBeenCalledTimes(3);
  });

  it('a refusal marks the error for that call only: the same error object is retried later', async () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ ratio: 0, minPerSecond: 1, ttl: '1s', clock });
    const policy = budgetedRetry(handleAll, { budget, maxAttempts: 5 });
    const shared = new Error('shared');
    const first = vi.fn(() => Promise.reject(shared));
    await expect(policy.execute(first)).rejects.toBe(shared);
    expect(first).toHaveBeenCalledTimes(2);
    clock.advance(1_100);
    const second = vi.fn(() => Promise.reject(shared));
    await expect(policy.execute(second)).rejects.toBe(shared);
    expect(second).toHaveBeenCalledTimes(2);
  });

  it('composes in wrap() with our breaker and timeout', async () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ clock });
    const policy = wrap(
      budgetedRetry(handleAll, { budget, maxAttempts: 2 }),
      circuitBreaker({ clock }),
      timeout(100, { clock }),
    );
    let n = 0;
    await expect(
      policy.execute(({ signal }) => (signal.aborted ? -1 : ++n < 3 ? Promise.reject(new Error('x')) : n)),
    ).resolves.toBe(3);
  });

  it.each([
    [() => budgetedRetry({} as never, { budget: spent() }), 'policy'],
    [() => budgetedRetry(handleAll, undefined as never), 'budget'],
    [() => budgetedRetry(handleAll, { budget: {} as never }), 'budget'],
    [() => budgetedRetry(handleAll, { budget: spent(), maxAttempts: -1 }), 'maxAttempts'],
    [() => budgetedRetry(handleAll, { budget: spent(), maxAttempts: 1.5 }), 'maxAttempts'],
    [() => budgetedRetry(handleAll, { budget: spent(), backoff: 5 as never }), 'backoff'],
    [() => budgetedRetry(handleAll, { budget: spent(), unref: 'yes' as never }), 'unref'],
    [() => budgetedRetry(handleAll, { budget: spent(), attempts: 3 } as never), 'attempts'],
  ])('rejects invalid input with E_INVALID_OPTION naming the option (%#)', (make, option) => {
    expect(make).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION', option }));
  });
});
