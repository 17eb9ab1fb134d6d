import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPgCluster, type PgCluster, type PgClusterOptions } from '../../src/pool/index.js';
import {
  adminQuery,
  serverConnections,
  sleep,
  startThrowawayPair,
  type ThrowawayPair,
  uniqueName,
  waitFor,
} from './pool-helpers.js';

// Faults that need a server stopped, restarted or its replay paused run on a throwaway primary and
// replica of this file's own (initdb + pg_basebackup on free ports, removed in afterAll): the
// shared 5432/5433 serve every other suite in parallel and are never touched. Real servers, real
// clock: how the cluster copes with a server going away is the thing under test. Timing bounds
// are wide on purpose (2 cores, other suites running).

let pair: ThrowawayPair;
const clusters: PgCluster[] = [];

beforeAll(async () => {
  pair = await startThrowawayPair();
  await adminQuery(pair.primary, 'CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)');
  await adminQuery(pair.primary, "INSERT INTO kv VALUES ('x', 0)");
  await waitFor(
    async () =>
      (
        await adminQuery(pair.replica, "SELECT count(*)::int AS n FROM kv WHERE k = 'x'").catch(() => [
          { n: 0 },
        ])
      )[0].n === 1,
    'the table to reach the replica',
  );
}, 120_000);

afterEach(async () => {
  for (const c of clusters.splice(0)) await c.end({ timeout: '5s' });
});

afterAll(async () => {
  await pair?.destroy();
});

function cluster(app: string, options: Partial<PgClusterOptions> = {}): PgCluster {
  const c = createPgCluster({
    Pool: pg.Pool,
    primary: { ...pair.primary, application_name: app, max: 8 },
    replicas: [{ ...pair.replica, application_name: app, max: 8 }],
    healthCheckInterval: '200ms',
    healthCheckTimeout: '1s',
    breaker: { halfOpenAfter: '500ms' },
    ...options,
  });
  clusters.push(c);
  return c;
}

async function admitted(c: PgCluster): Promise<void> {
  await c.checkHealth();
  await waitFor(
    () => {
      const r = c.stats().replicas[0]!;
      return r.healthy && !r.ejected && r.breaker === 'closed';
    },
    'the replica to be admitted',
    20_000,
  );
}

describe('read-your-writes under real replication lag', () => {
  it("a session's 1,000 reads all see its write while replay is paused; other sessions stay on the replica; back after resume", async () => {
    // maxReplicaLag is wide so that the paused replica is not ejected mid-test: what is tested is
    // that the session avoids it although it is admitted.
    const c = cluster(uniqueName('ryw'), { maxReplicaLag: '5m' });
    const other = cluster(uniqueName('ryw2'), { maxReplicaLag: '5m' });
    await admitted(c);
    await admitted(other);
    await adminQuery(pair.replica, 'SELECT pg_wal_replay_pause()');
    try {
      const session = c.session();
      const { rows } = await session.query("UPDATE kv SET v = v + 1 WHERE k = 'x' RETURNING v");
      const written = rows[0].v as number;
      expect(session.lsn).toBeDefined();
      // Replay is paused: the replica really does not have the write.
      const stale = await adminQuery(pair.replica, "SELECT v FROM kv WHERE k = 'x'");
      expect(stale[0].v).toBe(written - 1);

      const onPrimary = new Set<boolean>();
      for (let i = 0; i < 1_000; i++) {
        const r = await session.query("SELECT v, pg_is_in_recovery() AS r FROM kv WHERE k = 'x'");
        expect(r.rows[0].v).toBe(written);
        onPrimary.add(r.rows[0].r);
      }
      expect([...onPrimary]).toEqual([false]);
      // Another process resuming the session from its token sees the write too.
      const carried = other.session(session.consistencyToken());
      expect((await carried.query("SELECT v FROM kv WHERE k = 'x'")).rows[0].v).toBe(written);

      // Reads of other sessions (and of no session) still go to the replica, stale as it is.
      for (const s of [c.session(), undefined]) {
        const r = await c.query("SELECT v, pg_is_in_recovery() AS r FROM kv WHERE k = 'x'", [], {
          session: s,
        });
        expect(r.rows[0]).toEqual({ v: written - 1, r: true });
      }
      expect(c.stats().replicas[0]!.replayPaused).toBe(true);
      expect(c.stats().routing.rywFallbacks).toBeGreaterThanOrEqual(1_000);

      await adminQuery(pair.replica, 'SELECT pg_wal_replay_resume()');
      // Once the replica has replayed the write, the session's reads return to it.
      await waitFor(
        async () => {
          const r = await session.query("SELECT v, pg_is_in_recovery() AS r FROM kv WHERE k = 'x'");
          expect(r.rows[0].v).toBe(written);
          return r.rows[0].r === true;
        },
        "the session's reads to return to the replica",
        10_000,
      );
    } finally {
      await adminQuery(pair.replica, 'SELECT pg_wal_replay_resume()').catch(() => {});
    }
  });

  it('a paused replica falls behind under writes and is ejected for lag, then re-admitted', async () => {
    const c = cluster(uniqueName('lag'), { maxReplicaLag: '600ms' });
    await admitted(c);
    const events: string[] = [];
    c.onEject((e) => events.push(`eject ${e.reason}`));
    c.onReadmit(() => events.push('readmit'));
    await adminQuery(pair.replica, 'SELECT pg_wal_replay_pause()');
    try {
      await waitFor(
        async () => {
          await c.query("UPDATE kv SET v = v + 1 WHERE k = 'x'");
          return c.stats().replicas[0]!.ejected;
        },
        'the lagging replica to be ejected',
        15_000,
      );
      expect(events).toEqual(['eject lag']);
      expect(c.stats().replicas[0]!.lagMs).toBeGreaterThan(600);
      expect((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
    } finally {
      await adminQuery(pair.replica, 'SELECT pg_wal_replay_resume()');
    }
    await waitFor(() => !c.stats().replicas[0]!.ejected, 'the replica to be re-admitted', 15_000);
    expect(events).toEqual(['eject lag', 'readmit']);
  });
});

/** Runs `workers` loops of `call` until stopped; counts outcomes. */
function load(workers: number, call: () => Promise<string>) {
  const counts = new Map<string, number>();
  const errors: unknown[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      try {
        const outcome = await call();
        counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      } catch (error) {
        errors.push(error);
        await sleep(5);
      }
    }
  });
  return {
    counts,
    errors,
    snapshot: (): Record<string, number> => ({ ...Object.fromEntries(counts), errors: errors.length }),
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

describe('faults on real servers', () => {
  it('replica stopped mid-load: reads fail over to the primary with no more failures than were in flight; restarted: re-admitted', async () => {
    const app = uniqueName('stop');
    const c = cluster(app);
    await admitted(c);
    const ejects: string[] = [];
    c.onEject((e) => ejects.push(e.reason));
    const workers = 16;
    const readers = load(workers, async () => {
      const { rows } = await c.query('SELECT pg_is_in_recovery() AS r, pg_sleep(0.002)');
      return rows[0].r ? 'replica' : 'primary';
    });
    await waitFor(() => (readers.counts.get('replica') ?? 0) > 200, 'load on the replica');
    await pair.stopReplica();
    const stoppedAt = { ...readers.snapshot() };
    await waitFor(() => c.stats().replicas[0]!.ejected, 'the stopped replica to be ejected', 10_000);
    const ejectedAt = { ...readers.snapshot() };
    await waitFor(
      () => (readers.counts.get('primary') ?? 0) > (ejectedAt.primary ?? 0) + 200,
      'reads to flow on the primary',
    );
    // Nobody saw more failures than there were calls in flight when the replica went away
    // (with fail-over, usually none at all).
    expect(readers.errors.length, String(readers.errors[0])).toBeLessThanOrEqual(workers);
    expect(ejects[0]).toMatch(/unreachable|breaker-open/);
    const replicaReadsWhileDown = (readers.counts.get('replica') ?? 0) - (stoppedAt.replica ?? 0);
    expect(replicaReadsWhileDown).toBeLessThanOrEqual(workers);

    await pair.startReplica();
    await waitFor(
      () => {
        const r = c.stats().replicas[0]!;
        return !r.ejected && r.breaker !== 'open';
      },
      'the restarted replica to be re-admitted',
      20_000,
    );
    const back = readers.counts.get('replica') ?? 0;
    await waitFor(
      () => (readers.counts.get('replica') ?? 0) > back + 100,
      'reads to return to the replica',
      20_000,
    );
    await readers.stop();
    expect(readers.errors.length).toBeLessThanOrEqual(workers);
    expect(c.stats().routing.failovers + c.stats().routing.noReplicaFallbacks).toBeGreaterThan(0);
    await pair.replicaStreaming();
  });

  it('primary restarted mid-load: the pool recovers, and no client leaks (counted in the pool and on the server)', async () => {
    const app = uniqueName('restart');
    const max = 6;
    const c = cluster(app, {
      primary: { ...pair.primary, application_name: app, max },
      replicas: [],
      acquireTimeout: '2s',
    });
    const writers = load(12, async () => {
      await c.query("UPDATE kv SET v = v + 1 WHERE k = 'x'");
      const { rows } = await c.transaction(async (tx) =>
        tx.query("SELECT v FROM kv WHERE k = 'x' FOR UPDATE"),
      );
      return rows.length === 1 ? 'ok' : 'odd';
    });
    await waitFor(() => (writers.counts.get('ok') ?? 0) > 100, 'load on the primary');
    await pair.restartPrimary();
    const restartedAt = writers.counts.get('ok') ?? 0;
    await waitFor(() => (writers.counts.get('ok') ?? 0) > restartedAt + 200, 'the pool to recover', 20_000);
    await writers.stop();
    // Failures happened only while the server was down, and were typed.
    for (const e of writers.errors) {
      expect(['E_PG_CONNECTION', 'E_POOL_TIMEOUT', 'E_PG_QUERY']).toContain((e as { code?: string }).code);
    }
    // No client leaked: none checked out, nothing waiting, the pool within max, and the server agrees.
    await waitFor(() => c.stats().primary.inUse === 0, 'checkouts to return');
    const stats = c.stats().primary;
    expect(stats).toMatchObject({ inUse: 0, waiting: 0 });
    expect(stats.total).toBeLessThanOrEqual(max);
    expect(stats.total - stats.idle).toBe(0);
    const onServer = await serverConnections(pair.primary, app);
    expect(onServer).toBeLessThanOrEqual(max + 1); // the pool and the health connection
    expect(onServer).toBeLessThanOrEqual(stats.total + 1);
    await c.end();
    clusters.splice(clusters.indexOf(c), 1);
    await waitFor(
      async () => (await serverConnections(pair.primary, app)) === 0,
      'every connection to close',
    );
    await pair.replicaStreaming();
  });
});
