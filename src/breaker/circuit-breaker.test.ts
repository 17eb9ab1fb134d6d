import dc from 'node:diagnostics_channel';
import {
  isBrokenCircuitError as cockatielIsBrokenCircuitError,
  ExponentialBackoff,
  handleAll,
  handleType,
  handleWhen,
  handleWhenResult,
  noJitterGenerator,
  retry,
  wrap,
} from 'cockatiel';
import { describe, expect, it } from 'vitest';
import { hasCode, InvalidOptionError, isAbortedError } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import {
  type BreakEvent,
  type CircuitBreaker,
  type CircuitBreakerJSON,
  type CircuitBreakerOptions,
  type CircuitState,
  circuitBreaker,
  type RejectEvent,
} from './circuit-breaker.js';
import {
  CircuitIsolatedError,
  CircuitOpenError,
  isBrokenCircuitError,
  isCircuitIsolatedError,
  isCircuitOpenError,
} from './errors.js';
import { consecutive } from './strategies/consecutive.js';
import { countWindow } from './strategies/count-window.js';

// Every test drives time through a FakeClock: nothing here sleeps.

const T0 = 1_700_000_000_000;

function make(options: CircuitBreakerOptions = {}): { clock: FakeClock; breaker: CircuitBreaker } {
  const clock = new FakeClock(T0);
  return { clock, breaker: circuitBreaker({ clock, ...options }) };
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Resolves with the rejection reason of `p`; fails the test if `p` fulfils. */
async function rejectionOf(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

const boom = (): Promise<never> => Promise.reject(new Error('boom'));

/** A bare thenable (not a Promise) that settles synchronously when its `then` is called. */
function thenable<T>(
  settle: (resolve: (v: T) => void, reject: (e: unknown) => void) => void,
): PromiseLike<T> {
  // biome-ignore lint/suspicious/noThenProperty: a non-Promise thenable is what this helper is for
  return { then: settle } as unknown as PromiseLike<T>;
}

class HttpError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** Fails `n` calls through `breaker`, checking each failure is the function's own error. */
async function fail(breaker: CircuitBreaker, n = 1): Promise<void> {
  for (let i = 0; i < n; i++) await expect(breaker.execute(boom)).rejects.toThrow('boom');
}

describe('closed → open', () => {
  it('opens once the strategy trips, not before', async () => {
    const { breaker } = make({ strategy: consecutive(3) });
    await fail(breaker, 2);
    expect(breaker.state).toBe('closed');
    await fail(breaker);
    expect(breaker.state).toBe('open');
  });

  it('a success resets a consecutive run', async () => {
    const { breaker } = make({ strategy: consecutive(3) });
    await fail(breaker, 2);
    await expect(breaker.execute(() => 'ok')).resolves.toBe('ok');
    await fail(breaker, 2);
    expect(breaker.state).toBe('closed');
    await fail(breaker);
    expect(breaker.state).toBe('open');
  });

  it('defaults to consecutive(5) and a 10s half-open delay', async () => {
    const { clock, breaker } = make();
    await fail(breaker, 4);
    expect(breaker.state).toBe('closed');
    await fail(breaker);
    expect(breaker.stats()).toMatchObject({
      state: 'open',
      strategy: 'consecutive(5)',
      halfOpenAt: T0 + 10_000,
    });
    clock.advance(9_999);
    expect(breaker.state).toBe('open');
    clock.advance(1);
    expect(breaker.state).toBe('half-open');
  });
});

describe('open', () => {
  it('rejects at once with E_CIRCUIT_OPEN and retryAfter = ms until half-open, without calling fn', async () => {
    const { clock, breaker } = make({ name: 'api', strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    clock.advance(300);
    let called = 0;
    const err = await rejectionOf(breaker.execute(() => ++called));
    expect(called).toBe(0);
    expect(err).toBeInstanceOf(CircuitOpenError);
    expect(err.code).toBe('E_CIRCUIT_OPEN');
    expect(hasCode(err, 'E_CIRCUIT_OPEN')).toBe(true);
    expect(err.reason).toBe('open');
    expect(err.retryAfter).toBe(700);
    expect(err.breaker).toBe('api');
    expect(err.message).toBe('Circuit "api" is open; retry after 700ms');
    clock.advance(699);
    expect((await rejectionOf(breaker.execute(() => 1))).retryAfter).toBe(1);
  });

  it('captures no stack frames beyond the header line', async () => {
    const { breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    const err: CircuitOpenError = await rejectionOf(breaker.execute(() => 1));
    expect(err.stack).toBe(`CircuitOpenError: ${err.message}`);
    expect(err.stack?.split('\n')).toHaveLength(1);
    // The limit is restored afterwards: ordinary errors still get frames.
    expect(new Error('x').stack?.split('\n').length).toBeGreaterThan(1);
  });

  it("carries cockatiel's isBrokenCircuitError brand and our guards", async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    await fail(breaker);
    const err = await rejectionOf(breaker.execute(() => 1));
    expect(cockatielIsBrokenCircuitError(err)).toBe(true);
    expect(isBrokenCircuitError(err)).toBe(true);
    expect(isCircuitOpenError(err)).toBe(true);
    expect(isCircuitIsolatedError(err)).toBe(false);
    expect(cockatielIsBrokenCircuitError(new Error('boom'))).toBe(false);
  });

  it('counts rejections', async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    await fail(breaker);
    await rejectionOf(breaker.execute(() => 1));
    await rejectionOf(breaker.execute(() => 1));
    expect(breaker.stats()).toMatchObject({ totalCalls: 1, totalFailures: 1, totalRejections: 2 });
  });
});

describe('half-open', () => {
  it('is reported lazily by the state getter once halfOpenAfter has passed', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: '2s' });
    let halfOpens = 0;
    breaker.onHalfOpen(() => halfOpens++);
    await fail(breaker);
    clock.advance(1999);
    expect(breaker.state).toBe('open');
    expect(halfOpens).toBe(0);
    clock.advance(1);
    expect(breaker.state).toBe('half-open');
    expect(breaker.state).toBe('half-open');
    expect(halfOpens).toBe(1);
  });

  it('closes when the trial call succeeds', async () => {
    const { clock, breaker } = make({ strategy: consecutive(2), halfOpenAfter: 1000 });
    await fail(breaker, 2);
    clock.advance(1000);
    await expect(breaker.execute(() => 'probe')).resolves.toBe('probe');
    expect(breaker.state).toBe('closed');
    // The window starts empty again: one failure does not re-open a consecutive(2) breaker.
    await fail(breaker);
    expect(breaker.state).toBe('closed');
  });

  it('re-opens for a fresh delay when the trial call fails', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    clock.advance(1500);
    const breaks: BreakEvent[] = [];
    breaker.onBreak((e) => breaks.push(e));
    await fail(breaker);
    expect(breaker.state).toBe('open');
    expect(breaks).toEqual([{ reason: 'half-open', openedAt: T0 + 1500, halfOpenAt: T0 + 2500 }]);
    const err = await rejectionOf(breaker.execute(() => 1));
    expect(err.retryAfter).toBe(1000);
  });

  it('admits halfOpenProbes concurrent trial calls; the next one fails fast with reason half-open', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000, halfOpenProbes: 3 });
    await fail(breaker);
    clock.advance(1000);
    const gates = [deferred<number>(), deferred<number>(), deferred<number>()];
    let started = 0;
    const probes = gates.map((g) =>
      breaker.execute(() => {
        started++;
        return g.promise;
      }),
    );
    await flushMicrotasks();
    expect(started).toBe(3);
    expect(breaker.stats().probesInFlight).toBe(3);

    const rejects: RejectEvent[] = [];
    breaker.onReject((e) => rejects.push(e));
    const err = await rejectionOf(breaker.execute(() => ++started));
    expect(started).toBe(3);
    expect(err).toBeInstanceOf(CircuitOpenError);
    expect(err.code).toBe('E_CIRCUIT_OPEN');
    expect(err.reason).toBe('half-open');
    expect(err.retryAfter).toBe(0);
    expect(rejects).toEqual([{ reason: 'half-open', retryAfter: 0 }]);

    // consecutive(): closes only once every trial call has succeeded.
    gates[0]!.resolve(1);
    await probes[0];
    expect(breaker.state).toBe('half-open');
    gates[1]!.resolve(2);
    gates[2]!.resolve(3);
    await expect(Promise.all(probes)).resolves.toEqual([1, 2, 3]);
    expect(breaker.state).toBe('closed');
    expect(breaker.stats().probesInFlight).toBe(0);
  });

  it('one failed probe re-opens at once; a late success of another probe does not close it', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000, halfOpenProbes: 2 });
    await fail(breaker);
    clock.advance(1000);
    const slow = deferred<string>();
    const late = breaker.execute(() => slow.promise);
    await fail(breaker);
    expect(breaker.state).toBe('open');
    slow.resolve('late');
    await expect(late).resolves.toBe('late');
    expect(breaker.state).toBe('open');
  });
});

describe('half-open delay', () => {
  /** Opens from closed, then fails a probe each time the circuit turns half-open; returns each opening's delay. */
  async function openingDelays(
    breaker: CircuitBreaker,
    clock: FakeClock,
    openings: number,
  ): Promise<number[]> {
    const delays: number[] = [];
    const sub = breaker.onBreak((e) => delays.push(e.halfOpenAt - e.openedAt));
    await fail(breaker);
    while (delays.length < openings) {
      const delay = delays.at(-1)!;
      clock.advance(delay - 1);
      expect(breaker.state).toBe('open');
      clock.advance(1);
      await fail(breaker);
    }
    sub.dispose();
    return delays;
  }

  it('grows { initial, max, multiplier } on each re-open and starts over after closing', async () => {
    const { clock, breaker } = make({
      strategy: consecutive(1),
      halfOpenAfter: { initial: '1s', max: '5s', multiplier: 3 },
    });
    expect(await openingDelays(breaker, clock, 4)).toEqual([1000, 3000, 5000, 5000]);
    clock.advance(5000);
    await breaker.execute(() => 'ok');
    expect(breaker.state).toBe('closed');
    expect(await openingDelays(breaker, clock, 2)).toEqual([1000, 3000]);
  });

  it('multiplies by 2 by default', async () => {
    const { clock, breaker } = make({
      strategy: consecutive(1),
      halfOpenAfter: { initial: 100, max: 10_000 },
    });
    expect(await openingDelays(breaker, clock, 4)).toEqual([100, 200, 400, 800]);
  });

  it('accepts a cockatiel ExponentialBackoff and restarts it after closing', async () => {
    const { clock, breaker } = make({
      strategy: consecutive(1),
      halfOpenAfter: new ExponentialBackoff({
        initialDelay: 100,
        maxDelay: 1000,
        generator: noJitterGenerator,
      }),
    });
    expect(await openingDelays(breaker, clock, 6)).toEqual([100, 200, 400, 800, 1000, 1000]);
    clock.advance(1000);
    await breaker.execute(() => 'ok');
    expect(await openingDelays(breaker, clock, 2)).toEqual([100, 200]);
  });

  it('passes the attempt and the failure to a cockatiel backoff', async () => {
    const seen: { attempt: number; result: unknown }[] = [];
    const backoff = {
      next(context: { attempt: number; result: unknown }) {
        seen.push({ attempt: context.attempt, result: context.result });
        return { duration: 50, next: backoff.next };
      },
    };
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: backoff });
    await fail(breaker);
    clock.advance(50);
    await fail(breaker);
    expect(seen.map((s) => s.attempt)).toEqual([1, 2]);
    expect((seen[0]!.result as { error: Error }).error.message).toBe('boom');
  });

  it('halfOpenAfter 0 admits a trial call immediately', async () => {
    const { breaker } = make({ strategy: consecutive(1), halfOpenAfter: 0 });
    await fail(breaker);
    expect(breaker.state).toBe('half-open');
    await expect(breaker.execute(() => 1)).resolves.toBe(1);
    expect(breaker.state).toBe('closed');
  });
});

describe('isolate()', () => {
  it('is ref-counted: the circuit closes only when every isolation is disposed', async () => {
    const { breaker } = make();
    const states: CircuitState[] = [];
    breaker.onStateChange((s) => states.push(s));
    const a = breaker.isolate();
    const b = breaker.isolate();
    expect(breaker.state).toBe('isolated');
    a.dispose();
    a.dispose(); // disposing twice must not release the other isolation
    expect(breaker.state).toBe('isolated');
    await expect(breaker.execute(() => 1)).rejects.toMatchObject({ code: 'E_CIRCUIT_ISOLATED' });
    b[Symbol.dispose]();
    expect(breaker.state).toBe('closed');
    await expect(breaker.execute(() => 1)).resolves.toBe(1);
    expect(states).toEqual(['isolated', 'closed']);
  });

  it('rejects with E_CIRCUIT_ISOLATED carrying our brands', async () => {
    const { breaker } = make({ name: 'payments' });
    const rejects: RejectEvent[] = [];
    breaker.onReject((e) => rejects.push(e));
    breaker.isolate();
    let called = 0;
    const err = await rejectionOf(breaker.execute(() => ++called));
    expect(called).toBe(0);
    expect(err).toBeInstanceOf(CircuitIsolatedError);
    expect(err.code).toBe('E_CIRCUIT_ISOLATED');
    // cockatiel's own isIsolatedCircuitError checks the wrong property (isBulkheadRejectedError), so
    // we check our brand and guard instead.
    expect(err.isIsolatedCircuitError).toBe(true);
    expect(isCircuitIsolatedError(err)).toBe(true);
    expect(isCircuitOpenError(err)).toBe(false);
    expect(isBrokenCircuitError(err)).toBe(true);
    expect(cockatielIsBrokenCircuitError(err)).toBe(true);
    expect(err.reason).toBe('isolated');
    expect(err.retryAfter).toBe(Number.POSITIVE_INFINITY);
    expect(err.breaker).toBe('payments');
    expect(err.stack?.split('\n')).toHaveLength(1);
    expect(rejects).toEqual([{ reason: 'isolated', retryAfter: Number.POSITIVE_INFINITY }]);
  });

  it('an isolated open circuit closes (not re-opens) when released, even after its delay', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    const iso = breaker.isolate();
    clock.advance(5000);
    expect(breaker.state).toBe('isolated');
    iso.dispose();
    expect(breaker.state).toBe('closed');
  });

  it('a trial call finishing after isolation changes nothing', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    clock.advance(1000);
    const probe = deferred<string>();
    const running = breaker.execute(() => probe.promise);
    const iso = breaker.isolate();
    probe.resolve('done');
    await expect(running).resolves.toBe('done');
    expect(breaker.state).toBe('isolated');
    iso.dispose();
    expect(breaker.state).toBe('closed');
  });
});

describe('isFailure', () => {
  it('a predicate decides which errors count; the others pass through as successes', async () => {
    const { breaker } = make({ strategy: consecutive(2), isFailure: (e) => (e as HttpError).status >= 500 });
    const e404 = new HttpError(404);
    await expect(breaker.execute(() => Promise.reject(new HttpError(503)))).rejects.toBeInstanceOf(HttpError);
    await expect(breaker.execute(() => Promise.reject(e404))).rejects.toBe(e404);
    await expect(breaker.execute(() => Promise.reject(new HttpError(500)))).rejects.toBeInstanceOf(HttpError);
    // 503, 404 (a success: resets the run), 500: still one short of two in a row.
    expect(breaker.state).toBe('closed');
    expect(breaker.stats()).toMatchObject({ totalFailures: 2, failures: 2, calls: 3 });
    await expect(breaker.execute(() => Promise.reject(new HttpError(502)))).rejects.toBeInstanceOf(HttpError);
    expect(breaker.state).toBe('open');
  });

  it('errors the filter does not handle count as successes', async () => {
    const { breaker } = make({ strategy: consecutive(2), isFailure: handleType(HttpError) });
    const plain = () => Promise.reject(new Error('not http'));
    const http = () => Promise.reject(new HttpError(500));
    for (let i = 0; i < 5; i++) {
      await rejectionOf(breaker.execute(http));
      await rejectionOf(breaker.execute(plain));
    }
    expect(breaker.state).toBe('closed');
    await rejectionOf(breaker.execute(http));
    await rejectionOf(breaker.execute(http));
    expect(breaker.state).toBe('open');
  });

  it('honours cockatiel handleType(cls, predicate)', async () => {
    const { breaker } = make({
      strategy: consecutive(1),
      isFailure: handleType(HttpError, (e) => e.status >= 500),
    });
    await rejectionOf(breaker.execute(() => Promise.reject(new HttpError(400))));
    await rejectionOf(breaker.execute(() => Promise.reject(new Error('other'))));
    expect(breaker.state).toBe('closed');
    await rejectionOf(breaker.execute(() => Promise.reject(new HttpError(503))));
    expect(breaker.state).toBe('open');
  });

  it('honours cockatiel handleWhen(predicate)', async () => {
    const { breaker } = make({ strategy: consecutive(1), isFailure: handleWhen((e) => e.message === 'bad') });
    await rejectionOf(breaker.execute(() => Promise.reject(new Error('fine'))));
    expect(breaker.state).toBe('closed');
    await rejectionOf(breaker.execute(() => Promise.reject(new Error('bad'))));
    expect(breaker.state).toBe('open');
  });

  it.each([
    ['fast path', undefined],
    ['with a signal', new AbortController().signal],
  ])(
    'handleWhenResult: a matching result counts as a failure but is still returned (%s)',
    async (_, signal) => {
      const { breaker } = make({
        strategy: consecutive(2),
        isFailure: handleWhenResult((r) => r === 'degraded'),
      });
      await expect(breaker.execute(() => 'degraded', signal)).resolves.toBe('degraded');
      await expect(breaker.execute(() => Promise.resolve('fine'), signal)).resolves.toBe('fine');
      await expect(breaker.execute(() => 'degraded', signal)).resolves.toBe('degraded');
      expect(breaker.state).toBe('closed');
      await expect(breaker.execute(() => Promise.resolve('degraded'), signal)).resolves.toBe('degraded');
      expect(breaker.state).toBe('open');
      expect(breaker.stats().totalFailures).toBe(3);
    },
  );

  it('honours handleAll', async () => {
    const { breaker } = make({ strategy: consecutive(1), isFailure: handleAll });
    await fail(breaker);
    expect(breaker.state).toBe('open');
  });

  it('a predicate that throws counts the error as a failure', async () => {
    const { breaker } = make({
      strategy: consecutive(1),
      isFailure: () => {
        throw new Error('predicate broke');
      },
    });
    await fail(breaker);
    expect(breaker.state).toBe('open');
  });

  it('an error the filter lets through during half-open closes the circuit (the upstream answered)', async () => {
    const { clock, breaker } = make({
      strategy: consecutive(1),
      halfOpenAfter: 100,
      isFailure: handleType(HttpError),
    });
    await rejectionOf(breaker.execute(() => Promise.reject(new HttpError(500))));
    clock.advance(100);
    await expect(breaker.execute(() => Promise.reject(new Error('validation')))).rejects.toThrow(
      'validation',
    );
    expect(breaker.state).toBe('closed');
  });
});

describe('cancellation', () => {
  it.each(['closed', 'open', 'half-open'] as const)(
    'an already aborted signal rejects with E_ABORTED while %s',
    async (state) => {
      const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
      if (state !== 'closed') await fail(breaker);
      if (state === 'half-open') clock.advance(1000);
      expect(breaker.state).toBe(state);
      const controller = new AbortController();
      const reason = new Error('caller gave up');
      controller.abort(reason);
      let called = 0;
      const err = await rejectionOf(breaker.execute(() => ++called, controller.signal));
      expect(called).toBe(0);
      expect(isAbortedError(err)).toBe(true);
      expect(err.code).toBe('E_ABORTED');
      expect(err.cause).toBe(reason);
      expect(breaker.state).toBe(state);
    },
  );

  it('passes the signal to fn', async () => {
    const { breaker } = make();
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    await breaker.execute(({ signal }) => {
      seen = signal;
    }, controller.signal);
    expect(seen).toBe(controller.signal);
    await breaker.execute(({ signal }) => {
      seen = signal;
    });
    expect(seen).toBeInstanceOf(AbortSignal);
    expect(seen?.aborted).toBe(false);
  });

  it('a closed call aborted by its caller is not counted as a failure', async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    const controller = new AbortController();
    const running = breaker.execute(
      ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      controller.signal,
    );
    controller.abort(new Error('gone'));
    await expect(running).rejects.toThrow('gone');
    expect(breaker.state).toBe('closed');
  });

  it('an aborted trial call frees its slot and is not judged', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000, halfOpenProbes: 1 });
    await fail(breaker);
    clock.advance(1000);
    const controller = new AbortController();
    const probe = breaker.execute(
      ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      controller.signal,
    );
    await flushMicrotasks();
    expect(breaker.stats().probesInFlight).toBe(1);
    await expect(breaker.execute(() => 'blocked')).rejects.toMatchObject({ reason: 'half-open' });
    controller.abort(new Error('gone'));
    await expect(probe).rejects.toThrow('gone');
    expect(breaker.state).toBe('half-open');
    expect(breaker.stats().probesInFlight).toBe(0);
    await expect(breaker.execute(() => 'next probe')).resolves.toBe('next probe');
    expect(breaker.state).toBe('closed');
  });
});

describe.each([
  ['fast path', () => undefined],
  ['with a signal', () => new AbortController().signal],
])('function shapes (%s)', (_, signal) => {
  it('runs sync functions', async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    await expect(breaker.execute(() => 42, signal())).resolves.toBe(42);
    expect(breaker.stats()).toMatchObject({ totalCalls: 1, totalFailures: 0, calls: 1 });
  });

  it('turns a sync throw into a rejection that counts as a failure', async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    const error = new Error('sync');
    const p = breaker.execute(() => {
      throw error;
    }, signal());
    expect(p).toBeInstanceOf(Promise);
    await expect(p).rejects.toBe(error);
    expect(breaker.state).toBe('open');
  });

  it('awaits thenables', async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    const ok = thenable<number>((res) => res(7));
    await expect(breaker.execute(() => ok, signal())).resolves.toBe(7);
    expect(breaker.state).toBe('closed');
    const error = new Error('thenable');
    const bad = thenable<number>((_, rej) => rej(error));
    await expect(breaker.execute(() => bad, signal())).rejects.toBe(error);
    expect(breaker.state).toBe('open');
  });
});

describe('events', () => {
  it('onStateChange, onBreak, onHalfOpen and onReset follow a full cycle', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    const states: CircuitState[] = [];
    const breaks: BreakEvent[] = [];
    let halfOpens = 0;
    let resets = 0;
    breaker.onStateChange((s) => states.push(s));
    breaker.onBreak((e) => breaks.push(e));
    breaker.onHalfOpen(() => halfOpens++);
    breaker.onReset(() => resets++);
    await fail(breaker);
    clock.advance(1000);
    await fail(breaker);
    clock.advance(1000);
    await breaker.execute(() => 'ok');
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
    expect(breaks).toEqual([
      { reason: 'failures', openedAt: T0, halfOpenAt: T0 + 1000 },
      { reason: 'half-open', openedAt: T0 + 1000, halfOpenAt: T0 + 2000 },
    ]);
    expect(halfOpens).toBe(2);
    expect(resets).toBe(1);
  });

  it('onReject reports the reason and retryAfter', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    const rejects: RejectEvent[] = [];
    breaker.onReject((e) => rejects.push(e));
    await fail(breaker);
    clock.advance(250);
    await rejectionOf(breaker.execute(() => 1));
    expect(rejects).toEqual([{ reason: 'open', retryAfter: 750 }]);
  });

  it('onSuccess reports the duration measured on the clock', async () => {
    const { clock, breaker } = make();
    const durations: number[] = [];
    breaker.onSuccess((e) => durations.push(e.duration));
    const gate = deferred<string>();
    const running = breaker.execute(() => gate.promise);
    clock.advance(25);
    gate.resolve('ok');
    await expect(running).resolves.toBe('ok');
    expect(durations).toEqual([25]);
  });

  it('onFailure reports duration, handled and reason for errors and failing results', async () => {
    const { clock, breaker } = make({
      strategy: consecutive(10),
      isFailure: handleType(HttpError).orWhenResult((r) => r === 'bad'),
    });
    const failures: unknown[] = [];
    let successes = 0;
    breaker.onFailure((e) => failures.push(e));
    breaker.onSuccess(() => successes++);
    const http = new HttpError(500);
    const gate = deferred<never>();
    const running = breaker.execute(() => gate.promise);
    clock.advance(40);
    gate.reject(http);
    await expect(running).rejects.toBe(http);
    await expect(breaker.execute(() => 'bad')).resolves.toBe('bad');
    expect(failures).toEqual([
      { duration: 40, handled: true, reason: { error: http } },
      { duration: 0, handled: true, reason: { value: 'bad' } },
    ]);
    expect(successes).toBe(0);
  });

  it('an error the filter lets through fires onFailure with handled: false and not onSuccess', async () => {
    // As cockatiel's policies do: onSuccess means a value will be returned.
    const { breaker } = make({ isFailure: handleType(HttpError) });
    const failures: unknown[] = [];
    let successes = 0;
    breaker.onFailure((e) => failures.push(e));
    breaker.onSuccess(() => successes++);
    const plain = new Error('not http');
    await expect(breaker.execute(() => Promise.reject(plain))).rejects.toBe(plain);
    expect(failures).toEqual([{ duration: 0, handled: false, reason: { error: plain } }]);
    expect(successes).toBe(0);
  });

  it('disposing a listener stops it', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    const seen: string[] = [];
    const subs = [
      breaker.onStateChange((s) => seen.push(`state:${s}`)),
      breaker.onBreak(() => seen.push('break')),
      breaker.onHalfOpen(() => seen.push('half-open')),
      breaker.onReset(() => seen.push('reset')),
      breaker.onReject(() => seen.push('reject')),
      breaker.onSuccess(() => seen.push('success')),
      breaker.onFailure(() => seen.push('failure')),
    ];
    for (const s of subs) s.dispose();
    await fail(breaker);
    await rejectionOf(breaker.execute(() => 1));
    clock.advance(1000);
    await breaker.execute(() => 1);
    expect(seen).toEqual([]);
  });

  it('disposing one listener keeps the others', async () => {
    const { breaker } = make({ strategy: consecutive(1) });
    const a: CircuitState[] = [];
    const b: CircuitState[] = [];
    const subA = breaker.onStateChange((s) => a.push(s));
    breaker.onStateChange((s) => b.push(s));
    subA.dispose();
    await fail(breaker);
    expect(a).toEqual([]);
    expect(b).toEqual(['open']);
  });
});

describe('stats()', () => {
  it('reports window counts, totals and timing', async () => {
    const { clock, breaker } = make({
      name: 'db',
      strategy: countWindow({ size: 10, minimumCalls: 5, failureRate: 0.6 }),
      halfOpenAfter: 2000,
    });
    await breaker.execute(() => 1);
    await breaker.execute(() => 1);
    await fail(breaker, 2);
    expect(breaker.stats()).toEqual({
      name: 'db',
      state: 'closed',
      strategy: 'countWindow(10)',
      calls: 4,
      failures: 2,
      slowCalls: 0,
      failureRate: 0.5,
      slowCallRate: 0,
      openedAt: undefined,
      halfOpenAt: undefined,
      probesInFlight: 0,
      totalCalls: 4,
      totalFailures: 2,
      totalRejections: 0,
      totalSlowCalls: 0,
    });
    await fail(breaker, 1); // 3 / 5 = 0.6
    clock.advance(500);
    await rejectionOf(breaker.execute(() => 1));
    expect(breaker.stats()).toMatchObject({
      state: 'open',
      calls: 0,
      failures: 0,
      failureRate: 0,
      openedAt: T0,
      halfOpenAt: T0 + 2000,
      totalCalls: 5,
      totalFailures: 3,
      totalRejections: 1,
    });
    clock.advance(1500);
    const probe = deferred<number>();
    const running = breaker.execute(() => probe.promise);
    expect(breaker.stats()).toMatchObject({
      state: 'half-open',
      openedAt: T0,
      halfOpenAt: undefined,
      probesInFlight: 1,
    });
    probe.resolve(1);
    await running;
    expect(breaker.stats()).toMatchObject({
      state: 'closed',
      openedAt: undefined,
      probesInFlight: 0,
      totalCalls: 6,
    });
  });
});

describe('toJSON() / initialState', () => {
  it('round-trips a closed circuit', async () => {
    const { breaker } = make();
    expect(breaker.toJSON()).toEqual({ state: 'closed' });
    const { breaker: restored } = make({ initialState: JSON.parse(JSON.stringify(breaker)) });
    expect(restored.state).toBe('closed');
  });

  it('round-trips an open circuit with its deadline', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    clock.advance(400);
    const json = JSON.parse(JSON.stringify(breaker)) as CircuitBreakerJSON;
    expect(json).toEqual({ state: 'open', openedAt: T0, halfOpenAt: T0 + 1000, reopenCount: 1 });
    const clock2 = new FakeClock(T0 + 400);
    const restored = circuitBreaker({ clock: clock2, initialState: json });
    expect(restored.state).toBe('open');
    const err = await rejectionOf(restored.execute(() => 1));
    expect(err.retryAfter).toBe(600);
    clock2.advance(600);
    expect(restored.state).toBe('half-open');
  });

  it('saves half-open as open with halfOpenAt <= now, and resumes half-open', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), halfOpenAfter: 1000 });
    await fail(breaker);
    clock.advance(3000);
    expect(breaker.state).toBe('half-open');
    const json = breaker.toJSON();
    expect(json.state).toBe('open');
    if (json.state !== 'open') throw new Error('unreachable');
    expect(json.halfOpenAt).toBeLessThanOrEqual(clock.now());
    const restored = circuitBreaker({ clock: new FakeClock(clock.now()), initialState: json });
    expect(restored.state).toBe('half-open');
    await expect(restored.execute(() => 'probe')).resolves.toBe('probe');
    expect(restored.state).toBe('closed');
  });

  it('keeps reopenCount, so a growing delay continues where it stopped', async () => {
    const clock = new FakeClock(T0);
    const restored = circuitBreaker({
      clock,
      strategy: consecutive(1),
      halfOpenAfter: { initial: 1000, max: 60_000 },
      initialState: { state: 'open', openedAt: T0 - 4000, halfOpenAt: T0, reopenCount: 3 },
    });
    await fail(restored);
    expect(restored.toJSON()).toEqual({ state: 'open', openedAt: T0, halfOpenAt: T0 + 8000, reopenCount: 4 });
  });

  it('does not save isolation', () => {
    const { breaker } = make();
    breaker.isolate();
    expect(breaker.toJSON()).toEqual({ state: 'closed' });
  });

  it.each([
    ['initialState', null],
    ['initialState', 'open'],
    ['initialState.state', 'half-open'],
    ['initialState.openedAt', -1],
    ['initialState.halfOpenAt', T0 - 1],
    ['initialState.reopenCount', 1.5],
  ])('rejects a bad initialState naming %s', (option, value) => {
    const json: Record<string, unknown> = { state: 'open', openedAt: T0, halfOpenAt: T0 + 1, reopenCount: 1 };
    const initialState =
      option === 'initialState' ? value : { ...json, [option.slice('initialState.'.length)]: value };
    const err = rejectionSync(() => circuitBreaker({ initialState: initialState as CircuitBreakerJSON }));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.option).toBe(option);
  });
});

describe('slow calls', () => {
  /** Runs one call through `breaker` that takes `ms` on the fake clock. */
  async function callTaking(breaker: CircuitBreaker, clock: FakeClock, ms: number): Promise<string> {
    const gate = deferred<string>();
    const running = breaker.execute(() => gate.promise);
    clock.advance(ms);
    gate.resolve('ok');
    return running;
  }

  it('slowCallDuration with a countWindow slowCallRate opens on slow successes', async () => {
    const { clock, breaker } = make({
      strategy: countWindow({ size: 4, slowCallRate: 0.5 }),
      slowCallDuration: 100,
    });
    expect(await callTaking(breaker, clock, 10)).toBe('ok');
    expect(await callTaking(breaker, clock, 99)).toBe('ok');
    expect(await callTaking(breaker, clock, 100)).toBe('ok'); // exactly the threshold counts as slow
    expect(breaker.stats()).toMatchObject({ state: 'closed', calls: 3, slowCalls: 1, failures: 0 });
    expect(await callTaking(breaker, clock, 250)).toBe('ok');
    expect(breaker.state).toBe('open');
    expect(breaker.stats()).toMatchObject({ totalSlowCalls: 2, totalFailures: 0 });
  });

  it('consecutive({ countSlowCalls }) opens on slow calls in a row', async () => {
    const { clock, breaker } = make({
      strategy: consecutive(2, { countSlowCalls: true }),
      slowCallDuration: '1s',
    });
    await callTaking(breaker, clock, 1000);
    await callTaking(breaker, clock, 5);
    await callTaking(breaker, clock, 1000);
    expect(breaker.state).toBe('closed');
    await callTaking(breaker, clock, 2000);
    expect(breaker.state).toBe('open');
  });

  it('without countSlowCalls slow successes never open a consecutive breaker', async () => {
    const { clock, breaker } = make({ strategy: consecutive(1), slowCallDuration: 10 });
    for (let i = 0; i < 5; i++) await callTaking(breaker, clock, 50);
    expect(breaker.state).toBe('closed');
    expect(breaker.stats().totalSlowCalls).toBe(5);
  });

  it('a slow trial call re-opens when slow calls count', async () => {
    const { clock, breaker } = make({
      strategy: countWindow({ size: 2, slowCallRate: 1 }),
      slowCallDuration: 100,
      halfOpenAfter: 1000,
    });
    await callTaking(breaker, clock, 100);
    await callTaking(breaker, clock, 100);
    expect(breaker.state).toBe('open');
    clock.advance(1000);
    await callTaking(breaker, clock, 150);
    expect(breaker.state).toBe('open');
    clock.advance(1000);
    await callTaking(breaker, clock, 50);
    expect(breaker.state).toBe('closed');
  });
});

describe('cockatiel composition', () => {
  it('wrap(retry(handleAll, { maxAttempts: 3 }), breaker) retries through the breaker', async () => {
    const { breaker } = make({ strategy: consecutive(5) });
    let calls = 0;
    const policy = wrap(retry(handleAll, { maxAttempts: 3 }), breaker);
    const value = await policy.execute(() => {
      calls++;
      if (calls < 3) throw new Error('flaky');
      return 'ok';
    });
    expect(value).toBe('ok');
    expect(calls).toBe(3);
    expect(breaker.stats()).toMatchObject({ totalCalls: 3, totalFailures: 2, state: 'closed' });
  });

  it('retry stops with E_CIRCUIT_OPEN once the breaker opens', async () => {
    const { breaker } = make({ strategy: consecutive(2) });
    let calls = 0;
    const policy = wrap(retry(handleAll, { maxAttempts: 3 }), breaker);
    const err = await rejectionOf(
      policy.execute(() => {
        calls++;
        throw new Error('down');
      }),
    );
    expect(calls).toBe(2);
    expect(err).toBeInstanceOf(CircuitOpenError);
    expect(breaker.stats().totalRejections).toBe(2); // maxAttempts 3 = four tries, the last two rejected
  });
});

describe('diagnostics channel', () => {
  it("publishes every transition on 'buttress:breaker:state'", async () => {
    const messages: unknown[] = [];
    const onMessage = (m: unknown) => {
      if ((m as { name?: string }).name === 'diag-test') messages.push(m);
    };
    dc.subscribe('buttress:breaker:state', onMessage);
    try {
      const { clock, breaker } = make({ name: 'diag-test', strategy: consecutive(1), halfOpenAfter: 1000 });
      await fail(breaker);
      clock.advance(1000);
      await breaker.execute(() => 1);
      breaker.isolate().dispose();
    } finally {
      dc.unsubscribe('buttress:breaker:state', onMessage);
    }
    expect(messages).toEqual([
      { name: 'diag-test', from: 'closed', to: 'open', at: T0 },
      { name: 'diag-test', from: 'open', to: 'half-open', at: T0 + 1000 },
      { name: 'diag-test', from: 'half-open', to: 'closed', at: T0 + 1000 },
      { name: 'diag-test', from: 'closed', to: 'isolated', at: T0 + 1000 },
      { name: 'diag-test', from: 'isolated', to: 'closed', at: T0 + 1000 },
    ]);
  });

  it("publishes rejections on 'buttress:breaker:reject'", async () => {
    const messages: unknown[] = [];
    const onMessage = (m: unknown) => {
      if ((m as { name?: string }).name === 'diag-reject') messages.push(m);
    };
    dc.subscribe('buttress:breaker:reject', onMessage);
    try {
      const { breaker } = make({ name: 'diag-reject', strategy: consecutive(1), halfOpenAfter: 1000 });
      await fail(breaker);
      await rejectionOf(breaker.execute(() => 1));
    } finally {
      dc.unsubscribe('buttress:breaker:reject', onMessage);
    }
    expect(messages).toEqual([{ name: 'diag-reject', reason: 'open', retryAfter: 1000 }]);
  });
});

describe('options validation', () => {
  it.each<[string, CircuitBreakerOptions | unknown, string, unknown]>([
    ['a non-object', 'fast', 'options', 'fast'],
    ['an unknown key', { halfOpenAfer: 10 }, 'halfOpenAfer', 10],
    ['an empty name', { name: '' }, 'name', ''],
    ['a non-strategy', { strategy: 5 }, 'strategy', 5],
    ['zero probes', { halfOpenProbes: 0 }, 'halfOpenProbes', 0],
    ['fractional probes', { halfOpenProbes: 1.5 }, 'halfOpenProbes', 1.5],
    ['a negative halfOpenAfter', { halfOpenAfter: -1 }, 'halfOpenAfter', -1],
    ['a bad duration string', { halfOpenAfter: '10 minutes' }, 'halfOpenAfter', '10 minutes'],
    ['a boolean halfOpenAfter', { halfOpenAfter: true }, 'halfOpenAfter', true],
    ['max below initial', { halfOpenAfter: { initial: 10, max: 5 } }, 'halfOpenAfter.max', 5],
    ['a missing initial', { halfOpenAfter: { max: 5 } }, 'halfOpenAfter.initial', undefined],
    [
      'a shrinking multiplier',
      { halfOpenAfter: { initial: 1, max: 2, multiplier: 0.5 } },
      'halfOpenAfter.multiplier',
      0.5,
    ],
    [
      'an unknown backoff key',
      { halfOpenAfter: { initial: 1, max: 2, factor: 2 } },
      'halfOpenAfter.factor',
      2,
    ],
    ['a zero slowCallDuration', { slowCallDuration: 0 }, 'slowCallDuration', 0],
    ['a non-filter isFailure', { isFailure: 'all' }, 'isFailure', 'all'],
    ['a clock without now', { clock: { setTimeout() {} } }, 'clock', undefined],
    ['a non-shared state', { shared: {} }, 'shared', undefined],
  ])('rejects %s with E_INVALID_OPTION naming the option and value', (_, options, option, received) => {
    const err = rejectionSync(() => circuitBreaker(options as CircuitBreakerOptions));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.code).toBe('E_INVALID_OPTION');
    expect(err.option).toBe(option);
    expect(err.message).toContain(`"${option}"`);
    if (received !== undefined) {
      expect(err.received).toBe(received);
      expect(err.message).toContain(
        `received ${typeof received === 'string' ? JSON.stringify(received) : String(received)}`,
      );
    }
  });

  it('rejects a strategy factory whose create() does not return a strategy', () => {
    const err = rejectionSync(() =>
      circuitBreaker({ strategy: { name: 'mine', create: () => undefined as never } }),
    );
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.option).toBe('strategy');
  });
});

function rejectionSync(fn: () => unknown): any {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}
