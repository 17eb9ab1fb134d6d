import {
  type Context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isSpanContextValid,
  ROOT_CONTEXT,
  type TextMapPropagator,
  TraceFlags,
  trace,
} from '@opentelemetry/api';

/*
 * A job's trace context goes into its headers when it is added and comes out in the worker that
 * runs it, through the propagator the application configured (NodeSDK sets W3C trace context and
 * baggage). An application that set none still gets its jobs joined to their traces: with no
 * `traceparent` written by the propagator, one is written here (W3C Trace Context, version 00),
 * and read back when the propagator finds no span context.
 */

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;

/** Writes `context`'s trace context into `carrier`. */
export function injectContext(
  propagator: TextMapPropagator,
  context: Context,
  carrier: Record<string, string>,
): void {
  propagator.inject(context, carrier, defaultTextMapSetter);
  if (carrier.traceparent !== undefined) return;
  const span = trace.getSpanContext(context);
  if (span === undefined || !isSpanContextValid(span)) return;
  const flags = (span.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00';
  carrier.traceparent = `00-${span.traceId}-${span.spanId}-${flags}`;
}

/** The context `carrier` holds, on top of the root context. */
export function extractContext(
  propagator: TextMapPropagator,
  carrier: Readonly<Record<string, string>>,
): Context {
  const context = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
  if (trace.getSpanContext(context) !== undefined) return context;
  const parsed = parseTraceparent(carrier.traceparent);
  return parsed === undefined ? context : trace.setSpanContext(context, parsed);
}

/** A W3C `traceparent` as a remote span context, or undefined when it is not a valid one. */
export function parseTraceparent(value: string | undefined) {
  if (value === undefined) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (m === null || m[1] === 'ff') return undefined;
  const context = {
    traceId: m[2]!,
    spanId: m[3]!,
    traceFlags: Number.parseInt(m[4]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  return isSpanContextValid(context) ? context : undefined;
}
