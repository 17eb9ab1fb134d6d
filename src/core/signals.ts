import { noop as cockatielNoop } from 'cockatiel';
import { neverAbortedSignal } from './abort.js';

/*
 * Signals without the cost of signals.
 *
 * Creating an AbortSignal is the dominant cost of a policy call on Node 20: 2.5 to 5 µs, because
 * Node builds each one as an EventTarget and then swaps its prototype, while a timer costs about
 * 0.6 µs and a whole closed-breaker call under 30 ns. Everything here exists so that a stack of
 * policies creates a signal only when the function at the bottom actually reads one:
 *
 * - `canAbort` tells a signal that can abort from the shared never-aborting ones (ours, and the
 *   one cockatiel's policies hand down when their caller gave none), so that a policy can take
 *   its no-signal fast path for them;
 * - a `DeferredSignal` is a signal that does not exist yet: its state can be read and watched for
 *   free, and the AbortSignal is created on first read of `.signal`;
 * - `kExecute` is the entry through which buttress policies hand deferred signals to one another
 *   inside buttress's `wrap()`; a `ContextFactory` builds the `{ signal }` context handed to user
 *   code, whose `signal` is created on first read and survives cockatiel's object-spread merge.
 */

// cockatiel's policies pass their own never-aborted signal down when their caller gave none (its
// retry always passes one). cockatiel does not export it; learn which object it is by asking its
// `noop` policy, which calls back synchronously with that signal.
let cockatielNever: AbortSignal | undefined;
void cockatielNoop.execute(({ signal }) => {
  if (signal instanceof AbortSignal && !signal.aborted) cockatielNever = signal;
});

/**
 * True when `signal` can ever abort: it is defined and is not one of the shared never-aborting
 * signals (buttress's `neverAbortedSignal`, cockatiel's internal one). A policy may treat a
 * signal for which this is false exactly like no signal at all.
 *
 * What it cannot see: a never-aborting signal of some other origin (or of a second copy of
 * cockatiel in the dependency tree), which is then treated as a signal that can abort: slower,
 * never wrong.
 */
export function canAbort<S extends AbortSignal | DeferredSignal>(signal: S | undefined): signal is S {
  return signal !== undefined && signal !== neverAbortedSignal && signal !== cockatielNever;
}

/** @internal The never-aborted signal cockatiel hands down, when it could be learned (for tests). */
export function cockatielNeverAbortedSignal(): AbortSignal | undefined {
  return cockatielNever;
}

/** @internal Brand of {@link DeferredSignal}. */
export const kDeferred: unique symbol = Symbol.for('buttress.deferredSignal.v1') as never;

/**
 * @internal An abort signal that may not exist yet. Its state (`aborted`, `reason`) can be read
 * and watched (`subscribe`) without creating anything; reading `signal` creates the AbortSignal
 * (once), already aborted if the deferred signal has aborted. Implemented by a timeout's call and
 * a hedge's attempt; consumed by the policies inside them.
 */
export interface DeferredSignal {
  readonly [kDeferred]: true;
  /** True once aborted, whether or not the AbortSignal exists. */
  readonly aborted: boolean;
  /** Why it aborted (undefined while it has not). */
  readonly reason: unknown;
  /** The AbortSignal, created on first read. */
  readonly signal: AbortSignal;
  /**
   * Calls `listener` once, when it aborts (never if it already has: check `aborted` first).
   * Creates no AbortSignal. Returns a function that removes the listener.
   */
  subscribe(listener: (reason: unknown) => void): () => void;
}

/** @internal What a policy receives as its caller's signal inside buttress's `wrap()`. */
export type SignalSource = AbortSignal | DeferredSignal | undefined;

/** @internal True for a {@link DeferredSignal}. */
export function isDeferred(source: SignalSource): source is DeferredSignal {
  return source !== undefined && (source as Partial<DeferredSignal>)[kDeferred] === true;
}

/** @internal The AbortSignal of `source`, creating it if `source` is deferred. */
export function materialize(source: SignalSource): AbortSignal | undefined {
  return source !== undefined && (source as Partial<DeferredSignal>)[kDeferred] === true
    ? (source as DeferredSignal).signal
    : (source as AbortSignal | undefined);
}

/**
 * @internal Calls `listener` once when `source` aborts; returns a function removing it. Creates
 * no signal. A source that cannot abort costs nothing. Check `source.aborted` first: a source
 * that has already aborted never calls back.
 */
export function listen(source: SignalSource, listener: (reason: unknown) => void): () => void {
  if (!canAbort(source)) return noop;
  if ((source as Partial<DeferredSignal>)[kDeferred] === true) {
    return (source as DeferredSignal).subscribe(listener);
  }
  const signal = source as AbortSignal;
  const onAbort = () => listener(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/**
 * @internal Where a context object keeps its signal source: a {@link DeferredSignal}, an
 * AbortSignal, or undefined for none. Read by the contexts' `signal` and by `wrap()`.
 */
export const kSource: unique symbol = Symbol.for('buttress.signalSource.v1') as never;

/**
 * @internal The fast entry of a buttress policy, used by buttress's `wrap()`: like `execute`,
 * but the caller's signal may be deferred, and `fn` receives a bare layer context that the caller
 * owns: a fresh plain object whose `[kSource]` is the signal the policy hands inward and whose
 * other enumerable keys (`attempt`, ...) are the policy's context fields.
 */
export const kExecute: unique symbol = Symbol.for('buttress.policy.execute.v1') as never;

/**
 * @internal Set (to true) by a {@link NativePolicy} whose layer contexts carry no field besides
 * `[kSource]` (a timeout's), so `wrap()` need not look for any.
 */
export const kNoFields: unique symbol = Symbol.for('buttress.policy.noFields.v1') as never;

/** @internal A policy that implements {@link kExecute}. */
export interface NativePolicy {
  [kExecute]<T>(fn: (context: LayerContext) => PromiseLike<T> | T, source: SignalSource): Promise<T>;
}

/** @internal The context a {@link NativePolicy} hands to `fn`. */
export interface LayerContext {
  [kSource]: SignalSource;
  [key: string]: unknown;
}

/** @internal True when `policy` implements {@link kExecute}. */
export function isNativePolicy(policy: unknown): policy is NativePolicy {
  return typeof (policy as Partial<NativePolicy> | null)?.[kExecute] === 'function';
}

function resolveSignal(target: LayerContext): AbortSignal {
  const own = (target as { signal?: AbortSignal }).signal;
  if (own !== undefined) return own;
  return materialize(target[kSource]) ?? neverAbortedSignal;
}

function signalGetter(this: { signal: AbortSignal }): AbortSignal {
  return this.signal;
}

/** Own keys of a context as spread sees them: the target's, and `signal`. */
function contextKeys(target: object): (string | symbol)[] {
  const keys = Reflect.ownKeys(target);
  if (!keys.includes('signal')) keys.push('signal');
  return keys;
}

/*
 * A context handed to user code must have `signal` as an OWN ENUMERABLE property: cockatiel's
 * wrap() merges contexts with `{ ...context, ...next }`, which copies own properties only, so a
 * getter on a prototype would silently hand the callee the outer signal. Two ways to get one,
 * each fast at one thing:
 *
 * - a Proxy over the plain target: ~15 ns to create, but object spread over a proxy runs its
 *   traps from the runtime, ~2.5 µs;
 * - an own accessor made with `Object.defineProperty`: ~130 ns to create (it always goes through
 *   the runtime; an object literal with a getter costs ~400 ns), and spread as fast as any object.
 *
 * `ContextFactory` starts with proxies and switches, for good, to own accessors the first time
 * one of its contexts is enumerated (its `ownKeys` trap runs): the policy is evidently inside a
 * spread-merging wrap, or handed to code that copies its context. Both kinds behave the same.
 */
const baseHandler: ProxyHandler<LayerContext> = {
  get(target, key) {
    return key === 'signal'
      ? resolveSignal(target)
      : (target as unknown as Record<PropertyKey, unknown>)[key];
  },
  set(target, key, value) {
    (target as unknown as Record<PropertyKey, unknown>)[key] = value;
    return true;
  },
  has(target, key) {
    return key === 'signal' || key in target;
  },
  ownKeys: contextKeys,
  getOwnPropertyDescriptor(target, key) {
    if (key === 'signal' && !Object.hasOwn(target, 'signal')) {
      return { get: signalGetter, set: undefined, enumerable: true, configurable: true };
    }
    return Reflect.getOwnPropertyDescriptor(target, key);
  },
};

/** `signal` as an own enumerable accessor, created from `[kSource]` on first read. */
const accessor: PropertyDescriptor = {
  get(this: LayerContext): AbortSignal {
    return materialize(this[kSource]) ?? neverAbortedSignal;
  },
  set(this: LayerContext, value: unknown) {
    Object.defineProperty(this, 'signal', { value, writable: true, enumerable: true, configurable: true });
  },
  enumerable: true,
  configurable: true,
};

/** @internal Gives `target` an own enumerable `signal` accessor (see {@link ContextFactory}). */
export function accessorContext<C>(target: LayerContext): C {
  return Object.defineProperty(target, 'signal', accessor) as unknown as C;
}

/**
 * @internal Turns layer contexts into contexts for user code: every key of the target, plus
 * `signal`, created from `target[kSource]` on first read (buttress's never-aborted signal when the
 * source is undefined); assigning `signal` stores a plain value. One factory per policy: it picks
 * the cheaper representation for how the policy's contexts are used (see above).
 */
export class ContextFactory {
  /** Whether a context of this factory has been enumerated (spread, `Object.keys`). */
  spread = false;
  readonly #handler: ProxyHandler<LayerContext>;

  constructor() {
    const observe = (target: LayerContext) => {
      this.spread = true;
      return contextKeys(target);
    };
    this.#handler = { ...baseHandler, ownKeys: observe };
  }

  create<C>(target: LayerContext): C {
    return this.spread ? accessorContext(target) : (new Proxy(target, this.#handler) as unknown as C);
  }
}

/** @internal A context over `target` from a throwaway factory (always a proxy). */
export function lazyContext<C>(target: LayerContext): C {
  return new Proxy(target, baseHandler) as unknown as C;
}

function noop(): void {}
