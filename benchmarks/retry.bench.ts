/**
 * buttress/retry hot paths, beside cockatiel 3.2.1 in the same process: (a) `timeout()`'s
 * overhead above a bare `await fn()`, (b) a call through `wrap(retry, circuitBreaker, timeout)`
 * built from buttress against the same stack built from cockatiel (and mixed stacks, for
 * information), (c) `retry()` alone.
 */
import {
  CircuitState as CockatielState,
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  wrap as cockatielWrap,
  handleAll,
  TimeoutStrategy,
} from 'cockatiel';
import { circuitBreaker } from '../src/breaker/index.js';
import { retry, timeout, wrap } from '../src/retry/index.js';
import { type Bench, type BenchContext, type BenchRow, type Measurement, measure, row } from './harness.js';

const BENCH = 'retry';

/** The protected function: an async no-op that ignores its context. */
const upstream = async (): Promise<void> => {};
/** The same, reading its signal, as a callee that passes it on to `fetch` does. */
const readsSignal = async ({ signal }: { signal: AbortSignal }): Promise<void> => {
  if (signal.aborted) throw new Error('aborted');
};

/** A signal that exists already: the bare await's callee reads it too. */
const idle = new AbortController().signal;

/** The goal for `timeout()`, in ns above a bare await. */
const TIMEOUT_BUDGET_NS = 200;

/*
 * cockatiel's timeout leaves an AbortSignal, an EventTarget and a timer of garbage per call; the
 * young-generation collections it causes land on whichever contender runs next. Measured in one
 * case, that is mostly ours, and the bare await baseline swells from ~45 ns to ~90 ns with a
 * wide spread. So buttress's contenders and cockatiel's are measured in two cases of the same run,
 * each with its own bare-await baseline, and the rows compare the overheads across them.
 */
function timeoutCase(): TwoSided {
  const caseName = 'timeout: overhead over bare await';
  const ours = timeout(1000);
  const oursCoop = timeout(1000, 'cooperative');
  const theirs = cockatielTimeout(1000, TimeoutStrategy.Aggressive);
  const theirsCoop = cockatielTimeout(1000, TimeoutStrategy.Cooperative);
  return {
    ours: (ctx) =>
      measure(ctx, BENCH, `${caseName} (buttress)`, [
        {
          name: 'bare await',
          async run(n) {
            for (let i = 0; i < n; i++) await upstream();
          },
        },
        {
          name: 'buttress (aggressive)',
          async run(n) {
            for (let i = 0; i < n; i++) await ours.execute(upstream);
          },
        },
        {
          name: 'buttress (cooperative)',
          async run(n) {
            for (let i = 0; i < n; i++) await oursCoop.execute(upstream);
          },
        },
      ]),
    theirs: (ctx) =>
      measure(ctx, BENCH, `${caseName} (cockatiel)`, [
        {
          name: 'bare await',
          async run(n) {
            for (let i = 0; i < n; i++) await upstream();
          },
        },
        {
          name: 'cockatiel (aggressive)',
          async run(n) {
            for (let i = 0; i < n; i++) await theirs.execute(upstream);
          },
        },
        {
          name: 'cockatiel (cooperative)',
          async run(n) {
            for (let i = 0; i < n; i++) await theirsCoop.execute(upstream);
          },
        },
      ]),
    rows(m, a) {
      expect(ours.stats().timeouts === 0 && oursCoop.stats().timeouts === 0, 'a buttress timeout fired');
      const aggressive = m.overhead('buttress (aggressive)', 'bare await');
      const cooperative = m.overhead('buttress (cooperative)', 'bare await');
      return [
        row(
          BENCH,
          caseName,
          ['buttress (aggressive)', aggressive],
          ['cockatiel (aggressive)', a.overhead('cockatiel (aggressive)', 'bare await')],
        ),
        row(
          BENCH,
          caseName,
          ['buttress (cooperative)', cooperative],
          ['cockatiel (cooperative)', a.overhead('cockatiel (cooperative)', 'bare await')],
        ),
        // The issue states this goal in nanoseconds: the "anchor" is the 200 ns budget itself.
        row(BENCH, caseName, ['buttress (aggressive)', aggressive], ['200 ns budget', TIMEOUT_BUDGET_NS], 1),
        row(
          BENCH,
          caseName,
          ['buttress (cooperative)', cooperative],
          ['200 ns budget', TIMEOUT_BUDGET_NS],
          1,
        ),
      ];
    },
  };
}

/** A callee that reads its signal makes every timeout create one: what that costs. */
async function timeoutSignalRead(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = 'timeout: callee reads signal, overhead';
  const ours = timeout(1000, 'cooperative');
  const theirs = cockatielTimeout(1000, TimeoutStrategy.Cooperative);
  const m = await measure(ctx, BENCH, caseName, [
    {
      name: 'bare await',
      async run(n) {
        for (let i = 0; i < n; i++) await readsSignal({ signal: idle });
      },
    },
    {
      name: 'buttress (cooperative)',
      async run(n) {
        for (let i = 0; i < n; i++) await ours.execute(readsSignal);
      },
    },
    {
      name: 'cockatiel (cooperative)',
      async run(n) {
        for (let i = 0; i < n; i++) await theirs.execute(readsSignal);
      },
    },
  ]);
  return [
    row(
      BENCH,
      caseName,
      ['buttress (cooperative)', m.overhead('buttress (cooperative)', 'bare await')],
      ['cockatiel (cooperative)', m.overhead('cockatiel (cooperative)', 'bare await')],
    ),
  ];
}

/** The three-policy stack, measured in two cases for the reason given above. */
function stackCase(): TwoSided {
  const caseName = 'wrap(retry, breaker, timeout): overhead';
  const oursRetry = retry({ maxAttempts: 3 });
  const oursBreaker = circuitBreaker({ halfOpenAfter: '10s' });
  const oursTimeout = timeout(1000);
  const ours = wrap(oursRetry, oursBreaker, oursTimeout);
  // cockatiel's retry in buttress's wrap(): it hands down a real (never-aborting) signal.
  const mixedOurs = wrap(
    cockatielRetry(handleAll, { maxAttempts: 3 }),
    circuitBreaker({ halfOpenAfter: '10s' }),
    timeout(1000),
  );
  const theirsBreaker = cockatielBreaker(handleAll, {
    halfOpenAfter: 10_000,
    breaker: new ConsecutiveBreaker(5),
  });
  const theirs = cockatielWrap(
    cockatielRetry(handleAll, { maxAttempts: 3 }),
    theirsBreaker,
    cockatielTimeout(1000, TimeoutStrategy.Cooperative),
  );
  // What a cockatiel user gets by swapping in buttress's breaker and timeout, keeping
  // cockatiel's retry and wrap(): the spread merge creates the timeout's signal on every call.
  const mixedBreaker = circuitBreaker({ halfOpenAfter: '10s' });
  const mixedTimeout = timeout(1000);
  const mixed = cockatielWrap(cockatielRetry(handleAll, { maxAttempts: 3 }), mixedBreaker, mixedTimeout);
  return {
    ours: (ctx) =>
      measure(ctx, BENCH, `${caseName} (buttress)`, [
        {
          name: 'bare await',
          async run(n) {
            for (let i = 0; i < n; i++) await upstream();
          },
        },
        {
          name: 'buttress',
          async run(n) {
            for (let i = 0; i < n; i++) await ours.execute(upstream);
          },
        },
        {
          name: "mixed, buttress's wrap",
          async run(n) {
            for (let i = 0; i < n; i++) await mixedOurs.execute(upstream);
          },
        },
      ]),
    theirs: (ctx) =>
      measure(ctx, BENCH, `${caseName} (cockatiel)`, [
        {
          name: 'bare await',
          async run(n) {
            for (let i = 0; i < n; i++) await upstream();
          },
        },
        {
          name: 'cockatiel',
          async run(n) {
            for (let i = 0; i < n; i++) await theirs.execute(upstream);
          },
        },
        {
          name: "mixed, cockatiel's wrap",
          async run(n) {
            for (let i = 0; i < n; i++) await mixed.execute(upstream);
          },
        },
      ]),
    rows(m, a) {
      expect(
        oursBreaker.state === 'closed' && oursBreaker.stats().totalFailures === 0,
        'the buttress breaker left the closed state',
      );
      expect(
        oursRetry.stats().retries === 0 && oursTimeout.stats().timeouts === 0,
        'buttress retried or timed out',
      );
      expect(theirsBreaker.state === CockatielState.Closed, 'the cockatiel breaker left the closed state');
      expect(
        mixedBreaker.state === 'closed' && mixedTimeout.stats().timeouts === 0,
        'the mixed stack failed',
      );
      const anchor: [string, number] = ['cockatiel', a.overhead('cockatiel', 'bare await')];
      return [
        row(BENCH, caseName, ['buttress', m.overhead('buttress', 'bare await')], anchor, 0.05),
        row(
          BENCH,
          caseName,
          ["mixed, buttress's wrap", m.overhead("mixed, buttress's wrap", 'bare await')],
          anchor,
        ),
        row(
          BENCH,
          caseName,
          ["mixed, cockatiel's wrap", a.overhead("mixed, cockatiel's wrap", 'bare await')],
          anchor,
        ),
      ];
    },
  };
}

async function retryOverhead(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = 'retry: overhead over bare await';
  const ours = retry({ maxAttempts: 3 });
  const theirs = cockatielRetry(handleAll, { maxAttempts: 3 });
  const m = await measure(ctx, BENCH, caseName, [
    {
      name: 'bare await',
      async run(n) {
        for (let i = 0; i < n; i++) await upstream();
      },
    },
    {
      name: 'buttress',
      async run(n) {
        for (let i = 0; i < n; i++) await ours.execute(upstream);
      },
    },
    {
      name: 'cockatiel',
      async run(n) {
        for (let i = 0; i < n; i++) await theirs.execute(upstream);
      },
    },
  ]);
  expect(ours.stats().retries === 0, 'buttress retried a call that succeeded');
  return [
    row(
      BENCH,
      caseName,
      ['buttress', m.overhead('buttress', 'bare await')],
      ['cockatiel', m.overhead('cockatiel', 'bare await')],
    ),
  ];
}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new Error(`retry bench: ${message}`);
}

/** A comparison measured in two cases: buttress's contenders, then cockatiel's. */
interface TwoSided {
  ours(ctx: BenchContext): Promise<Measurement>;
  theirs(ctx: BenchContext): Promise<Measurement>;
  rows(ours: Measurement, theirs: Measurement): BenchRow[];
}

const TIMEOUT = 'timeout: overhead over bare await';
const SIGNAL = 'timeout: callee reads signal, overhead';
const STACK = 'wrap(retry, breaker, timeout): overhead';
const RETRY = 'retry: overhead over bare await';

const bench: Bench = {
  name: BENCH,
  async run(ctx) {
    const timeouts = ctx.selected(TIMEOUT) ? timeoutCase() : undefined;
    const stacks = ctx.selected(STACK) ? stackCase() : undefined;
    // Every case where buttress's contenders run alone goes first, and the cases that create an
    // AbortSignal per call last: their garbage is collected while whatever follows them runs.
    const oursTimeouts = await timeouts?.ours(ctx);
    const oursStacks = await stacks?.ours(ctx);
    const retries = ctx.selected(RETRY) ? await retryOverhead(ctx) : [];
    const theirTimeouts = await timeouts?.theirs(ctx);
    const theirStacks = await stacks?.theirs(ctx);
    const signals = ctx.selected(SIGNAL) ? await timeoutSignalRead(ctx) : [];
    return [
      ...(timeouts ? timeouts.rows(oursTimeouts!, theirTimeouts!) : []),
      ...signals,
      ...(stacks ? stacks.rows(oursStacks!, theirStacks!) : []),
      ...retries,
    ];
  },
};

export default bench;
