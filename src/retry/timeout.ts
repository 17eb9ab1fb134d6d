import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import type { Clock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, TimeoutError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import { sharedTimerWheel, TimerEntry, type TimerWheel } from '../core/timer-wheel.js';
import { bool, duration, knownKeys, oneOf, optionsObject } from '../core/validate.js';
import { validClock } from './internal/clock.js';
import { canAbort, settledReason } from './internal/signals.js';

/**
 * What happens at the deadline.
 * - `'cooperative'`: the callee's `signal` aborts and the policy waits for the callee to settle,
 *   returning whatever it returns (a callee that honours its signal rejects at once).
 * - `'aggressive'`: the signal aborts and the call rejects at once with `E_TIMEOUT`; a callee that
 *   ignores its signal keeps running in the background and its outcome is dropped.
 *
 * cockatiel's `TimeoutStrategy.Cooperative` (`'optimistic'`) and `TimeoutStrategy.Aggressive`
 * (`'aggressive'`) are accepted too.
 */
export type TimeoutStrategy = 'cooperative' | 'aggressive';

/** Options of {@link timeout}. */
export interface TimeoutOptions {
  /** @default 'aggressive' */
  strategy?: TimeoutStrategy | 'optimistic';
  /**
   * Abort the callee's signal once the call has settled, so work the callee left running (timers,
   * sockets tied to the signal) is released, as cockatiel does. Turn it off when the result keeps
   * using the signal, e.g. a response body still streaming. Only matters when the callee read
   * `signal`.
   * @default true
   */
  abortOnReturn?: boolean;
  /** Time source, and the timer wheel it drives. @default systemClock */
  clock?: Clock;
}

/** Event of {@link Timeout.onTimeout}. */
export interface TimeoutEvent {
  /** The deadline that passed, in ms. */
  timeout: number;
  strategy: TimeoutStrategy;
}

/** Snapshot returned by {@link Timeout.stats}. */
export interface TimeoutStats {
  timeout: number;
  strategy: TimeoutStrategy;
  /** Calls started. */
  calls: number;
  /** Calls whose deadline passed before they settled. */
  timeouts: number;
}

const RUNNING = 0;
const TIMED_OUT = 1;
const SETTLED = 2;

const timeoutChannel = channel('retry', 'timeout');

/** Settings and emitters shared by every call of one {@link Timeout}. */
interface Core {
  readonly ms: number;
  readonly aggressive: boolean;
  readonly abortOnReturn: boolean;
  readonly clock: Clock;
  readonly wheel: TimerWheel;
  readonly success: Emitter<ISuccessEvent>;
  readonly failure: Emitter<IFailureEvent>;
  readonly timeout: Emitter<TimeoutEvent>;
  calls: number;
  timeouts: number;
}

const kCall = Symbol('buttress.timeout.call');

/*
 * The context handed to the callee. `signal` must be an OWN enumerable accessor: cockatiel's
 * wrap() merges contexts with object spread, which copies own properties only (a prototype getter
 * would silently hand the callee the outer signal). Spread reads the getter, so inside cockatiel's
 * wrap() the signal is always created; called directly, it is created only if the callee reads it.
 */
const signalDescriptor: PropertyDescriptor = {
  get(this: { [kCall]: TimeoutCall }): AbortSignal {
    return this[kCall].signal();
  },
  enumerable: true,
  configurable: true,
};

/** One call: its wheel entry, its lazily created AbortController and its settlement. */
class TimeoutCall extends TimerEntry {
  readonly core: Core;
  parent: AbortSignal | undefined;
  controller: AbortController | undefined = undefined;
  unlinkParent: (() => void) | undefined = undefined;
  state = RUNNING;
  start = 0;
  resolve: ((value: unknown) => void) | undefined = undefined;
  reject: ((error: unknown) => void) | undefined = undefined;
  /** Why the call ended early: the TimeoutError, or the AbortedError of an aborted caller. */
  reason: TimeoutError | AbortedError | undefined = undefined;

  constructor(core: Core, parent: AbortSignal | undefined) {
    super();
    this.core = core;
    this.parent = parent;
  }

  signal(): AbortSignal {
    let controller = this.controller;
    if (controller === undefined) {
      controller = this.controller = new AbortController();
      const parent = this.parent;
      if (this.state === TIMED_OUT) controller.abort(this.reason);
      else if (this.state === SETTLED) {
        if (this.core.abortOnReturn) controller.abort(settledReason);
      } else if (parent !== undefined) {
        if (parent.aborted) controller.abort(parent.reason);
        else if (this.unlinkParent === undefined) this.listenToParent(parent);
      }
    }
    return controller.signal;
  }

  listenToParent(parent: AbortSignal): void {
    const listener = () => this.parentAborted(parent.reason);
    parent.addEventListener('abort', listener, { once: true });
    this.unlinkParent = () => parent.removeEventListener('abort', listener);
  }

  parentAborted(reason: unknown): void {
    this.unlinkParent = undefined;
    this.controller?.abort(reason);
    if (this.core.aggressive && this.state !== SETTLED) {
      const error = new AbortedError(reason);
      this.reason = error;
      this.finish();
      this.emitFailure(error, false);
      this.reject?.(error);
    }
  }

  /** The deadline passed. */
  fire(): void {
    if (this.state !== RUNNING) return;
    const core = this.core;
    const error = new TimeoutError(core.ms);
    this.reason = error;
    core.timeouts++;
    if (core.aggressive) {
      this.finish();
      this.controller?.abort(error);
    } else {
      this.state = TIMED_OUT;
      this.controller?.abort(error);
    }
    if (core.timeout.size !== 0) {
      core.timeout.emit({ timeout: core.ms, strategy: core.aggressive ? 'aggressive' : 'cooperative' });
    }
    if (timeoutChannel.hasSubscribers) {
      timeoutChannel.publish({ timeout: core.ms, strategy: core.aggressive ? 'aggressive' : 'cooperative' });
    }
    if (core.aggressive) {
      this.emitFailure(error, true);
      // `reject` is unset only when the deadline passed while the callee ran synchronously.
      this.reject?.(error);
    }
  }

  /** Marks the call settled and releases the wheel entry and the parent listener. */
  finish(): void {
    this.state = SETTLED;
    const core = this.core;
    core.wheel.cancel(this);
    const unlink = this.unlinkParent;
    if (unlink !== undefined) {
      this.unlinkParent = undefined;
      unlink();
    }
    this.parent = undefined;
  }

  /** The callee fulfilled. Returns the value for the cooperative path. */
  ok(value: unknown): unknown {
    if (this.state === SETTLED) return value;
    this.finish();
    const core = this.core;
    if (core.abortOnReturn && this.controller !== undefined) this.controller.abort(settledReason);
    if (core.success.size !== 0) core.success.emit({ duration: core.clock.now() - this.start });
    this.resolve?.(value);
    return value;
  }

  /** The callee rejected (or threw). Returns nothing: callers rethrow. */
  fail(error: unknown): void {
    if (this.state === SETTLED) return;
    // A callee failing after its deadline most likely failed because of it.
    const handled = this.state === TIMED_OUT;
    this.finish();
    if (this.core.abortOnReturn && this.controller !== undefined) this.controller.abort(settledReason);
    this.emitFailure(error, handled);
    this.reject?.(error);
  }

  emitFailure(error: unknown, handled: boolean): void {
    const core = this.core;
    if (core.failure.size !== 0) {
      core.failure.emit({
        duration: core.clock.now() - this.start,
        handled,
        reason: { error: error as Error },
      });
    }
  }
}

/**
 * Creates a timeout policy: the callee's `signal` aborts once `duration` has passed and, with
 * the `'aggressive'` strategy (the default), the call rejects at that moment with `E_TIMEOUT`.
 * Semantics follow cockatiel's `TimeoutPolicy`; the cost does not: every timeout of a clock
 * shares one timer wheel (one underlying timer, O(1) schedule and cancel), and the
 * AbortController behind `signal` is created only when the callee reads `signal`.
 *
 * Implements cockatiel's `IPolicy`, so it composes with cockatiel's and buttress's policies
 * through `wrap()`.
 *
 * @param duration Milliseconds, or a string such as `'250ms'` or `'2s'`.
 * @param options Options, or just the strategy.
 * @example
 * import { timeout } from 'buttress/retry';
 * const deadline = timeout('2s');
 * const user = await deadline.execute(({ signal }) => fetch(url, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid duration or option.
 */
export function timeout(
  duration: Duration,
  options?: TimeoutOptions | TimeoutStrategy | 'optimistic',
): Timeout {
  return new Timeout(duration, options);
}

/** See {@link timeout}. */
export class Timeout implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;

  readonly #core: Core;

  /** Fires with the duration of each call that fulfilled. */
  readonly onSuccess: Event<ISuccessEvent>;
  /**
   * Fires for each call that rejected: `handled` is true when the rejection is the timeout's
   * doing (the deadline passed first), false for the callee's own errors and for aborts.
   */
  readonly onFailure: Event<IFailureEvent>;
  /** Fires when a call's deadline passes before it settles. */
  readonly onTimeout: Event<TimeoutEvent>;

  constructor(ms: Duration, options?: TimeoutOptions | TimeoutStrategy | 'optimistic') {
    const value = duration(ms, 'duration', undefined, 0);
    const opts = optionsObject(typeof options === 'string' ? { strategy: options } : options);
    knownKeys(opts, ['strategy', 'abortOnReturn', 'clock']);
    const strategy = oneOf(
      opts.strategy,
      'strategy',
      ['cooperative', 'aggressive', 'optimistic'],
      'aggressive',
    );
    const clock = validClock(opts.clock);
    this.#core = {
      ms: value,
      aggressive: strategy === 'aggressive',
      abortOnReturn: bool(opts.abortOnReturn, 'abortOnReturn', true),
      clock,
      wheel: sharedTimerWheel(clock),
      success: new Emitter(),
      failure: new Emitter(),
      timeout: new Emitter(),
      calls: 0,
      timeouts: 0,
    };
    this.onSuccess = this.#core.success.event;
    this.onFailure = this.#core.failure.event;
    this.onTimeout = this.#core.timeout.event;
  }

  /** The deadline in ms. */
  get duration(): number {
    return this.#core.ms;
  }

  /** The strategy in force. */
  get strategy(): TimeoutStrategy {
    return this.#core.aggressive ? 'aggressive' : 'cooperative';
  }

  /**
   * Runs `fn` under the deadline. `fn` receives `{ signal }`, which aborts at the deadline, when
   * `signal` (the caller's) aborts, and (with `abortOnReturn`) once the call has settled.
   * @throws {TimeoutError} `E_TIMEOUT` at the deadline (aggressive strategy).
   * @throws {AbortedError} `E_ABORTED` when `signal` is already aborted, or aborts before the
   *   deadline (aggressive strategy; the cooperative one waits for `fn`).
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    const core = this.#core;
    let parent: AbortSignal | undefined;
    if (signal !== undefined) {
      if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
      if (canAbort(signal)) parent = signal;
    }
    core.calls++;
    const call = new TimeoutCall(core, parent);
    if (core.success.size !== 0 || core.failure.size !== 0) call.start = core.clock.now();
    core.wheel.insert(call, core.ms);
    const context = Object.defineProperty(
      { [kCall]: call },
      'signal',
      signalDescriptor,
    ) as unknown as IDefaultPolicyContext;
    if (core.aggressive) return this.#aggressive(call, fn, context);

    let result: PromiseLike<T> | T;
    try {
      result = fn(context);
    } catch (error) {
      call.fail(error);
      return Promise.reject(error);
    }
    if (result instanceof Promise) {
      return result.then(
        (value: T) => call.ok(value) as T,
        (error: unknown) => {
          call.fail(error);
          throw error;
        },
      );
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        (value: T) => call.ok(value) as T,
        (error: unknown) => {
          call.fail(error);
          throw error;
        },
      );
    }
    call.ok(result);
    return Promise.resolve(result);
  }

  #aggressive<T>(
    call: TimeoutCall,
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    context: IDefaultPolicyContext,
  ): Promise<T> {
    let result: PromiseLike<T> | T;
    try {
      result = fn(context);
    } catch (error) {
      call.fail(error);
      return Promise.reject(error);
    }
    if (call.state === SETTLED) {
      // The deadline (or the caller's abort) came while `fn` ran synchronously (a fake clock
      // advanced inside it, say): the call is over; drop the callee's outcome.
      if (isThenable(result)) result.then(undefined, ignore);
      return Promise.reject(call.reason);
    }
    if (!isThenable(result)) {
      call.ok(result);
      return Promise.resolve(result);
    }
    const promise = new Promise<T>((resolve, reject) => {
      call.resolve = resolve as (value: unknown) => void;
      call.reject = reject;
    });
    // Rejecting early needs to hear the caller's abort even when the callee never reads `signal`.
    if (call.parent !== undefined && call.unlinkParent === undefined && call.state === RUNNING) {
      call.listenToParent(call.parent);
    }
    (result as PromiseLike<T>).then(
      (value) => call.ok(value),
      (error: unknown) => call.fail(error),
    );
    return promise;
  }

  /** Counts since creation. */
  stats(): TimeoutStats {
    const core = this.#core;
    return { timeout: core.ms, strategy: this.strategy, calls: core.calls, timeouts: core.timeouts };
  }
}

function ignore(): void {}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}
