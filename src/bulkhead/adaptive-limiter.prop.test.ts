import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { TimeoutError } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { type AdaptiveLimiterOptions, adaptiveLimiter } from './adaptive-limiter.js';

/** A small deterministic PRNG, so a failing run replays exactly from fast-check's seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

const algorithmOptions = fc.oneof(
  fc.record({
    algorithm: fc.constant('aimd' as const),
    backoffRatio: fc.double({ min: 0.5, max: 0.99, noNaN: true }),
  }),
  fc.record({
    algorithm: fc.constant('vegas' as const),
    smoothing: fc.double({ min: 0.05, max: 1, noNaN: true }),
    probeMultiplier: fc.integer({ min: 1, max: 50 }),
  }),
  fc.record({
    algorithm: fc.constant('gradient2' as const),
    smoothing: fc.double({ min: 0.05, max: 1, noNaN: true }),
    rttTolerance: fc.double({ min: 1, max: 3, noNaN: true }),
    longWindow: fc.integer({ min: 1, max: 1000 }),
    queueSize: fc.integer({ min: 0, max: 20 }),
  }),
);

const call = fc.record({
  gap: fc.integer({ min: 0, max: 5 }),
  latency: fc.double({ min: 0, max: 100, noNaN: true }),
  outcome: fc.constantFrom('ok', 'ok', 'ok', 'overload', 'error'),
});

test.prop([
  algorithmOptions,
  fc.integer({ min: 1, max: 30 }),
  fc.integer({ min: 0, max: 60 }),
  fc.integer({ min: 0, max: 60 }),
  fc.boolean(),
  fc.option(fc.integer({ min: 1, max: 80 }), { nil: undefined }),
  fc.array(call, { minLength: 1, maxLength: 150 }),
])(
  'a limiter stays within [min, max]',
  async (algorithm, minLimit, span, initialOffset, windowed, timeout, calls) => {
    const clock = new FakeClock(0);
    const maxLimit = minLimit + span;
    const initialLimit = minLimit + Math.min(span, initialOffset);
    const limiter = adaptiveLimiter({
      ...algorithm,
      minLimit,
      maxLimit,
      initialLimit,
      queue: 5,
      clock,
      window: windowed ? { minSamples: 2 } : false,
      ...(timeout === undefined ? {} : { timeout }),
    } as AdaptiveLimiterOptions);
    const seen: number[] = [limiter.limit];
    limiter.onLimitChange(({ limit }) => seen.push(limit));
    const running: Promise<unknown>[] = [];
    let t = 0;
    for (const { gap, latency, outcome } of calls) {
      t += gap;
      clock.setTimeout(() => {
        running.push(
          limiter
            .execute(
              () =>
                new Promise<void>((resolve, reject) => {
                  clock.setTimeout(() => {
                    if (outcome === 'overload') reject(new TimeoutError(latency));
                    else if (outcome === 'error') reject(new Error('app'));
                    else resolve();
                  }, latency);
                }),
            )
            .catch(() => {}),
        );
        seen.push(limiter.limit);
      }, t);
    }
    await clock.advanceAsync(t + 200);
    await Promise.all(running);
    for (const limit of seen) {
      expect(Number.isInteger(limit)).toBe(true);
      expect(limit).toBeGreaterThanOrEqual(minLimit);
      expect(limit).toBeLessThanOrEqual(maxLimit);
    }
    expect(limiter.inflight).toBe(0);
  },
);

/**
 * Many closed-loop clients against a server that handles `knee` calls at its base latency and
 * degrades sharply past it (+8 × base for each further `knee` calls: a server that starts
 * contending on a lock or swapping), for 500 base latencies. Rejected clients come back after
 * about one base latency. Returns the mean limit over the last quarter of the run.
 */
async function settledLimit(
  options: AdaptiveLimiterOptions,
  knee: number,
  base: number,
  seed: number,
): Promise<{ mean: number; min: number; max: number }> {
  const clock = new FakeClock(0);
  const random = prng(seed);
  const limiter = adaptiveLimiter({ initialLimit: 10, minLimit: 1, maxLimit: 1000, clock, ...options });
  let concurrency = 0;
  const server = () =>
    new Promise<void>((resolve) => {
      const c = ++concurrency;
      const slowdown = c <= knee ? 1 : 1 + (8 * (c - knee)) / knee;
      const latency = base * slowdown * (1 + 0.05 * (random() * 2 - 1));
      clock.setTimeout(() => {
        concurrency--;
        resolve();
      }, latency);
    });
  const sleep = (ms: number) => new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
  let stopped = false;
  const client = async () => {
    await sleep(random() * base);
    while (!stopped) {
      try {
        await limiter.execute(server);
      } catch {
        await sleep(base * (0.5 + random()));
      }
    }
  };
  const clients = Array.from({ length: 3 * knee }, client);
  const duration = 500 * base;
  const samples: number[] = [];
  for (let t = 0; t < duration; t += base) {
    await clock.advanceAsync(base);
    if (t >= duration * 0.75) samples.push(limiter.limit);
  }
  stopped = true;
  await clock.advanceAsync(100 * base);
  await Promise.all(clients);
  return {
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    min: Math.min(...samples),
    max: Math.max(...samples),
  };
}

const server = fc.record({
  knee: fc.integer({ min: 20, max: 80 }),
  base: fc.integer({ min: 2, max: 20 }),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
});

const algorithms: [string, (base: number) => AdaptiveLimiterOptions][] = [
  // AIMD is loss-based: it sees the knee through calls slower than 1.2 × the unloaded latency.
  ['aimd', (base) => ({ algorithm: 'aimd', timeout: 1.2 * base })],
  ['vegas', () => ({ algorithm: 'vegas' })],
  ['gradient2', () => ({ algorithm: 'gradient2' })],
];

for (const [name, options] of algorithms) {
  test.prop([server], { numRuns: 4 })(
    `${name} settles within ±25% of the knee of a simulated server`,
    async ({ knee, base, seed }) => {
      const { mean } = await settledLimit(options(base), knee, base, seed);
      expect(mean).toBeGreaterThanOrEqual(0.75 * knee);
      expect(mean).toBeLessThanOrEqual(1.25 * knee);
    },
    60_000,
  );
}
