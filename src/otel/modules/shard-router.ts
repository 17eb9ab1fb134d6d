import { ShardRouter } from '../../shard-router/router.js';
import { type Bridge, type ModuleBridge, seconds } from '../bridge.js';

/*
 * buttress/shard-router. Per router (by its `name`): the map version and the logical shards each
 * node holds, read from stats() at collection; fenced transactions, stale-map rejections,
 * scatter-gathers and map changes as totals; the moves' phases, freeze durations and scatter
 * failures from the channels. No attribute carries a key or a logical shard number (unbounded); nodes are few.
 */

const NAME = 'buttress.shard_router.name';
const NODE = 'buttress.shard_router.node';

export const shardRouterBridge: ModuleBridge = {
  module: 'shard-router',
  kinds: { 'shard-router': (value) => value instanceof ShardRouter },
  install(bridge: Bridge) {
    const meter = bridge.meter;
    if (meter === undefined) return;
    const routers = bridge.tracked<ShardRouter<unknown>>('shard-router');

    const version = meter.createObservableGauge('buttress.shard_router.map.version', {
      unit: '1',
      description: 'The version of the shard map the router routes with (0 before one is loaded)',
    });
    const shards = meter.createObservableGauge('buttress.shard_router.shards', {
      unit: '{shard}',
      description: 'Logical shards each node holds in the current map',
    });
    const transactions = meter.createObservableCounter('buttress.shard_router.transactions', {
      unit: '{transaction}',
      description: 'Fenced transactions begun (first attempts)',
    });
    const stale = meter.createObservableCounter('buttress.shard_router.stale_rejections', {
      unit: '{transaction}',
      description:
        "Transactions a node's fence refused with E_STALE_SHARD_MAP (each retried on a newer map or surfaced)",
    });
    const scatters = meter.createObservableCounter('buttress.shard_router.scatters', {
      unit: '{scatter}',
      description: 'Scatter-gathers (all()) run',
    });
    const mapChanges = meter.createObservableCounter('buttress.shard_router.map.changes', {
      unit: '{change}',
      description: 'Shard maps applied (the initial one included)',
    });
    const storeErrors = meter.createObservableCounter('buttress.shard_router.store.errors', {
      unit: '{error}',
      description: 'Map store loads that failed, and pushed maps that could not be applied',
    });
    bridge.observeBatch(
      [version, shards, transactions, stale, scatters, mapChanges, storeErrors],
      (o) => {
        for (const [ref, router] of routers.live()) {
          const s = router.stats();
          if (s.closed) continue;
          const name = { [NAME]: s.name };
          o.gauge(version, name, s.mapVersion);
          for (const [node, count] of Object.entries(s.shardsPerNode)) {
            o.gauge(shards, { ...name, [NODE]: node }, count);
          }
          o.total(routers, ref, transactions, name, s.transactions);
          o.total(routers, ref, stale, name, s.staleRejections);
          o.total(routers, ref, scatters, name, s.scatters);
          o.total(routers, ref, mapChanges, name, s.mapChanges);
          o.total(routers, ref, storeErrors, name, s.storeErrors);
        }
      },
      routers,
    );

    const failures = meter.createCounter('buttress.shard_router.scatter.failures', {
      unit: '{shard}',
      description: 'Per-shard (or per-node) failures inside scatter-gathers',
    });
    bridge.subscribe('buttress:shard-router:all', (m) => {
      const { router, failures: count } = m as { router: string; failures: number };
      if (count > 0) failures.add(count, { [NAME]: router });
    });

    const phases = meter.createCounter('buttress.shard_router.move.phases', {
      unit: '{phase}',
      description:
        'Online move phases entered, by phase (prepare, copy, catch-up, freeze, final, switch, done)',
    });
    const freeze = meter.createHistogram(
      'buttress.shard_router.move.freeze.duration',
      seconds('How long a finished move held writes of its logical shard frozen, switch included'),
    );
    bridge.subscribe('buttress:shard-router:move', (m) => {
      const { router, phase, freezeMs } = m as { router: string; phase: string; freezeMs?: number };
      phases.add(1, { [NAME]: router, 'buttress.shard_router.phase': phase });
      if (phase === 'done' && freezeMs !== undefined) freeze.record(freezeMs / 1000, { [NAME]: router });
    });
  },
};
