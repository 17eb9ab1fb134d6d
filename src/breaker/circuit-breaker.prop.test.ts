import { ExponentialBackoff, handleAll } from 'cockatiel';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ButtressError, describe as describeValue, InvalidOptionError } from '../core/errors.js';
import type { Disposable } from '../core/events.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import {
  type CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitState,
  circuitBreaker,
} from './circuit-breaker.js';
import { breakerRegistry } from './registry.js';
import type { SharedCircuitState } from './shared-state.js';
import { consecutive } from './strategies/consecutive.js';
import { countWindow } from './strategies/count-window.js';
import { timeWindow } from './strategies/time-window.js';
import type { BreakerStrategyFactory } from './strategy.js';

// ---------------------------------------------------------------------------------------------
// Strategy configurations and obviously-correct reference models
// ---------------------------------------------------------------------------------------------

type StrategyConfig =
  | { kind: 'consecutive'; threshold: number; countSlowCalls: boolean }
  | { kind: 'countWindow'; size: number; minimumCalls: number; failureRate: number; slowCallRate?: number }
  | {
      kind: 'timeWindow';
      duration: number;
      buckets: number;
      minimumThroughput: number;
      failureRate: number;
      slowCallRate?: number;
    };

/**
 * Rates as k/100 and as a/b: the second lands exactly on thresholds like 7/25, where computing
 * `rate * calls` in floating point rounds the wrong way.
 */
const rateArb = fc.oneof(
  fc.integer({ min: 1, max: 100 }).map((k) => k / 100),
  fc
    .tuple(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 30 }))
    .map(([a, b]) => Math.min(a, b) / Math.max(a, b)),
);

const consecutiveArb = fc.record({
  kind: fc.constant('consecutive' as const),
  threshold: fc.integer({ min: 1, max: 5 }),
  countSlowCalls: fc.boolean(),
});

const countWindowArb = fc.integer({ min: 1, max: 30 }).chain((size) =>
  fc.record(
    {
      kind: fc.constant('countWindow' as const),
      size: fc.constant(size),
      minimumCalls: fc.integer({ min: 1, max: size }),
      failureRate: rateArb,
      slowCallRate: rateArb,
    },
    { requiredKeys: ['kind', 'size', 'minimumCalls', 'failureRate'] },
  ),
);

const timeWindowArb = fc.integer({ min: 1, max: 12 }).chain((buckets) =>
  fc.record(
    {
      kind: fc.constant('timeWindow' as const),
      buckets: fc.constant(buckets),
      // Not always a multiple of buckets: bucket widths may be fractional.
      duration: fc.integer({ min: buckets, max: 3000 }),
      minimumThroughput: fc.integer({ min: 1, max: 12 }),
      failureRate: rateArb,
      slowCallRate: rateArb,
    },
    { requiredKeys: ['kind', 'buckets', 'duration', 'minimumThroughput', 'failureRate'] },
  ),
);

const strategyArb: fc.Arbitrary<StrategyConfig> = fc.oneof(consecutiveArb, countWindowArb, timeWindowArb);

function factoryOf(cfg: StrategyConfig): BreakerStrategyFactory {
  switch (cfg.kind) {
    case 'consecutive':
      return consecutive(cfg.threshold, { countSlowCalls: cfg.countSlowCalls });
    case 'countWindow': {
      const { kind: _, ...options } = cfg;
      return countWindow(options);
    }
    case 'timeWindow': {
      const { kind: _, ...options } = cfg;
      return timeWindow(options);
    }
  }
}

interface Outcome {
  failed: boolean;
  slow: boolean;
  t: number;
}

/** Brute force over the whole history: no rings, no running totals. */
class ReferenceModel {
  history: Outcome[] = [];
  constructor(readonly cfg: StrategyConfig) {}

  reset(): void {
    this.history = [];
  }

  /** Records an outcome and says whether the circuit must open now. */
  record(failed: boolean, slow: boolean, t: number): boolean {
    this.history.push({ failed, slow, t });
    const cfg = this.cfg;
    switch (cfg.kind) {
      case 'consecutive': {
        let run = 0;
        for (let i = this.history.length - 1; i >= 0; i--) {
          const o = this.history[i]!;
          if (!(o.failed || (cfg.countSlowCalls && o.slow))) break;
          run++;
        }
        return run >= cfg.threshold;
      }
      case 'countWindow': {
        const window = this.history.slice(-cfg.size);
        return judge(window, cfg.minimumCalls, cfg.failureRate, cfg.slowCallRate);
      }
      case 'timeWindow':
        return judge(
          inTimeWindow(this.history, t, cfg.duration / cfg.buckets, cfg.buckets),
          cfg.minimumThroughput,
          cfg.failureRate,
          cfg.slowCallRate,
        );
    }
  }
}

/** The outcomes whose bucket floor(t / width) is among the last `buckets` buckets up to now's. */
function inTimeWindow(history: Outcome[], now: number, width: number, buckets: number): Outcome[] {
  const current = Math.floor(now / width);
  return history.filter((o) => {
    const b = Math.floor(o.t / width);
    return b > current - buckets && b <= current;
  });
}

function judge(window: Outcome[], minimum: number, failureRate: number, slowCallRate?: number): boolean {
  const calls = window.length;
  if (calls < minimum) return false;
  const failures = window.filter((o) => o.failed).length;
  const slow = window.filter((o) => o.slow).length;
  return failures / calls >= failureRate || (slowCallRate !== undefined && slow / calls >= slowCallRate);
}

// ---------------------------------------------------------------------------------------------
// A breaker driven by random operations on a FakeClock
// ---------------------------------------------------------------------------------------------

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

type Op =
  | { op: 'start'; withSignal: boolean }
  | { op: 'burst'; n: number }
  | { op: 'settle'; index: number; fail: boolean }
  | { op: 'abort'; index: number }
  | { op: 'sync'; fail: boolean }
  | { op: 'advance'; ms: number }
  | { op: 'isolate' }
  | { op: 'dispose'; index: number }
  | { op: 'readState' };

const opArb = (maxAdvance: number, abortWeight = 1): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('start' as const), withSignal: fc.boolean() }) },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('burst' as const), n: fc.integer({ min: 2, max: 6 }) }),
    },
    {
      weight: 5,
      arbitrary: fc.record({ op: fc.constant('settle' as const), index: fc.nat(), fail: fc.boolean() }),
    },
    { weight: abortWeight, arbitrary: fc.record({ op: fc.constant('abort' as const), index: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('sync' as const), fail: fc.boolean() }) },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('advance' as const),
        ms: fc.integer({ min: 0, max: maxAdvance }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('isolate' as const) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('dispose' as const), index: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('readState' as const) }) },
  );

interface Pending {
  gate: Deferred<string>;
  controller: AbortController | undefined;
}

/**
 * Runs ops against a breaker and tracks, from the outside, every transition and every execution
 * of fn: which half-open episode it started in (if any) and whether it is still running.
 */
class Harness {
  readonly clock = new FakeClock(1_700_000_000_000);
  readonly breaker: CircuitBreaker;
  readonly transitions: [CircuitState, CircuitState][] = [];
  state: CircuitState;
  /** Incremented on every entry into half-open. */
  episode = 0;
  /** Executions of fn started while half-open, still running, per episode. */
  readonly inFlight = new Map<number, number>();
  maxInFlight = 0;
  readonly pending: Pending[] = [];
  readonly isolations: Disposable[] = [];

  constructor(options: CircuitBreakerOptions) {
    this.breaker = circuitBreaker({ ...options, clock: this.clock });
    this.state = this.breaker.state;
    this.breaker.onStateChange((next) => {
      this.transitions.push([this.state, next]);
      this.state = next;
      if (next === 'half-open') this.episode++;
    });
  }

  /** Starts one call whose fn waits for the test to settle it (or for its signal to abort). */
  start(withSignal: boolean): void {
    const controller = withSignal ? new AbortController() : undefined;
    const gate = deferred<string>();
    let called = false;
    const result = this.breaker.execute(({ signal }) => {
      called = true;
      const episode = this.state === 'half-open' ? this.episode : undefined;
      if (episode !== undefined) {
        const n = (this.inFlight.get(episode) ?? 0) + 1;
        this.inFlight.set(episode, n);
        this.maxInFlight = Math.max(this.maxInFlight, n);
      }
      signal.addEventListener('abort', () => gate.reject(signal.reason), { once: true });
      return gate.promise.finally(() => {
        if (episode !== undefined) this.inFlight.set(episode, this.inFlight.get(episode)! - 1);
      });
    }, controller?.signal);
    result.catch(() => {});
    // fn runs synchronously when the call is admitted; rejected calls never reach it.
    if (called) this.pending.push({ gate, controller });
  }

  async apply(op: Op): Promise<void> {
    switch (op.op) {
      case 'start':
        this.start(op.withSignal);
        break;
      case 'burst':
        for (let i = 0; i < op.n; i++) this.start(true);
        break;
      case 'settle': {
        if (this.pending.length === 0) break;
        const [entry] = this.pending.splice(op.index % this.pending.length, 1);
        if (op.fail) entry!.gate.reject(new Error('fail'));
        else entry!.gate.resolve('ok');
        break;
      }
      case 'abort': {
        if (this.pending.length === 0) break;
        const entry = this.pending[op.index % this.pending.length]!;
        if (entry.controller === undefined) break;
        this.pending.splice(op.index % this.pending.length, 1);
        entry.controller.abort(new Error('caller gave up'));
        break;
      }
      case 'sync':
        await this.breaker
          .execute(() => {
            if (op.fail) throw new Error('sync fail');
            return 'ok';
          })
          .catch(() => {});
        break;
      case 'advance':
        this.clock.advance(op.ms);
        break;
      case 'isolate':
        this.isolations.push(this.breaker.isolate());
        break;
      case 'dispose':
        if (this.isolations.length === 0) break;
        this.isolations.splice(op.index % this.isolations.length, 1)[0]!.dispose();
        break;
      case 'readState':
        void this.breaker.state;
        break;
    }
    await flushMicrotasks();
  }

  /** Executions of fn started in the current half-open episode and still running. */
  currentProbes(): number {
    return this.state === 'half-open' ? (this.inFlight.get(this.episode) ?? 0) : 0;
  }
}

const LEGAL = new Set([
  'closed→open',
  'open→half-open',
  'half-open→closed',
  'half-open→open',
  'closed→isolated',
  'open→isolated',
  'half-open→isolated',
  'isolated→closed',
]);

const breakerConfigArb: fc.Arbitrary<BreakerConfig> = fc.record({
  strategy: strategyArb,
  halfOpenProbes: fc.integer({ min: 1, max: 4 }),
  halfOpenAfter: fc.oneof(
    fc.integer({ min: 0, max: 300 }),
    fc.record({ initial: fc.integer({ min: 0, max: 100 }), max: fc.integer({ min: 100, max: 500 }) }),
  ),
  slowCallDuration: fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }),
});

interface BreakerConfig {
  strategy: StrategyConfig;
  halfOpenProbes: number;
  halfOpenAfter: number | { initial: number; max: number };
  slowCallDuration: number | undefined;
}

function optionsOf(cfg: BreakerConfig): CircuitBreakerOptions {
  return {
    strategy: factoryOf(cfg.strategy),
    halfOpenProbes: cfg.halfOpenProbes,
    halfOpenAfter: cfg.halfOpenAfter,
    slowCallDuration: cfg.slowCallDuration,
  };
}

describe('circuit breaker properties', () => {
  it('only legal transitions', async () => {
    await fc.assert(
      fc.asyncProperty(breakerConfigArb, fc.array(opArb(400), { maxLength: 80 }), async (cfg, ops) => {
        const h = new Harness(optionsOf(cfg));
        for (const op of ops) {
          await h.apply(op);
          for (const [from, to] of h.transitions) {
            if (!LEGAL.has(`${from}→${to}`)) throw new Error(`illegal transition ${from} → ${to}`);
          }
          // The getter agrees with the last transition it (or anything else) announced.
          expect(h.breaker.state).toBe(h.state);
          expect(h.breaker.stats().probesInFlight).toBeLessThanOrEqual(cfg.halfOpenProbes);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never more than halfOpenProbes calls in flight while half-open', async () => {
    const probeHeavyConfig = fc.record({
      strategy: fc.oneof(consecutiveArb, countWindowArb, timeWindowArb),
      halfOpenProbes: fc.integer({ min: 1, max: 5 }),
      halfOpenAfter: fc.integer({ min: 0, max: 50 }),
      slowCallDuration: fc.constant(undefined),
    });
    await fc.assert(
      fc.asyncProperty(probeHeavyConfig, fc.array(opArb(60, 3), { maxLength: 100 }), async (cfg, ops) => {
        const h = new Harness(optionsOf(cfg));
        for (const op of ops) {
          await h.apply(op);
          expect(h.maxInFlight).toBeLessThanOrEqual(cfg.halfOpenProbes);
          if (h.state === 'half-open') {
            // The breaker's own count of trial calls matches what is really running.
            expect(h.breaker.stats().probesInFlight).toBe(h.currentProbes());
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never more than halfOpenProbes calls in flight while half-open: saturating bursts', async () => {
    // A focused variant: open at once, then throw concurrent bursts at each half-open episode.
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.boolean(), fc.nat()), {
          minLength: 1,
          maxLength: 12,
        }),
        async (probes, rounds) => {
          const h = new Harness({ strategy: consecutive(1), halfOpenProbes: probes, halfOpenAfter: 10 });
          await h.apply({ op: 'sync', fail: true });
          for (const [burst, fail, pick] of rounds) {
            await h.apply({ op: 'advance', ms: 10 });
            await h.apply({ op: 'burst', n: burst });
            expect(h.maxInFlight).toBeLessThanOrEqual(probes);
            await h.apply({ op: 'abort', index: pick });
            if (h.state === 'half-open') expect(h.breaker.stats().probesInFlight).toBe(h.currentProbes());
            await h.apply({ op: 'burst', n: burst });
            expect(h.maxInFlight).toBeLessThanOrEqual(probes);
            if (h.state === 'half-open') expect(h.breaker.stats().probesInFlight).toBe(h.currentProbes());
            await h.apply({ op: 'settle', index: pick, fail });
            if (h.state === 'closed') await h.apply({ op: 'sync', fail: true });
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Strategies against the reference model
// ---------------------------------------------------------------------------------------------

const outcomeArb = fc.record({
  failed: fc.boolean(),
  slow: fc.boolean(),
  dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 150 }), fc.integer({ min: 0, max: 5000 })),
});

describe.each([
  ['consecutive', consecutiveArb],
  ['countWindow', countWindowArb],
  ['timeWindow', timeWindowArb],
] as [string, fc.Arbitrary<StrategyConfig>][])('%s', (_, cfgArb) => {
  it('opens exactly when the reference model says so (strategy.record)', () => {
    fc.assert(
      fc.property(
        cfgArb,
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.array(outcomeArb, { maxLength: 120 }),
        (cfg, start, outcomes) => {
          const strategy = factoryOf(cfg).create();
          const model = new ReferenceModel(cfg);
          let t = start;
          outcomes.forEach(({ failed, slow, dt }, step) => {
            t += dt;
            const expected = model.record(failed, slow, t);
            const actual = strategy.record(failed, slow, t);
            if (actual !== expected) {
              throw new Error(`step ${step} at t=${t}: strategy said ${actual}, model ${expected}`);
            }
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('opens exactly when the reference model says so (through a breaker)', async () => {
    const slowMs = 10;
    await fc.assert(
      fc.asyncProperty(cfgArb, fc.array(outcomeArb, { maxLength: 80 }), async (cfg, outcomes) => {
        const clock = new FakeClock(1_700_000_000_000);
        const breaker = circuitBreaker({
          clock,
          strategy: factoryOf(cfg),
          slowCallDuration: slowMs,
          halfOpenAfter: '1h',
        });
        const model = new ReferenceModel(cfg);
        for (const [step, { failed, slow, dt }] of outcomes.entries()) {
          clock.advance(dt);
          const gate = deferred<string>();
          const call = breaker.execute(() => gate.promise).catch(() => {});
          if (slow) clock.advance(slowMs);
          if (failed) gate.reject(new Error('fail'));
          else gate.resolve('ok');
          await call;
          const expected = model.record(failed, slow, clock.now());
          const state = breaker.state;
          if ((state === 'open') !== expected) {
            throw new Error(`step ${step}: breaker is ${state}, model says ${expected ? 'open' : 'closed'}`);
          }
          if (expected) {
            // Close by hand (this resets the window) and carry on from an empty model.
            breaker.isolate().dispose();
            model.reset();
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('rate thresholds', () => {
  // A window holding exactly `rate` of failures (or slow calls) must open: "reaches" is inclusive.
  // Rates f/n for every n up to 100 land on the floating-point edge cases (7/25, 14/50, ...).
  const exactShare = fc.integer({ min: 1, max: 100 }).chain((n) =>
    fc.record({
      n: fc.constant(n),
      marked: fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { minLength: 1, maxLength: n }),
      slowRate: fc.boolean(),
    }),
  );

  it.each(['countWindow', 'timeWindow'] as const)(
    '%s opens when the share of failures or slow calls equals the rate exactly',
    (kind) => {
      fc.assert(
        fc.property(exactShare, ({ n, marked, slowRate }) => {
          const rate = marked.length / n;
          const rates = slowRate ? { failureRate: 1, slowCallRate: rate } : { failureRate: rate };
          const strategy = (
            kind === 'countWindow'
              ? countWindow({ size: n, ...rates })
              : timeWindow({ duration: 1000, minimumThroughput: n, ...rates })
          ).create();
          const hit = new Set(marked);
          let verdict = false;
          for (let i = 0; i < n; i++) {
            const isMarked = hit.has(i);
            verdict = strategy.record(!slowRate && isMarked, slowRate && isMarked, 0);
          }
          expect(verdict).toBe(true);
        }),
        { numRuns: 1000 },
      );
    },
  );
});

describe('timeWindow', () => {
  it('time-window counts equal a brute-force recount', () => {
    const scenario = fc.integer({ min: 1, max: 12 }).chain((buckets) =>
      fc.integer({ min: buckets, max: 2000 }).chain((duration) =>
        fc.record({
          buckets: fc.constant(buckets),
          duration: fc.constant(duration),
          start: fc.integer({ min: 0, max: 2 ** 40 }),
          ops: fc.array(
            fc.record({
              kind: fc.constantFrom('record', 'counts'),
              failed: fc.boolean(),
              slow: fc.boolean(),
              dt: fc.oneof(
                fc.constant(0),
                fc.integer({ min: 0, max: Math.ceil(duration / buckets) * 2 }),
                fc.integer({ min: 0, max: duration }),
                fc.integer({ min: duration, max: duration * 4 }), // longer than the window
              ),
            }),
            { maxLength: 150 },
          ),
        }),
      ),
    );
    fc.assert(
      fc.property(scenario, ({ buckets, duration, start, ops }) => {
        const strategy = timeWindow({ duration, buckets, minimumThroughput: 1 }).create();
        const width = duration / buckets;
        const history: Outcome[] = [];
        let t = start;
        for (const op of ops) {
          t += op.dt;
          if (op.kind === 'record') {
            strategy.record(op.failed, op.slow, t);
            history.push({ failed: op.failed, slow: op.slow, t });
          } else {
            const window = inTimeWindow(history, t, width, buckets);
            expect(strategy.counts(t)).toEqual({
              calls: window.length,
              failures: window.filter((o) => o.failed).length,
              slowCalls: window.filter((o) => o.slow).length,
            });
          }
        }
        const window = inTimeWindow(history, t, width, buckets);
        expect(strategy.counts(t).calls).toBe(window.length);
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Option fuzzing
// ---------------------------------------------------------------------------------------------

const anything = fc.anything({
  maxDepth: 2,
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withObjectString: true,
  withSparseArray: true,
  withTypedArray: true,
});

const numberish = fc.oneof(
  fc.integer({ min: -10, max: 100 }),
  fc.double(),
  fc.constantFrom(0, -0, 1, -1, 0.5, 1.5, 2 ** 24, 2 ** 24 + 1, 2 ** 31, Number.MAX_SAFE_INTEGER),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
);

const durationish = fc.oneof(
  numberish,
  fc.constantFrom('10s', '1.5s', '.5s', '5m', '1h', '1d', '0ms', '250', ' 5 ', '-1s', '1e3', '', 'abc'),
  fc.constantFrom('10 parsecs', '999999999d', 'Infinity', 'NaN'),
  fc.string({ maxLength: 8 }),
);

/** A plausible value for an option, or anything at all. */
const maybe = <T>(plausible: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 3, arbitrary: plausible }, { weight: 1, arbitrary: anything });

/** Options objects sometimes carry an extra key (a typo), sometimes are not objects at all. */
function withNoise<T extends object>(record: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 6, arbitrary: record },
    {
      weight: 2,
      arbitrary: fc
        .tuple(record, fc.string({ minLength: 1, maxLength: 10 }), anything)
        .map(([r, key, value]) => ({ ...r, [key]: value })),
    },
    { weight: 1, arbitrary: anything },
  );
}

const noopShared: SharedCircuitState = {
  attach: () => ({ dispose() {}, [Symbol.dispose]() {} }),
  publish() {},
  acquireProbe: async () => true,
  releaseProbe() {},
  close: async () => {},
};

const strategyOptionArb = fc.oneof(
  fc.constantFrom<BreakerStrategyFactory>(
    consecutive(3),
    countWindow({ size: 5 }),
    timeWindow({ duration: 1000 }),
  ),
  // A user-written factory whose name and create() result may be anything.
  fc.record({ name: anything, create: anything.map((v) => () => v) }),
  anything,
);

const circuitBreakerOptionsArb = withNoise(
  fc.record(
    {
      name: maybe(fc.string()),
      strategy: strategyOptionArb,
      halfOpenAfter: fc.oneof(
        durationish,
        withNoise(
          fc.record({ initial: durationish, max: durationish, multiplier: numberish }, { requiredKeys: [] }),
        ),
        fc.constant(new ExponentialBackoff()),
        anything,
      ),
      halfOpenProbes: maybe(numberish),
      slowCallDuration: maybe(durationish),
      isFailure: fc.oneof(
        fc.constant(() => true),
        fc.constant(handleAll),
        fc.record({
          options: fc.record({ errorFilter: maybe(fc.constant(() => true)), resultFilter: anything }),
        }),
        anything,
      ),
      initialState: fc.oneof(
        fc.constant({ state: 'closed' }),
        fc.record(
          {
            state: maybe(fc.constantFrom('open', 'closed', 'half-open', 'isolated')),
            openedAt: numberish,
            halfOpenAt: numberish,
            reopenCount: numberish,
          },
          { requiredKeys: [] },
        ),
        anything,
      ),
      shared: maybe(fc.constant(noopShared)),
      clock: fc.oneof(
        fc.constant(new FakeClock()),
        fc.record(
          { now: maybe(fc.constant(() => 0)), setTimeout: maybe(fc.constant(() => 0)) },
          { requiredKeys: [] },
        ),
        anything,
      ),
    },
    { requiredKeys: [] },
  ),
);

/** Runs `build`: it may succeed, or throw E_INVALID_OPTION naming the option and value; nothing else. */
function onlyInvalidOption(build: () => unknown): void {
  try {
    build();
  } catch (error) {
    if (!(error instanceof ButtressError) || error.code !== 'E_INVALID_OPTION') {
      throw new Error(`threw something other than E_INVALID_OPTION: ${String(error)}`, { cause: error });
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    const e = error as InvalidOptionError;
    expect(e.message).toContain(`Invalid option "${e.option}"`);
    expect(e.message).toContain(`received ${describeValue(e.received)}`);
  }
}

describe('fuzzed options only ever throw E_INVALID_OPTION', () => {
  it('circuitBreaker', () => {
    fc.assert(
      fc.property(circuitBreakerOptionsArb, (options) => {
        onlyInvalidOption(() => {
          const breaker = circuitBreaker(options as CircuitBreakerOptions);
          // What construction accepted must also work.
          breaker.stats();
          breaker.toJSON();
        });
      }),
      { numRuns: 1000 },
    );
  });

  it('consecutive', () => {
    fc.assert(
      fc.property(
        maybe(numberish),
        fc.oneof(fc.constant(undefined), withNoise(fc.record({ countSlowCalls: maybe(fc.boolean()) }))),
        (threshold, options) => {
          onlyInvalidOption(() => consecutive(threshold as number, options as never).create());
        },
      ),
      { numRuns: 500 },
    );
  });

  it('countWindow', () => {
    fc.assert(
      fc.property(
        withNoise(
          fc.record(
            {
              size: maybe(fc.oneof(fc.integer({ min: 1, max: 50 }), numberish)),
              minimumCalls: maybe(numberish),
              failureRate: maybe(numberish),
              slowCallRate: maybe(numberish),
            },
            { requiredKeys: [] },
          ),
        ),
        (options) => {
          onlyInvalidOption(() => {
            const factory = countWindow(options as never);
            // Only build small windows: a valid size may be up to 2^24 bytes.
            if ((options as { size: number }).size <= 1000) factory.create();
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('timeWindow', () => {
    fc.assert(
      fc.property(
        withNoise(
          fc.record(
            {
              duration: maybe(durationish),
              buckets: maybe(numberish),
              minimumThroughput: maybe(numberish),
              failureRate: maybe(numberish),
              slowCallRate: maybe(numberish),
            },
            { requiredKeys: [] },
          ),
        ),
        (options) => {
          onlyInvalidOption(() => timeWindow(options as never).create());
        },
      ),
      { numRuns: 500 },
    );
  });

  it('breakerRegistry', () => {
    // LRU arrays are preallocated to maxKeys: keep valid values small enough to allocate quickly.
    const maxKeys = maybe(numberish).map((v) =>
      typeof v === 'number' && v > 10_000 && v <= 2 ** 24 ? 10_000 : v,
    );
    fc.assert(
      fc.property(
        withNoise(
          fc.record(
            {
              create: fc.oneof(
                fc.constant(() => ({})),
                anything.map((v) => () => v),
                anything,
              ),
              maxKeys,
              idleTtl: maybe(durationish),
              maxOpenFraction: maybe(numberish),
              clock: fc.oneof(
                fc.constant(new FakeClock()),
                fc.record({ now: maybe(fc.constant(() => 0)) }),
                anything,
              ),
            },
            { requiredKeys: [] },
          ),
        ),
        (options) => {
          onlyInvalidOption(() => {
            const registry = breakerRegistry(options as never);
            // create() is called on first use: its options are validated then, the same way.
            registry.get('k');
            registry.stats();
          });
        },
      ),
      { numRuns: 500 },
    );
  });
});
