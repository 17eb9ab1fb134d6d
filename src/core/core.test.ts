import dc from 'node:diagnostics_channel';
import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { linkedController, onAbort, raceAbort, throwIfAborted } from './abort.js';
import { systemClock } from './clock.js';
import { channel, publish } from './diagnostics.js';
import { parseDuration } from './duration.js';
import {
  AbortedError,
  ButtressError,
  describe as describeValue,
  hasCode,
  InvalidOptionError,
  isButtressError,
  TimeoutError,
} from './errors.js';
import { Emitter, toDisposable } from './events.js';
import { bool, duration, fraction, integer, knownKeys, oneOf, optionsObject } from './validate.js';

describe('parseDuration', () => {
  it.each([
    [250, 250],
    [0, 0],
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['42', 42],
    [' 10 s ', 10_000],
  ])('parses %j as %d ms', (input, ms) => {
    expect(parseDuration(input, 'timeout')).toBe(ms);
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, '', 'abc', '10 minutes', '-5s', '5x', null, {}, []])(
    'rejects %j with E_INVALID_OPTION naming the option',
    (input) => {
      const err = (() => {
        try {
          parseDuration(input, 'halfOpenAfter');
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).code).toBe('E_INVALID_OPTION');
      expect((err as InvalidOptionError).option).toBe('halfOpenAfter');
      expect((err as Error).message).toContain('halfOpenAfter');
      expect((err as InvalidOptionError).received).toBe(input);
    },
  );
});

describe('validation helpers', () => {
  it('name the option and the value received', () => {
    expect(() => integer(1.5, 'limit', 1, 10)).toThrow(/"limit".*received 1\.5/);
    expect(() => integer(11, 'limit', 1, 10)).toThrow(/between 1 and 10/);
    expect(() => fraction(0, 'failureRate')).toThrow(/"failureRate".*received 0/);
    expect(() => fraction(1.01, 'failureRate')).toThrow(InvalidOptionError);
    expect(() => bool('yes', 'enabled', false)).toThrow(/received "yes"/);
    expect(() => oneOf('mid', 'order', ['fifo', 'lifo'])).toThrow(/one of 'fifo', 'lifo'.*received "mid"/);
    expect(() => duration('1m', 'timeout', undefined, 0, 1000)).toThrow(/between 0ms and 1000ms/);
    expect(() => optionsObject(42 as never)).toThrow(/"options".*received 42/);
    expect(() => knownKeys({ limt: 3 }, ['limit'])).toThrow(/"limt".*no such option/);
  });

  it('return defaults for undefined and values otherwise', () => {
    expect(integer(undefined, 'x', 1, 10, 5)).toBe(5);
    expect(fraction(undefined, 'x', 0.5)).toBe(0.5);
    expect(duration('2s', 'x')).toBe(2000);
    expect(bool(undefined, 'x', true)).toBe(true);
    expect(oneOf(undefined, 'x', ['a', 'b'], 'b')).toBe('b');
    expect(optionsObject(undefined)).toEqual({});
  });

  it('describe() renders awkward values without throwing', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(describeValue(cyclic)).toBe('[object Object]');
    expect(describeValue(10n)).toBe('10n');
    expect(describeValue(Symbol('s'))).toBe('Symbol(s)');
    expect(describeValue(function named() {})).toBe('function named');
    expect(describeValue('x'.repeat(200)).length).toBeLessThanOrEqual(80);
  });
});

describe('errors', () => {
  it('carry a stable code, a cause and a subclass name', () => {
    const cause = new Error('boom');
    const e = new ButtressError('E_TIMEOUT', 'late', { cause });
    expect(e.code).toBe('E_TIMEOUT');
    expect(e.cause).toBe(cause);
    expect(isButtressError(e)).toBe(true);
    expect(hasCode(e, 'E_TIMEOUT')).toBe(true);
    expect(hasCode(e, 'E_CLOSED')).toBe(false);
    expect(new TimeoutError(100).name).toBe('TimeoutError');
    expect(isButtressError(new Error('x'))).toBe(false);
  });

  it('skip the stack trace when asked, and restore the limit', () => {
    const before = Error.stackTraceLimit;
    const e = new ButtressError('E_CIRCUIT_OPEN', 'open', { noStack: true });
    expect(e.stack?.split('\n')).toHaveLength(1);
    expect(Error.stackTraceLimit).toBe(before);
    expect(new ButtressError('E_TIMEOUT', 'x').stack?.split('\n').length).toBeGreaterThan(1);
  });
});

describe('Emitter', () => {
  it('allocates nothing until subscribed and stops calling a disposed listener', () => {
    const em = new Emitter<number>();
    expect(em.size).toBe(0);
    const seen: number[] = [];
    const d = em.event((n) => seen.push(n));
    em.emit(1);
    d.dispose();
    d.dispose();
    em.emit(2);
    expect(seen).toEqual([1]);
    expect(em.size).toBe(0);
  });

  it('keeps calling the other listeners when one throws, and reports the error asynchronously', async () => {
    const em = new Emitter<string>();
    const seen: string[] = [];
    em.event(() => {
      throw new Error('listener failed');
    });
    em.event((s) => seen.push(s));
    const errors: unknown[] = [];
    const handler = (e: unknown) => errors.push(e);
    process.prependListener('uncaughtException', handler);
    const original = process.listeners('uncaughtException').filter((l) => l !== handler);
    for (const l of original) process.off('uncaughtException', l);
    try {
      em.emit('a');
      expect(seen).toEqual(['a']);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('uncaughtException', handler);
      for (const l of original) process.on('uncaughtException', l);
    }
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe('listener failed');
  });

  it('toDisposable works with `using`', () => {
    const release = vi.fn();
    {
      using _d = toDisposable(release);
    }
    expect(release).toHaveBeenCalledTimes(1);
  });
});

describe('abort helpers', () => {
  it('throwIfAborted and raceAbort reject with E_ABORTED carrying the reason', async () => {
    const ac = new AbortController();
    expect(() => throwIfAborted(ac.signal)).not.toThrow();
    const pending = raceAbort(new Promise(() => {}), ac.signal);
    ac.abort('stop');
    await expect(pending).rejects.toMatchObject({ code: 'E_ABORTED', cause: 'stop' });
    expect(() => throwIfAborted(ac.signal)).toThrow(AbortedError);
    await expect(raceAbort(Promise.resolve(1), undefined)).resolves.toBe(1);
  });

  it('onAbort removes its listener when released', () => {
    const ac = new AbortController();
    const fn = vi.fn();
    const off = onAbort(ac.signal, fn);
    off();
    ac.abort();
    expect(fn).not.toHaveBeenCalled();
  });

  it('linkedController follows its parent', () => {
    const parent = new AbortController();
    const { controller, unlink } = linkedController(parent.signal);
    parent.abort('p');
    expect(controller.signal.aborted).toBe(true);
    expect(controller.signal.reason).toBe('p');
    unlink();
  });
});

describe('clocks', () => {
  it('systemClock timers are unref()ed and cancellable', () => {
    const t = systemClock.setTimeout(() => {}, 10_000) as NodeJS.Timeout;
    expect(t.hasRef()).toBe(false);
    systemClock.clearTimeout(t);
  });

  it('FakeClock fires timers in due order at their due time', () => {
    const clock = new FakeClock(0);
    const seen: [string, number][] = [];
    clock.setTimeout(() => seen.push(['b', clock.now()]), 20);
    clock.setTimeout(() => {
      seen.push(['a', clock.now()]);
      clock.setTimeout(() => seen.push(['c', clock.now()]), 5);
    }, 10);
    const cancelled = clock.setTimeout(() => seen.push(['x', clock.now()]), 15);
    clock.clearTimeout(cancelled);
    clock.advance(30);
    expect(seen).toEqual([
      ['a', 10],
      ['c', 15],
      ['b', 20],
    ]);
    expect(clock.now()).toBe(30);
    expect(clock.pending).toBe(0);
  });

  it('FakeClock.advanceAsync lets promise callbacks run between timers', async () => {
    const clock = new FakeClock(0);
    const seen: string[] = [];
    clock.setTimeout(() => {
      void Promise.resolve().then(() => seen.push('after-10'));
    }, 10);
    clock.setTimeout(() => seen.push('at-20'), 20);
    await clock.advanceAsync(25);
    expect(seen).toEqual(['after-10', 'at-20']);
  });
});

describe('diagnostics channels', () => {
  it('are named buttress:<module>:<op> and publish only with subscribers', () => {
    const ch = channel('core', 'test');
    const build = vi.fn(() => ({ ok: true }));
    publish(ch, build);
    expect(build).not.toHaveBeenCalled();
    const seen: unknown[] = [];
    const sub = (m: unknown) => seen.push(m);
    dc.subscribe('buttress:core:test', sub);
    publish(ch, build);
    dc.unsubscribe('buttress:core:test', sub);
    expect(seen).toEqual([{ ok: true }]);
  });
});
