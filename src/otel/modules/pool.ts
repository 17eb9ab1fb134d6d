import { PgCluster, type PgNodeStats } from '../../pool/cluster.js';
import { type Bridge, type ModuleBridge, seconds, withError } from '../bridge.js';

/*
 * buttress/pool. Per-node gauges (connections, waiting callers, replica lag, health) read each
 * cluster's stats(); the connection metrics use OpenTelemetry's database client names
 * (`db.client.connection.*`), with `db.client.connection.pool.name` = `<cluster>/<node>`.
 * Ejections, errors and statement durations come from the channels.
 *
 * Statement durations cost something: while `buttress:pool:query` has a subscriber, every
 * statement takes the cluster's general path (an async frame, a clock read) instead of its
 * callback-only one. Leave the module out of instrument() (`modules`) to avoid it.
 */

const POOL = 'db.client.connection.pool.name';
const CLUSTER = 'buttress.pool.cluster';
const NODE = 'buttress.pool.node';

const poolName = (cluster: string, node: string) => `${cluster}/${node}`;

export const poolBridge: ModuleBridge = {
  module: 'pool',
  kinds: { 'pg-cluster': (value) => value instanceof PgCluster },
  install(bridge: Bridge) {
    const meter = bridge.meter;
    if (meter === undefined) return;
    const clusters = bridge.tracked<PgCluster>('pg-cluster');

    const connections = meter.createObservableUpDownCounter('db.client.connection.count', {
      unit: '{connection}',
      description: 'Connections of each node’s pool, by state (idle, used)',
    });
    const max = meter.createObservableUpDownCounter('db.client.connection.max', {
      unit: '{connection}',
      description: 'Most connections each node’s pool may open',
    });
    const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
      unit: '{request}',
      description: 'Callers waiting for a connection of each node',
    });
    const timeouts = meter.createObservableCounter('db.client.connection.timeouts', {
      unit: '{timeout}',
      description: 'Waits for a connection that ended in E_POOL_TIMEOUT',
    });
    const rejected = meter.createObservableCounter('buttress.pool.rejected', {
      unit: '{request}',
      description: 'Callers refused at once with E_POOL_FULL (maxWaiting reached)',
    });
    const lag = meter.createObservableGauge('buttress.pool.replica.lag', {
      unit: 's',
      description: 'Estimated replication lag of each replica',
    });
    const healthy = meter.createObservableGauge('buttress.pool.node.healthy', {
      unit: '1',
      description: '1 while the node’s last health check succeeded, else 0',
    });
    const ejected = meter.createObservableGauge('buttress.pool.node.ejected', {
      unit: '1',
      description:
        '1 while a replica serves no reads (lag, unreachable, not a standby, breaker open), else 0',
    });
    const routed = meter.createObservableCounter('buttress.pool.statements', {
      unit: '{statement}',
      description: 'Statements routed, by route: write, forced-primary, read-replica, read-primary',
    });
    const fallbacks = meter.createObservableCounter('buttress.pool.fallbacks', {
      unit: '{read}',
      description:
        'Reads sent to the primary for want of a replica, by reason: ryw (none had replayed the session’s writes) or no-replica (none healthy)',
    });
    const failovers = meter.createObservableCounter('buttress.pool.failovers', {
      unit: '{statement}',
      description: 'Reads run again on the primary after their replica failed',
    });
    bridge.observeBatch(
      [connections, max, pending, timeouts, rejected, lag, healthy, ejected, routed, fallbacks, failovers],
      (o) => {
        for (const [ref, cluster, open] of clusters.live()) {
          const s = cluster.stats();
          // An ended cluster is read once more for its totals; its gauges are no longer true.
          const live = open && !s.closed;
          for (const node of [s.primary, ...s.replicas]) observeNode(o, clusters, ref, s.name, node, live);
          const c = { [CLUSTER]: s.name };
          const r = s.routing;
          const route = (name: string) => ({ ...c, 'buttress.pool.route': name });
          o.total(clusters, ref, routed, route('write'), r.writes);
          o.total(clusters, ref, routed, route('forced-primary'), r.forcedPrimary);
          o.total(clusters, ref, routed, route('read-replica'), r.readsOnReplica);
          o.total(clusters, ref, routed, route('read-primary'), r.readsOnPrimary);
          o.total(clusters, ref, fallbacks, { ...c, 'buttress.pool.reason': 'ryw' }, r.rywFallbacks);
          o.total(
            clusters,
            ref,
            fallbacks,
            { ...c, 'buttress.pool.reason': 'no-replica' },
            r.noReplicaFallbacks,
          );
          o.total(clusters, ref, failovers, c, r.failovers);
        }

        function observeNode(
          obs: typeof o,
          set: typeof clusters,
          ref: WeakRef<PgCluster>,
          cluster: string,
          node: PgNodeStats,
          live: boolean,
        ): void {
          const attrs = {
            [POOL]: poolName(cluster, node.name),
            [CLUSTER]: cluster,
            [NODE]: node.name,
            'buttress.pool.role': node.role,
          };
          obs.total(set, ref, timeouts, attrs, node.timeouts);
          obs.total(set, ref, rejected, attrs, node.rejectedFull);
          if (!live) return;
          obs.gauge(connections, { ...attrs, 'db.client.connection.state': 'idle' }, node.idle);
          obs.gauge(connections, { ...attrs, 'db.client.connection.state': 'used' }, node.total - node.idle);
          obs.gauge(max, attrs, node.max);
          obs.gauge(pending, attrs, node.waiting);
          obs.gauge(healthy, attrs, node.healthy ? 1 : 0);
          if (node.role === 'replica') {
            obs.gauge(ejected, attrs, node.ejected ? 1 : 0);
            if (node.lagMs !== undefined) obs.gauge(lag, attrs, node.lagMs / 1000);
          }
        }
      },
      clusters,
    );

    const ejections = meter.createCounter('buttress.pool.ejections', {
      unit: '{ejection}',
      description: 'Replicas taken out of the read rotation, by reason',
    });
    bridge.subscribe('buttress:pool:eject', (m) => {
      const { cluster, node, reason } = m as { cluster: string; node: string; reason: string };
      ejections.add(1, {
        [POOL]: poolName(cluster, node),
        [CLUSTER]: cluster,
        [NODE]: node,
        'buttress.pool.reason': reason,
      });
    });
    const readmissions = meter.createCounter('buttress.pool.readmissions', {
      unit: '{readmission}',
      description: 'Replicas put back into the read rotation',
    });
    bridge.subscribe('buttress:pool:readmit', (m) => {
      const { cluster, node } = m as { cluster: string; node: string };
      readmissions.add(1, { [POOL]: poolName(cluster, node), [CLUSTER]: cluster, [NODE]: node });
    });
    const errors = meter.createCounter('buttress.pool.errors', {
      unit: '{error}',
      description: 'Connection failures outside any call, by source (idle-client, client, health)',
    });
    bridge.subscribe('buttress:pool:error', (m) => {
      const { cluster, node, source, error } = m as {
        cluster: string;
        node: string;
        source: string;
        error: unknown;
      };
      errors.add(
        1,
        withError(
          {
            [POOL]: poolName(cluster, node),
            [CLUSTER]: cluster,
            [NODE]: node,
            'buttress.pool.source': source,
          },
          error,
        ),
      );
    });
    const queryDuration = meter.createHistogram(
      'db.client.operation.duration',
      seconds('Duration of statements run through the cluster (checkout included), by node'),
    );
    bridge.subscribe('buttress:pool:query', (m) => {
      const { cluster, node, durationMs, error } = m as {
        cluster: string;
        node: string;
        durationMs: number;
        error: unknown;
      };
      queryDuration.record(
        durationMs / 1000,
        withError(
          {
            'db.system.name': 'postgresql',
            [POOL]: poolName(cluster, node),
            [CLUSTER]: cluster,
            [NODE]: node,
          },
          error,
        ),
      );
    });
  },
};
