import dc from 'node:diagnostics_channel';
import {
  type Attributes,
  type BatchObservableResult,
  type Context,
  context,
  diag,
  type Link,
  type Meter,
  type MetricOptions,
  type Observable,
  type Span,
  type SpanKind,
  SpanStatusCode,
  type TextMapPropagator,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { LifecycleMessage, TracedMessage } from '../core/diagnostics.js';
import { Observations, Tracked } from './tracked.js';

/*
 * What a module's bridge (./modules/<module>.ts) gets to work with: the meter and tracer (either
 * may be off), subscriptions that the instrument() handle takes back on close, the objects its
 * lifecycle channel announced, and helpers for the conventions every module shares: seconds for
 * durations, `error.type` for failures, one span per traced operation. See
 * docs/observability.md for how a new module plugs in.
 */

/** The modules instrument() bridges; a new module adds its name here and its bridge to ./modules. */
export type BridgedModule = 'cache' | 'breaker' | 'bulkhead' | 'retry' | 'pool' | 'queue' | 'shard-router';

/** Settings every module bridge may read. */
export interface BridgeSettings {
  readonly propagator: TextMapPropagator;
  /** Record cache keys on cache spans. */
  readonly cacheKeys: boolean;
  /** How a job's span relates to the span that added it. */
  readonly jobContext: 'parent' | 'link';
}

/** A module's part of the bridge. */
export interface ModuleBridge {
  /** The module, as in its channel names `buttress:<module>:<op>`. */
  readonly module: BridgedModule;
  /**
   * The kinds its lifecycle channel announces (`{ kind, instance }`), each with a test that tells
   * an object of that kind passed to `observe`.
   */
  readonly kinds: Readonly<Record<string, (value: object) => boolean>>;
  /** Creates the module's instruments and subscribes to its channels. */
  install(bridge: Bridge): void;
}

/** How {@link Bridge.spans} makes the spans of one traced operation. */
export interface SpanSpec<M> {
  /** The span's name, kind and first attributes; `parent` and `links` when not the active context. */
  describe(message: M): {
    name: string;
    kind?: SpanKind;
    attributes?: Attributes;
    parent?: Context;
    links?: Link[];
  };
  /** Called once the span is started, with the context that has it active. */
  started?(message: M, span: Span, active: Context): void;
  /** Called before the span ends (after `asyncEnd`): attributes known only then. */
  ended?(message: M, span: Span): void;
}

/** Histogram buckets for durations in seconds, from 100 µs (a Redis round trip) to 10 s. */
export const SECONDS_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The bridge of one instrument() call; see the module comment. */
export class Bridge {
  readonly meter: Meter | undefined;
  readonly tracer: Tracer | undefined;
  readonly settings: BridgeSettings;
  readonly #disposers: (() => void)[] = [];
  readonly #tracked = new Map<string, Tracked<object>>();
  readonly #kinds: [string, (value: object) => boolean][] = [];
  /** The span of each traced operation in flight, between its events. */
  readonly #spans = new WeakMap<object, Span>();
  /** The same spans, to end those still open when the handle closes (their asyncEnd would go unheard). */
  readonly #open = new Set<Span>();

  constructor(meter: Meter | undefined, tracer: Tracer | undefined, settings: BridgeSettings) {
    this.meter = meter;
    this.tracer = tracer;
    this.settings = settings;
  }

  /** Installs `module`: its lifecycle channels feed its tracked objects, then its own install. */
  install(module: ModuleBridge): void {
    for (const [kind, test] of Object.entries(module.kinds)) {
      this.#kinds.push([kind, test]);
      this.tracked(kind);
    }
    // Objects are tracked for their gauges: without a meter there is nothing to read them for.
    if (this.meter !== undefined && Object.keys(module.kinds).length > 0) {
      this.subscribe(`buttress:${module.module}:create`, (m) => {
        const { kind, instance } = m as LifecycleMessage;
        this.#tracked.get(kind)?.add(instance);
      });
      this.subscribe(`buttress:${module.module}:close`, (m) => {
        const { kind, instance } = m as LifecycleMessage;
        this.#tracked.get(kind)?.delete(instance);
      });
    }
    module.install(this);
  }

  /** The tracked objects of `kind`. */
  tracked<T extends object>(kind: string): Tracked<T> {
    let set = this.#tracked.get(kind);
    if (set === undefined) {
      set = new Tracked();
      this.#tracked.set(kind, set);
    }
    return set as Tracked<T>;
  }

  /** Tracks `instance` if an installed module knows its kind; returns whether one did. */
  observe(instance: object): boolean {
    for (const [kind, test] of this.#kinds) {
      if (test(instance)) {
        this.#tracked.get(kind)!.add(instance);
        return true;
      }
    }
    return false;
  }

  /** Subscribes to a diagnostics channel until close. */
  subscribe(name: string, handler: (message: unknown) => void): void {
    const guarded = (message: unknown) => {
      try {
        handler(message);
      } catch (error) {
        // A bug in a metric must never reach the code that published.
        diag.error(`buttress/otel: handler of ${name} failed`, error);
      }
    };
    dc.subscribe(name, guarded);
    this.#disposers.push(() => dc.unsubscribe(name, guarded));
  }

  /** Subscribes to some events of the tracing channel `tracing:<name>:*` until close. */
  subscribeTracing<M extends object>(
    name: string,
    handlers: Partial<Record<'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error', (message: M) => void>>,
  ): void {
    for (const [event, handler] of Object.entries(handlers)) {
      if (handler !== undefined) this.subscribe(`tracing:${name}:${event}`, handler as (m: unknown) => void);
    }
  }

  /**
   * Spans for the traced operation `tracing:<name>:*`: one span from `start` to `asyncEnd`,
   * child of the context active at `start` (or of `parent`), made the active context of the
   * operation's own code through the message's `withContext`. `started` sees the span and its
   * context at once (to inject it somewhere); `ended` adds what is known once the operation is over.
   */
  spans<M extends TracedMessage>(name: string, spec: SpanSpec<M>): void {
    const tracer = this.tracer;
    if (tracer === undefined) return;
    const spans = this.#spans;
    const open = this.#open;
    this.subscribeTracing<M>(name, {
      start: (message) => {
        const d = spec.describe(message);
        const parent = d.parent ?? context.active();
        const span = tracer.startSpan(
          d.name,
          { kind: d.kind, attributes: d.attributes, links: d.links },
          parent,
        );
        spans.set(message, span);
        open.add(span);
        const active = trace.setSpan(parent, span);
        const outer = message.withContext;
        message.withContext =
          outer === undefined
            ? (fn) => context.with(active, fn)
            : (fn) => outer(() => context.with(active, fn));
        spec.started?.(message, span, active);
      },
      asyncEnd: (message) => {
        const span = spans.get(message);
        if (span === undefined) return;
        spans.delete(message);
        open.delete(span);
        spec.ended?.(message, span);
        if (message.error !== undefined) failSpan(span, message.error);
        span.end();
      },
    });
  }

  /**
   * Registers a callback that reports observable instruments at each collection (every
   * observation goes through one {@link Observations}, so same-series values add up).
   */
  observeBatch(
    observables: Observable[],
    callback: (o: Observations) => void | Promise<void>,
    ...tracked: Tracked<object>[]
  ): void {
    const meter = this.meter;
    if (meter === undefined || observables.length === 0) return;
    const o = new Observations();
    const batch = async (result: BatchObservableResult) => {
      try {
        await callback(o);
      } finally {
        o.flush(result, ...tracked);
      }
    };
    meter.addBatchObservableCallback(batch, observables);
    this.#disposers.push(() => meter.removeBatchObservableCallback(batch, observables));
  }

  /** Runs `fn` on close. */
  onClose(fn: () => void): void {
    this.#disposers.push(fn);
  }

  /** Unsubscribes everything, in reverse order, and ends the spans still open. */
  close(): void {
    for (const dispose of this.#disposers.splice(0).reverse()) {
      try {
        dispose();
      } catch {
        // keep going: every subscription must go
      }
    }
    // Newest first: a child ends before its parent.
    for (const span of [...this.#open].reverse()) {
      span.setAttribute('buttress.unfinished', true);
      span.end();
    }
    this.#open.clear();
  }
}

/** Instrument options for a duration histogram in seconds. */
export function seconds(description: string): MetricOptions {
  return { unit: 's', description, advice: { explicitBucketBoundaries: SECONDS_BUCKETS } };
}

/**
 * The `error.type` of an error (OpenTelemetry's general attribute): a buttress code such as
 * `E_TIMEOUT`, else the error's name, else `_OTHER`.
 */
export function errorType(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const { code, name } = error as { code?: unknown; name?: unknown };
    if (typeof code === 'string' && code.length > 0) return code;
    if (typeof name === 'string' && name.length > 0) return name;
  }
  return '_OTHER';
}

/** `attributes` plus `error.type` when `error` is set. */
export function withError(attributes: Attributes, error: unknown): Attributes {
  return error === undefined ? attributes : { ...attributes, 'error.type': errorType(error) };
}

/** Marks a span failed by `error`. */
export function failSpan(span: Span, error: unknown): void {
  span.setAttribute('error.type', errorType(error));
  if (error instanceof Error) span.recordException(error);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
}

/** Sets the attribute only when the value is defined (OpenTelemetry attributes cannot be undefined). */
export function defined(attributes: Record<string, string | number | boolean | undefined>): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}
