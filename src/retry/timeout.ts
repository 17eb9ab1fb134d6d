import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import type { Clock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, TimeoutError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import {
  accessorContext,
  canAbort,
  type DeferredSignal,
  kDeferred,
  kExecute,
  kNoFields,
  kSource,
  type LayerContext,
  listen,
  type SignalSource,
} from '../core/signals.js';
import { sharedTimerWheel, TimerEntry, type TimerWheel } from '../core/timer-wheel.js';
import {
  bool,
  clockOption,
  duration,
  knownKeys,
  nonEmptyString,
  oneOf,
  optionsObject,
} from '../core/validate.js';
import { listenedEvent } from './internal/listened.js';
import { settledReason } from './internal/signals.js';

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
  /** Name shown in diagnostics (metrics are labelled by it). */
  name?: string;
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
  readonly name: string | undefined;
  readonly ms: number;
  readonly aggressive: boolean;
  readonly abortOnReturn: boolean;
  readonly clock: Clock;
  readonly wheel: TimerWheel;
  readonly success: Emitter<ISuccessEvent>;
  readonly failure: Emitter<IFailureEvent>;
  readonly timeout: Emitter<TimeoutEvent>;
  /** Whether `onSuccess` or `onFailure` has a listener: calls are timed only then. */
  timed: boolean;
  /** Whether a context has been enumerated: contexts are then own-accessor objects (see below). */
  spread: boolean;
  /** Calls running, oldest first: as they share one duration, also in deadline order. */
  head: TimeoutCall | undefined;
  tail: TimeoutCall | undefined;
  /** The wheel entry that expires the calls, armed while there may be some to expire. */
  readonly expiry: Expiry;
  /** True while `expiry` runs: calls started meanwhile must not arm it. */
  sweeping: boolean;
  /** True while a release of the idle `expiry` is scheduled for the end of this tick. */
  releasing: boolean;
  /** Disarms `expiry` if the list is still empty: run at the end of the tick it emptied in. */
  readonly release: () => void;
  calls: number;
  timeouts: number;
}

/*
 * One wheel entry per timeout, not one per call. Every call of a timeout has the same duration, so
 * calls expire in the order they started (as in Node's own timer lists, one list per duration): a
 * call joins the end of a linked list (O(1)), leaves it when it settles (O(1)), and a single entry
 * on the shared wheel, armed for the oldest call's deadline, expires calls from the front. When
 * the list empties the entry is disarmed at the end of the current tick rather than at once (as
 * the wheel releases its own timer), so a loop of awaited calls, which never reaches the end of
 * the tick, arms it once instead of once per call.
 */
class Expiry extends TimerEntry {
  readonly core: Core;

  constructor(core: Core) {
    super();
    this.core = core;
  }

  fire(): void {
    const core = this.core;
    core.sweeping = true;
    try {
      const now = core.clock.now();
      let call = core.head;
      while (call !== undefined && call.deadline <= now) {
        dequeue(core, call);
        call.fire();
        call = core.head;
      }
    } finally {
      core.sweeping = false;
    }
    const head = core.head;
    if (head !== undefined && !this.pending) {
      core.wheel.insert(this, Math.max(0, head.deadline - core.clock.now()));
    }
  }
}

function enqueue(core: Core, call: TimeoutCall): void {
  const tail = core.tail;
  call.queued = true;
  if (tail === undefined) {
    core.head = call;
    if (!core.sweeping && !core.expiry.pending) core.wheel.insert(core.expiry, core.ms);
  } else {
    tail.next = call;
    call.prev = tail;
  }
  core.tail = call;
}

function dequeue(core: Core, call: TimeoutCall): void {
  if (!call.queued) return;
  call.queued = false;
  const prev = call.prev;
  const next = call.next;
  if (prev === undefined) core.head = next;
  else prev.next = next;
  if (next === undefined) core.tail = prev;
  else next.prev = prev;
  call.prev = call.next = undefined;
  if (core.head === undefined && !core.releasing && core.expiry.pending) {
    core.releasing = true;
    process.nextTick(core.release);
  }
}

/** Marks a signal that has not aborted (an abort reason may be anything, even undefined). */
const NOT_ABORTED: unique symbol = Symbol('not aborted');

/** The rarely used part of a call, allocated only when the call needs it. */
class CallExtras {
  controller: AbortController | undefined = undefined;
  unlinkParent: (() => void) | undefined = undefined;
  /** Policies inside this one waiting for the signal to abort, without having created it. */
  listeners: ((reason: unknown) => void)[] | undefined = undefined;
  /** Why the call ended early: the TimeoutError, or the AbortedError of an aborted caller. */
  endedBy: TimeoutError | AbortedError | undefined = undefined;
  /** Properties the callee set on its context. */
  fields: Record<PropertyKey, unknown> | undefined = undefined;
}

/**
 * One call: its place in its timeout's list, its lazily created AbortController and its
 * settlement. The call is also the {@link DeferredSignal} behind the callee's `signal`: the
 * policies inside it (in buttress's `wrap()`) read and watch its state without creating the
 * AbortSignal. Kept small: what only a read signal, a listener or an early end needs lives in
 * {@link CallExtras}.
 */
class TimeoutCall implements DeferredSignal {
  declare readonly [kDeferred]: true;
  readonly core: Core;
  /** When the call times out, on the clock's time. */
  readonly deadline: number;
  prev: TimeoutCall | undefined = undefined;
  next: TimeoutCall | undefined = undefined;
  /** Whether the call is in its timeout's list (running, deadline not yet passed). */
  queued = false;
  /** The caller's signal, when it can abort; cleared once the call is over. */
  parent: AbortSignal | DeferredSignal | undefined;
  state = RUNNING;
  /** Why the callee's signal aborted (whether or not it exists), or NOT_ABORTED. */
  abortReason: unknown = NOT_ABORTED;
  start = 0;
  resolve: ((value: unknown) => void) | undefined = undefined;
  reject: ((error: unknown) => void) | undefined = undefined;
  extras: CallExtras | undefined = undefined;

  constructor(core: Core, parent: AbortSignal | DeferredSignal | undefined, deadline: number) {
    this.core = core;
    this.parent = parent;
    this.deadline = deadline;
  }

  /** The callee's signal, created on first read. */
  get signal(): AbortSignal {
    const extras = (this.extras ??= new CallExtras());
    let controller = extras.controller;
    if (controller === undefined) {
      controller = extras.controller = new AbortController();
      if (this.abortReason !== NOT_ABORTED) controller.abort(this.abortReason);
      else if (this.state === SETTLED) {
        if (this.core.abortOnReturn) this.abortWith(settledReason);
      } else this.follow();
    }
    return controller.signal;
  }

  get aborted(): boolean {
    if (this.abortReason !== NOT_ABORTED) return true;
    if (this.state === SETTLED) return this.core.abortOnReturn;
    return this.parent?.aborted === true;
  }

  get reason(): unknown {
    if (this.abortReason !== NOT_ABORTED) return this.abortReason;
    if (this.state === SETTLED) return this.core.abortOnReturn ? settledReason : undefined;
    return this.parent?.aborted ? this.parent.reason : undefined;
  }

  subscribe(listener: (reason: unknown) => void): () => void {
    const extras = (this.extras ??= new CallExtras());
    (extras.listeners ??= []).push(listener);
    if (this.state !== SETTLED) this.follow();
    return () => {
      const list = extras.listeners;
      const i = list === undefined ? -1 : list.indexOf(listener);
      if (i !== -1) list!.splice(i, 1);
    };
  }

  /** Starts listening to the caller's signal, once; reacts at once if it has already aborted. */
  follow(): void {
    const parent = this.parent;
    if (parent === undefined || this.abortReason !== NOT_ABORTED) return;
    const extras = (this.extras ??= new CallExtras());
    if (extras.unlinkParent !== undefined) return;
    if (parent.aborted) this.parentAborted(parent.reason);
    else extras.unlinkParent = listen(parent, (reason) => this.parentAborted(reason));
  }

  /** Aborts the callee's signal (now, or at creation) and tells the listeners. Once. */
  abortWith(reason: unknown): void {
    if (this.abortReason !== NOT_ABORTED) return;
    this.abortReason = reason;
    const extras = this.extras;
    if (extras === undefined) return;
    extras.controller?.abort(reason);
    const listeners = extras.listeners;
    if (listeners !== undefined) {
      extras.listeners = undefined;
      for (let i = 0; i < listeners.length; i++) listeners[i]!(reason);
    }
  }

  parentAborted(reason: unknown): void {
    if (this.extras !== undefined) this.extras.unlinkParent = undefined;
    this.abortWith(reason);
    if (this.core.aggressive && this.state !== SETTLED) {
      const error = new AbortedError(reason);
      (this.extras ??= new CallExtras()).endedBy = error;
      this.finish();
      this.emitFailure(error, false);
      this.reject?.(error);
    }
  }

  /** The deadline passed. */
  fire(): void {
    if (this.state !== RUNNING) return;
    const core = this.core;
    dequeue(core, this);
    const error = new TimeoutError(core.ms);
    (this.extras ??= new CallExtras()).endedBy = error;
    core.timeouts++;
    // Abort first: settling an aggressive call would abort the signal as released instead.
    this.abortWith(error);
    if (core.aggressive) this.finish();
    else this.state = TIMED_OUT;
    if (core.timeout.size !== 0) {
      core.timeout.emit({ timeout: core.ms, strategy: core.aggressive ? 'aggressive' : 'cooperative' });
    }
    if (timeoutChannel.hasSubscribers) {
      timeoutChannel.publish({
        name: core.name,
        timeout: core.ms,
        strategy: core.aggressive ? 'aggressive' : 'cooperative',
      });
    }
    if (core.aggressive) {
      this.emitFailure(error, true);
      // `reject` is unset only when the deadline passed while the callee ran synchronously.
      this.reject?.(error);
    }
  }

  /** Marks the call settled and releases its place in the list and the parent listener. */
  finish(): void {
    this.state = SETTLED;
    dequeue(this.core, this);
    const extras = this.extras;
    if (extras !== undefined) {
      const unlink = extras.unlinkParent;
      if (unlink !== undefined) {
        extras.unlinkParent = undefined;
        unlink();
      }
      // With `abortOnReturn`, abort a signal somebody holds (or watches) once the call has settled.
      if (this.core.abortOnReturn && (extras.controller !== undefined || extras.listeners !== undefined)) {
        this.abortWith(settledReason);
      }
    }
    this.parent = undefined;
  }

  /** The callee fulfilled. Returns the value for the cooperative path. */
  ok(value: unknown): unknown {
    if (this.state === SETTLED) return value;
    this.finish();
    const core = this.core;
    if (core.timed && core.success.size !== 0) {
      core.success.emit({ duration: core.clock.now() - this.start });
    }
    this.resolve?.(value);
    return value;
  }

  /** The callee rejected (or threw). Returns nothing: callers rethrow. */
  fail(error: unknown): void {
    if (this.state === SETTLED) return;
    // A callee failing after its deadline most likely failed because of it.
    const handled = this.state === TIMED_OUT;
    this.finish();
    this.emitFailure(error, handled);
    this.reject?.(error);
  }

  emitFailure(error: unknown, handled: boolean): void {
    const core = this.core;
    if (core.timed && core.failure.size !== 0) {
      core.failure.emit({
        duration: core.clock.now() - this.start,
        handled,
        reason: { error: error as Error },
      });
    }
  }
}

Object.defineProperty(TimeoutCall.prototype, kDeferred, { value: true });

function fieldsOf(call: TimeoutCall): Record<PropertyKey, unknown> {
  const extras = (call.extras ??= new CallExtras());
  return (extras.fields ??= {});
}

function signalGetter(this: { signal: AbortSignal }): AbortSignal {
  return this.signal;
}

/*
 * The context handed to a direct caller's `fn`: `{ signal }`, with `signal` created on first read,
 * as an OWN ENUMERABLE property so that cockatiel's spread merge carries it (src/core/signals.ts
 * explains why, and the two ways to get one). A proxy is ~15 ns to create, an own accessor ~130 ns;
 * spreading a proxy costs ~2.5 µs, an own accessor nothing special. So contexts are proxies until
 * one is enumerated (the `ownKeys` trap), which means this timeout sits in cockatiel's wrap() or
 * with code that copies contexts; from then on they are own-accessor objects.
 *
 * The proxy's target is the call itself, which saves an object; the call's own fields stay
 * hidden, and what the callee sets lands in `extras.fields`. Inside buttress's wrap() the call
 * hands a bare layer context instead.
 */
const contextHandler: ProxyHandler<TimeoutCall> = {
  get(call, key) {
    if (key === 'signal') {
      const fields = call.extras?.fields;
      return fields !== undefined && Object.hasOwn(fields, 'signal') ? fields.signal : call.signal;
    }
    if (key === kSource) return call;
    return call.extras?.fields?.[key];
  },
  set(call, key, value) {
    fieldsOf(call)[key] = value;
    return true;
  },
  has(call, key) {
    if (key === 'signal' || key === kSource) return true;
    const fields = call.extras?.fields;
    return fields !== undefined && key in fields;
  },
  ownKeys(call) {
    call.core.spread = true;
    const fields = call.extras?.fields;
    const keys = fields === undefined ? [] : Reflect.ownKeys(fields);
    if (!keys.includes('signal')) keys.push('signal');
    return keys;
  },
  getOwnPropertyDescriptor(call, key) {
    const fields = call.extras?.fields;
    if (key === 'signal' && (fields === undefined || !Object.hasOwn(fields, 'signal'))) {
      return { get: signalGetter, set: undefined, enumerable: true, configurable: true };
    }
    return fields === undefined ? undefined : Reflect.getOwnPropertyDescriptor(fields, key);
  },
  defineProperty(call, key, descriptor) {
    return Reflect.defineProperty(fieldsOf(call), key, { ...descriptor, configurable: true });
  },
  deleteProperty(call, key) {
    const fields = call.extras?.fields;
    return fields === undefined || Reflect.deleteProperty(fields, key);
  },
  getPrototypeOf() {
    return Object.prototype;
  },
};

/**
 * Creates a timeout policy: the callee's `signal` aborts once `duration` has passed and, with
 * the `'aggressive'` strategy (the default), the call rejects at that moment with `E_TIMEOUT`.
 * Semantics follow cockatiel's `TimeoutPolicy`; the cost does not: no timer per call (a call
 * joins its timeout's list, whose one entry on the shared timer wheel expires calls in order),
 * and the AbortController behind `signal` is created only when the callee reads `signal`.
 *
 * Implements cockatiel's `IPolicy`, so it composes with cockatiel's and buttress's policies
 * through either library's `wrap()`; inside buttress's {@link wrap} it hands its signal to the
 * policies within it without creating it.
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
    knownKeys(opts, ['strategy', 'abortOnReturn', 'name', 'clock']);
    const strategy = oneOf(
      opts.strategy,
      'strategy',
      ['cooperative', 'aggressive', 'optimistic'],
      'aggressive',
    );
    const clock = clockOption(opts.clock);
    this.#core = {
      name: opts.name === undefined ? undefined : nonEmptyString(opts.name, 'name'),
      ms: value,
      aggressive: strategy === 'aggressive',
      abortOnReturn: bool(opts.abortOnReturn, 'abortOnReturn', true),
      clock,
      wheel: sharedTimerWheel(clock),
      success: new Emitter(),
      failure: new Emitter(),
      timeout: new Emitter(),
      timed: false,
      spread: false,
      head: undefined,
      tail: undefined,
      expiry: undefined as unknown as Expiry,
      sweeping: false,
      releasing: false,
      release: () => {
        core.releasing = false;
        if (core.head === undefined) core.wheel.cancel(core.expiry);
      },
      calls: 0,
      timeouts: 0,
    };
    const core = this.#core;
    (core as { expiry: Expiry }).expiry = new Expiry(core);
    const changed = () => {
      core.timed = core.success.size !== 0 || core.failure.size !== 0;
    };
    this.onSuccess = listenedEvent(core.success, changed);
    this.onFailure = listenedEvent(core.failure, changed);
    this.onTimeout = this.#core.timeout.event;
  }

  /** The policy's name, if it was given one. */
  get name(): string | undefined {
    return this.#core.name;
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
    return this.#start(fn, signal, false);
  }

  /** @internal The entry buttress's `wrap()` uses: the caller's signal may be deferred, `fn` gets a bare layer context. */
  [kExecute]<T>(fn: (context: LayerContext) => PromiseLike<T> | T, source: SignalSource): Promise<T> {
    return this.#start(fn as (context: unknown) => PromiseLike<T> | T, source, true);
  }

  #start<T>(fn: (context: never) => PromiseLike<T> | T, source: SignalSource, bare: boolean): Promise<T> {
    const core = this.#core;
    let parent: AbortSignal | DeferredSignal | undefined;
    // Reading `aborted` of a real AbortSignal costs a brand check: skip the never-aborting ones.
    if (canAbort(source)) {
      if (source.aborted) return Promise.reject(new AbortedError(source.reason));
      parent = source;
    }
    core.calls++;
    const now = core.clock.now();
    const call = new TimeoutCall(core, parent, now + core.ms);
    if (core.timed) call.start = now;
    enqueue(core, call);
    const context = (
      bare
        ? ({ [kSource]: call } satisfies LayerContext)
        : core.spread
          ? accessorContext({ [kSource]: call })
          : new Proxy(call, contextHandler)
    ) as never;
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

  #aggressive<T>(call: TimeoutCall, fn: (context: never) => PromiseLike<T> | T, context: never): Promise<T> {
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
      return Promise.reject(call.extras!.endedBy);
    }
    if (!(result instanceof Promise) && !isThenable(result)) {
      call.ok(result);
      return Promise.resolve(result);
    }
    const promise = new Promise<T>(capture);
    call.resolve = captured.resolve;
    call.reject = captured.reject;
    // Rejecting early needs to hear the caller's abort even when the callee never reads `signal`.
    if (call.parent !== undefined) call.follow();
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

// Its layer contexts are `{ [kSource]: call }` and nothing else (see src/core/signals.ts).
Object.defineProperty(Timeout.prototype, kNoFields, { value: true });

function ignore(): void {}

/*
 * A shared executor instead of a closure per call: `new Promise` runs it synchronously, so the
 * resolving functions can be picked up right after.
 */
const captured: { resolve: (value: unknown) => void; reject: (error: unknown) => void } = {
  resolve: ignore,
  reject: ignore,
};
function capture(resolve: (value: never) => void, reject: (error: unknown) => void): void {
  captured.resolve = resolve as (value: unknown) => void;
  captured.reject = reject;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}
