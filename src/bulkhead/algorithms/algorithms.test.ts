import { describe, expect, it } from 'vitest';
import { log10Root } from '../internal/math.js';
import { aimd } from './aimd.js';
import { gradient2 } from './gradient2.js';
import { vegas } from './vegas.js';

const bounds = (initialLimit: number, minLimit = 1, maxLimit = 1000) => ({
  initialLimit,
  minLimit,
  maxLimit,
});

describe("Netflix's Log10RootFunction", () => {
  it('is max(1, floor(log10 n)) below 1000 and floor(sqrt n) from 1000', () => {
    expect([0, 1, 9, 10, 99, 100, 999, 1000, 2500].map(log10Root)).toEqual([1, 1, 1, 1, 1, 2, 2, 31, 50]);
  });
});

describe('aimd', () => {
  it('adds 1 when inflight × 2 >= limit, holds when app-limited, multiplies by backoffRatio on a drop', () => {
    const a = aimd().create(bounds(10, 2, 12));
    expect(a.update(5, 5, false)).toBe(11);
    expect(a.update(5, 5, false)).toBe(11); // 5 × 2 < 11: app-limited
    expect(a.update(5, 6, false)).toBe(12);
    expect(a.update(5, 12, false)).toBe(12); // maxLimit
    expect(a.update(5, 12, true)).toBe(10); // floor(12 × 0.9)
    expect(a.update(5, 12, true)).toBe(9);
    expect(a.update(5, 12, true)).toBe(8); // min(limit − 1, floor(9 × 0.9) = 8)
    const b = aimd({ backoffRatio: 0.5 }).create(bounds(3, 2, 10));
    expect(b.update(1, 3, true)).toBe(2); // max(minLimit, min(2, 1))
    expect(b.update(1, 3, true)).toBe(2);
  });

  it('always shrinks by at least 1 on a drop, even with a ratio close to 1', () => {
    const a = aimd({ backoffRatio: 0.99 }).create(bounds(20));
    expect(a.update(1, 20, true)).toBe(19);
  });
});

describe('vegas', () => {
  // jitter = 0.5 + 0.5 × random(): with random 0.999 the first probe is after ~30 × limit samples.
  const make = (initial = 20, opts = {}) => vegas({ random: () => 0.999, ...opts }).create(bounds(initial));

  it('follows queue = ceil(limit × (1 − rttNoLoad/rtt)) through its threshold, alpha and beta', () => {
    const v = make();
    expect(v.update(10, 20, false)).toBe(20); // first sample: the no-load RTT
    // queue 0 <= threshold 1: limit + beta (6·1)
    expect(v.update(10, 20, false)).toBe(26);
    // queue ceil(26 × 0.5) = 13 > beta 6: limit − log10(26) = 25
    expect(v.update(20, 26, false)).toBe(25);
    // queue ceil(25 × (1 − 10/12)) = 5: between alpha 3 and beta 6: unchanged
    expect(v.update(12, 25, false)).toBe(25);
    // queue ceil(25 × (1 − 10/10.5)) = 2 < alpha 3: limit + log10(25) = 26
    expect(v.update(10.5, 25, false)).toBe(26);
    // a drop: limit − log10(26)
    expect(v.update(10.5, 26, true)).toBe(25);
    // app-limited (inflight × 2 < limit): unchanged even with no queue
    expect(v.update(10, 12, false)).toBe(25);
    // a lower RTT only lowers the no-load RTT
    expect(v.update(5, 25, false)).toBe(25);
    expect(v.update(10, 25, false)).toBe(25 - 1); // queue now ceil(25 × 0.5) = 13 > 6
  });

  it('smooths the step, and uses the given functions', () => {
    const v = make(20, { smoothing: 0.5, beta: 10 });
    v.update(10, 20, false);
    expect(v.update(10, 20, false)).toBe(25); // 0.5 × 20 + 0.5 × (20 + 10)
  });

  it('re-takes the no-load RTT from the current sample every probeMultiplier × limit × jitter samples', () => {
    const v = vegas({ random: () => 0, probeMultiplier: 1 }).create(bounds(4, 1, 1000)); // probe every 2 samples
    v.update(10, 4, false); // sample 1: no-load RTT 10
    expect(v.update(40, 4, false)).toBe(4); // sample 2: probe, the no-load RTT is now 40
    expect(v.update(40, 4, false)).toBe(4 + 6); // queue 0: + beta
  });

  it('stays within its bounds', () => {
    const v = vegas({ random: () => 0.999 }).create(bounds(5, 5, 8));
    v.update(10, 5, false);
    expect(v.update(10, 5, false)).toBe(8);
    expect(v.update(100, 8, true)).toBe(7);
    for (let i = 0; i < 10; i++) v.update(100, 8, true);
    expect(v.limit).toBe(5);
  });
});

describe('gradient2', () => {
  it('grows by queueSize × smoothing while the RTT is within tolerance of the long RTT', () => {
    const g = gradient2().create(bounds(20));
    // gradient = min(1, 1.5 × long/short) = 1: 20 × 0.8 + (20 × 1 + 4) × 0.2 = 20.8
    expect(g.update(10, 20, false)).toBeCloseTo(20.8, 10);
    expect(g.update(10, 21, false)).toBeCloseTo(21.6, 10);
  });

  it('shrinks by the gradient 1.5 × longRtt / shortRtt (clamped to [0.5, 1]) when the RTT rises', () => {
    const g = gradient2().create(bounds(20));
    for (let i = 0; i < 10; i++) g.update(10, 100, false); // warm-up: a plain mean of 10ms
    const before = g.limit;
    const long = 10 * (1 - 2 / 601) + 30 * (2 / 601);
    const gradient = Math.max(0.5, Math.min(1, (1.5 * long) / 30));
    const expected = before * 0.8 + (before * gradient + 4) * 0.2;
    expect(g.update(30, 100, false)).toBeCloseTo(expected, 10);
    expect(gradient).toBeLessThan(1);
  });

  it('ignores drops, holds the limit while app-limited, and stays within its bounds', () => {
    const g = gradient2().create(bounds(20, 18, 21));
    expect(g.update(10, 5, true)).toBe(20); // inflight 5 < 20 / 2
    expect(g.update(10, 20, true)).toBeCloseTo(20.8, 10);
    for (let i = 0; i < 5; i++) g.update(10, 21, false);
    expect(g.limit).toBe(21);
    for (let i = 0; i < 50; i++) g.update(1000, 21, false);
    expect(g.limit).toBe(18);
  });

  it('cuts the long RTT by 5% per sample while it is over twice the short RTT', () => {
    const g = gradient2({ smoothing: 1, queueSize: 0 }).create(bounds(100, 1, 1000));
    for (let i = 0; i < 10; i++) g.update(100, 100, false); // long RTT 100
    // short 10: long = 100 × (1 − f) + 10f = 99.7; ratio > 2 → long × 0.95; gradient clamps to 1.
    expect(g.update(10, 100, false)).toBe(100);
    const long = (g as unknown as { longRtt: number }).longRtt;
    expect(long).toBeCloseTo((100 * (1 - 2 / 601) + 10 * (2 / 601)) * 0.95, 10);
  });
});
