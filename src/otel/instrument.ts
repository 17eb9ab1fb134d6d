import {
  type MeterProvider,
  metrics,
  propagation,
  type TextMapPropagator,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { InvalidOptionError } from '../core/errors.js';
import type { Disposable } from '../core/events.js';
import { bool, knownKeys, oneOf, optionsObject } from '../core/validate.js';
import { Bridge, type BridgedModule, type ModuleBridge } from './bridge.js';
import { breakerBridge } from './modules/breaker.js';
import { bulkheadBridge } from './modules/bulkhead.js';
import { cacheBridge } from './modules/cache.js';
import { poolBridge } from './modules/pool.js';
import { queueBridge } from './modules/queue.js';
import { retryBridge } from './modules/retry.js';
import { shardRouterBridge } from './modules/shard-router.js';

/** The instrumentation scope's name and version (the package's). */
export const SCOPE_NAME = 'buttress';
export const SCOPE_VERSION = '0.1.0';

/** Every module bridge, by module; a new module's bridge is added here (see docs/observability.md). */
const BRIDGES: readonly ModuleBridge[] = [
  cacheBridge,
  breakerBridge,
  bulkheadBridge,
  retryBridge,
  poolBridge,
  queueBridge,
  shardRouterBridge,
];

/** The modules {@link instrument} can bridge. */
export const bridgedModules: readonly BridgedModule[] = BRIDGES.map((b) => b.module);

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /**
   * Where metrics go; `false` for none.
   * @default the global meter provider (`metrics.getMeterProvider()`, set by the OpenTelemetry SDK)
   */
  meterProvider?: MeterProvider | false;
  /**
   * Where spans go; `false` for none.
   * @default the global tracer provider (`trace.getTracerProvider()`)
   */
  tracerProvider?: TracerProvider | false;
  /**
   * Writes a job's trace context into its headers and reads it back in the worker. A W3C
   * `traceparent` is written and read besides, when the propagator leaves none.
   * @default the global propagator (`propagation`)
   */
  propagator?: TextMapPropagator;
  /** The modules to bridge. @default every one: cache, breaker, bulkhead, retry, pool, queue */
  modules?: readonly BridgedModule[];
  /**
   * Objects created before `instrument()` was called, whose gauges should be reported too
   * (caches, breakers, bulkheads, limiters, clusters, queues, workers, shard routers). Objects created later are
   * found on their own. Held weakly.
   */
  observe?: readonly object[];
  /** Record cache keys on cache spans (`buttress.cache.key`); turn off when keys hold personal data. @default true */
  cacheKeys?: boolean;
  /**
   * How a job's `process` span relates to the `send` span of the add: `'parent'` (one trace from
   * the request to the job) or `'link'` (a trace of its own, linked to it, as OpenTelemetry's
   * messaging conventions suggest for jobs that run much later).
   * @default 'parent'
   */
  jobContext?: 'parent' | 'link';
}

/**
 * Bridges buttress's diagnostics channels to OpenTelemetry: metrics for every module (cache hits
 * and misses by layer, hit ratio, L2 latency, bus messages, stampede waits; breaker states and
 * transitions; limiter limits, inflight and rejections; retries, hedges, budget refusals; pool
 * connections and replica lag; queue depth, processing latency, stalls and dead letters) and spans
 * for getOrSet fills, loader calls, job adds and job runs, with a job's trace context carried from
 * `add` to its worker. See docs/otel.md for every instrument.
 *
 * Until it is called nothing is subscribed and nothing is paid; `close()` on the handle
 * unsubscribes everything again. Calling it twice gives two independent bridges.
 *
 * @example
 * import { metrics, trace } from '@opentelemetry/api';
 * import { instrument } from 'buttress/otel';
 *
 * const otel = instrument({ meterProvider: metrics.getMeterProvider(), tracerProvider: trace.getTracerProvider() });
 * // ... on shutdown:
 * otel.close();
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the option, for an invalid option or an
 *   object in `observe` that no bridged module knows.
 */
export function instrument(options?: InstrumentOptions): Instrumentation {
  return new Instrumentation(options);
}

/** The handle {@link instrument} returns: `close()` (or `using`) unsubscribes everything. */
export class Instrumentation implements Disposable {
  readonly #bridge: Bridge;
  #closed = false;

  /** @internal Use {@link instrument}. */
  constructor(options?: InstrumentOptions) {
    const o = optionsObject(options);
    knownKeys(o, [
      'meterProvider',
      'tracerProvider',
      'propagator',
      'modules',
      'observe',
      'cacheKeys',
      'jobContext',
    ]);
    const meterProvider = provider(o.meterProvider, 'meterProvider', 'getMeter', () =>
      metrics.getMeterProvider(),
    );
    const tracerProvider = provider(o.tracerProvider, 'tracerProvider', 'getTracer', () =>
      trace.getTracerProvider(),
    );
    const propagator = o.propagator ?? propagation;
    if (
      typeof propagator !== 'object' ||
      propagator === null ||
      typeof propagator.inject !== 'function' ||
      typeof propagator.extract !== 'function'
    ) {
      throw new InvalidOptionError(
        'propagator',
        propagator,
        'a TextMapPropagator ({ inject, extract, fields })',
      );
    }
    const modules = o.modules ?? bridgedModules;
    if (!Array.isArray(modules)) {
      throw new InvalidOptionError('modules', modules, `an array of ${bridgedModules.join(', ')}`);
    }
    for (let i = 0; i < modules.length; i++) oneOf(modules[i], `modules[${i}]`, bridgedModules);
    const observe = o.observe ?? [];
    if (!Array.isArray(observe))
      throw new InvalidOptionError('observe', observe, 'an array of buttress objects');
    const settings = {
      propagator,
      cacheKeys: bool(o.cacheKeys, 'cacheKeys', true),
      jobContext: oneOf(o.jobContext, 'jobContext', ['parent', 'link'], 'parent'),
    };
    this.#bridge = new Bridge(
      meterProvider?.getMeter(SCOPE_NAME, SCOPE_VERSION),
      tracerProvider?.getTracer(SCOPE_NAME, SCOPE_VERSION),
      settings,
    );
    for (const bridge of BRIDGES) if (modules.includes(bridge.module)) this.#bridge.install(bridge);
    try {
      this.observe(...observe);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reports the gauges of objects created before `instrument()` (objects created later are found
   * on their own). Held weakly: observing keeps nothing alive.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for an object no bridged module knows.
   */
  observe(...instances: object[]): this {
    instances.forEach((instance, i) => {
      if (typeof instance !== 'object' || instance === null || !this.#bridge.observe(instance)) {
        throw new InvalidOptionError(
          `observe[${i}]`,
          instance,
          'a cache, breaker, bulkhead, limiter, pg cluster, queue or worker of a bridged module',
        );
      }
    });
    return this;
  }

  /** Unsubscribes from every channel and stops reporting. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#bridge.close();
  }

  /** Same as {@link Instrumentation.close}. */
  dispose(): void {
    this.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function provider<T extends object>(
  value: T | false | undefined,
  option: string,
  method: string,
  fallback: () => T,
): T | undefined {
  if (value === false) return undefined;
  if (value === undefined) return fallback();
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as Record<string, unknown>)[method] !== 'function'
  ) {
    throw new InvalidOptionError(
      option,
      value,
      `an OpenTelemetry ${option.replace('Provider', ' provider')} with ${method}(), or false`,
    );
  }
  return value;
}
