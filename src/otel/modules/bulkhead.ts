import type { Attributes } from '@opentelemetry/api';
import { AdaptiveLimiter } from '../../bulkhead/adaptive-limiter.js';
import { Bulkhead } from '../../bulkhead/bulkhead.js';
import { RateLimiter } from '../../bulkhead/rate-limiter.js';
import { type Bridge, defined, type ModuleBridge } from '../bridge.js';

/*
 * buttress/bulkhead: fixed bulkheads, adaptive limiters and rate limiters, all reported as
 * "limiters" told apart by `buttress.limiter.kind` (bulkhead, adaptive, rate). Limit, inflight and
 * queue gauges read the live objects; rejections come from the channels.
 */

const NAME = 'buttress.limiter.name';
const KIND = 'buttress.limiter.kind';
const PARTITION = 'buttress.limiter.partition';

export const bulkheadBridge: ModuleBridge = {
  module: 'bulkhead',
  kinds: {
    bulkhead: (value) => value instanceof Bulkhead,
    'adaptive-limiter': (value) => value instanceof AdaptiveLimiter,
    'rate-limiter': (value) => value instanceof RateLimiter,
  },
  install(bridge: Bridge) {
    const meter = bridge.meter;
    if (meter === undefined) return;
    const bulkheads = bridge.tracked<Bulkhead>('bulkhead');
    const adaptive = bridge.tracked<AdaptiveLimiter>('adaptive-limiter');
    const rate = bridge.tracked<RateLimiter>('rate-limiter');

    const limit = meter.createObservableGauge('buttress.limiter.limit', {
      unit: '{call}',
      description:
        'Calls that may run at once (an adaptive limiter’s current limit; per partition, its guaranteed share)',
    });
    const inflight = meter.createObservableUpDownCounter('buttress.limiter.inflight', {
      unit: '{call}',
      description: 'Calls running now',
    });
    const queued = meter.createObservableUpDownCounter('buttress.limiter.queued', {
      unit: '{call}',
      description: 'Calls waiting for a slot now',
    });
    const admitted = meter.createObservableCounter('buttress.limiter.admitted', {
      unit: '{call}',
      description: 'Calls admitted (started, or allowed by a rate limiter)',
    });
    const dropped = meter.createObservableCounter('buttress.limiter.drops', {
      unit: '{call}',
      description: 'Adaptive limiters: samples that counted as overload (the limit shrinks on them)',
    });
    bridge.observeBatch(
      [limit, inflight, queued, admitted, dropped],
      (o) => {
        /** The gauges a bulkhead and an adaptive limiter (and each partition) share. */
        const slots = (attrs: Attributes, s: { limit: number; inflight: number; queued: number }) => {
          o.gauge(limit, attrs, s.limit);
          o.gauge(inflight, attrs, s.inflight);
          o.gauge(queued, attrs, s.queued);
        };
        for (const [ref, b] of bulkheads.live()) {
          const s = b.stats();
          const attrs = { [NAME]: s.name ?? '', [KIND]: 'bulkhead' };
          slots(attrs, { limit: s.limit, inflight: s.executing, queued: s.queued });
          o.total(bulkheads, ref, admitted, attrs, s.totalExecuted);
        }
        for (const [ref, l] of adaptive.live()) {
          const s = l.stats();
          const attrs = { [NAME]: s.name ?? '', [KIND]: 'adaptive' };
          slots(attrs, s);
          o.total(adaptive, ref, admitted, attrs, s.totalExecuted);
          o.total(adaptive, ref, dropped, attrs, s.totalDropped);
          for (const [partition, p] of Object.entries(s.partitions))
            slots({ ...attrs, [PARTITION]: partition }, p);
        }
        for (const [ref, r] of rate.live()) {
          const s = r.stats();
          o.total(rate, ref, admitted, { [NAME]: s.name ?? '', [KIND]: 'rate' }, s.allowed);
        }
      },
      bulkheads,
      adaptive,
      rate,
    );

    const rejections = meter.createCounter('buttress.limiter.rejections', {
      unit: '{call}',
      description:
        'Calls rejected: full or queue-timeout (bulkheads, adaptive limiters), rate or unavailable (rate limiters)',
    });
    bridge.subscribe('buttress:bulkhead:reject', (m) => {
      const { kind, name, reason, partition } = m as {
        kind?: string;
        name?: string;
        reason: string;
        partition?: string;
      };
      rejections.add(
        1,
        defined({
          [NAME]: name ?? '',
          [KIND]: kind ?? 'bulkhead',
          'buttress.limiter.reason': reason,
          [PARTITION]: partition,
        }),
      );
    });
    bridge.subscribe('buttress:bulkhead:rate-limit', (m) => {
      // The key (a tenant, an IP) is left out on purpose: unbounded cardinality.
      const { name, reason } = m as { name?: string; reason: string };
      rejections.add(1, { [NAME]: name ?? '', [KIND]: 'rate', 'buttress.limiter.reason': reason });
    });

    const limitChanges = meter.createCounter('buttress.limiter.limit.changes', {
      unit: '{change}',
      description: 'Adaptive limiters: times the limit moved, by direction (up, down)',
    });
    bridge.subscribe('buttress:bulkhead:limit', (m) => {
      const { name, limit: next, previous } = m as { name?: string; limit: number; previous: number };
      limitChanges.add(1, {
        [NAME]: name ?? '',
        [KIND]: 'adaptive',
        'buttress.limiter.direction': next > previous ? 'up' : 'down',
      });
    });
  },
};
