import { SpanKind } from '@opentelemetry/api';
import { Cache } from '../../cache/cache.js';
import type { CacheFillMessage, CacheL2Message, CacheLoaderMessage, CacheStats } from '../../cache/types.js';
import { type Bridge, defined, type ModuleBridge, seconds, withError } from '../bridge.js';

/*
 * buttress/cache. Hit and miss counts come from each cache's stats() at collection time, so an L1
 * hit (a ~60 ns path) pays nothing for being counted; what has a duration or an error (loads, L2
 * calls) comes from the channels.
 */

const NAME = 'buttress.cache.name';
const LAYER = 'buttress.cache.layer';

export const cacheBridge: ModuleBridge = {
  module: 'cache',
  kinds: { cache: (value) => value instanceof Cache },
  install(bridge: Bridge) {
    installMetrics(bridge);
    installSpans(bridge);
  },
};

function installMetrics(bridge: Bridge): void {
  const meter = bridge.meter;
  if (meter === undefined) return;
  const caches = bridge.tracked<Cache>('cache');

  const hits = meter.createObservableCounter('buttress.cache.hits', {
    unit: '{hit}',
    description: 'Lookups answered from the cache, by layer (l1, l2, or grace: a stale value served)',
  });
  const misses = meter.createObservableCounter('buttress.cache.misses', {
    unit: '{miss}',
    description:
      'Lookups that found no usable value in L1 or L2, by the last layer asked (l2 when the cache has one, else l1) and operation: get (and has), getOrSet (one per load, however many callers waited on it)',
  });
  const hitRatio = meter.createObservableGauge('buttress.cache.hit_ratio', {
    unit: '1',
    description: 'Hits / (hits + misses) since the previous collection',
  });
  const loads = meter.createObservableCounter('buttress.cache.loads', {
    unit: '{load}',
    description: 'Loader runs, by outcome (ok, error)',
  });
  const waits = meter.createObservableCounter('buttress.cache.stampede.waits', {
    unit: '{wait}',
    description:
      'getOrSet calls that waited for a load instead of running their own: local (joined a load in this instance) or fleet (looked at another instance’s lease)',
  });
  const dropped = meter.createObservableCounter('buttress.cache.fills.dropped', {
    unit: '{fill}',
    description: 'Loads whose value was returned but not cached: a write or invalidation won the race',
  });
  const busMessages = meter.createObservableCounter('buttress.cache.bus.messages', {
    unit: '{message}',
    description: 'Invalidation messages received from other instances',
  });
  const busGaps = meter.createObservableCounter('buttress.cache.bus.gaps', {
    unit: '{gap}',
    description: 'Times the bus subscriber went down or came back (L1 distrusted each time)',
  });
  const busConnected = meter.createObservableGauge('buttress.cache.bus.connected', {
    unit: '1',
    description: '1 while the invalidation bus is subscribed, else 0',
  });
  const entries = meter.createObservableGauge('buttress.cache.l1.entries', {
    unit: '{entry}',
    description: 'Entries held in L1',
  });
  const bytes = meter.createObservableGauge('buttress.cache.l1.size', {
    unit: 'By',
    description: 'Estimated bytes held in L1 (0 unless L1 is bounded by bytes)',
  });
  const degraded = meter.createObservableCounter('buttress.cache.l2.degraded_writes', {
    unit: '{write}',
    description: 'Writes that reached L1 only (Redis unreachable)',
  });

  /** Hits and misses of each cache at the previous collection, for the interval's ratio. */
  const previous = new WeakMap<Cache, { hits: number; misses: number }>();
  bridge.observeBatch(
    [
      hits,
      misses,
      hitRatio,
      loads,
      waits,
      dropped,
      busMessages,
      busGaps,
      busConnected,
      entries,
      bytes,
      degraded,
    ],
    (o) => {
      for (const [ref, cache] of caches.live()) {
        let s: CacheStats;
        try {
          s = cache.stats();
        } catch {
          continue;
        }
        const name = { [NAME]: s.namespace };
        o.total(caches, ref, hits, { ...name, [LAYER]: 'l1' }, s.l1Hits);
        o.total(caches, ref, hits, { ...name, [LAYER]: 'l2' }, s.l2Hits);
        o.total(caches, ref, hits, { ...name, [LAYER]: 'grace' }, s.gracedHits);
        // A miss is a miss of the last layer asked: L2 when there is one (an L1 miss that L2
        // answers is an L2 hit), else L1.
        const missLayer = { ...name, [LAYER]: s.l2.enabled ? 'l2' : 'l1' };
        o.total(caches, ref, misses, { ...missLayer, 'buttress.cache.operation': 'get' }, s.misses);
        o.total(caches, ref, misses, { ...missLayer, 'buttress.cache.operation': 'getOrSet' }, s.loadMisses);
        o.total(caches, ref, loads, { ...name, 'buttress.cache.outcome': 'ok' }, s.loads - s.loadErrors);
        o.total(caches, ref, loads, { ...name, 'buttress.cache.outcome': 'error' }, s.loadErrors);
        o.total(caches, ref, waits, { ...name, 'buttress.cache.wait': 'local' }, s.coalesced);
        o.total(caches, ref, waits, { ...name, 'buttress.cache.wait': 'fleet' }, s.leaseWaits);
        o.total(caches, ref, dropped, name, s.staleFillsDropped);
        o.gauge(entries, name, s.l1.entries);
        o.gauge(bytes, name, s.l1.bytes);
        if (s.l2.enabled) o.total(caches, ref, degraded, name, s.l2.degradedWrites);
        if (s.bus.enabled) {
          o.total(caches, ref, busMessages, name, s.bus.received);
          o.total(caches, ref, busGaps, name, s.bus.gaps);
          o.gauge(busConnected, name, s.bus.connected ? 1 : 0);
        }
        const hitCount = s.l1Hits + s.l2Hits + s.gracedHits;
        const missCount = s.misses + s.loadMisses;
        const before = previous.get(cache);
        previous.set(cache, { hits: hitCount, misses: missCount });
        const dh = hitCount - (before?.hits ?? 0);
        const dm = missCount - (before?.misses ?? 0);
        if (dh + dm > 0) o.gauge(hitRatio, name, dh / (dh + dm));
      }
    },
    caches,
  );

  const loadDuration = meter.createHistogram(
    'buttress.cache.load.duration',
    seconds('Duration of loader runs (getOrSet misses), by namespace and whether the value was cached'),
  );
  bridge.subscribe('buttress:cache:load', (m) => {
    const { namespace, duration, cached, error } = m as {
      namespace: string;
      duration: number;
      cached: boolean;
      error: unknown;
    };
    loadDuration.record(
      duration / 1000,
      withError({ [NAME]: namespace, 'buttress.cache.cached': cached }, error),
    );
  });

  const l2Duration = meter.createHistogram(
    'buttress.cache.l2.duration',
    seconds('Duration of Redis (L2) calls, by operation; failed ones carry error.type'),
  );
  bridge.subscribe('buttress:cache:l2', (m) => {
    const { namespace, operation, duration, error } = m as CacheL2Message;
    l2Duration.record(
      duration / 1000,
      withError({ [NAME]: namespace, 'buttress.cache.operation': operation }, error),
    );
  });

  const errors = meter.createCounter('buttress.cache.errors', {
    unit: '{error}',
    description: 'Failures that did not fail a caller (Redis, corrupt payloads, bus), by operation',
  });
  bridge.subscribe('buttress:cache:error', (m) => {
    const { namespace, operation, error } = m as { namespace: string; operation: string; error: unknown };
    errors.add(1, withError({ [NAME]: namespace, 'buttress.cache.operation': operation }, error));
  });

  const invalidations = meter.createCounter('buttress.cache.invalidations', {
    unit: '{message}',
    description: 'Invalidations from other instances applied to L1, by kind (keys, tags, clear)',
  });
  bridge.subscribe('buttress:cache:invalidate', (m) => {
    const { namespace, keys, tags } = m as { namespace: string; keys?: unknown; tags?: unknown };
    const kind = keys !== undefined ? 'keys' : tags !== undefined ? 'tags' : 'clear';
    invalidations.add(1, { [NAME]: namespace, 'buttress.cache.invalidation': kind });
  });
}

function installSpans(bridge: Bridge): void {
  const keys = bridge.settings.cacheKeys;
  bridge.spans<CacheFillMessage>('buttress:cache:fill', {
    describe: (m) => ({
      name: `getOrSet ${m.namespace}`,
      kind: SpanKind.INTERNAL,
      attributes: defined({
        [NAME]: m.namespace,
        'buttress.cache.key': keys ? m.key : undefined,
        'buttress.cache.refresh': m.refresh,
      }),
    }),
    ended: (m, span) => {
      span.setAttributes(
        defined({
          'buttress.cache.source': m.source,
          'buttress.cache.cached': m.cached,
          'buttress.cache.lease_waits': m.leaseWaits,
        }),
      );
    },
  });
  bridge.spans<CacheLoaderMessage>('buttress:cache:loader', {
    describe: (m) => ({
      name: `load ${m.namespace}`,
      kind: SpanKind.INTERNAL,
      attributes: defined({ [NAME]: m.namespace, 'buttress.cache.key': keys ? m.key : undefined }),
    }),
  });
}
