import dc from 'node:diagnostics_channel';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Attributes, type ContextManager, context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

/*
 * The OpenTelemetry SDK's in-memory pieces for the bridge's tests: the in-memory metric exporter
 * behind a reader flushed on demand, the in-memory span exporter, an AsyncLocalStorage context manager (what NodeSDK
 * installs), and the list of every buttress diagnostics channel, read from the source.
 */

/** One data point as the tests read it. */
export interface Point {
  readonly attributes: Attributes;
  readonly value: number | { count: number; sum?: number; min?: number; max?: number };
}

/** An SDK meter and tracer provider, with helpers to read what they got. */
export class Telemetry {
  readonly metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  /** Exports only when flushed: each `collect()` is one collection. */
  readonly reader = new PeriodicExportingMetricReader({
    exporter: this.metricExporter,
    exportIntervalMillis: 2 ** 31 - 1,
  });
  readonly meterProvider = new MeterProvider({ readers: [this.reader] });
  readonly exporter = new InMemorySpanExporter();
  readonly tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(this.exporter)],
  });
  readonly tracer = this.tracerProvider.getTracer('test');

  /** Every metric of one collection, by name. */
  async collect(): Promise<Map<string, Point[]>> {
    await this.reader.forceFlush();
    const exported = this.metricExporter.getMetrics();
    this.metricExporter.reset();
    const out = new Map<string, Point[]>();
    for (const scope of exported.at(-1)?.scopeMetrics ?? []) {
      for (const metric of scope.metrics) {
        const points = metric.dataPoints.map((p) => ({
          attributes: p.attributes,
          value: p.value as Point['value'],
        }));
        out.set(metric.descriptor.name, [...(out.get(metric.descriptor.name) ?? []), ...points]);
      }
    }
    return out;
  }

  /** The points of `name` whose attributes include `match`. */
  async points(name: string, match: Attributes = {}): Promise<Point[]> {
    const all = (await this.collect()).get(name) ?? [];
    return all.filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v));
  }

  /** The one value of `name` matching `match` (a sum for counters and gauges, the count for histograms). */
  async value(name: string, match: Attributes = {}): Promise<number | undefined> {
    const points = await this.points(name, match);
    if (points.length === 0) return undefined;
    let total = 0;
    for (const p of points) total += typeof p.value === 'number' ? p.value : p.value.count;
    return total;
  }

  /** Finished spans. */
  spans(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }

  span(name: string): ReadableSpan {
    const found = this.spans().filter((s) => s.name === name);
    if (found.length !== 1) {
      throw new Error(
        `expected one span "${name}", found ${found.length}: ${this.spans().map((s) => s.name)}`,
      );
    }
    return found[0]!;
  }

  async shutdown(): Promise<void> {
    await this.meterProvider.shutdown();
    await this.tracerProvider.shutdown();
  }
}

let manager: ContextManager | undefined;

/** Installs an AsyncLocalStorage context manager as the global one (as NodeSDK does). */
export function useContextManager(): void {
  manager ??= new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(manager);
}

/** Removes it again. */
export function dropContextManager(): void {
  context.disable();
  manager = undefined;
}

/** The id of a span's parent (SDK 2: `parentSpanContext`). */
export function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

const root = new URL('../..', import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') && !path.includes('.test') ? [path] : [];
  });
}

/**
 * Every diagnostics channel the source declares, found by the helpers of src/core/diagnostics.ts:
 * `channel('m', 'op')`, `tracingChannel<...>('m', 'op')` (five channels each) and
 * `lifecycle('m')` (create and close).
 */
export function declaredChannels(): { plain: string[]; traced: string[]; lifecycle: string[] } {
  const plain = new Set<string>();
  const traced = new Set<string>();
  const life = new Set<string>();
  for (const file of sourceFiles(join(root, 'src'))) {
    if (file.includes('/otel/') || file.endsWith('core/diagnostics.ts')) continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bchannel\('([a-z0-9-]+)', '([a-z0-9-]+)'\)/g))
      plain.add(`buttress:${m[1]}:${m[2]}`);
    for (const m of text.matchAll(/\btracingChannel(?:<[^>]*>)?\('([a-z0-9-]+)', '([a-z0-9-]+)'\)/g)) {
      traced.add(`buttress:${m[1]}:${m[2]}`);
    }
    for (const m of text.matchAll(/\blifecycle\('([a-z0-9-]+)'\)/g)) {
      life.add(`buttress:${m[1]}:create`);
      life.add(`buttress:${m[1]}:close`);
    }
  }
  return { plain: [...plain].sort(), traced: [...traced].sort(), lifecycle: [...life].sort() };
}

/** Every channel name, the five events of each tracing channel spelled out. */
export function allChannelNames(): string[] {
  const { plain, traced, lifecycle } = declaredChannels();
  const events = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'];
  return [...plain, ...lifecycle, ...traced.flatMap((t) => events.map((e) => `tracing:${t}:${e}`))];
}

/** The names among `names` that have a subscriber now. */
export function subscribed(names: readonly string[]): string[] {
  return names.filter((n) => dc.hasSubscribers(n));
}
