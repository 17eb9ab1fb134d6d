import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LagTracker } from './internal/lag.js';

/*
 * The lag bookkeeping against a model. The world: the primary's WAL grows by writes at known
 * times; the health checker samples the WAL position now and then; a replica has replayed up to
 * the position the primary had at some moment. Its true lag is how long ago the primary first
 * went past what the replica has: `now - (time of the first write beyond it)`, or 0 if there was
 * none. The tracker only sees the samples.
 */

interface World {
  /** Write events: time and size, in time order. */
  writes: { at: number; bytes: number }[];
  /** Sample times, increasing. */
  samples: number[];
  /** Time at which the replica's replay position is taken (its position is the primary's then). */
  replayAt: number;
  now: number;
}

const world: fc.Arbitrary<World> = fc
  .record({
    writeGaps: fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 0, maxLength: 40 }),
    sizes: fc.array(fc.integer({ min: 1, max: 1_000 }), { minLength: 40, maxLength: 40 }),
    sampleGaps: fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 40 }),
    replayFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    tail: fc.integer({ min: 0, max: 100 }),
  })
  .map(({ writeGaps, sizes, sampleGaps, replayFraction, tail }) => {
    let t = 0;
    const writes = writeGaps.map((g, i) => ({ at: (t += g), bytes: sizes[i]! }));
    let s = 0;
    const samples = sampleGaps.map((g) => (s += g));
    const end = Math.max(t, s) + tail;
    return { writes, samples, replayAt: Math.floor(replayFraction * end), now: end };
  });

/** The primary's WAL position at time `t` (writes at `t` included). */
function walAt(w: World, t: number): bigint {
  let p = 1_000n;
  for (const write of w.writes) if (write.at <= t) p += BigInt(write.bytes);
  return p;
}

/** How long ago, at `now`, the primary first went past `replayed`. */
function trueLag(w: World, replayed: bigint): number {
  let p = 1_000n;
  for (const write of w.writes) {
    p += BigInt(write.bytes);
    if (p > replayed && write.at <= w.now) return w.now - write.at;
  }
  return 0;
}

function feed(w: World, capacity: number): LagTracker {
  const tracker = new LagTracker(capacity);
  for (const t of w.samples) tracker.record(t, walAt(w, t));
  return tracker;
}

describe('LagTracker', () => {
  it('estimates lag within one sampling interval of the truth while the history covers it', () => {
    fc.assert(
      fc.property(world, (w) => {
        const tracker = feed(w, 1_000);
        const replayed = walAt(w, w.replayAt);
        const estimate = tracker.lagOf(replayed, w.now)!;
        const truth = trueLag(w, replayed);
        const gaps = w.samples.map((t, i) => t - (w.samples[i - 1] ?? t));
        const lastSample = w.samples.at(-1)!;
        const slack = Math.max(...gaps, w.now - lastSample);
        if (replayed >= walAt(w, w.samples[0]!)) {
          expect(Math.abs(estimate - truth)).toBeLessThanOrEqual(slack);
        } else {
          // Older than every sample: a lower bound.
          expect(estimate).toBeLessThanOrEqual(truth);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a bounded history gives the same answer as an unbounded one inside it, and a lower bound outside', () => {
    fc.assert(
      fc.property(world, fc.integer({ min: 2, max: 8 }), (w, capacity) => {
        const full = feed(w, 10_000);
        const ring = feed(w, capacity);
        expect(ring.size).toBeLessThanOrEqual(capacity);
        const kept = ring.samples();
        const replayed = walAt(w, w.replayAt);
        const a = full.lagOf(replayed, w.now)!;
        const b = ring.lagOf(replayed, w.now)!;
        if (replayed >= kept[0]!.lsn) expect(b).toBeCloseTo(a, 9);
        else expect(b).toBeLessThanOrEqual(a + 1e-9);
      }),
      { numRuns: 500 },
    );
  });

  it('lag is 0 once the replica has the newest sampled position, shrinks as it replays, grows with time', () => {
    fc.assert(
      fc.property(
        world,
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 500 }),
        (w, delta, later) => {
          const tracker = feed(w, 16);
          const latest = tracker.latest!;
          const replayed = walAt(w, w.replayAt);
          const lag = tracker.lagOf(replayed, w.now)!;
          if (replayed >= latest) expect(lag).toBe(0);
          expect(tracker.lagOf(replayed + BigInt(delta), w.now)!).toBeLessThanOrEqual(lag);
          expect(tracker.lagOf(replayed, w.now + later)!).toBeGreaterThanOrEqual(lag);
          expect(lag).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('merges repeated positions, keeps time monotone, and restarts when the primary goes backwards', () => {
    const t = new LagTracker(4);
    expect(t.lagOf(5n, 0)).toBeUndefined();
    t.record(100, 10n);
    t.record(200, 10n);
    t.record(150, 20n); // clock stepped back: kept at 200
    expect(t.samples()).toEqual([
      { lsn: 10n, first: 100, last: 200 },
      { lsn: 20n, first: 200, last: 200 },
    ]);
    expect(t.lagOf(15n, 300)).toBe(100);
    t.record(400, 5n); // a new primary
    expect(t.samples()).toEqual([{ lsn: 5n, first: 400, last: 400 }]);
  });
});
