import type {
  FailureReason,
  IBackoff,
  IBackoffFactory,
  IDefaultPolicyContext,
  IFailureEvent,
  IPolicy,
  ISuccessEvent,
} from 'cockatiel';
import { defaultPolicyContext, neverAbortedSignal, raceAbort } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { announce, channel, lifecycle } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, describe, InvalidOptionError } from '../core/errors.js';
import { type Disposable, Emitter, type Event, toDisposable } from '../core/events.js';
import { canAbort } from '../core/signals.js';
import {
  clockOption,
  duration,
  integer,
  knownKeys,
  nonEmptyString,
  numberIn,
  optionsObject,
} from '../core/validate.js';
import { CircuitIsolatedError, CircuitOpenError, type RejectReason } from './errors.js';
import type { SharedCircuitState } from './shared-state.js';
import { consecutive } from './strategies/consecutive.js';
import type { BreakerStrategy, BreakerStrategyFactory } from './strategy.js';

/** The state a circuit is in. */
export type CircuitState = 'closed' | 'open' | 'half-open' | 'isolated';

/**
 * A breaker's state as a serialisable value: persist `breaker.toJSON()` and pass it back as
 * `initialState` to resume where a previous process stopped. Half-open is saved as open with a
 * `halfOpenAt` in the past (trial calls in flight do not survive a restart); isolation is a
 * runtime handle and is not saved.
 */
export type CircuitBreakerJSON =
  | { readonly state: 'closed' }
  | {
      readonly state: 'open';
      readonly openedAt: number;
      readonly halfOpenAt: number;
      readonly reopenCount: number;
    };

/** Grows the half-open delay on each re-open from half-open: `initial * multiplier^(n-1)`, capped at `max`. */
export interface HalfOpenBackoff {
  initial: Duration;
  max: Duration;
  /** @default 2 */
  multiplier?: number;
}

/** Context handed to a cockatiel backoff used as `halfOpenAfter`, as cockatiel does. */
export interface HalfOpenBackoffContext extends IDefaultPolicyContext {
  /** How many times in a row the circuit has opened without closing. */
  attempt: number;
  /** What made it open, when a call did. */
  result: FailureReason<unknown>;
}

/** Something that can say whether an error (or a returned value) is a failure; cockatiel's `handleAll`, `handleType(...)` and `handleWhen(...)` fit. */
export interface FailureFilter {
  readonly options: { errorFilter(error: Error): boolean; resultFilter(result: unknown): boolean };
}

/** Options of {@link circuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Name shown in errors, events and stats. */
  name?: string;
  /** When to open. @default consecutive(5) */
  strategy?: BreakerStrategyFactory;
  /**
   * How long the circuit stays open before it admits trial calls: a duration, a growing
   * {@link HalfOpenBackoff}, or any cockatiel backoff (`new ExponentialBackoff()`).
   * @default '10s'
   */
  halfOpenAfter?: Duration | HalfOpenBackoff | IBackoffFactory<HalfOpenBackoffContext>;
  /** Trial calls admitted at once while half-open; further callers fail fast. @default 1 */
  halfOpenProbes?: number;
  /** Calls that take at least this long count as slow (see the strategies' `slowCallRate`). @default undefined (no slow-call tracking) */
  slowCallDuration?: Duration;
  /**
   * Which errors count as failures: a predicate, or a cockatiel policy builder such as
   * `handleType(HttpError, e => e.status >= 500)`, whose result filter is honoured too.
   * Errors that are not failures pass through and count as successes.
   * @default every error is a failure
   */
  isFailure?: ((error: unknown) => boolean) | FailureFilter;
  /** State saved by {@link CircuitBreaker.toJSON}. */
  initialState?: CircuitBreakerJSON;
  /** Share the circuit with every instance using the same key, e.g. `redisBreakerState(redis, { key })`. */
  shared?: SharedCircuitState;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Snapshot returned by {@link CircuitBreaker.stats}. */
export interface CircuitBreakerStats {
  name: string | undefined;
  state: CircuitState;
  strategy: string;
  /** Calls in the strategy's current window. */
  calls: number;
  failures: number;
  slowCalls: number;
  /** failures / calls in the window (0 when empty). */
  failureRate: number;
  /** slowCalls / calls in the window (0 when empty). */
  slowCallRate: number;
  /** When the circuit last opened (ms since epoch), if it is open or half-open. */
  openedAt: number | undefined;
  /** When an open circuit will admit trial calls. */
  halfOpenAt: number | undefined;
  /** Trial calls running now. */
  probesInFlight: number;
  /** Totals since creation. */
  totalCalls: number;
  totalFailures: number;
  totalRejections: number;
  totalSlowCalls: number;
}

/** Event of `onBreak`. */
export interface BreakEvent {
  /** `'failures'`: the strategy tripped; `'half-open'`: a trial call failed; `'remote'`: another instance opened it. */
  reason: 'failures' | 'half-open' | 'remote';
  openedAt: number;
  halfOpenAt: number;
}

/** Event of `onReject`. */
export interface RejectEvent {
  reason: RejectReason;
  retryAfter: number;
}

const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
const ISOLATED = 3;
type Kind = 0 | 1 | 2 | 3;
const KIND_NAMES: readonly CircuitState[] = ['closed', 'open', 'half-open', 'isolated'];

const allErrors = () => true;
/** How long to wait before asking again for a probe lease held elsewhere, when no delay is known. */
const MIN_LEASE_WAIT = 100;

const stateChannel = channel('breaker', 'state');
const rejectChannel = channel('breaker', 'reject');
const lifecycleChannels = lifecycle('breaker');

/** @internal Lets the registry veto a closed circuit's opening (its `maxOpenFraction`). */
export const kOpenGate = Symbol('buttress.breaker.openGate');
/** @internal */
export interface InternalBreakerOptions {
  [kOpenGate]?: (breaker: CircuitBreaker, next: CircuitState) => boolean;
}

/**
 * Creates a circuit breaker: after the strategy sees too many failures it opens and rejects
 * calls at once with `E_CIRCUIT_OPEN`, giving the upstream time to recover; after
 * `halfOpenAfter` it lets `halfOpenProbes` trial calls through and closes again when they
 * succeed.
 *
 * Implements cockatiel's `IPolicy`, so it composes with cockatiel's policies through `wrap()`.
 *
 * @example
 * import { circuitBreaker, countWindow } from 'buttress/breaker';
 * const breaker = circuitBreaker({
 *   strategy: countWindow({ size: 50, minimumCalls: 20, failureRate: 0.5 }),
 *   halfOpenAfter: { initial: '5s', max: '1m' },
 * });
 * const user = await breaker.execute(({ signal }) => fetch(url, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function circuitBreaker(options?: CircuitBreakerOptions): CircuitBreaker {
  return new CircuitBreaker(options);
}

/** See {@link circuitBreaker}. */
export class CircuitBreaker implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;

  readonly #name: string | undefined;
  readonly #clock: Clock;
  readonly #strategy: BreakerStrategy;
  readonly #strategyName: string;
  readonly #probes: number;
  readonly #slowMs: number | undefined;
  readonly #timedStrategy: boolean;
  readonly #errorFilter: (error: unknown) => boolean;
  readonly #resultFilter: ((value: unknown) => boolean) | undefined;
  readonly #halfOpenDelay: (attempt: number, result: FailureReason<unknown>) => number;
  readonly #resetBackoff: () => void;
  readonly #shared: SharedCircuitState | undefined;
  readonly #sharedLink: Disposable | undefined;
  readonly #openGate: ((breaker: CircuitBreaker, next: CircuitState) => boolean) | undefined;

  #kind: Kind = CLOSED;
  /** Bumped on every transition; a call that completes in a later generation is not counted. */
  #gen = 0;
  #openedAt = 0;
  #halfOpenAt = 0;
  #reopenCount = 0;
  #lastDelay = 0;
  #probesAdmitted = 0;
  #probesDone = 0;
  #probeFailures = 0;
  #probeSlow = 0;
  #probesInFlight = 0;
  #leaseHeld = false;
  #leaseRequest: Promise<boolean> | undefined;
  #isolations = 0;
  #closed = false;

  #totalCalls = 0;
  #totalFailures = 0;
  #totalRejections = 0;
  #totalSlow = 0;

  readonly #successEm = new Emitter<ISuccessEvent>();
  readonly #failureEm = new Emitter<IFailureEvent>();
  readonly #stateEm = new Emitter<CircuitState>();
  readonly #breakEm = new Emitter<BreakEvent>();
  readonly #resetEm = new Emitter<void>();
  readonly #halfOpenEm = new Emitter<void>();
  readonly #rejectEm = new Emitter<RejectEvent>();

  /** Fires with the duration of each call that succeeded (as cockatiel's policies do). */
  readonly onSuccess: Event<ISuccessEvent> = this.#successEm.event;
  /** Fires for each call that failed: `handled` is false for errors the filter let through. */
  readonly onFailure: Event<IFailureEvent> = this.#failureEm.event;
  /** Fires on every state transition with the new state. */
  readonly onStateChange: Event<CircuitState> = this.#stateEm.event;
  /** Fires when the circuit opens. */
  readonly onBreak: Event<BreakEvent> = this.#breakEm.event;
  /** Fires when the circuit closes again. */
  readonly onReset: Event<void> = this.#resetEm.event;
  /** Fires when the circuit becomes half-open. */
  readonly onHalfOpen: Event<void> = this.#halfOpenEm.event;
  /** Fires for each call rejected without running. */
  readonly onReject: Event<RejectEvent> = this.#rejectEm.event;

  constructor(options?: CircuitBreakerOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, [
      'name',
      'strategy',
      'halfOpenAfter',
      'halfOpenProbes',
      'slowCallDuration',
      'isFailure',
      'initialState',
      'shared',
      'clock',
    ]);
    this.#name = opts.name === undefined ? undefined : nonEmptyString(opts.name, 'name');
    this.#clock = clockOption(opts.clock);
    const factory = opts.strategy ?? consecutive(5);
    if (typeof factory !== 'object' || factory === null || typeof factory.create !== 'function') {
      throw new InvalidOptionError(
        'strategy',
        factory,
        'a strategy such as consecutive(5), countWindow({...}) or timeWindow({...})',
      );
    }
    const strategy: unknown = factory.create();
    if (!isStrategy(strategy)) {
      throw new InvalidOptionError(
        'strategy',
        strategy,
        'create() to return a BreakerStrategy ({ record, halfOpen, reset, counts })',
      );
    }
    this.#strategy = strategy;
    this.#strategyName = typeof factory.name === 'string' ? factory.name : describe(factory.name);
    this.#timedStrategy = this.#strategy.usesTime !== false;
    this.#probes = integer(opts.halfOpenProbes, 'halfOpenProbes', 1, 10_000, 1);
    this.#slowMs =
      opts.slowCallDuration === undefined
        ? undefined
        : duration(opts.slowCallDuration, 'slowCallDuration', undefined, 1);

    const filter = opts.isFailure;
    if (filter === undefined) {
      this.#errorFilter = allErrors;
    } else if (typeof filter === 'function') {
      this.#errorFilter = filter;
    } else if (
      typeof filter === 'object' &&
      filter !== null &&
      typeof filter.options?.errorFilter === 'function'
    ) {
      const { errorFilter, resultFilter } = filter.options;
      this.#errorFilter = (e) => errorFilter(e as Error);
      this.#resultFilter = typeof resultFilter === 'function' ? resultFilter : undefined;
    } else {
      throw new InvalidOptionError(
        'isFailure',
        filter,
        'a predicate (error) => boolean or a cockatiel policy such as handleAll',
      );
    }

    [this.#halfOpenDelay, this.#resetBackoff] = halfOpenSchedule(opts.halfOpenAfter);

    if (opts.initialState !== undefined) this.#restore(opts.initialState);

    const gate = (opts as InternalBreakerOptions)[kOpenGate];
    this.#openGate = gate;

    if (opts.shared !== undefined) {
      const shared = opts.shared;
      if (typeof shared !== 'object' || shared === null || typeof shared.attach !== 'function') {
        throw new InvalidOptionError(
          'shared',
          shared,
          'a SharedCircuitState such as redisBreakerState(redis, { key })',
        );
      }
      this.#shared = shared;
      this.#sharedLink = shared.attach({
        remoteOpen: (halfOpenIn) => this.#remoteOpen(halfOpenIn),
        remoteClose: () => this.#remoteClose(),
      });
    }
    announce(lifecycleChannels.create, 'breaker', this);
  }

  /** The breaker's name, if it was given one. */
  get name(): string | undefined {
    return this.#name;
  }

  /** The current state. An open circuit whose delay has passed reports (and becomes) half-open. */
  get state(): CircuitState {
    if (this.#kind === OPEN && this.#clock.now() >= this.#halfOpenAt) this.#toHalfOpen();
    return KIND_NAMES[this.#kind]!;
  }

  /**
   * Runs `fn` through the breaker.
   * @throws {CircuitOpenError} `E_CIRCUIT_OPEN` when open, or half-open with every trial slot taken.
   * @throws {CircuitIsolatedError} `E_CIRCUIT_ISOLATED` while isolated.
   * @throws {AbortedError} `E_ABORTED` when `signal` is already aborted.
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    if (this.#kind === CLOSED) {
      // A signal that can never abort (cockatiel's retry always passes one down) is no signal:
      // keep the fast path inside wraps.
      if (
        !canAbort(signal) &&
        this.#slowMs === undefined &&
        this.#successEm.size === 0 &&
        this.#failureEm.size === 0
      ) {
        return this.#runFast(fn);
      }
      if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
      return this.#run(fn, signal, this.#gen, false);
    }
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    return this.#executeNotClosed(fn, signal);
  }

  /**
   * The hot path: closed, untimed, no signal (or one that can never abort). Settles through two
   * handlers bound once per breaker instead of an async frame, which halves the cost over a bare
   * `await fn()`.
   * The price: such a call that completes after the circuit has left and re-entered the closed
   * state is counted in the new window (a window reset on close makes this rare and harmless).
   */
  #runFast<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T): Promise<T> {
    this.#totalCalls++;
    let result: PromiseLike<T> | T;
    try {
      result = fn(defaultPolicyContext);
    } catch (error) {
      this.#noteFastError(error);
      return Promise.reject(error);
    }
    if (result instanceof Promise) return result.then(this.#fastOk, this.#fastErr) as Promise<T>;
    if (
      result !== null &&
      typeof result === 'object' &&
      typeof (result as PromiseLike<T>).then === 'function'
    ) {
      return Promise.resolve(result).then(this.#fastOk, this.#fastErr) as Promise<T>;
    }
    this.#fastOk(result);
    return Promise.resolve(result as T);
  }

  readonly #fastOk = (value: unknown): unknown => {
    const resultFilter = this.#resultFilter;
    if (resultFilter?.(value)) {
      this.#totalFailures++;
      this.#recordClosed(true, { value });
    } else {
      this.#recordClosed(false, undefined);
    }
    return value;
  };

  readonly #fastErr = (error: unknown): never => {
    this.#noteFastError(error);
    throw error;
  };

  #noteFastError(error: unknown): void {
    let handled: boolean;
    try {
      handled = this.#errorFilter(error);
    } catch {
      handled = true;
    }
    if (handled) {
      this.#totalFailures++;
      this.#recordClosed(true, { error: error as Error });
    } else {
      this.#recordClosed(false, undefined);
    }
  }

  #recordClosed(failed: boolean, reason: FailureReason<unknown> | undefined): void {
    if (this.#kind !== CLOSED) return;
    if (this.#strategy.record(failed, false, this.#timedStrategy ? this.#clock.now() : 0)) {
      this.#tryOpen('failures', reason ?? { value: undefined });
    }
  }

  async #run<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal: AbortSignal | undefined,
    gen: number,
    probe: boolean,
  ): Promise<T> {
    this.#totalCalls++;
    const timed = this.#slowMs !== undefined || this.#successEm.size !== 0 || this.#failureEm.size !== 0;
    const start = timed ? this.#clock.now() : 0;
    let value: T;
    try {
      value = await fn(signal === undefined ? defaultPolicyContext : { signal });
    } catch (error) {
      this.#completeError(error, gen, probe, timed, start, signal);
      throw error;
    }
    const resultFilter = this.#resultFilter;
    if (resultFilter?.(value)) {
      this.#completeFailure({ value }, true, gen, probe, timed, start);
    } else {
      this.#completeSuccess(gen, probe, timed, start);
    }
    return value;
  }

  /**
   * `emit` is false for errors the filter let through: they count as successes but, as in
   * cockatiel, fire only `onFailure` (`onSuccess` promises a returned value).
   */
  #completeSuccess(gen: number, probe: boolean, timed: boolean, start: number, emit = true): void {
    let slow = false;
    let now = 0;
    if (timed) {
      now = this.#clock.now();
      const elapsed = now - start;
      slow = this.#slowMs !== undefined && elapsed >= this.#slowMs;
      if (slow) this.#totalSlow++;
      if (emit && this.#successEm.size !== 0) this.#successEm.emit({ duration: elapsed });
    }
    if (gen !== this.#gen) return;
    if (probe) {
      this.#probeDone(false, slow);
    } else if (this.#kind === CLOSED) {
      if (this.#strategy.record(false, slow, this.#timedStrategy && !timed ? this.#clock.now() : now)) {
        this.#tryOpen('failures', { value: undefined });
      }
    }
  }

  #completeError(
    error: unknown,
    gen: number,
    probe: boolean,
    timed: boolean,
    start: number,
    signal: AbortSignal | undefined,
  ): void {
    if (signal?.aborted) {
      // The caller gave up; the outcome says nothing about the upstream. Free the trial slot.
      if (probe && gen === this.#gen) {
        this.#probesAdmitted--;
        this.#probesInFlight--;
        this.#maybeReleaseLease();
      }
      return;
    }
    let handled: boolean;
    try {
      handled = this.#errorFilter(error);
    } catch {
      handled = true;
    }
    if (handled) {
      this.#completeFailure({ error: error as Error }, true, gen, probe, timed, start);
    } else {
      // Errors the filter lets through (a 404, a validation error) mean the upstream answered.
      if (this.#failureEm.size !== 0) {
        this.#failureEm.emit({
          duration: timed ? this.#clock.now() - start : 0,
          handled: false,
          reason: { error: error as Error },
        });
      }
      this.#completeSuccess(gen, probe, timed, start, false);
    }
  }

  #completeFailure(
    reason: FailureReason<unknown>,
    handled: boolean,
    gen: number,
    probe: boolean,
    timed: boolean,
    start: number,
  ): void {
    this.#totalFailures++;
    let slow = false;
    let now = 0;
    if (timed) {
      now = this.#clock.now();
      const elapsed = now - start;
      slow = this.#slowMs !== undefined && elapsed >= this.#slowMs;
      if (slow) this.#totalSlow++;
      if (this.#failureEm.size !== 0) this.#failureEm.emit({ duration: elapsed, handled, reason });
    }
    if (gen !== this.#gen) return;
    if (probe) {
      this.#probeDone(true, slow, reason);
    } else if (this.#kind === CLOSED) {
      if (this.#strategy.record(true, slow, this.#timedStrategy && !timed ? this.#clock.now() : now)) {
        this.#tryOpen('failures', reason);
      }
    }
  }

  #probeDone(failed: boolean, slow: boolean, reason: FailureReason<unknown> = { value: undefined }): void {
    this.#probesInFlight--;
    this.#probesDone++;
    if (failed) this.#probeFailures++;
    if (slow) this.#probeSlow++;
    const verdict = this.#strategy.halfOpen(
      this.#probesDone,
      this.#probeFailures,
      this.#probeSlow,
      this.#probes,
    );
    if (verdict === 'close') this.#close(false);
    else if (verdict === 'open') this.#open('half-open', reason);
  }

  async #executeNotClosed<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const kind = this.#kind;
    if (kind === ISOLATED) throw this.#reject('isolated', Number.POSITIVE_INFINITY);
    if (kind === OPEN) {
      const now = this.#clock.now();
      if (now < this.#halfOpenAt) throw this.#reject('open', this.#halfOpenAt - now);
      this.#toHalfOpen();
    }
    if (this.#kind !== HALF_OPEN) return this.execute(fn, signal);
    if (this.#probesAdmitted >= this.#probes) throw this.#reject('half-open', 0);
    const gen = this.#gen;
    this.#probesAdmitted++;
    this.#probesInFlight++;
    if (this.#shared !== undefined && !this.#leaseHeld) {
      let granted: boolean;
      try {
        // Concurrent trial callers share one lease request; each waits under its own signal.
        granted = await raceAbort(this.#requestLease(), signal);
      } catch (error) {
        if (gen === this.#gen) {
          this.#probesAdmitted--;
          this.#probesInFlight--;
          this.#maybeReleaseLease();
        }
        throw error;
      }
      // The circuit moved on while we asked (a remote close or open): start over in the new state.
      if (gen !== this.#gen) return this.execute(fn, signal);
      if (!granted) {
        // Another instance holds the fleet's probe lease: wait for its verdict, which arrives by
        // pub/sub, or for our own delay if that instance dies with the lease.
        this.#probesAdmitted--;
        this.#probesInFlight--;
        const wait = Math.max(this.#lastDelay, MIN_LEASE_WAIT);
        if (this.#probesInFlight === 0) {
          const now = this.#clock.now();
          this.#setOpen(now, now + wait, false);
        }
        throw this.#reject('half-open', wait);
      }
    }
    return this.#run(fn, signal, gen, true);
  }

  /** Asks the fleet for the probe lease once, however many trial callers wait on it. */
  #requestLease(): Promise<boolean> {
    if (this.#leaseRequest !== undefined) return this.#leaseRequest;
    const shared = this.#shared!;
    const gen = this.#gen;
    const request = Promise.resolve()
      .then(() => shared.acquireProbe())
      // A misbehaving shared state must not block local recovery.
      .catch(() => true)
      .then((granted) => {
        this.#leaseRequest = undefined;
        if (!granted) return false;
        if (gen === this.#gen && this.#kind === HALF_OPEN) {
          this.#leaseHeld = true;
          return true;
        }
        // Granted too late: the circuit has moved on, so nobody will use or release this lease.
        shared.releaseProbe();
        return false;
      });
    this.#leaseRequest = request;
    return request;
  }

  #reject(reason: RejectReason, retryAfter: number): CircuitOpenError | CircuitIsolatedError {
    this.#totalRejections++;
    if (this.#rejectEm.size !== 0) this.#rejectEm.emit({ reason, retryAfter });
    if (rejectChannel.hasSubscribers) rejectChannel.publish({ name: this.#name, reason, retryAfter });
    return reason === 'isolated'
      ? new CircuitIsolatedError(this.#name)
      : new CircuitOpenError(reason, retryAfter, this.#name);
  }

  #tryOpen(reason: 'failures', result: FailureReason<unknown>): void {
    if (this.#openGate !== undefined && !this.#openGate(this, 'open')) return;
    this.#open(reason, result);
  }

  #open(reason: 'failures' | 'half-open', result: FailureReason<unknown>): void {
    const now = this.#clock.now();
    this.#reopenCount = this.#kind === HALF_OPEN ? this.#reopenCount + 1 : 1;
    const delay = this.#halfOpenDelay(this.#reopenCount, result);
    this.#lastDelay = delay;
    this.#setOpen(now, now + delay, true);
    if (this.#breakEm.size !== 0) this.#breakEm.emit({ reason, openedAt: now, halfOpenAt: now + delay });
    this.#shared?.publish({ state: 'open', halfOpenIn: delay });
    this.#maybeReleaseLease(true);
  }

  #setOpen(openedAt: number, halfOpenAt: number, emit: boolean): void {
    const from = this.#kind;
    this.#kind = OPEN;
    this.#gen++;
    this.#openedAt = openedAt;
    this.#halfOpenAt = halfOpenAt;
    this.#resetProbes();
    this.#strategy.reset(openedAt);
    if (emit || from !== OPEN) this.#changed(from);
  }

  #toHalfOpen(): void {
    const from = this.#kind;
    this.#kind = HALF_OPEN;
    this.#gen++;
    this.#resetProbes();
    if (this.#halfOpenEm.size !== 0) this.#halfOpenEm.emit();
    this.#changed(from);
  }

  #close(remote: boolean): void {
    const from = this.#kind;
    this.#kind = CLOSED;
    this.#gen++;
    this.#reopenCount = 0;
    this.#resetBackoff();
    this.#resetProbes();
    this.#strategy.reset(this.#clock.now());
    if (!remote) this.#shared?.publish({ state: 'closed' });
    this.#maybeReleaseLease(true);
    if (this.#resetEm.size !== 0) this.#resetEm.emit();
    this.#changed(from);
  }

  #resetProbes(): void {
    this.#probesAdmitted =
      this.#probesDone =
      this.#probeFailures =
      this.#probeSlow =
      this.#probesInFlight =
        0;
  }

  #maybeReleaseLease(force = false): void {
    if (this.#leaseHeld && (force || this.#probesInFlight === 0)) {
      this.#leaseHeld = false;
      this.#shared?.releaseProbe();
    }
  }

  #changed(from: Kind): void {
    if (from === this.#kind) return;
    const state = KIND_NAMES[this.#kind]!;
    if (this.#stateEm.size !== 0) this.#stateEm.emit(state);
    if (stateChannel.hasSubscribers) {
      stateChannel.publish({ name: this.#name, from: KIND_NAMES[from], to: state, at: this.#clock.now() });
    }
  }

  #remoteOpen(halfOpenIn: number): void {
    if (this.#closed || this.#kind === ISOLATED) return;
    const now = this.#clock.now();
    const halfOpenAt = now + Math.max(0, halfOpenIn);
    if (this.#kind === OPEN) {
      // Keep the later of the two deadlines: the fleet agrees the upstream needs that long.
      if (halfOpenAt > this.#halfOpenAt) this.#halfOpenAt = halfOpenAt;
      return;
    }
    if (this.#kind === CLOSED) this.#reopenCount = 1;
    this.#lastDelay = Math.max(this.#lastDelay, halfOpenIn);
    // Our own trial calls, if any, have been overtaken: free the fleet's lease for the next round.
    this.#maybeReleaseLease(true);
    this.#setOpen(now, halfOpenAt, true);
    if (this.#breakEm.size !== 0) this.#breakEm.emit({ reason: 'remote', openedAt: now, halfOpenAt });
  }

  #remoteClose(): void {
    if (this.#closed || this.#kind === ISOLATED || this.#kind === CLOSED) return;
    this.#close(true);
  }

  /**
   * Holds the circuit open by hand (for maintenance or a kill switch) until every returned
   * disposable is disposed; then it closes. Calls meanwhile fail with `E_CIRCUIT_ISOLATED`.
   */
  isolate(): Disposable {
    if (this.#isolations++ === 0) {
      const from = this.#kind;
      this.#kind = ISOLATED;
      this.#gen++;
      this.#maybeReleaseLease(true);
      this.#resetProbes();
      this.#changed(from);
    }
    return toDisposable(() => {
      if (--this.#isolations === 0 && this.#kind === ISOLATED) this.#close(false);
    });
  }

  /** Counts and state as a plain object. */
  stats(): CircuitBreakerStats {
    const state = this.state;
    const now = this.#clock.now();
    const { calls, failures, slowCalls } = this.#strategy.counts(now);
    const openish = this.#kind === OPEN || this.#kind === HALF_OPEN;
    return {
      name: this.#name,
      state,
      strategy: this.#strategyName,
      calls,
      failures,
      slowCalls,
      failureRate: calls === 0 ? 0 : failures / calls,
      slowCallRate: calls === 0 ? 0 : slowCalls / calls,
      openedAt: openish ? this.#openedAt : undefined,
      halfOpenAt: this.#kind === OPEN ? this.#halfOpenAt : undefined,
      probesInFlight: this.#probesInFlight,
      totalCalls: this.#totalCalls,
      totalFailures: this.#totalFailures,
      totalRejections: this.#totalRejections,
      totalSlowCalls: this.#totalSlow,
    };
  }

  /** The state as a serialisable value, for `initialState`. */
  toJSON(): CircuitBreakerJSON {
    if (this.#kind === OPEN || this.#kind === HALF_OPEN) {
      return {
        state: 'open',
        openedAt: this.#openedAt,
        halfOpenAt:
          this.#kind === HALF_OPEN ? Math.min(this.#halfOpenAt, this.#clock.now()) : this.#halfOpenAt,
        reopenCount: this.#reopenCount,
      };
    }
    return { state: 'closed' };
  }

  #restore(json: unknown): void {
    const s = json as CircuitBreakerJSON;
    if (typeof s !== 'object' || s === null)
      throw new InvalidOptionError('initialState', json, 'a value from breaker.toJSON()');
    if (s.state === 'closed') return;
    if (s.state === 'open') {
      const openedAt = numberIn(s.openedAt, 'initialState.openedAt', 0, Number.MAX_SAFE_INTEGER);
      const halfOpenAt = numberIn(s.halfOpenAt, 'initialState.halfOpenAt', openedAt, Number.MAX_SAFE_INTEGER);
      this.#reopenCount = integer(s.reopenCount, 'initialState.reopenCount', 0, 2 ** 31 - 1);
      this.#kind = OPEN;
      this.#openedAt = openedAt;
      this.#halfOpenAt = halfOpenAt;
      this.#lastDelay = halfOpenAt - openedAt;
      return;
    }
    throw new InvalidOptionError('initialState.state', (s as { state: unknown }).state, "'closed' or 'open'");
  }

  /**
   * Detaches from the shared state (and closes it, when it was given to this breaker). Calls
   * already running finish; new calls are still served on local state.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    announce(lifecycleChannels.close, 'breaker', this);
    this.#maybeReleaseLease(true);
    this.#sharedLink?.dispose();
    await this.#shared?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function isStrategy(s: unknown): s is BreakerStrategy {
  if (typeof s !== 'object' || s === null) return false;
  const m = s as Record<keyof BreakerStrategy, unknown>;
  return (
    typeof m.record === 'function' &&
    typeof m.halfOpen === 'function' &&
    typeof m.reset === 'function' &&
    typeof m.counts === 'function'
  );
}

/** Returns the delay before half-open for the n-th consecutive opening, and a reset for when the circuit closes. */
function halfOpenSchedule(
  value: unknown,
): [(attempt: number, result: FailureReason<unknown>) => number, () => void] {
  const noop = () => {};
  if (value === undefined) return [() => 10_000, noop];
  if (typeof value === 'number' || typeof value === 'string') {
    const ms = duration(value, 'halfOpenAfter', undefined, 0);
    return [() => ms, noop];
  }
  if (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as IBackoffFactory<unknown>).next === 'function'
  ) {
    const factory = value as IBackoffFactory<HalfOpenBackoffContext>;
    let current: IBackoff<HalfOpenBackoffContext> | undefined;
    return [
      (attempt, result) => {
        const context = { attempt, result, signal: neverAbortedSignal };
        current = current === undefined ? factory.next(context) : current.next(context);
        const ms = current.duration;
        return Number.isFinite(ms) && ms >= 0 ? ms : 0;
      },
      () => {
        current = undefined;
      },
    ];
  }
  if (typeof value === 'object' && value !== null) {
    const b = value as Partial<HalfOpenBackoff>;
    knownKeys(b, ['initial', 'max', 'multiplier'], 'halfOpenAfter');
    const initial = duration(b.initial, 'halfOpenAfter.initial');
    const max = duration(b.max, 'halfOpenAfter.max', undefined, initial);
    const multiplier = numberIn(b.multiplier, 'halfOpenAfter.multiplier', 1, 1000, 2);
    return [(attempt) => Math.min(max, initial * multiplier ** Math.max(0, attempt - 1)), noop];
  }
  throw new InvalidOptionError(
    'halfOpenAfter',
    value,
    'a duration, { initial, max, multiplier } or a cockatiel backoff',
  );
}
