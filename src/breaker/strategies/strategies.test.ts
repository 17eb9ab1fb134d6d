import { describe, expect, it } from 'vitest';
import { describe as describeValue, InvalidOptionError } from '../../core/errors.js';
import type { BreakerStrategy } from '../strategy.js';
import { consecutive } from './consecutive.js';
import { countWindow } from './count-window.js';
import { timeWindow } from './time-window.js';

/** Records `outcomes` ('F' failed, 'S' slow success, 'X' slow failure, '.' fast success) and returns each verdict. */
function feed(strategy: BreakerStrategy, outcomes: string, now = 0): boolean[] {
  return [...outcomes].map((o) => strategy.record(o === 'F' || o === 'X', o === 'S' || o === 'X', now));
}

describe('consecutive', () => {
  it('opens on the threshold-th failure in a row', () => {
    const s = consecutive(3).create();
    expect(feed(s, 'FF')).toEqual([false, false]);
    expect(s.record(true, false, 0)).toBe(true);
  });

  it('any success resets the run', () => {
    const s = consecutive(3).create();
    expect(feed(s, 'FF.FF.FF')).toEqual(Array(8).fill(false));
    expect(feed(s, 'F')).toEqual([true]);
  });

  it('keeps reporting true while the run continues', () => {
    const s = consecutive(1).create();
    expect(feed(s, 'FFF')).toEqual([true, true, true]);
  });

  it('counts calls, failures and slow calls since the last reset', () => {
    const s = consecutive(10).create();
    feed(s, 'F.SXF');
    expect(s.counts(0)).toEqual({ calls: 5, failures: 3, slowCalls: 2 });
    s.reset(0);
    expect(s.counts(0)).toEqual({ calls: 0, failures: 0, slowCalls: 0 });
    expect(feed(s, 'FFFFFFFFF')).toEqual(Array(9).fill(false)); // the run restarted at zero
  });

  it('ignores slow calls unless countSlowCalls', () => {
    expect(feed(consecutive(2).create(), 'SSSS')).toEqual([false, false, false, false]);
    expect(feed(consecutive(2, { countSlowCalls: true }).create(), 'S.SS')).toEqual([
      false,
      false,
      false,
      true,
    ]);
  });

  it('half-open: the first failure re-opens, every probe must succeed to close', () => {
    const s = consecutive(3).create();
    expect(s.halfOpen(1, 0, 0, 3)).toBe('pending');
    expect(s.halfOpen(2, 0, 0, 3)).toBe('pending');
    expect(s.halfOpen(3, 0, 0, 3)).toBe('close');
    expect(s.halfOpen(1, 1, 0, 3)).toBe('open');
    expect(s.halfOpen(1, 0, 1, 3)).toBe('pending');
    expect(consecutive(3, { countSlowCalls: true }).create().halfOpen(1, 0, 1, 3)).toBe('open');
  });

  it('does not read the clock and names itself', () => {
    expect(consecutive(7).create().usesTime).toBe(false);
    expect(consecutive(7).name).toBe('consecutive(7)');
  });

  it('each create() is independent', () => {
    const f = consecutive(2);
    const a = f.create();
    const b = f.create();
    a.record(true, false, 0);
    expect(b.record(true, false, 0)).toBe(false);
    expect(a.record(true, false, 0)).toBe(true);
  });
});

describe('countWindow', () => {
  it('waits for minimumCalls before judging', () => {
    const s = countWindow({ size: 10, minimumCalls: 4, failureRate: 0.5 }).create();
    expect(feed(s, 'FFF')).toEqual([false, false, false]);
    expect(s.record(false, false, 0)).toBe(true); // 3 / 4
  });

  it('minimumCalls defaults to size', () => {
    const s = countWindow({ size: 4 }).create();
    expect(feed(s, 'FFF')).toEqual([false, false, false]);
    expect(feed(s, '.')).toEqual([true]);
  });

  it('opens when the failure rate reaches the threshold (inclusive)', () => {
    const s = countWindow({ size: 5, failureRate: 0.6 }).create();
    expect(feed(s, '..FF')).toEqual([false, false, false, false]);
    expect(feed(s, 'F')).toEqual([true]); // 3 / 5 = 0.6
    const t = countWindow({ size: 5, failureRate: 0.6 }).create();
    expect(feed(t, '...FF')).toEqual([false, false, false, false, false]); // 2 / 5
  });

  it('compares the rate exactly: 55 failures of 100 reach failureRate 0.55', () => {
    // 0.55 * 100 is 55.00000000000001 in floating point: a threshold of rate * calls misses this.
    const s = countWindow({ size: 100, failureRate: 0.55 }).create();
    const verdicts = feed(s, '.'.repeat(45) + 'F'.repeat(55));
    expect(verdicts.at(-1)).toBe(true);
    expect(verdicts.slice(0, -1).every((v) => !v)).toBe(true);
    const slow = countWindow({ size: 25, failureRate: 1, slowCallRate: 0.28 }).create();
    expect(feed(slow, '.'.repeat(18) + 'S'.repeat(7)).at(-1)).toBe(true);
  });

  it('slides: the oldest call leaves the window', () => {
    const s = countWindow({ size: 4, minimumCalls: 4, failureRate: 0.75 }).create();
    expect(feed(s, 'FF..')).toEqual([false, false, false, false]); // 2/4
    expect(feed(s, 'F')).toEqual([false]); // last four: F . . F
    expect(s.counts(0)).toEqual({ calls: 4, failures: 2, slowCalls: 0 });
    expect(feed(s, 'F')).toEqual([false]); // last four: . . F F
    expect(feed(s, 'F')).toEqual([true]); // last four: . F F F
    expect(s.counts(0)).toEqual({ calls: 4, failures: 3, slowCalls: 0 });
  });

  it('opens on the slow-call rate, with failures counted separately', () => {
    const s = countWindow({ size: 4, failureRate: 1, slowCallRate: 0.5 }).create();
    expect(feed(s, 'S.F')).toEqual([false, false, false]);
    expect(feed(s, 'X')).toEqual([true]); // slow 2 / 4
    expect(s.counts(0)).toEqual({ calls: 4, failures: 2, slowCalls: 2 });
  });

  it('without slowCallRate slow calls never open', () => {
    const s = countWindow({ size: 2, minimumCalls: 1 }).create();
    expect(feed(s, 'SSSS')).toEqual([false, false, false, false]);
  });

  it('reset empties the window', () => {
    const s = countWindow({ size: 3, failureRate: 1 }).create();
    feed(s, 'FF');
    s.reset(0);
    expect(s.counts(0)).toEqual({ calls: 0, failures: 0, slowCalls: 0 });
    expect(feed(s, 'F..')).toEqual([false, false, false]);
    expect(feed(s, 'FF')).toEqual([false, false]); // [. F F]: 2/3 < 1
    expect(feed(s, 'F')).toEqual([true]);
  });

  it('half-open: opens early once the threshold is guaranteed, else judges when every probe reported', () => {
    const s = countWindow({ size: 10, failureRate: 0.5 }).create();
    expect(s.halfOpen(1, 0, 0, 4)).toBe('pending');
    expect(s.halfOpen(1, 1, 0, 4)).toBe('pending'); // 1/4 < 0.5 whatever the others do
    expect(s.halfOpen(2, 2, 0, 4)).toBe('open'); // 2/4 guaranteed
    expect(s.halfOpen(4, 1, 0, 4)).toBe('close');
    expect(s.halfOpen(4, 2, 0, 4)).toBe('open');
    expect(s.halfOpen(1, 1, 0, 1)).toBe('open');
    expect(s.halfOpen(1, 0, 0, 1)).toBe('close');
  });

  it('does not read the clock and names itself', () => {
    const f = countWindow({ size: 20 });
    expect(f.name).toBe('countWindow(20)');
    expect(f.create().usesTime).toBe(false);
  });
});

describe('timeWindow', () => {
  // duration 1000 in 10 buckets of 100ms: a call at t belongs to bucket floor(t / 100).
  const opts = { duration: 1000, buckets: 10, minimumThroughput: 2, failureRate: 0.5 };

  it('judges the calls of the last `buckets` buckets', () => {
    const s = timeWindow(opts).create();
    expect(s.record(true, false, 0)).toBe(false); // below minimumThroughput
    expect(s.record(false, false, 950)).toBe(true); // 1/2 in buckets 0..9
    expect(s.counts(999)).toEqual({ calls: 2, failures: 1, slowCalls: 0 });
    // At t=1000 bucket 0 leaves the window (buckets 1..10).
    expect(s.counts(1000)).toEqual({ calls: 1, failures: 0, slowCalls: 0 });
    expect(s.record(false, false, 1000)).toBe(false);
  });

  it('a gap longer than the window forgets everything', () => {
    const s = timeWindow(opts).create();
    feed(s, 'FFF', 0);
    expect(s.counts(50)).toEqual({ calls: 3, failures: 3, slowCalls: 0 });
    expect(s.counts(10_000)).toEqual({ calls: 0, failures: 0, slowCalls: 0 });
    expect(s.record(true, false, 10_000)).toBe(false); // 1 call < minimumThroughput
  });

  it('drops buckets one by one as time moves', () => {
    const s = timeWindow({ ...opts, failureRate: 1 }).create();
    for (let t = 0; t < 1000; t += 100) s.record(true, false, t);
    expect(s.counts(999).calls).toBe(10);
    for (let k = 1; k <= 10; k++) expect(s.counts(999 + 100 * k - 99).calls).toBe(10 - k);
  });

  it('opens on the slow-call rate', () => {
    const s = timeWindow({ duration: '10s', minimumThroughput: 4, slowCallRate: 0.75 }).create();
    expect(feed(s, 'SS.', 0)).toEqual([false, false, false]);
    expect(feed(s, 'S', 10)).toEqual([true]);
    expect(s.counts(10)).toEqual({ calls: 4, failures: 0, slowCalls: 3 });
  });

  it('compares the rate exactly: 7 failures of 25 reach failureRate 0.28', () => {
    // 0.28 * 25 is 7.000000000000001 in floating point.
    const s = timeWindow({ duration: 1000, minimumThroughput: 25, failureRate: 0.28 }).create();
    expect(feed(s, '.'.repeat(18) + 'F'.repeat(7), 5).at(-1)).toBe(true);
  });

  it('a clock stepping backwards records into the newest bucket', () => {
    const s = timeWindow({ ...opts, failureRate: 1 }).create();
    s.record(true, false, 900);
    s.record(true, false, 100); // earlier than the head: kept with the newest bucket
    expect(s.counts(900)).toEqual({ calls: 2, failures: 2, slowCalls: 0 });
    expect(s.counts(1899)).toEqual({ calls: 2, failures: 2, slowCalls: 0 });
    expect(s.counts(1900)).toEqual({ calls: 0, failures: 0, slowCalls: 0 });
  });

  it('reset empties the window and forgets the head', () => {
    const s = timeWindow(opts).create();
    feed(s, 'F', 5000);
    s.reset(5000);
    expect(s.counts(5000)).toEqual({ calls: 0, failures: 0, slowCalls: 0 });
    expect(s.record(true, false, 0)).toBe(false);
    expect(s.record(true, false, 0)).toBe(true);
  });

  it('defaults: 10 buckets, minimumThroughput 20, failureRate 0.5', () => {
    const f = timeWindow({ duration: '30s' });
    expect(f.name).toBe('timeWindow(30000ms/10)');
    const s = f.create();
    expect(feed(s, 'F'.repeat(19), 0).some(Boolean)).toBe(false);
    expect(feed(s, '.', 0)).toEqual([true]);
  });

  it('half-open uses the rate verdict', () => {
    const s = timeWindow(opts).create();
    expect(s.halfOpen(1, 0, 0, 2)).toBe('pending');
    expect(s.halfOpen(1, 1, 0, 2)).toBe('open');
    expect(s.halfOpen(2, 0, 0, 2)).toBe('close');
  });
});

describe('option validation', () => {
  const cases: [string, () => unknown, string, unknown][] = [
    // consecutive
    ['consecutive: zero threshold', () => consecutive(0), 'strategy.threshold', 0],
    ['consecutive: fractional threshold', () => consecutive(1.5), 'strategy.threshold', 1.5],
    ['consecutive: string threshold', () => consecutive('5' as never), 'strategy.threshold', '5'],
    ['consecutive: NaN threshold', () => consecutive(Number.NaN), 'strategy.threshold', Number.NaN],
    ['consecutive: non-object options', () => consecutive(5, 'slow' as never), 'strategy', 'slow'],
    [
      'consecutive: non-boolean countSlowCalls',
      () => consecutive(5, { countSlowCalls: 1 as never }),
      'strategy.countSlowCalls',
      1,
    ],
    [
      'consecutive: unknown key',
      () => consecutive(5, { countSlowCall: true } as never),
      'strategy.countSlowCall',
      true,
    ],
    // countWindow
    ['countWindow: missing options', () => countWindow(undefined as never), 'strategy.size', undefined],
    ['countWindow: null options', () => countWindow(null as never), 'strategy', null],
    ['countWindow: array options', () => countWindow([] as never), 'strategy', []],
    ['countWindow: zero size', () => countWindow({ size: 0 }), 'strategy.size', 0],
    ['countWindow: fractional size', () => countWindow({ size: 2.5 }), 'strategy.size', 2.5],
    ['countWindow: string size', () => countWindow({ size: '10' as never }), 'strategy.size', '10'],
    ['countWindow: huge size', () => countWindow({ size: 2 ** 24 + 1 }), 'strategy.size', 2 ** 24 + 1],
    [
      'countWindow: zero minimumCalls',
      () => countWindow({ size: 10, minimumCalls: 0 }),
      'strategy.minimumCalls',
      0,
    ],
    [
      'countWindow: minimumCalls above size',
      () => countWindow({ size: 10, minimumCalls: 11 }),
      'strategy.minimumCalls',
      11,
    ],
    [
      'countWindow: zero failureRate',
      () => countWindow({ size: 10, failureRate: 0 }),
      'strategy.failureRate',
      0,
    ],
    [
      'countWindow: failureRate above 1',
      () => countWindow({ size: 10, failureRate: 1.5 }),
      'strategy.failureRate',
      1.5,
    ],
    [
      'countWindow: NaN failureRate',
      () => countWindow({ size: 10, failureRate: Number.NaN }),
      'strategy.failureRate',
      Number.NaN,
    ],
    [
      'countWindow: string failureRate',
      () => countWindow({ size: 10, failureRate: '0.5' as never }),
      'strategy.failureRate',
      '0.5',
    ],
    [
      'countWindow: negative slowCallRate',
      () => countWindow({ size: 10, slowCallRate: -1 }),
      'strategy.slowCallRate',
      -1,
    ],
    [
      'countWindow: unknown key',
      () => countWindow({ size: 10, failurerate: 0.5 } as never),
      'strategy.failurerate',
      0.5,
    ],
    // timeWindow
    ['timeWindow: missing duration', () => timeWindow({} as never), 'strategy.duration', undefined],
    ['timeWindow: zero duration', () => timeWindow({ duration: 0 }), 'strategy.duration', 0],
    ['timeWindow: negative duration', () => timeWindow({ duration: -5 }), 'strategy.duration', -5],
    [
      'timeWindow: unknown unit',
      () => timeWindow({ duration: '10 parsecs' as never }),
      'strategy.duration',
      '10 parsecs',
    ],
    [
      'timeWindow: infinite duration',
      () => timeWindow({ duration: Number.POSITIVE_INFINITY }),
      'strategy.duration',
      Number.POSITIVE_INFINITY,
    ],
    ['timeWindow: zero buckets', () => timeWindow({ duration: 1000, buckets: 0 }), 'strategy.buckets', 0],
    [
      'timeWindow: too many buckets',
      () => timeWindow({ duration: 100_000, buckets: 1001 }),
      'strategy.buckets',
      1001,
    ],
    [
      'timeWindow: buckets under 1ms',
      () => timeWindow({ duration: 10, buckets: 20 }),
      'strategy.buckets',
      20,
    ],
    [
      'timeWindow: zero minimumThroughput',
      () => timeWindow({ duration: 1000, minimumThroughput: 0 }),
      'strategy.minimumThroughput',
      0,
    ],
    [
      'timeWindow: failureRate above 1',
      () => timeWindow({ duration: 1000, failureRate: 2 }),
      'strategy.failureRate',
      2,
    ],
    [
      'timeWindow: zero slowCallRate',
      () => timeWindow({ duration: 1000, slowCallRate: 0 }),
      'strategy.slowCallRate',
      0,
    ],
    [
      'timeWindow: unknown key',
      () => timeWindow({ duration: 1000, bucket: 5 } as never),
      'strategy.bucket',
      5,
    ],
  ];

  it.each(cases)(
    '%s throws E_INVALID_OPTION naming the option and the value',
    (_, make, option, received) => {
      let error: unknown;
      try {
        make();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidOptionError);
      const err = error as InvalidOptionError;
      expect(err.code).toBe('E_INVALID_OPTION');
      expect(err.option).toBe(option);
      expect(err.received).toStrictEqual(received);
      expect(err.message).toContain(`Invalid option "${option}"`);
      expect(err.message).toContain(`received ${describeValue(received)}`);
    },
  );

  it('accepts valid edge values', () => {
    expect(() => consecutive(1)).not.toThrow();
    expect(() => consecutive(5, { countSlowCalls: true })).not.toThrow();
    expect(() => countWindow({ size: 1, minimumCalls: 1, failureRate: 1, slowCallRate: 1 })).not.toThrow();
    expect(() => timeWindow({ duration: '1s', buckets: 1000 })).not.toThrow();
    expect(() => timeWindow({ duration: 1, buckets: 1, minimumThroughput: 1 })).not.toThrow();
  });
});
