import { handleAll, retry, wrap } from 'cockatiel';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { circuitBreaker } from '../breaker/index.js';
import { isAbortedError, isTimeoutError, TimeoutError } from '../core/errors.js';
import { sharedTimerWheel } from '../core/timer-wheel.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { timeout } from './timeout.js';

const never = () => new Promise<never>(() => {});
const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

/** Counts AbortControllers constructed while `run` runs. */
async function countControllers(run: () => Promise<unknown>): Promise<number> {
  const Original = globalThis.AbortController;
  let count = 0;
  globalThis.AbortController = class extends Original {
    constructor() {
      super();
      count++;
    }
  };
  try {
    await run();
  } finally {
    globalThis.AbortController = Original;
  }
  return count;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('timeout (aggressive, the default)', () => {
  it('rejects with E_TIMEOUT at the deadline and aborts the signal', async () => {
    const clock = new FakeClock(0);
    const t = timeout(100, { clock });
    let signal: AbortSignal | undefined;
    const p = t.execute((ctx) => {
      signal = ctx.signal;
      return never();
    });
    const settled = vi.fn();
    p.catch(settled);
    await clock.advanceAsync(99);
    expect(settled).not.toHaveBeenCalled();
    expect(signal!.aborted).toBe(false);
    await clock.advanceAsync(1);
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.code).toBe('E_TIMEOUT');
    expect(err.timeout).toBe(100);
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBe(err);
  });

  it('resolves with the value when fn finishes in time, and leaves no timer behind', async () => {
    const clock = new FakeClock(0);
    const t = timeout('1s', { clock });
    await expect(t.execute(async () => 42)).resolves.toBe(42);
    await expect(t.execute(() => 'sync')).resolves.toBe('sync');
    // The timeout's one wheel entry is released at the end of the tick its last call settled in.
    await nextTick();
    expect(clock.pending).toBe(0);
    expect(sharedTimerWheel(clock).size).toBe(0);
    expect(t.stats().timeouts).toBe(0);
  });

  it('expires many concurrent calls in order, each at its own deadline, with one wheel entry', async () => {
    const clock = new FakeClock(0);
    const t = timeout(100, { clock });
    const rejectedAt: number[] = [];
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      calls.push(t.execute(never).catch(() => rejectedAt.push(clock.now())));
      await clock.advanceAsync(10);
    }
    const quick = t.execute(async () => 'quick');
    expect(sharedTimerWheel(clock).size).toBe(1);
    await expect(quick).resolves.toBe('quick');
    await clock.advanceAsync(200);
    await Promise.all(calls);
    expect(rejectedAt).toEqual([100, 110, 120, 130, 140]);
    expect(t.stats()).toMatchObject({ calls: 6, timeouts: 5 });
    await nextTick();
    expect(sharedTimerWheel(clock).size).toBe(0);
  });

  it('passes fn errors through untouched', async () => {
    const clock = new FakeClock(0);
    const t = timeout(100, { clock });
    const boom = new Error('boom');
    await expect(t.execute(() => Promise.reject(boom))).rejects.toBe(boom);
    await expect(
      t.execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });

  it("rejects with E_ABORTED as soon as the caller's signal aborts", async () => {
    const clock = new FakeClock(0);
    const t = timeout(1000, { clock });
    const parent = new AbortController();
    const p = t.execute(never, parent.signal);
    parent.abort('bye');
    const err = await p.catch((e) => e);
    expect(isAbortedError(err)).toBe(true);
    expect(err.cause).toBe('bye');
    await nextTick();
    expect(clock.pending).toBe(0);
  });

  it('rejects at once when the signal is already aborted, without calling fn', async () => {
    const t = timeout(100, { clock: new FakeClock(0) });
    const fn = vi.fn();
    await expect(t.execute(fn, AbortSignal.abort())).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(fn).not.toHaveBeenCalled();
  });

  it('ignores the late outcome of a callee that ignored its signal', async () => {
    const clock = new FakeClock(0);
    const t = timeout(10, { clock });
    let finish!: (v: number) => void;
    const p = t.execute(() => new Promise<number>((r) => (finish = r)));
    await clock.advanceAsync(10);
    await expect(p).rejects.toBeInstanceOf(TimeoutError);
    finish(1);
    await flushMicrotasks();
  });

  it('rejects even when the deadline passes while fn runs synchronously', async () => {
    const clock = new FakeClock(0);
    const t = timeout(10, { clock });
    const p = t.execute(() => {
      clock.advance(50);
      return Promise.resolve(1);
    });
    await expect(p).rejects.toBeInstanceOf(TimeoutError);
  });
});

describe('timeout (cooperative)', () => {
  it('aborts the signal at the deadline and waits for fn', async () => {
    const clock = new FakeClock(0);
    const t = timeout(100, { clock, strategy: 'cooperative' });
    let signal!: AbortSignal;
    const p = t.execute(async (ctx) => {
      signal = ctx.signal;
      await new Promise((r) => signal.addEventListener('abort', r));
      return 'stopped';
    });
    await clock.advanceAsync(100);
    expect(signal.aborted).toBe(true);
    expect(isTimeoutError(signal.reason)).toBe(true);
    await expect(p).resolves.toBe('stopped');
  });

  it("accepts cockatiel's enum value 'optimistic' as cooperative", () => {
    expect(timeout(5, 'optimistic').strategy).toBe('cooperative');
    expect(timeout(5, 'aggressive').strategy).toBe('aggressive');
    expect(timeout(5).strategy).toBe('aggressive');
  });

  it('gives a signal read after the deadline already aborted', async () => {
    const clock = new FakeClock(0);
    const t = timeout(10, { clock, strategy: 'cooperative' });
    const p = t.execute(async (ctx) => {
      await new Promise<void>((r) => clock.setTimeout(r, 20));
      return ctx.signal.aborted;
    });
    await clock.advanceAsync(20);
    await expect(p).resolves.toBe(true);
  });
});

describe('the lazy signal', () => {
  it('creates no AbortController when the callee never reads signal', async () => {
    const clock = new FakeClock(0);
    const parent = new AbortController();
    const t = timeout(100, { clock });
    const coop = timeout(100, { clock, strategy: 'cooperative' });
    const n = await countControllers(async () => {
      for (let i = 0; i < 10; i++) {
        await t.execute(async () => i);
        await coop.execute(async () => i, parent.signal);
      }
    });
    expect(n).toBe(0);
  });

  it('creates one when read, linked to the parent signal', async () => {
    const clock = new FakeClock(0);
    const t = timeout(1000, { clock, strategy: 'cooperative' });
    const parent = new AbortController();
    let signal!: AbortSignal;
    const n = await countControllers(async () => {
      const p = t.execute(async (ctx) => {
        signal = ctx.signal;
        await new Promise((r) => signal.addEventListener('abort', r));
      }, parent.signal);
      parent.abort('stop');
      await p;
    });
    expect(n).toBe(1);
    expect(signal.reason).toBe('stop');
  });

  it('is aborted once the call settles (abortOnReturn), unless turned off', async () => {
    const clock = new FakeClock(0);
    let kept!: AbortSignal;
    await timeout(100, { clock }).execute(({ signal }) => {
      kept = signal;
      return 1;
    });
    expect(kept.aborted).toBe(true);
    await timeout(100, { clock, abortOnReturn: false }).execute(({ signal }) => {
      kept = signal;
      return 1;
    });
    expect(kept.aborted).toBe(false);
  });

  it("reaches the callee through cockatiel's wrap(), whose context spread reads it", async () => {
    const clock = new FakeClock(0);
    const policy = wrap(
      retry(handleAll, { maxAttempts: 0 }),
      circuitBreaker({ clock }),
      timeout(50, { clock }),
    );
    let seen!: AbortSignal;
    const p = policy.execute((ctx) => {
      seen = ctx.signal;
      expect(ctx.attempt).toBe(0);
      return never();
    });
    await clock.advanceAsync(50);
    await expect(p).rejects.toBeInstanceOf(TimeoutError);
    expect(seen.aborted).toBe(true);
  });
});

describe('events and stats', () => {
  it('emits onTimeout, onSuccess and onFailure', async () => {
    const clock = new FakeClock(0);
    const t = timeout(10, { clock });
    const timeouts = vi.fn();
    const successes = vi.fn();
    const failures = vi.fn();
    t.onTimeout(timeouts);
    t.onSuccess(successes);
    t.onFailure(failures);
    await t.execute(async () => 1);
    const boom = new Error('boom');
    await t.execute(() => Promise.reject(boom)).catch(() => {});
    const p = t.execute(never).catch(() => {});
    await clock.advanceAsync(10);
    await p;
    expect(successes).toHaveBeenCalledWith({ duration: 0 });
    expect(failures).toHaveBeenCalledWith({ duration: 0, handled: false, reason: { error: boom } });
    expect(failures).toHaveBeenLastCalledWith(
      expect.objectContaining({ duration: 10, handled: true, reason: { error: expect.any(TimeoutError) } }),
    );
    expect(timeouts).toHaveBeenCalledWith({ timeout: 10, strategy: 'aggressive' });
    expect(t.stats()).toEqual({ timeout: 10, strategy: 'aggressive', calls: 3, timeouts: 1 });
  });
});

describe('options', () => {
  it.each([
    [() => timeout(-1), 'duration'],
    [() => timeout('soon' as never), 'duration'],
    [() => timeout(10, { strategy: 'eager' as never }), 'strategy'],
    [() => timeout(10, 'eager' as never), 'strategy'],
    [() => timeout(10, { abortOnReturn: 1 as never }), 'abortOnReturn'],
    [() => timeout(10, { clock: Date as never }), 'clock'],
    [() => timeout(10, { strategi: 'aggressive' } as never), 'strategi'],
  ])('rejects invalid input with E_INVALID_OPTION naming the option (%#)', (make, option) => {
    expect(make).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION', option }));
  });
});
