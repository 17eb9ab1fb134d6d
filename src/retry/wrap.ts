import type { IDefaultPolicyContext, IMergedPolicy, IPolicy } from 'cockatiel';
import { neverAbortedSignal } from '../core/abort.js';
import { InvalidOptionError } from '../core/errors.js';
import {
  ContextFactory,
  isDeferred,
  isNativePolicy,
  kExecute,
  kNoFields,
  kSource,
  type LayerContext,
  materialize,
  type NativePolicy,
  type SignalSource,
} from '../core/signals.js';

/** cockatiel's type of a wrap of two policies, so that ours infers exactly as cockatiel's does. */
type MergePolicies<A, B> =
  A extends IPolicy<infer A1, any>
    ? B extends IPolicy<infer B1, any>
      ? IMergedPolicy<
          A1 & B1,
          A['_altReturn'] | B['_altReturn'],
          B extends IMergedPolicy<any, any, infer W> ? [A, ...W] : [A, B]
        >
      : never
    : never;

type AnyPolicy = IPolicy<IDefaultPolicyContext, unknown>;

/** What a wrap runs: its layers, which of them are buttress's, and how it makes contexts. */
interface Plan {
  readonly layers: AnyPolicy[];
  /** Per layer: its `[kExecute]` when it is a buttress policy. */
  readonly native: (NativePolicy[typeof kExecute] | undefined)[];
  /** Per layer: whether its contexts may carry fields (`attempt`, ...) to merge. */
  readonly fields: boolean[];
  readonly contexts: ContextFactory;
}

function planOf(layers: AnyPolicy[]): Plan {
  return {
    layers,
    native: layers.map((p) => (isNativePolicy(p) ? p[kExecute] : undefined)),
    fields: layers.map((p) => !(isNativePolicy(p) && (p as { [kNoFields]?: boolean })[kNoFields] === true)),
    contexts: new ContextFactory(),
  };
}
type Context = Record<string, unknown> & { [kSource]?: SignalSource };

/**
 * Composes policies, the first outermost, like cockatiel's `wrap()` and with its types: the
 * function receives the merged context of every layer (`attempt` from a retry, `signal` from the
 * innermost policy that gives one), and `wrap(retry, breaker, timeout)` retries what the breaker
 * and the timeout reject. Any cockatiel `IPolicy` can be a layer, buttress's or cockatiel's.
 *
 * The difference is the cost. cockatiel's `wrap()` merges each layer's context with object spread,
 * which reads every `signal`, and a signal costs microseconds to create on Node 20; it also hands
 * each policy the outer layer's signal, real. This one threads signals from layer to layer without
 * creating them: between buttress's policies a signal is a deferred handle (a timeout's call),
 * and the function's context creates the AbortSignal only when the function reads `signal`.
 * A cockatiel policy in the stack receives a real signal (created then, if the layers outside it
 * made one), as cockatiel's own `wrap()` would give it.
 *
 * The signal the function sees aborts when any layer's does: an outer timeout's deadline, the
 * caller's abort, a hedge's lost race.
 *
 * @example
 * import { circuitBreaker } from 'buttress/breaker';
 * import { retry, timeout, wrap } from 'buttress/retry';
 * import { ExponentialBackoff } from 'cockatiel';
 * const policy = wrap(retry({ maxAttempts: 3, backoff: new ExponentialBackoff() }), circuitBreaker(), timeout('2s'));
 * const user = await policy.execute(({ signal, attempt }) => fetch(url, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming `policies[i]` when a layer is not a policy.
 */
export function wrap<A extends AnyPolicy>(p1: A): A;
export function wrap<A extends AnyPolicy, B extends AnyPolicy>(p1: A, p2: B): MergePolicies<A, B>;
export function wrap<A extends AnyPolicy, B extends AnyPolicy, C extends AnyPolicy>(
  p1: A,
  p2: B,
  p3: C,
): MergePolicies<C, MergePolicies<A, B>>;
export function wrap<A extends AnyPolicy, B extends AnyPolicy, C extends AnyPolicy, D extends AnyPolicy>(
  p1: A,
  p2: B,
  p3: C,
  p4: D,
): MergePolicies<D, MergePolicies<C, MergePolicies<A, B>>>;
export function wrap<
  A extends AnyPolicy,
  B extends AnyPolicy,
  C extends AnyPolicy,
  D extends AnyPolicy,
  E extends AnyPolicy,
>(
  p1: A,
  p2: B,
  p3: C,
  p4: D,
  p5: E,
): MergePolicies<E, MergePolicies<D, MergePolicies<C, MergePolicies<A, B>>>>;
export function wrap<C extends IDefaultPolicyContext, A>(...p: Array<IPolicy<C, A>>): IPolicy<C, A>;
export function wrap(...policies: AnyPolicy[]): AnyPolicy {
  if (policies.length === 0) {
    throw new InvalidOptionError('policies', policies, 'at least one policy');
  }
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i] as Partial<AnyPolicy> | null | undefined;
    if (typeof p !== 'object' || p === null || typeof p.execute !== 'function') {
      throw new InvalidOptionError(
        `policies[${i}]`,
        p,
        'a policy (a cockatiel IPolicy, buttress or cockatiel)',
      );
    }
  }
  // One policy needs no wrapping; returning it keeps its own type honest (cockatiel's returns a
  // wrapper typed as the policy).
  if (policies.length === 1) return policies[0]!;
  return new PolicyWrap(policies);
}

/** What {@link wrap} returns for two or more policies, typed as cockatiel's `IMergedPolicy`. */
export class PolicyWrap implements IMergedPolicy<IDefaultPolicyContext, unknown, AnyPolicy[]> {
  declare readonly _altReturn: unknown;
  /** The layers, outermost first. */
  readonly wrapped: AnyPolicy[];
  /** The outermost layer's `onSuccess`, as cockatiel's wrap. */
  readonly onSuccess: AnyPolicy['onSuccess'];
  /** The outermost layer's `onFailure`, as cockatiel's wrap. */
  readonly onFailure: AnyPolicy['onFailure'];
  readonly #plan: Plan;

  constructor(policies: AnyPolicy[]) {
    this.wrapped = policies;
    this.#plan = planOf(policies);
    this.onSuccess = policies[0]!.onSuccess;
    this.onFailure = policies[0]!.onFailure;
  }

  /**
   * Runs `fn` through every layer, the first outermost. `fn` receives the merged context; its
   * `signal` is created when read, and aborts when `signal` (the caller's) or any layer aborts.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return Promise.resolve(
      runLayer(this.#plan, 0, fn as (context: unknown) => PromiseLike<T> | T, false, undefined, signal),
    );
  }

  /** @internal A wrap inside a wrap: passes deferred signals through and hands `fn` a bare layer context. */
  [kExecute]<T>(fn: (context: LayerContext) => PromiseLike<T> | T, source: SignalSource): Promise<T> {
    return Promise.resolve(
      runLayer(this.#plan, 0, fn as (context: unknown) => PromiseLike<T> | T, true, undefined, source),
    );
  }
}

/**
 * Runs layer `i` around the layers inside it. `extras` holds the context fields gathered from the
 * outer layers (an object whose enumerable keys other than `signal` are fields), `source` the
 * signal the outer layer hands inward (deferred between buttress policies).
 */
function runLayer<T>(
  plan: Plan,
  i: number,
  fn: (context: unknown) => PromiseLike<T> | T,
  bare: boolean,
  extras: Context | undefined,
  source: SignalSource,
): PromiseLike<T> {
  const layer = plan.layers[i]!;
  const native = plan.native[i];
  const fields = plan.fields[i]!;
  const last = i === plan.layers.length - 1;
  // One call site for both kinds of layer, and the step inline: tools that keep function names
  // (tsx, esbuild's keepNames) would rename a closure assigned to a local on every call.
  return (native ?? (layer.execute as unknown as NativePolicy[typeof kExecute])).call(
    layer,
    (context: Context): PromiseLike<T> | T => {
      // A buttress layer names its inward signal in [kSource] (deferred, or not created yet); any
      // other policy's context carries a real one in `signal`.
      const inward = kSource in context ? context[kSource] : (context.signal as AbortSignal | undefined);
      const merged = fields ? gather(extras, context, native !== undefined) : extras;
      if (!last) return runLayer(plan, i + 1, fn, bare, merged, inward);
      return fn(finalContext(plan, context, native !== undefined, merged, inward, bare));
    },
    native === undefined ? materialize(source) : source,
  ) as PromiseLike<T>;
}

/** True when `context` has an enumerable key other than `signal`. */
function hasFields(context: Context): boolean {
  for (const key in context) if (key !== 'signal') return true;
  return false;
}

/**
 * The fields of the outer layers merged with those of `context`, inner winning, as cockatiel's
 * spread merge does, but never reading `signal`. A buttress layer's context is owned by the wrap
 * and can be adopted as it is.
 */
function gather(outer: Context | undefined, context: Context, owned: boolean): Context | undefined {
  // Adopting a context without fields costs nothing either: only its fields are ever read.
  if (outer === undefined && owned) return context;
  if (!hasFields(context)) return outer;
  const merged: Context = {};
  if (outer !== undefined) copyFields(outer, merged, true);
  copyFields(context, merged, true);
  return merged;
}

function copyFields(from: Context, to: Context, overwrite: boolean): void {
  for (const key in from) {
    if (key !== 'signal' && (overwrite || !(key in to))) to[key] = from[key];
  }
}

/** Builds the context the wrapped function receives from the innermost layer's. */
function finalContext(
  plan: Plan,
  context: Context,
  owned: boolean,
  fields: Context | undefined,
  source: SignalSource,
  bare: boolean,
): unknown {
  let target: Context;
  if (owned) {
    // The innermost layer's own bare context: add the outer fields it lacks.
    target = context;
    if (fields !== undefined && fields !== context) copyFields(fields, target, false);
  } else {
    // A cockatiel policy's context carries a real signal: nothing to defer.
    if (!bare && fields === undefined) return context;
    target = {};
    if (fields !== undefined) copyFields(fields, target, true);
    target[kSource] = source;
  }
  if (bare) {
    target[kSource] = source;
    return target;
  }
  if (isDeferred(source)) return plan.contexts.create(target as LayerContext);
  target.signal = source ?? neverAbortedSignal;
  return target;
}
