import { describe, expect, it, vi } from 'vitest';
import { AbortedError } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { adaptiveThrottle } from './adaptive-throttle.js';
import { isThrottledError, ThrottledError } from './errors.js';

const overloaded = new Error('503');

describe('adaptiveThrottle', () => {
  it('never rejects locally while the backend accepts', async () => {
    const t = adaptiveThrottle({ clock: new FakeClock(0), random: () => 0 });
    for (let i = 0; i < 50; i++) await expect(t.execute(async () => i)).resolves.toBe(i);
    expect(t.probability).toBe(0);
    expect(t.stats()).toMatchObject({ requests: 50, accepts: 50, probability: 0, totalThrottled: 0 });
  });

  it('rejects with E_THROTTLED, without calling fn, with probability (requests - k·accepts) / (requests + 1)', async () => {
    const clock = new FakeClock(0);
    let roll = 0.99;
    const t = adaptiveThrottle({ clock, random: () => roll });
    for (let i = 0; i < 10; i++) await t.execute(async () => 1);
    for (let i = 0; i < 30; i++) await t.execute(() => Promise.reject(overloaded)).catch(() => {});
    // 40 requests, 10 accepts: (40 - 20) / 41
    expect(t.probability).toBeCloseTo(20 / 41, 12);
    roll = 0.1;
    const fn = vi.fn();
    const err = await t.execute(fn).catch((e) => e);
    expect(fn).not.toHaveBeenCalled();
    expect(err).toBeInstanceOf(ThrottledError);
    expect(isThrottledError(err)).toBe(true);
    expect(err.code).toBe('E_THROTTLED');
    expect(err.probability).toBeCloseTo(20 / 41, 12);
    expect(err.stack.split('\n')).toHaveLength(1);
    // Local rejections count as requests.
    expect(t.stats()).toMatchObject({ requests: 41, accepts: 10, totalThrottled: 1 });
  });

  it('forgets outcomes older than the window', async () => {
    const clock = new FakeClock(0);
    const t = adaptiveThrottle({ clock, window: '10s', buckets: 10, random: () => 0.99 });
    for (let i = 0; i < 20; i++) await t.execute(() => Promise.reject(overloaded)).catch(() => {});
    expect(t.probability).toBeGreaterThan(0.9);
    clock.advance(11_000);
    expect(t.probability).toBe(0);
  });

  it('counts errors that are not rejections as accepts, and ignores calls the caller aborted', async () => {
    const clock = new FakeClock(0);
    const t = adaptiveThrottle({ clock, isRejection: (e) => e === overloaded });
    await t.execute(() => Promise.reject(new Error('404'))).catch(() => {});
    const ac = new AbortController();
    const p = t.execute(
      () => new Promise((_, reject) => ac.signal.addEventListener('abort', () => reject(new AbortedError()))),
      ac.signal,
    );
    ac.abort();
    await p.catch(() => {});
    expect(t.stats()).toMatchObject({ requests: 1, accepts: 1 });
    await expect(t.execute(() => 1, ac.signal)).rejects.toMatchObject({ code: 'E_ABORTED' });
  });

  it('treats a throwing isRejection as a rejection, and emits events', async () => {
    const clock = new FakeClock(0);
    const t = adaptiveThrottle({
      clock,
      k: 1,
      random: () => 0,
      isRejection: () => {
        throw new Error('bad filter');
      },
    });
    const failures = vi.fn();
    const throttled = vi.fn();
    t.onFailure(failures);
    t.onThrottle(throttled);
    await t.execute(() => Promise.reject(overloaded)).catch(() => {});
    expect(failures).toHaveBeenCalledWith({ duration: 0, handled: true, reason: { error: overloaded } });
    await t.execute(() => 1).catch(() => {});
    expect(throttled).toHaveBeenCalledWith({ probability: 0.5 });
  });

  it.each([
    [{ k: 0.5 }, 'k'],
    [{ k: 'two' }, 'k'],
    [{ window: '100ms' }, 'window'],
    [{ buckets: 0 }, 'buckets'],
    [{ isRejection: true }, 'isRejection'],
    [{ random: 0.5 }, 'random'],
    [{ name: '' }, 'name'],
    [{ clock: null }, 'clock'],
    [{ K: 2 }, 'K'],
  ])('rejects %j with E_INVALID_OPTION naming the option', (options, option) => {
    expect(() => adaptiveThrottle(options as never)).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION', option }),
    );
  });
});
