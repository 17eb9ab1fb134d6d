import dc from 'node:diagnostics_channel';

/*
 * Every buttress module reports what it does on `node:diagnostics_channel`, the way lru-cache,
 * undici and Node's own http do: named channels a tool subscribes to, which cost one property read
 * while nobody does. Three kinds, all named after the module and the operation:
 *
 *   channel('cache', 'load')           `buttress:cache:load`: one message per event
 *   tracingChannel('cache', 'fill')    `tracing:buttress:cache:fill:{start,end,asyncStart,asyncEnd,error}`:
 *                                      an operation with a duration (spans)
 *   announce('cache', ...)             `buttress:cache:create` / `buttress:cache:close`: a long-lived
 *                                      object came or went (gauges read live objects)
 *
 * docs/observability.md lists every channel with its message fields; `buttress/otel` maps them
 * onto OpenTelemetry.
 */

/**
 * Diagnostics channels named `buttress:<module>:<op>`. Publishing is guarded by
 * `hasSubscribers`, so a channel nobody listens to costs one property read.
 *
 * @example
 * import dc from 'node:diagnostics_channel';
 * dc.subscribe('buttress:breaker:state', (msg) => console.log(msg));
 */
export function channel(module: string, op: string): dc.Channel {
  return dc.channel(`buttress:${module}:${op}`);
}

/** Publishes the message built by `build` only when the channel has subscribers. */
export function publish<T>(ch: dc.Channel, build: () => T): void {
  if (ch.hasSubscribers) ch.publish(build());
}

/**
 * What every message of a traced operation carries besides its own fields. The same object goes
 * through the operation's `start`, `end`, `asyncStart`, `asyncEnd` and `error` events, so a
 * subscriber can keep what it needs on it (a span) from one event to the next.
 */
export interface TracedMessage {
  /**
   * Set by a `start` subscriber to run the operation's own code (a loader, a job handler) inside
   * an async context of its own, when it has no AsyncLocalStorage to bind with `bindStore`:
   * OpenTelemetry's `(fn) => context.with(ctx, fn)`. Called once, synchronously; it must call
   * `fn` and return what `fn` returns.
   */
  withContext?: <R>(fn: () => R) => R;
  /** The operation's error, set before `error` is published. */
  error?: unknown;
  /** The operation's result, set before `asyncEnd` when it succeeded. */
  result?: unknown;
}

/** A tracing channel `tracing:buttress:<module>:<op>:<event>`. */
export type TracingChannel<M extends object> = dc.TracingChannel<unknown, M>;

/**
 * The tracing channel of an operation with a duration, named `tracing:buttress:<module>:<op>:*`
 * (Node's `TracingChannel` naming, so APM tools that bind stores to tracing channels work as is).
 */
export function tracingChannel<M extends object>(module: string, op: string): TracingChannel<M> {
  return dc.tracingChannel<unknown, M>(`buttress:${module}:${op}`);
}

/**
 * True when any event of `tc` has a subscriber (or a bound store). Node 20.13 has
 * `TracingChannel.hasSubscribers`; earlier Node 20 releases do not, hence the five reads, which
 * are only ever made off the hot paths.
 */
export function isTraced(tc: TracingChannel<object>): boolean {
  return (
    tc.start.hasSubscribers ||
    tc.end.hasSubscribers ||
    tc.asyncStart.hasSubscribers ||
    tc.asyncEnd.hasSubscribers ||
    tc.error.hasSubscribers
  );
}

/**
 * Runs `fn` as the synchronous part of a traced operation: `start` (with the stores bound to it
 * entered, and inside `message.withContext` when a subscriber set it), then `end`. A throw is
 * rethrown; reporting it (and the operation's end) is left to {@link traceSettled}, so that an
 * operation traced this way always ends with `asyncEnd`, whether it failed at once or later.
 */
export function traceSync<M extends TracedMessage, R>(tc: TracingChannel<M>, message: M, fn: () => R): R {
  return tc.start.runStores(message, () => {
    try {
      const scoped = message.withContext;
      return scoped === undefined ? fn() : scoped(fn);
    } finally {
      tc.end.publish(message);
    }
  });
}

/**
 * Ends a traced operation whose synchronous part ran through {@link traceSync}: `error` when it
 * failed, then `asyncStart` and `asyncEnd`.
 */
export function traceSettled<M extends TracedMessage>(
  tc: TracingChannel<M>,
  message: M,
  failed: boolean,
  outcome: unknown,
): void {
  if (failed) {
    message.error = outcome;
    tc.error.publish(message);
  } else {
    message.result = outcome;
  }
  tc.asyncStart.publish(message);
  tc.asyncEnd.publish(message);
}

/**
 * Runs `fn`, which may return a value or a promise, traced: {@link traceSync} around the call,
 * {@link traceSettled} at once for a value, or once a returned promise settles. Returns what `fn`
 * returns, so a synchronous result stays synchronous.
 */
export function traceCall<M extends TracedMessage, R>(tc: TracingChannel<M>, message: M, fn: () => R): R {
  let result: R;
  try {
    result = traceSync(tc, message, fn);
  } catch (error) {
    traceSettled(tc, message, true, error);
    throw error;
  }
  if (isThenable(result)) {
    result.then(
      (value) => traceSettled(tc, message, false, value),
      (error: unknown) => traceSettled(tc, message, true, error),
    );
  } else {
    traceSettled(tc, message, false, result);
  }
  return result;
}

/**
 * Runs an asynchronous operation traced: {@link traceSync} around the call, {@link traceSettled}
 * once its promise settles. Like `TracingChannel.tracePromise`, plus `withContext`.
 */
export function traceAsync<M extends TracedMessage, T>(
  tc: TracingChannel<M>,
  message: M,
  fn: () => T | PromiseLike<T>,
): Promise<T> {
  let result: T | PromiseLike<T>;
  try {
    result = traceSync(tc, message, fn);
  } catch (error) {
    traceSettled(tc, message, true, error);
    return Promise.reject(error);
  }
  return Promise.resolve(result).then(
    (value) => {
      traceSettled(tc, message, false, value);
      return value;
    },
    (error: unknown) => {
      traceSettled(tc, message, true, error);
      throw error;
    },
  );
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

/** The two lifecycle channels of a module: `buttress:<module>:create` and `buttress:<module>:close`. */
export interface Lifecycle {
  readonly create: dc.Channel;
  readonly close: dc.Channel;
}

/** A message of a lifecycle channel: which kind of object, and the object. */
export interface LifecycleMessage<K extends string = string, T extends object = object> {
  readonly kind: K;
  readonly instance: T;
}

/** The lifecycle channels of `module`. */
export function lifecycle(module: string): Lifecycle {
  return { create: channel(module, 'create'), close: channel(module, 'close') };
}

/**
 * Tells subscribers that a long-lived object was created or closed, so a metrics bridge can read
 * its gauges while it lives without the module keeping a registry of its own (a subscriber keeps
 * what it is told about, weakly).
 */
export function announce(ch: dc.Channel, kind: string, instance: object): void {
  if (ch.hasSubscribers) ch.publish({ kind, instance } satisfies LifecycleMessage);
}
