import { fc, test } from '@fast-check/vitest';
import { type Context, ROOT_CONTEXT, type TextMapPropagator, TraceFlags, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { describe, expect } from 'vitest';
import { extractContext, injectContext, parseTraceparent } from './propagation.js';

/*
 * A job's trace context survives the trip through its headers, with the application's propagator
 * or with none at all (the built-in traceparent fallback), and nothing that is not a valid W3C
 * traceparent is taken for one.
 */

const hex = (length: number) =>
  fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`)).filter((s) => !/^0+$/.test(s));
const spanContext = fc.record({
  traceId: hex(32),
  spanId: hex(16),
  traceFlags: fc.constantFrom(TraceFlags.NONE, TraceFlags.SAMPLED),
});

/** A propagator that does nothing, like the API's default when no SDK registered one. */
const noop: TextMapPropagator = { inject() {}, extract: (context: Context) => context, fields: () => [] };

describe('job trace context', () => {
  test.prop([spanContext, fc.constantFrom(noop, new W3CTraceContextPropagator())])(
    'a span context written into headers is read back as the same trace and span, remote',
    (span, propagator) => {
      const headers: Record<string, string> = {};
      injectContext(propagator, trace.setSpanContext(ROOT_CONTEXT, { ...span, isRemote: false }), headers);
      expect(headers.traceparent).toBeDefined();
      const back = trace.getSpanContext(extractContext(propagator, headers));
      expect(back).toMatchObject({ ...span, isRemote: true });
    },
  );

  test.prop([fc.string({ maxLength: 80 })])('only a valid W3C traceparent is taken for one', (value) => {
    const parsed = parseTraceparent(value);
    if (parsed === undefined) return;
    expect(value.trim()).toMatch(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    expect(value.trim().startsWith('ff')).toBe(false);
    expect(parsed.traceId).not.toMatch(/^0+$/);
    expect(parsed.spanId).not.toMatch(/^0+$/);
  });

  test.prop([spanContext])('an all-zero id or version ff is refused', (span) => {
    expect(parseTraceparent(`00-${'0'.repeat(32)}-${span.spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${span.traceId}-${'0'.repeat(16)}-01`)).toBeUndefined();
    expect(parseTraceparent(`ff-${span.traceId}-${span.spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${span.traceId}-${span.spanId}-01`)).toBeDefined();
  });

  test.prop([fc.dictionary(fc.string(), fc.string())])(
    'headers without a trace context give the root context',
    (headers) => {
      delete headers.traceparent;
      expect(trace.getSpanContext(extractContext(noop, headers))).toBeUndefined();
    },
  );
});
