import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { InvalidOptionError } from './errors.js';
import { sharedTimerWheel, TimerWheel } from './timer-wheel.js';

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

describe('TimerWheel', () => {
  it('fires an entry at its deadline, rounded up to the tick', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock, tick: 10 });
    const fired: number[] = [];
    wheel.schedule(25, () => fired.push(clock.now()));
    wheel.schedule(30, () => fired.push(clock.now()));
    clock.advance(29);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual([30, 30]);
    expect(wheel.size).toBe(0);
  });

  it('drives everything with one underlying timer, armed for the earliest slot', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const fired: string[] = [];
    wheel.schedule(100, () => fired.push('b'));
    expect(clock.pending).toBe(1);
    wheel.schedule(50, () => fired.push('a'));
    wheel.schedule(200, () => fired.push('c'));
    expect(clock.pending).toBe(1);
    clock.advance(50);
    expect(fired).toEqual(['a']);
    expect(clock.pending).toBe(1);
    clock.advance(150);
    expect(fired).toEqual(['a', 'b', 'c']);
    expect(clock.pending).toBe(0);
  });

  it('cancels in O(1), and a cancelled entry never fires', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const fn = vi.fn();
    const a = wheel.schedule(10, fn);
    const b = wheel.schedule(10, fn);
    expect(wheel.cancel(a)).toBe(true);
    expect(wheel.cancel(a)).toBe(false);
    expect(a.pending).toBe(false);
    expect(b.pending).toBe(true);
    clock.advance(10);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(wheel.cancel(b)).toBe(false);
  });

  it('skips an entry cancelled by a sibling firing in the same tick', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const seen: string[] = [];
    const b = wheel.schedule(5, () => seen.push('b'));
    wheel.schedule(5, () => seen.push('c'));
    // Same-tick entries fire newest first: `a` runs before `b`, which is already collected.
    wheel.schedule(5, () => {
      seen.push('a');
      expect(wheel.cancel(b)).toBe(true);
    });
    clock.advance(5);
    expect(seen).toEqual(['a', 'c']);
    expect(b.pending).toBe(false);
  });

  it('lets callbacks schedule new entries, including for the current tick', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const seen: number[] = [];
    wheel.schedule(5, () => {
      seen.push(clock.now());
      wheel.schedule(0, () => seen.push(clock.now()));
      wheel.schedule(7, () => seen.push(clock.now()));
    });
    clock.advance(100);
    expect(seen).toEqual([5, 6, 12]);
  });

  it('keeps firing the others when a callback throws, and reports the error asynchronously', async () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const errors: unknown[] = [];
    const handler = (e: unknown) => errors.push(e);
    const original = process.listeners('uncaughtException');
    for (const l of original) process.off('uncaughtException', l);
    process.on('uncaughtException', handler);
    try {
      const after = vi.fn();
      wheel.schedule(1, () => {
        throw new Error('boom');
      });
      wheel.schedule(1, after);
      clock.advance(1);
      expect(after).toHaveBeenCalledTimes(1);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('uncaughtException', handler);
      for (const l of original) process.on('uncaughtException', l);
    }
    expect((errors[0] as Error).message).toBe('boom');
  });

  it('handles deadlines beyond one revolution (entries wait for their round)', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock, slots: 32 });
    const seen: number[] = [];
    wheel.schedule(5, () => seen.push(clock.now()));
    wheel.schedule(37, () => seen.push(clock.now()));
    wheel.schedule(100, () => seen.push(clock.now()));
    wheel.schedule(1000, () => seen.push(clock.now()));
    clock.advance(2000);
    expect(seen).toEqual([5, 37, 100, 1000]);
    expect(clock.pending).toBe(0);
  });

  it('fires everything overdue after a long stall, once', () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock, slots: 32 });
    const fn = vi.fn();
    for (let i = 0; i < 100; i++) wheel.schedule(i * 3, fn);
    // Time jumps without the clock firing timers (a stalled event loop).
    clock.set(10_000);
    clock.advance(0);
    expect(fn).toHaveBeenCalledTimes(100);
    expect(wheel.size).toBe(0);
  });

  it('releases its underlying timer once empty, before the event loop is reached', async () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const a = wheel.schedule(1000, () => {});
    const b = wheel.schedule(2000, () => {});
    wheel.cancel(a);
    await nextTick();
    expect(clock.pending).toBe(1);
    wheel.cancel(b);
    await nextTick();
    expect(clock.pending).toBe(0);
    expect(wheel.armed).toBe(false);
  });

  it('arms once for a chain of calls that each schedule and cancel', async () => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock });
    const setTimeoutSpy = vi.spyOn(clock, 'setTimeout');
    for (let i = 0; i < 100; i++) {
      const e = wheel.schedule(1000, () => {});
      await Promise.resolve();
      wheel.cancel(e);
    }
    expect(setTimeoutSpy).toHaveBeenCalledTimes(1);
    await nextTick();
    expect(clock.pending).toBe(0);
  });

  it('systemClock timers it arms are unref()ed', async () => {
    const wheel = new TimerWheel();
    const e = wheel.schedule(60_000, () => {});
    expect(wheel.armed).toBe(true);
    const handles = (process as unknown as { getActiveResourcesInfo(): string[] }).getActiveResourcesInfo();
    expect(handles.filter((h) => h === 'Timeout').length).toBeGreaterThanOrEqual(1);
    wheel.cancel(e);
    await nextTick();
    expect(wheel.armed).toBe(false);
  });

  it('is shared per clock, never across clocks', () => {
    const a = new FakeClock(0);
    const b = new FakeClock(0);
    expect(sharedTimerWheel(a)).toBe(sharedTimerWheel(a));
    expect(sharedTimerWheel(a)).not.toBe(sharedTimerWheel(b));
    expect(sharedTimerWheel()).toBe(sharedTimerWheel());
  });

  it('validates its options', () => {
    expect(() => new TimerWheel({ tick: 0 })).toThrow(InvalidOptionError);
    expect(() => new TimerWheel({ slots: 100 })).toThrow(/"slots".*power of two/);
    expect(() => new TimerWheel({ clock: {} as never })).toThrow(/"clock"/);
    expect(() => new TimerWheel({ tik: 1 } as never)).toThrow(/"tik"/);
  });
});
