import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { hedge, type IHedgeContext } from './hedge.js';
import { retryBudget } from './retry-budget.js';

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

/** An attempt that settles after `ms` on the fake clock, or rejects when its signal aborts. */
function settleAfter<T>(clock: FakeClock, ms: number, outcome: T | Error, ctx: IHedgeContext): Promise<T> {
  const signal = ctx.signal;
  return new Promise<T>((resolve, reject) => {
    const t = clock.setTimeout(() => (outcome instanceof Error ? reject(outcome) : resolve(outcome)), ms);
    signal.addEventListener('abort', () => {
      clock.clearTimeout(t);
      reject(signal.reason);
    });
  });
}

describe('hedge', () => {
  it('does not hedge an attempt that answers within the delay', async () => {
    const clock = new FakeClock(0);
    const h = hedge({ delay: 50, clock });
    const fn = vi.fn((ctx: IHedgeContext) => settleAfter(clock, 40, 'a', ctx));
    const p = h.execute(fn);
    await clock.advanceAsync(40);
    await expect(p).resolves.toBe('a');
    expect(fn).toHaveBeenCalledTimes(1);
    expect(h.stats()).toMatchObject({ calls: 1, hedges: 0 });
    await nextTick();
    expect(clock.pending).toBe(0);
  });

  it('starts a backup after the delay; the first success wins and the loser is aborted', async () => {
    const clock = new FakeClock(0);
    const h = hedge({ delay: 50, clock });
    const signals: AbortSignal[] = [];
    const onHedge = vi.fn();
    h.onHedge(onHedge);
    const p = h.execute((ctx) => {
      signals.push(ctx.signal);
      return settleAfter(clock, ctx.attempt === 0 ? 1000 : 20, `attempt ${ctx.attempt}`, ctx);
    });
    await clock.advanceAsync(70);
    await expect(p).resolves.toBe('attempt 1');
    expect(signals.map((s) => s.aborted)).toEqual([true, false]);
    expect(onHedge).toHaveBeenCalledWith({ attempt: 1, delay: 50 });
    expect(h.stats()).toMatchObject({ hedges: 1, hedgeWins: 1 });
  });

  it('starts at most maxHedges backups, one per delay', async () => {
    const clock = new FakeClock(0);
    const h = hedge({ delay: 10, maxHedges: 2, clock });
    const started: number[] = [];
    const p = h.execute((ctx) => {
      started.push(clock.now());
      return settleAfter(clock, 1000, ctx.attempt, ctx);
    });
    await clock.advanceAsync(1000);
    await expect(p).resolves.toBe(0);
    expect(started).toEqual([0, 10, 20]);
  });

  it('starts no backup once the budget is spent', async () => {
    const clock = new FakeClock(0);
    const budget = retryBudget({ ratio: 0, minPerSecond: 0, clock });
    const h = hedge({ delay: 10, budget, clock });
    const fn = vi.fn((ctx: IHedgeContext) => settleAfter(clock, 100, 'slow', ctx));
    const p = h.execute(fn);
    await clock.advanceAsync(100);
    await expect(p).resolves.toBe('slow');
    expect(fn).toHaveBeenCalledTimes(1);
    expect(h.stats().budgetRefusals).toBe(1);
    expect(budget.stats().deposits).toBe(1);
  });

  it('hedges latency, not errors: a failure before the delay fails the call at once', async () => {
    const clock = new FakeClock(0);
    const h = hedge({ delay: 50, clock });
    const boom = new Error('boom');
    const fn = vi.fn((ctx: IHedgeContext) => settleAfter(clock, 5, boom, ctx));
    const p = h.execute(fn);
    await clock.advanceAsync(5);
    await expect(p).rejects.toBe(boom);
    expect(fn).toHaveBeenCalledTimes(1);
    await nextTick();
    expect(clock.pending).toBe(0);
  });

  it('waits for a running backup when the other attempt fails, and surfaces the last error when all fail', async () => {
    const clock = new FakeClock(0);
    const h = hedge({ delay: 10, clock });
    const p = h.execute((ctx) =>
      settleAfter(clock, ctx.attempt === 0 ? 30 : 40, ctx.attempt === 0 ? new Error('first') : 'second', ctx),
    );
    await clock.advanceAsync(60);
    await expect(p).resolves.toBe('second');
    const q = h.execute((ctx) =>
      settleAfter(clock, ctx.attempt === 0 ? 30 : 40, new Error(`fail ${ctx.attempt}`), ctx),
    );
    await clock.advanceAsync(60);
    await expect(q).rejects.toThrow('fail 1');
  });

  it("rejects with E_ABORTED when the caller's signal aborts, aborting every attempt", async () => {
    const clock = new FakeClock(0);
    const h = hedge({ delay: 10, clock });
    const ac = new AbortController();
    const signals: AbortSignal[] = [];
    const p = h.execute((ctx) => {
      signals.push(ctx.signal);
      return settleAfter(clock, 1000, 1, ctx);
    }, ac.signal);
    await clock.advanceAsync(15);
    ac.abort('gone');
    await expect(p).rejects.toMatchObject({ code: 'E_ABORTED', cause: 'gone' });
    expect(signals.map((s) => s.reason)).toEqual(['gone', 'gone']);
    await expect(h.execute(() => 1, ac.signal)).rejects.toMatchObject({ code: 'E_ABORTED' });
  });

  it('works with synchronous callees', async () => {
    const h = hedge({ delay: 10, clock: new FakeClock(0) });
    await expect(h.execute(() => 7)).resolves.toBe(7);
    await expect(
      h.execute(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
  });

  describe('percentile delay', () => {
    it('does not hedge before minSamples, unless given an initial delay', async () => {
      const clock = new FakeClock(0);
      expect(hedge({ delay: { percentile: 0.9 }, clock }).delay).toBe(Number.POSITIVE_INFINITY);
      expect(hedge({ delay: { percentile: 0.9, initial: '30ms' }, clock }).delay).toBe(30);
    });

    it('follows the percentile of recent winning latencies, within [min, max]', async () => {
      const clock = new FakeClock(0);
      const h = hedge({ delay: { percentile: 0.9, minSamples: 10, max: 500 }, clock });
      for (let i = 1; i <= 100; i++) {
        const p = h.execute((ctx) => settleAfter(clock, i, i, ctx));
        await clock.advanceAsync(i);
        await p;
      }
      // p90 of 1..100 ms is 90 ms; the histogram answers its bucket's upper bound (~9% wide).
      expect(h.delay).toBeGreaterThanOrEqual(90);
      expect(h.delay).toBeLessThanOrEqual(100);
      const capped = hedge({ delay: { percentile: 0.99, minSamples: 1, max: 5, min: 2 }, clock });
      const p = capped.execute((ctx) => settleAfter(clock, 50, 1, ctx));
      await clock.advanceAsync(50);
      await p;
      expect(capped.delay).toBe(5);
    });
  });

  it.each([
    [{}, 'delay'],
    [{ delay: -5 }, 'delay'],
    [{ delay: { percentile: 1 } }, 'delay.percentile'],
    [{ delay: { percentile: 0.5, max: 1, min: 10 } }, 'delay.max'],
    [{ delay: { percentile: 0.5, minSamples: 0 } }, 'delay.minSamples'],
    [{ delay: { percentile: 0.5, p: 1 } }, 'delay.p'],
    [{ delay: 10, maxHedges: 0 }, 'maxHedges'],
    [{ delay: 10, budget: 0.2 }, 'budget'],
    [{ delay: 10, clock: {} }, 'clock'],
    [{ delay: 10, hedges: 2 }, 'hedges'],
  ])('rejects %j with E_INVALID_OPTION naming the option', (options, option) => {
    expect(() => hedge(options as never)).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION', option }),
    );
  });
});
