import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createPgCluster,
  isPgBouncerUnsupportedError,
  isPgConnectionError,
  isPgQueryError,
  type PgCluster,
  type PgClusterOptions,
} from '../../src/pool/index.js';
import { createTcpProxy } from '../../src/testing/index.js';
import { adminQuery, PRIMARY, REPLICA, serverConnections, uniqueName, waitFor } from './pool-helpers.js';

// Against the shared primary (5432) and its streaming replica (5433) from
// `scripts/services.sh --replica`. Nothing here stops, restarts or pauses them (other suites use
// them at the same time): the faults that need that run on throwaway servers in
// pool-faults.int.test.ts; a partition is made here with a TCP proxy in front of the replica.
// Real clock: the timing of real servers is part of what is tested, with wide margins (2 cores,
// other suites in parallel).

const table = uniqueName('pool_it');
const app = uniqueName('buttress_it');
const clusters: PgCluster[] = [];

function cluster(options: Partial<PgClusterOptions> = {}): PgCluster {
  const c = createPgCluster({
    Pool: pg.Pool,
    primary: { ...PRIMARY, application_name: app, max: 4 },
    replicas: [{ ...REPLICA, application_name: app, max: 4 }],
    healthCheckInterval: '200ms',
    ...options,
  });
  clusters.push(c);
  return c;
}

/** Waits until the cluster routes reads to its first replica. */
async function replicaReady(c: PgCluster): Promise<void> {
  await c.checkHealth();
  await waitFor(() => {
    const r = c.stats().replicas[0];
    return r?.healthy === true && !r.ejected;
  }, 'the replica to be admitted');
}

const inRecovery = async (p: Promise<pg.QueryResult>) => (await p).rows[0]!.r as boolean;

beforeAll(async () => {
  await adminQuery(PRIMARY, `CREATE TABLE ${table} (id serial PRIMARY KEY, v text UNIQUE)`);
  // The replica must have the table before reads look for it.
  await waitFor(async () => {
    const rows = await adminQuery(REPLICA, 'SELECT to_regclass($1) AS t', [table]);
    return rows[0]!.t !== null;
  }, 'the table to reach the replica');
});

afterEach(async () => {
  for (const c of clusters.splice(0)) await c.end({ timeout: '5s' });
});

afterAll(async () => {
  await adminQuery(PRIMARY, `DROP TABLE IF EXISTS ${table}`);
});

describe('routing, asserted with pg_is_in_recovery() inside the statement', () => {
  it('reads reach the replica, writes and locking reads the primary', async () => {
    const c = cluster();
    await replicaReady(c);
    expect(await inRecovery(c.query('SELECT pg_is_in_recovery() AS r'))).toBe(true);
    expect(
      await inRecovery(
        c.query(`INSERT INTO ${table} (v) VALUES ($1) RETURNING pg_is_in_recovery() AS r`, ['a']),
      ),
    ).toBe(false);
    expect(await inRecovery(c.query(`SELECT pg_is_in_recovery() AS r FROM (VALUES (1)) v LIMIT 1`))).toBe(
      true,
    );
    expect(
      await inRecovery(
        c.query(
          `WITH u AS (UPDATE ${table} SET v = v WHERE false RETURNING 1) SELECT pg_is_in_recovery() AS r`,
        ),
      ),
    ).toBe(false);
    expect(await inRecovery(c.query(`SELECT pg_is_in_recovery() AS r FROM ${table} FOR UPDATE`))).toBe(false);
    expect(await inRecovery(c.query(`SELECT pg_is_in_recovery() AS r FROM ${table} FOR SHARE`))).toBe(false);
    expect(await inRecovery(c.query('SELECT pg_is_in_recovery() AS r', [], { route: 'primary' }))).toBe(
      false,
    );
    expect(await inRecovery(c.read('SELECT pg_is_in_recovery() AS r'))).toBe(true);
    expect(
      await c.transaction(async (tx) => (await tx.query('SELECT pg_is_in_recovery() AS r')).rows[0].r),
    ).toBe(false);
    expect(
      await c.transaction(async (tx) => (await tx.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, {
        readOnly: true,
        route: 'replica',
      }),
    ).toBe(true);
    const stats = c.stats();
    expect(stats.replicas[0]).toMatchObject({ healthy: true, ejected: false, inRecovery: true });
    expect(stats.primary).toMatchObject({ healthy: true, inRecovery: false });
  });

  it('reads go to the primary when no replica is healthy', async () => {
    const c = cluster({ replicas: [{ host: '127.0.0.1', port: 1, user: 'postgres', database: 'test' }] });
    await c.checkHealth();
    expect(c.stats().replicas[0]).toMatchObject({
      healthy: false,
      ejected: true,
      ejectReason: 'unreachable',
    });
    expect(await inRecovery(c.query('SELECT pg_is_in_recovery() AS r'))).toBe(false);
    expect(c.stats().routing.noReplicaFallbacks).toBeGreaterThan(0);
  });

  it('a session reads its own write (on the replica once it has it), other sessions are unaffected', async () => {
    const c = cluster();
    await replicaReady(c);
    const session = c.session();
    await session.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['session-write']);
    expect(session.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    for (let i = 0; i < 20; i++) {
      const { rows } = await session.query(`SELECT count(*)::int AS n FROM ${table} WHERE v = $1`, [
        'session-write',
      ]);
      expect(rows[0].n).toBe(1);
    }
    // The shared replica catches up within milliseconds: the session is back on it soon.
    await waitFor(
      async () => inRecovery(session.query('SELECT pg_is_in_recovery() AS r')),
      "the session's reads to return to the replica",
    );
  });
});

describe('safe defaults under exhaustion', () => {
  it('beyond maxWaiting callers get E_POOL_FULL at once; waiters get E_POOL_TIMEOUT after acquireTimeout', async () => {
    const c = cluster({
      primary: { ...PRIMARY, application_name: app, max: 2 },
      replicas: [],
      maxWaiting: 3,
      acquireTimeout: '600ms',
    });
    const held = [await c.connect(), await c.connect()];
    const started = performance.now();
    const waiting = Array.from({ length: 3 }, () =>
      c.query(`INSERT INTO ${table} (v) VALUES ('never')`).then(
        () => ({ code: 'ok', ms: performance.now() - started }),
        (e) => ({ code: e.code as string, ms: performance.now() - started }),
      ),
    );
    const rejected = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const t = performance.now();
        const e = await c.query('SELECT 1').catch((err) => err);
        return { code: e.code as string, ms: performance.now() - t };
      }),
    );
    for (const r of rejected) {
      expect(r.code).toBe('E_POOL_FULL');
      expect(r.ms).toBeLessThan(250);
    }
    for (const w of await Promise.all(waiting)) {
      expect(w.code).toBe('E_POOL_TIMEOUT');
      expect(w.ms).toBeGreaterThanOrEqual(590);
      expect(w.ms).toBeLessThan(5_000);
    }
    for (const client of held) client.release();
    expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect(c.stats().primary).toMatchObject({ inUse: 0, waiting: 0, timeouts: 3, rejectedFull: 5 });
    const none = await adminQuery(PRIMARY, `SELECT count(*)::int AS n FROM ${table} WHERE v = 'never'`);
    expect(none[0].n).toBe(0);
  });

  it('a statement aborted mid-flight frees its caller at once, its connection, and the server', async () => {
    const name = uniqueName('abort');
    const c = cluster({ primary: { ...PRIMARY, application_name: name, max: 2 }, replicas: [] });
    const controller = new AbortController();
    const started = performance.now();
    const running = c.query('SELECT pg_sleep(30)', [], { signal: controller.signal, route: 'primary' });
    await waitFor(async () => (await serverConnections(PRIMARY, name)) === 2, 'the statement to start');
    controller.abort();
    await expect(running).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(performance.now() - started).toBeLessThan(3_000);
    await waitFor(
      () => c.stats().primary.inUse === 0 && c.stats().primary.total === 0,
      'the connection to go',
    );
    // The backend was cancelled, not left sleeping: only the health connection remains.
    await waitFor(async () => (await serverConnections(PRIMARY, name)) === 1, 'the backend to stop', 5_000);
  });
});

describe('errors are typed, passwords redacted', () => {
  it('SQL errors carry their SQLSTATE and fields', async () => {
    const c = cluster();
    await c.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['dup']);
    const dup = await c.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['dup']).catch((e) => e);
    expect(isPgQueryError(dup)).toBe(true);
    expect(dup).toMatchObject({ code: 'E_PG_QUERY', sqlState: '23505', table, node: 'primary' });
    expect(dup.constraint).toMatch(/_v_key$/);
    expect(dup.cause.code).toBe('23505');
    const syntax = await c.query('SELEC 1', [], { route: 'primary' }).catch((e) => e);
    expect(syntax).toMatchObject({ code: 'E_PG_QUERY', sqlState: '42601', position: '1' });
  });

  it('never shows the password in an error, an event, stats or anything printed', async () => {
    const secret = 'Pa55w0rd-never-printed';
    const printed: string[] = [];
    const originals = {
      log: console.log,
      warn: console.warn,
      error: console.error,
      write: process.stderr.write,
    };
    console.log =
      console.warn =
      console.error =
        (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    process.stderr.write = ((chunk: unknown) => {
      printed.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    const seen: string[] = [];
    try {
      // Trust auth ignores the password, so the connection works: a good place to make it leak.
      const c = cluster({
        primary: `postgres://postgres:${secret}@127.0.0.1:5432/test?application_name=${app}`,
        replicas: [`postgres://postgres:${secret}@127.0.0.1:1/test`],
      });
      c.onError((e) =>
        seen.push(e.error.message, String(e.error.stack), String((e.error.cause as Error)?.message)),
      );
      c.onEject((e) => seen.push(String(e.error?.message), String(e.error?.stack)));
      await c.checkHealth();
      // The server echoes a bad value into its error message.
      const echoed = await c.query('SELECT $1::int', [secret], { route: 'primary' }).catch((e) => e);
      expect(echoed.sqlState).toBe('22P02');
      const refused = await c.connect({ route: 'replica' }).then(
        (client) => {
          client.release();
          return undefined;
        },
        (e) => e,
      );
      const badUrl = (() => {
        try {
          createPgCluster({ Pool: pg.Pool, primary: `postgres://postgres:${secret}@[::1/test` });
        } catch (e) {
          return e as Error;
        }
      })();
      expect(badUrl).toMatchObject({ code: 'E_INVALID_OPTION', option: 'primary.connectionString' });
      for (const error of [echoed, refused, badUrl]) {
        if (error === undefined) continue;
        seen.push(
          error.message,
          String(error.stack),
          String(error.cause?.message),
          String(error.cause?.stack),
        );
        seen.push(JSON.stringify(error.received ?? null));
      }
      seen.push(JSON.stringify(c.stats()));
      expect(echoed.message).toContain('***');
    } finally {
      Object.assign(console, { log: originals.log, warn: originals.warn, error: originals.error });
      process.stderr.write = originals.write;
    }
    for (const text of [...seen, ...printed]) expect(text).not.toContain(secret);
  });

  it('a node that refuses connections fails fast with E_PG_CONNECTION', async () => {
    const c = cluster({ primary: { host: '127.0.0.1', port: 1, user: 'postgres' }, replicas: [] });
    const error = await c.query('SELECT 1').catch((e) => e);
    expect(isPgConnectionError(error)).toBe(true);
    expect(error).toMatchObject({ node: 'primary', sent: false });
  });
});

describe('transactions on a real server', () => {
  it('commit is visible, rollback is not, isolation applies', async () => {
    const c = cluster();
    await c.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['committed']);
    });
    await c
      .transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['rolled-back']);
        throw new Error('abort');
      })
      .catch(() => {});
    const rows = await adminQuery(PRIMARY, `SELECT v FROM ${table} WHERE v IN ('committed', 'rolled-back')`);
    expect(rows.map((r) => r.v)).toEqual(['committed']);
    const level = await c.transaction(async (tx) => (await tx.query('SHOW transaction_isolation')).rows[0], {
      isolation: 'serializable',
    });
    expect(level.transaction_isolation).toBe('serializable');
    expect(c.stats().primary.inUse).toBe(0);
  });

  it('under pgbouncer: transaction, session features are refused before anything is sent', async () => {
    const c = cluster({ pgbouncer: 'transaction' });
    for (const sql of ['SET search_path TO nowhere', 'LISTEN buttress_it', 'SELECT pg_advisory_lock(42)']) {
      expect(isPgBouncerUnsupportedError(await c.query(sql).catch((e) => e))).toBe(true);
    }
    const locks = await adminQuery(
      PRIMARY,
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 42",
    );
    expect(locks[0].n).toBe(0);
    await c.transaction(async (tx) => {
      await tx.query("SET LOCAL statement_timeout = '5s'");
      expect((await tx.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('5s');
    });
  });
});

describe('partition of a replica (TCP proxy black hole)', () => {
  it('is ejected by its health check deadline; reads keep flowing on the primary; it comes back', async () => {
    await using proxy = await createTcpProxy({ target: { host: REPLICA.host, port: REPLICA.port } });
    const c = cluster({
      replicas: [{ ...REPLICA, host: proxy.host, port: proxy.port, application_name: app }],
      healthCheckTimeout: '500ms',
    });
    await replicaReady(c);
    const events: string[] = [];
    c.onEject((e) => events.push(`eject ${e.reason}`));
    c.onReadmit(() => events.push('readmit'));
    expect(await inRecovery(c.query('SELECT pg_is_in_recovery() AS r'))).toBe(true);
    proxy.blackhole();
    await waitFor(() => c.stats().replicas[0]!.ejected, 'the replica to be ejected', 10_000);
    expect(events).toContain('eject unreachable');
    const started = performance.now();
    for (let i = 0; i < 20; i++)
      expect(await inRecovery(c.query('SELECT pg_is_in_recovery() AS r'))).toBe(false);
    expect(performance.now() - started).toBeLessThan(5_000);
    // Connections that sat in the black hole may be out of step: drop them, as a real link loss would.
    proxy.reset();
    proxy.cut();
    await waitFor(() => !c.stats().replicas[0]!.ejected, 'the replica to be re-admitted', 10_000);
    expect(events.at(-1)).toBe('readmit');
    await waitFor(
      async () => inRecovery(c.query('SELECT pg_is_in_recovery() AS r')).catch(() => false),
      'reads to reach the replica again',
    );
  });
});

describe('lifecycle', () => {
  it('end() leaves no connection of ours on either server', async () => {
    const c = cluster();
    await replicaReady(c);
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => c.query(i % 2 ? 'SELECT 1' : 'SELECT pg_sleep(0.05)')),
    );
    expect(await serverConnections(PRIMARY, app)).toBeGreaterThan(0);
    await c.end();
    clusters.splice(clusters.indexOf(c), 1);
    await waitFor(async () => (await serverConnections(PRIMARY, app)) === 0, 'primary connections to close');
    await waitFor(async () => (await serverConnections(REPLICA, app)) === 0, 'replica connections to close');
    await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: 'E_CLOSED' });
  });
});
