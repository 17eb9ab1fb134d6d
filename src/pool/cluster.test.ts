import { afterEach, describe, expect, it } from 'vitest';
import { hasCode, isInvalidOptionError } from '../core/errors.js';
import { FakeClock } from '../testing/index.js';
import {
  createPgCluster,
  isPgBouncerUnsupportedError,
  isPgConnectionError,
  isPgQueryError,
  isPoolFullError,
  isPoolTimeoutError,
  type PgCluster,
  type PgClusterOptions,
  type PgEjectEvent,
} from './index.js';
import { type FakeClient, FakePoolClass, FakeServer, fakePool, gate } from './internal/fake-pg.test-util.js';

const clusters: { cluster: PgCluster; clock: FakeClock }[] = [];
afterEach(async () => {
  for (const { cluster, clock } of clusters.splice(0)) {
    const ended = cluster.end({ timeout: 50 });
    for (let i = 0; i < 5; i++) await clock.advanceAsync(1_000);
    await ended;
  }
});

/** Lets pg-pool's next-tick pulses and the fake's microtasks run. */
async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

interface Setup {
  cluster: PgCluster;
  clock: FakeClock;
  primary: FakeServer;
  replica: FakeServer;
}

/** A cluster over a fake primary and one fake replica, with the first health round done. */
async function setup(
  options: Partial<PgClusterOptions> = {},
  replicas = 1,
): Promise<Setup & { replicas: FakeServer[] }> {
  const clock = new FakeClock();
  const primary = new FakeServer('primary', 'primary');
  const replicaServers = Array.from(
    { length: replicas },
    (_, i) => new FakeServer(`replica-${i}`, 'replica'),
  );
  for (const r of replicaServers) r.lsn = primary.lsn;
  primary.handler = (sql) => [{ node: 'primary', sql }];
  for (const r of replicaServers) r.handler = (sql) => [{ node: r.name, sql }];
  const cluster = createPgCluster({
    Pool: FakePoolClass as never,
    primary: { server: primary, max: 4 } as never,
    replicas: replicaServers.map((server) => ({ server, max: 4 }) as never),
    clock,
    ...options,
  });
  clusters.push({ cluster, clock });
  await cluster.checkHealth();
  return { cluster, clock, primary, replica: replicaServers[0]!, replicas: replicaServers };
}

const nodeOf = async (p: Promise<{ rows: { node?: unknown }[] }>) => (await p).rows[0]!.node;

describe('createPgCluster options', () => {
  it('rejects unknown options, bad durations and bad enums with E_INVALID_OPTION naming them', () => {
    const primary = { server: new FakeServer('p', 'primary') } as never;
    const cases: [Record<string, unknown>, string][] = [
      [{ primary, Pool: FakePoolClass, acquireTimout: 5 }, 'acquireTimout'],
      [{ primary, Pool: FakePoolClass, acquireTimeout: -1 }, 'acquireTimeout'],
      [{ primary, Pool: FakePoolClass, maxWaiting: 1.5 }, 'maxWaiting'],
      [{ primary, Pool: FakePoolClass, readYourWrites: 'yes' }, 'readYourWrites'],
      [{ primary, Pool: FakePoolClass, pgbouncer: 'session' }, 'pgbouncer'],
      [{ primary, Pool: FakePoolClass, healthCheckInterval: '1x' }, 'healthCheckInterval'],
      [{ primary, Pool: FakePoolClass, replicas: 'r' }, 'replicas'],
      [{ primary, Pool: FakePoolClass, readOnlyFunctions: 'f' }, 'readOnlyFunctions'],
      [{ primary, Pool: FakePoolClass, breaker: { halfOpenAfter: 'soon' } }, 'halfOpenAfter'],
      [{ primary, Pool: FakePoolClass, breaker: { clock: 1 } }, 'breaker.clock'],
      [{ Pool: FakePoolClass }, 'primary'],
      [{ primary: 42, Pool: FakePoolClass }, 'primary'],
      [{ primary: { host: '' }, Pool: FakePoolClass }, 'primary.host'],
      [{ primary: { port: 70000 }, Pool: FakePoolClass }, 'primary.port'],
      [{ primary: { max: 0 }, Pool: FakePoolClass }, 'primary.max'],
      [{ primary: 'postgres://u:p@h/db' }, 'Pool'],
      [{ primary, Pool: 'pg' }, 'Pool'],
      [{ primary, replicas: [{ port: 'x' }], Pool: FakePoolClass }, 'replicas[0].port'],
    ];
    for (const [options, option] of cases) {
      let error: unknown;
      try {
        createPgCluster(options as never);
      } catch (e) {
        error = e;
      }
      expect(isInvalidOptionError(error), `${option}: ${String(error)}`).toBe(true);
      expect((error as { option: string }).option).toBe(option);
    }
  });

  it('never shows a password in an option error, message or received value', () => {
    const secret = 'S3cr3t-Pa55';
    const attempts: unknown[] = [
      { primary: `postgres://app:${secret}@db.internal:5432/app`, replicas: 'nope', Pool: FakePoolClass },
      { primary: `postgres://app:${secret}@db.internal:99999999/app`, Pool: FakePoolClass },
      { primary: `postgres://app:${secret}@[::1/db`, Pool: FakePoolClass },
      { primary: { host: 'db', password: secret, port: 'x' }, Pool: FakePoolClass },
      {
        primary: { host: 'db', password: secret },
        replicas: [{ password: secret, host: 5 }],
        Pool: FakePoolClass,
      },
      { primary: 5, replicas: [{ password: secret }], Pool: FakePoolClass },
      { primary: { connectionString: `postgresql://app:${secret}@h/db`, host: 7 }, Pool: FakePoolClass },
      { primary: `host=db password=${secret}`, replicas: [7], Pool: FakePoolClass },
    ];
    for (const options of attempts) {
      let error: unknown;
      try {
        createPgCluster(options as never);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(options)).toBeDefined();
      const err = error as Error & { received?: unknown };
      expect(err.message).not.toContain(secret);
      expect(String(err.stack)).not.toContain(secret);
      expect(JSON.stringify(err.received ?? null)).not.toContain(secret);
    }
  });

  it('accepts a pg.Pool instance without the Pool class, and leaves it open on end()', async () => {
    const server = new FakeServer('p', 'primary');
    const pool = fakePool(server);
    const cluster = createPgCluster({ primary: pool as never, clock: new FakeClock() });
    await cluster.query('SELECT 1');
    await cluster.end();
    expect(pool.ending).toBe(false);
    await pool.end();
  });
});

describe('routing', () => {
  it('sends reads to the replica and writes, locks and unknown functions to the primary', async () => {
    const { cluster } = await setup();
    expect(await nodeOf(cluster.query('SELECT * FROM users WHERE id = $1', [1]))).toBe('replica-0');
    expect(await nodeOf(cluster.query('INSERT INTO users (id) VALUES ($1)', [1]))).toBe('primary');
    expect(await nodeOf(cluster.query('SELECT * FROM users FOR UPDATE'))).toBe('primary');
    expect(await nodeOf(cluster.query("SELECT nextval('ids')"))).toBe('primary');
    expect(await nodeOf(cluster.query('SELECT my_fn()'))).toBe('primary');
    expect(await nodeOf(cluster.query({ text: 'SELECT 1' }))).toBe('replica-0');
    expect(await nodeOf(cluster.query('SELECT 1', [], { route: 'primary' }))).toBe('primary');
    expect(await nodeOf(cluster.query('SELECT my_fn()', [], { route: 'replica' }))).toBe('replica-0');
    expect(await nodeOf(cluster.read('SELECT my_fn()'))).toBe('replica-0');
    const r = cluster.stats().routing;
    expect(r).toMatchObject({ writes: 4, forcedPrimary: 1, reads: 4, readsOnReplica: 4, readsOnPrimary: 0 });
  });

  it('honours readOnlyFunctions', async () => {
    const { cluster } = await setup({ readOnlyFunctions: ['app.price_of'] });
    expect(await nodeOf(cluster.query('SELECT app.price_of($1)', [1]))).toBe('replica-0');
  });

  it('sends reads to the primary before the first health check and without replicas', async () => {
    const clock = new FakeClock();
    const primary = new FakeServer('primary', 'primary');
    primary.handler = () => [{ node: 'primary' }];
    const replica = new FakeServer('replica', 'replica');
    replica.hangHealth = true;
    const cluster = createPgCluster({
      Pool: FakePoolClass as never,
      primary: { server: primary } as never,
      replicas: [{ server: replica } as never],
      clock,
    });
    clusters.push({ cluster, clock });
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('primary');
    expect(cluster.stats().routing.noReplicaFallbacks).toBe(1);
    const alone = createPgCluster({
      Pool: FakePoolClass as never,
      primary: { server: primary } as never,
      clock,
    });
    clusters.push({ cluster: alone, clock });
    expect(await nodeOf(alone.query('SELECT 1'))).toBe('primary');
  });

  it('spreads reads over equally loaded replicas', async () => {
    const { cluster } = await setup({}, 3);
    const seen = new Map<unknown, number>();
    for (let i = 0; i < 30; i++) {
      const node = await nodeOf(cluster.query('SELECT 1'));
      seen.set(node, (seen.get(node) ?? 0) + 1);
    }
    expect([...seen.values()]).toEqual([10, 10, 10]);
  });

  it('rejects a bad route and a non-SQL text with E_INVALID_OPTION', async () => {
    const { cluster } = await setup();
    await expect(cluster.query('SELECT 1', [], { route: 'any' as never })).rejects.toMatchObject({
      code: 'E_INVALID_OPTION',
      option: 'route',
    });
    await expect(cluster.query(42 as never)).rejects.toMatchObject({
      code: 'E_INVALID_OPTION',
      option: 'text',
    });
  });
});

describe('read-your-writes', () => {
  it("'lsn': a session's reads see its write; other sessions stay on the replica", async () => {
    const { cluster, primary, replica } = await setup();
    primary.handler = (sql) => {
      if (sql.startsWith('UPDATE')) primary.write();
      return [{ node: 'primary' }];
    };
    const session = cluster.session();
    await session.query('UPDATE t SET v = 1');
    expect(session.lsn).toBe('0/1000100');
    expect(await nodeOf(session.query('SELECT v FROM t'))).toBe('primary');
    expect(await nodeOf(session.read('SELECT v FROM t'))).toBe('primary');
    expect(await nodeOf(cluster.query('SELECT v FROM t'))).toBe('replica-0');
    expect(await nodeOf(cluster.session().query('SELECT v FROM t'))).toBe('replica-0');
    // The replica replays the write; the on-demand refresh (or the next round) notices.
    replica.lsn = primary.lsn;
    await settle();
    await cluster.checkHealth();
    expect(await nodeOf(session.query('SELECT v FROM t'))).toBe('replica-0');
    expect(cluster.stats().routing.rywFallbacks).toBe(2);
  });

  it('a fallback triggers a refresh of the replay position, so sessions return without waiting a round', async () => {
    const { cluster, primary, replica, clock } = await setup();
    primary.handler = () => {
      primary.write();
      return [{ node: 'primary' }];
    };
    const session = cluster.session();
    await session.query('DELETE FROM t');
    replica.lsn = primary.lsn;
    expect(await nodeOf(session.query('SELECT 1'))).toBe('primary');
    await settle();
    clock.advance(25);
    expect(await nodeOf(session.query('SELECT 1'))).toBe('replica-0');
  });

  it('carries the position across processes in a consistency token', async () => {
    const a = await setup();
    a.primary.handler = () => {
      a.primary.write(0x5000n);
      return [{ node: 'primary' }];
    };
    const writer = a.cluster.session();
    await writer.query('INSERT INTO t VALUES (1)');
    const token = writer.consistencyToken();
    expect(token).toBe('1.1005000.');
    const reader = a.cluster.session(token);
    expect(reader.lsn).toBe(writer.lsn);
    expect(await nodeOf(reader.query('SELECT 1'))).toBe('primary');
    const merged = a.cluster.session().merge(token);
    expect(merged.lsn).toBe(writer.lsn);
    expect(JSON.parse(JSON.stringify(merged))).toEqual({ lsn: '0/1005000', stickyUntil: 0 });
  });

  it('a malformed token keeps the reads on the primary for stickyWindow and is counted', async () => {
    const { cluster, clock } = await setup({ stickyWindow: 1_000 });
    for (const bad of ['garbage', '1.zz.', '2.10.', '1.10.10.10', '1.' + 'f'.repeat(17) + '.']) {
      const session = cluster.session(bad);
      expect(await nodeOf(session.query('SELECT 1'))).toBe('primary');
    }
    expect(cluster.stats().routing.invalidTokens).toBe(5);
    const session = cluster.session('junk');
    clock.advance(1_001);
    expect(await nodeOf(session.query('SELECT 1'))).toBe('replica-0');
  });

  it("'sticky': reads stay on the primary for the window after a write", async () => {
    const { cluster, clock } = await setup({ readYourWrites: 'sticky', stickyWindow: '500ms' });
    const session = cluster.session();
    await session.query('UPDATE t SET v = 2');
    expect(session.lsn).toBeUndefined();
    expect(await nodeOf(session.query('SELECT 1'))).toBe('primary');
    clock.advance(499);
    expect(await nodeOf(session.query('SELECT 1'))).toBe('primary');
    clock.advance(2);
    expect(await nodeOf(session.query('SELECT 1'))).toBe('replica-0');
  });

  it("'off': nothing is tracked", async () => {
    const { cluster, primary } = await setup({ readYourWrites: 'off' });
    primary.handler = () => {
      primary.write();
      return [{ node: 'primary' }];
    };
    const session = cluster.session();
    await session.query('UPDATE t SET v = 3');
    expect(session.consistencyToken()).toBe('1..');
    expect(await nodeOf(session.query('SELECT 1'))).toBe('replica-0');
  });

  it('a committed transaction is tracked; a read-only one is not', async () => {
    const { cluster, primary } = await setup();
    primary.handler = (sql) => {
      if (sql.startsWith('INSERT')) primary.write();
      return [{ node: 'primary' }];
    };
    const session = cluster.session();
    await session.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES (1)');
    });
    expect(session.lsn).toBe('0/1000100');
    const other = cluster.session();
    await other.transaction(async (tx) => tx.query('SELECT 1'), { readOnly: true });
    expect(other.lsn).toBeUndefined();
  });

  it('with asyncContext, session.run() makes every call inside use the session', async () => {
    const { cluster, primary } = await setup({ asyncContext: true });
    primary.handler = () => {
      primary.write();
      return [{ node: 'primary' }];
    };
    const session = cluster.session();
    await session.run(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      expect(cluster.currentSession()).toBe(session);
      await cluster.query('UPDATE t SET v = 1');
      expect(await nodeOf(cluster.query('SELECT 1'))).toBe('primary');
    });
    expect(session.lsn).toBe('0/1000100');
    expect(cluster.currentSession()).toBeUndefined();
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('replica-0');
  });

  it('session.run() without asyncContext throws E_INVALID_OPTION', async () => {
    const { cluster } = await setup();
    expect(() => cluster.session().run(() => 1)).toThrow(expect.objectContaining({ option: 'asyncContext' }));
  });

  it('a write whose LSN cannot be read makes the session sticky instead', async () => {
    const { cluster, clock, primary } = await setup({ stickyWindow: 300 });
    primary.failLsnQuery = true;
    const session = cluster.session();
    await session.query('UPDATE t SET v = 1');
    expect(session.lsn).toBeUndefined();
    expect(session.stickyUntil).toBe(clock.now() + 300);
    expect(await nodeOf(session.query('SELECT 1'))).toBe('primary');
    clock.advance(301);
    expect(await nodeOf(session.query('SELECT 1'))).toBe('replica-0');
  });
});

describe('health: lag, ejection, re-admission', () => {
  it('ejects a replica lagging over maxReplicaLag and re-admits it once caught up', async () => {
    const { cluster, clock, primary, replica } = await setup({
      maxReplicaLag: '1s',
      healthCheckInterval: '100ms',
    });
    const ejects: PgEjectEvent[] = [];
    const readmits: string[] = [];
    cluster.onEject((e) => ejects.push(e));
    cluster.onReadmit((e) => readmits.push(e.node));
    replica.paused = true;
    for (let t = 0; t < 1_500; t += 100) {
      primary.write();
      await clock.advanceAsync(100);
      await settle();
    }
    expect(ejects).toHaveLength(1);
    expect(ejects[0]).toMatchObject({ node: 'replica-0', reason: 'lag' });
    expect(cluster.stats().replicas[0]).toMatchObject({
      ejected: true,
      ejectReason: 'lag',
      replayPaused: true,
    });
    expect(cluster.stats().replicas[0]!.lagMs).toBeGreaterThan(1_000);
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('primary');
    replica.paused = false;
    replica.lsn = primary.lsn;
    await cluster.checkHealth();
    expect(readmits).toEqual(['replica-0']);
    expect(cluster.stats().replicas[0]!.lagMs).toBe(0);
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('replica-0');
  });

  it('an idle primary never makes a replica look lagged', async () => {
    const { cluster, clock } = await setup({ maxReplicaLag: '1s', healthCheckInterval: '100ms' });
    for (let i = 0; i < 30; i++) {
      await clock.advanceAsync(100);
      await settle();
    }
    expect(cluster.stats().replicas[0]).toMatchObject({ ejected: false, lagMs: 0 });
  });

  it('ejects an unreachable replica, sends reads to the primary, re-admits it when back', async () => {
    const { cluster, replica } = await setup();
    const events: string[] = [];
    cluster.onEject((e) => events.push(`eject ${e.reason}`));
    cluster.onReadmit(() => events.push('readmit'));
    cluster.onError((e) => events.push(`error ${e.source}`));
    replica.up = false;
    replica.killConnections();
    await cluster.checkHealth();
    expect(events).toEqual(['error health', 'eject unreachable']);
    expect(cluster.stats().replicas[0]).toMatchObject({
      healthy: false,
      ejected: true,
      consecutiveFailures: 1,
    });
    expect(cluster.stats().replicas[0]!.lastError).toMatch(/ECONNREFUSED/);
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('primary');
    replica.up = true;
    await cluster.checkHealth();
    expect(events.at(-1)).toBe('readmit');
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('replica-0');
  });

  it('ejects a replica whose health check hangs past healthCheckTimeout', async () => {
    const { cluster, clock, replica } = await setup({ healthCheckTimeout: 200 });
    replica.hangHealth = true;
    const round = cluster.checkHealth();
    await settle();
    await clock.advanceAsync(201);
    await round;
    expect(cluster.stats().replicas[0]).toMatchObject({ ejected: true, ejectReason: 'unreachable' });
    expect(cluster.stats().replicas[0]!.lastError).toMatch(/timed out after 200ms/);
  });

  it("ejects a 'replica' that is not in recovery", async () => {
    const { cluster, replica } = await setup();
    replica.inRecovery = false;
    await cluster.checkHealth();
    expect(cluster.stats().replicas[0]).toMatchObject({ ejected: true, ejectReason: 'not-in-recovery' });
  });
});

describe('failover', () => {
  it('a read whose replica refuses connections runs on the primary; the breaker then opens', async () => {
    const { cluster, replica } = await setup({ breaker: { halfOpenAfter: '1s' } });
    const ejects: PgEjectEvent[] = [];
    cluster.onEject((e) => ejects.push(e));
    replica.up = false;
    replica.killConnections();
    for (let i = 0; i < 5; i++) expect(await nodeOf(cluster.query('SELECT 1'))).toBe('primary');
    const stats = cluster.stats();
    // Three failures open the breaker; from then on the replica is skipped rather than tried.
    expect(stats.routing).toMatchObject({ failovers: 3, noReplicaFallbacks: 2 });
    expect(stats.replicas[0]!.breaker).toBe('open');
    expect(ejects.map((e) => e.reason)).toEqual(['breaker-open']);
  });

  it('a read-only statement whose replica dies mid-flight runs again on the primary; a forced one does not', async () => {
    const { cluster, replica } = await setup();
    const hold = gate();
    replica.handler = async () => {
      await hold.promise;
      return [{ node: 'replica-0' }];
    };
    const read = nodeOf(cluster.query('SELECT 1'));
    const forced = cluster.query('SELECT my_fn()', [], { route: 'replica' });
    await settle();
    replica.killConnections();
    expect(await read).toBe('primary');
    const error = await forced.catch((e) => e);
    expect(isPgConnectionError(error)).toBe(true);
    expect(error).toMatchObject({ node: 'replica-0', sent: true });
  });

  it('a recovery conflict (SQLSTATE 40001) on a replica is retried on the primary', async () => {
    const { cluster, replica } = await setup();
    replica.handler = () => {
      throw Object.assign(new Error('canceling statement due to conflict with recovery'), {
        code: '40001',
        severity: 'ERROR',
      });
    };
    expect(await nodeOf(cluster.query('SELECT 1'))).toBe('primary');
  });
});

describe('the gate: acquireTimeout, maxWaiting', () => {
  it('rejects beyond maxWaiting at once with E_POOL_FULL and times the waiters out with E_POOL_TIMEOUT', async () => {
    const { cluster, clock, primary } = await setup({ maxWaiting: 2, acquireTimeout: '1s' });
    const hold = gate();
    primary.handler = async () => {
      await hold.promise;
      return [{ node: 'primary' }];
    };
    const busy = Array.from({ length: 4 }, () => cluster.query('UPDATE t SET v = 1'));
    await settle();
    const waiting = [cluster.query('UPDATE t SET v = 2'), cluster.query('UPDATE t SET v = 3')];
    const outcomes = waiting.map((p) =>
      p.then(
        () => 'ok',
        (e) => e.code,
      ),
    );
    const full = await cluster.query('UPDATE t SET v = 4').catch((e) => e);
    expect(isPoolFullError(full)).toBe(true);
    expect(full).toMatchObject({ code: 'E_POOL_FULL', node: 'primary', maxWaiting: 2 });
    expect(cluster.stats().primary).toMatchObject({ inUse: 4, waiting: 2 });
    await clock.advanceAsync(999);
    expect(cluster.stats().primary.waiting).toBe(2);
    await clock.advanceAsync(2);
    expect(await Promise.all(outcomes)).toEqual(['E_POOL_TIMEOUT', 'E_POOL_TIMEOUT']);
    const timeout = await waiting[0]!.catch((e) => e);
    expect(isPoolTimeoutError(timeout)).toBe(true);
    expect(timeout).toMatchObject({ node: 'primary', timeout: 1_000 });
    hold.open();
    await Promise.all(busy);
    expect(cluster.stats().primary).toMatchObject({ inUse: 0, waiting: 0, timeouts: 2, rejectedFull: 1 });
  });

  it('hands freed connections to waiters in order', async () => {
    const { cluster, primary } = await setup({ maxWaiting: 10 });
    const holds = [gate(), gate(), gate(), gate()];
    let n = 0;
    primary.handler = async (sql) => {
      const i = n++;
      if (i < 4) await holds[i]!.promise;
      return [{ node: 'primary', sql }];
    };
    const first = Array.from({ length: 4 }, (_, i) => cluster.query(`UPDATE a SET v = ${i}`));
    await settle();
    const order: string[] = [];
    const later = ['x', 'y', 'z'].map((v) =>
      cluster.query(`UPDATE b SET v = '${v}'`).then(() => order.push(v)),
    );
    await settle();
    for (const h of holds) h.open();
    await Promise.all([...first, ...later]);
    expect(order).toEqual(['x', 'y', 'z']);
  });

  it('an aborted waiter leaves the line at once with E_ABORTED', async () => {
    const { cluster, primary } = await setup();
    const hold = gate();
    primary.handler = async () => {
      await hold.promise;
      return [{}];
    };
    const busy = Array.from({ length: 4 }, () => cluster.query('UPDATE t SET v = 1'));
    await settle();
    const controller = new AbortController();
    const waiting = cluster.query('UPDATE t SET v = 2', [], { signal: controller.signal });
    await settle();
    expect(cluster.stats().primary.waiting).toBe(1);
    controller.abort(new Error('client went away'));
    await expect(waiting).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(cluster.stats().primary.waiting).toBe(0);
    hold.open();
    await Promise.all(busy);
  });

  it('an abort mid-statement rejects at once and destroys the connection', async () => {
    const { cluster, primary } = await setup();
    const hold = gate();
    primary.handler = async () => {
      await hold.promise;
      return [{}];
    };
    const controller = new AbortController();
    const running = cluster.query('UPDATE t SET v = 1', [], { signal: controller.signal });
    await settle();
    expect(primary.clients.size).toBe(2); // the health connection and this one
    controller.abort();
    await expect(running).rejects.toMatchObject({ code: 'E_ABORTED' });
    await settle();
    expect(primary.clients.size).toBe(1);
    expect(cluster.stats().primary.inUse).toBe(0);
    await expect(
      cluster.query('SELECT 1', [], { signal: AbortSignal.abort(), route: 'primary' }),
    ).rejects.toMatchObject({ code: 'E_ABORTED' });
  });

  it('a connection that cannot be opened fails with E_PG_CONNECTION (not sent)', async () => {
    const { cluster, primary } = await setup();
    primary.up = false;
    const error = await cluster.query('UPDATE t SET v = 1').catch((e) => e);
    expect(isPgConnectionError(error)).toBe(true);
    expect(error).toMatchObject({ node: 'primary', sent: false });
    expect(cluster.stats().primary.inUse).toBe(0);
  });

  it('a hung connect times out at acquireTimeout and its slot comes back', async () => {
    const { cluster, clock, primary } = await setup({ acquireTimeout: 300 });
    primary.hangConnect = true;
    const pending = cluster.query('UPDATE t SET v = 1').catch((e) => e);
    await settle();
    await clock.advanceAsync(301);
    expect(await pending).toMatchObject({ code: 'E_POOL_TIMEOUT' });
  });
});

describe('connections: release safety and errors', () => {
  it('an error on a checked-out client does not crash; it is reported and the client destroyed on release', async () => {
    const { cluster, primary } = await setup();
    const errors: { source: string; code: string }[] = [];
    cluster.onError((e) =>
      errors.push({ source: e.source, code: (e.error as Error & { code: string }).code }),
    );
    const client = await cluster.connect();
    (client as unknown as FakeClient).serverClosed(new Error('Connection terminated unexpectedly'));
    expect(errors).toEqual([{ source: 'client', code: 'E_PG_CONNECTION' }]);
    client.release();
    await settle();
    expect(cluster.stats().primary).toMatchObject({ inUse: 0, total: 0 });
    expect(primary.clients.size).toBe(1);
  });

  it('an idle client error is reported, not thrown', async () => {
    const { cluster, primary } = await setup();
    const errors: string[] = [];
    cluster.onError((e) => errors.push(e.source));
    await cluster.query('UPDATE t SET v = 1');
    expect(cluster.stats().primary.idle).toBe(1);
    primary.killConnections();
    await settle();
    expect(errors).toEqual(['idle-client']);
    expect(cluster.stats().primary.idle).toBe(0);
  });

  it('a client released inside a transaction is destroyed, not pooled; a double release throws', async () => {
    const { cluster } = await setup();
    const client = await cluster.connect();
    await client.query('BEGIN');
    client.release();
    expect(() => client.release()).toThrow(/already released/);
    await settle();
    expect(cluster.stats().primary).toMatchObject({ total: 0, inUse: 0 });
  });

  it('a client past maxLifetime (spread over its last 10%) is closed on release', async () => {
    const { cluster, clock } = await setup({ maxLifetime: '1m' });
    await cluster.query('UPDATE t SET v = 1');
    expect(cluster.stats().primary.total).toBe(1);
    clock.advance(53_999);
    await cluster.query('UPDATE t SET v = 1');
    await settle();
    expect(cluster.stats().primary.total).toBe(1);
    clock.advance(6_001);
    await cluster.query('UPDATE t SET v = 1');
    await settle();
    expect(cluster.stats().primary.total).toBe(0);
  });

  it('connect({ route: "replica" }) checks out a replica client', async () => {
    const { cluster, replica } = await setup();
    const client = (await cluster.connect({ route: 'replica' })) as unknown as FakeClient;
    expect(client.server).toBe(replica);
    (client as unknown as { release(): void }).release();
    await expect(cluster.connect({ route: 'x' as never })).rejects.toMatchObject({ option: 'route' });
  });
});

describe('errors are typed and redacted', () => {
  it('wraps server errors as E_PG_QUERY with the SQLSTATE and fields', async () => {
    const { cluster, primary } = await setup();
    primary.handler = () => {
      throw Object.assign(new Error('duplicate key value violates unique constraint "users_email_key"'), {
        code: '23505',
        severity: 'ERROR',
        detail: 'Key (email)=(a@b.c) already exists.',
        constraint: 'users_email_key',
        table: 'users',
      });
    };
    const error = await cluster.query('INSERT INTO users (email) VALUES ($1)', ['a@b.c']).catch((e) => e);
    expect(isPgQueryError(error)).toBe(true);
    expect(error).toMatchObject({
      code: 'E_PG_QUERY',
      sqlState: '23505',
      constraint: 'users_email_key',
      table: 'users',
      node: 'primary',
    });
    expect(error.message).toMatch(/on primary, SQLSTATE 23505/);
  });

  it('scrubs the configured password from every error message, stack and cause', async () => {
    const secret = 'hunter2-long-secret';
    const primary = new FakeServer('p', 'primary');
    primary.handler = () => {
      throw new Error(`could not connect with postgres://app:${secret}@db/app (password ${secret})`);
    };
    const clock = new FakeClock();
    const cluster = createPgCluster({
      Pool: FakePoolClass as never,
      primary: { server: primary, password: secret } as never,
      clock,
    });
    clusters.push({ cluster, clock });
    const events: Error[] = [];
    cluster.onError((e) => events.push(e.error));
    const error = await cluster.query('UPDATE t SET v = 1').catch((e) => e);
    for (const text of [error.message, error.stack, error.cause.message, error.cause.stack]) {
      expect(text).not.toContain(secret);
    }
    expect(error.message).toContain('***');
  });

  it('refuses session features under pgbouncer: transaction', async () => {
    const { cluster } = await setup({ pgbouncer: 'transaction' });
    const refused = async (p: Promise<unknown>) => (await p.catch((e) => e)) as { feature: string };
    for (const [sql, feature] of [
      ['SET search_path TO app', 'set'],
      ['RESET ALL', 'reset'],
      ['LISTEN jobs', 'listen'],
      ['PREPARE q AS SELECT 1', 'prepare'],
      ['SELECT pg_advisory_lock(1)', 'advisory-lock'],
      ['CREATE TEMP TABLE x (a int)', 'temp-table'],
      ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'hold-cursor'],
    ] as const) {
      const error = await refused(cluster.query(sql));
      expect(isPgBouncerUnsupportedError(error), sql).toBe(true);
      expect(error.feature).toBe(feature);
    }
    const named = await refused(cluster.query({ name: 'by-id', text: 'SELECT 1' }));
    expect(named.feature).toBe('named-statement');
    await cluster.transaction(async (tx) => {
      await tx.query('SET LOCAL statement_timeout = 1000');
      await tx.query('CREATE TEMP TABLE y (a int) ON COMMIT DROP');
      expect((await refused(tx.query('SET statement_timeout = 1000'))).feature).toBe('set');
    });
    // Without the option nothing is refused.
    const plain = await setup();
    await plain.cluster.query('SET search_path TO app');
  });
});

describe('transactions', () => {
  it('commits, rolls back, and uses the isolation and access mode asked for', async () => {
    const { cluster, primary, replica } = await setup();
    const value = await cluster.transaction(
      async (tx) => {
        expect(tx.node).toBe('primary');
        await tx.query('UPDATE t SET v = 1');
        return 7;
      },
      { isolation: 'serializable' },
    );
    expect(value).toBe(7);
    expect(primary.log.slice(-3)).toEqual([
      'BEGIN ISOLATION LEVEL SERIALIZABLE',
      'UPDATE t SET v = 1',
      'COMMIT',
    ]);
    const boom = new Error('boom');
    await expect(
      cluster.transaction(async (tx) => {
        await tx.query('UPDATE t SET v = 2');
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(primary.log.slice(-2)).toEqual(['UPDATE t SET v = 2', 'ROLLBACK']);
    await cluster.transaction(async (tx) => tx.query('SELECT 1'), {
      readOnly: true,
      deferrable: true,
      isolation: 'serializable',
      route: 'replica',
    });
    expect(replica.log.slice(-3)).toEqual([
      'BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE',
      'SELECT 1',
      'COMMIT',
    ]);
    expect(cluster.stats()).toMatchObject({ primary: { inUse: 0 }, routing: { transactions: 3 } });
  });

  it('validates its options and refuses a writable transaction on a replica', async () => {
    const { cluster } = await setup();
    const fn = async () => 1;
    await expect(cluster.transaction(fn, { isolation: 'snapshot' as never })).rejects.toMatchObject({
      option: 'isolation',
    });
    await expect(cluster.transaction(fn, { route: 'replica' })).rejects.toMatchObject({ option: 'route' });
    await expect(cluster.transaction(fn, { retries: 3 } as never)).rejects.toMatchObject({
      option: 'retries',
    });
    await expect(cluster.transaction('x' as never)).rejects.toMatchObject({ option: 'fn' });
  });

  it('a statement error inside is typed, and the handle refuses use after the end', async () => {
    const { cluster, primary } = await setup();
    primary.handler = (sql) => {
      if (sql.startsWith('INSERT')) throw Object.assign(new Error('nope'), { code: '23502' });
      return [{}];
    };
    let handle: { query(sql: string): Promise<unknown> } | undefined;
    const error = await cluster
      .transaction(async (tx) => {
        handle = tx;
        await tx.query('INSERT INTO t VALUES (NULL)');
      })
      .catch((e) => e);
    expect(error).toMatchObject({ code: 'E_PG_QUERY', sqlState: '23502' });
    expect(primary.log.at(-1)).toBe('ROLLBACK');
    await expect(handle!.query('SELECT 1')).rejects.toMatchObject({ code: 'E_CLOSED' });
  });
});

describe('end()', () => {
  it('drains in-flight work, rejects new calls and waiters with E_CLOSED, ends its own pools', async () => {
    const { cluster, primary } = await setup({ maxWaiting: 5 });
    const hold = gate();
    primary.handler = async () => {
      await hold.promise;
      return [{ node: 'primary' }];
    };
    const inflight = Array.from({ length: 4 }, () => cluster.query('UPDATE t SET v = 1'));
    await settle();
    const waiter = cluster.query('UPDATE t SET v = 2').catch((e) => e.code);
    await settle();
    const ended = cluster.end({ timeout: '10s' });
    expect(await waiter).toBe('E_CLOSED');
    await expect(cluster.query('SELECT 1')).rejects.toMatchObject({ code: 'E_CLOSED' });
    expect(cluster.stats().closed).toBe(true);
    hold.open();
    expect((await Promise.all(inflight)).map((r) => r.rows[0]!.node)).toEqual(Array(4).fill('primary'));
    await ended;
    await settle();
    expect(primary.clients.size).toBe(0);
  });

  it('destroys the connections still checked out at the deadline', async () => {
    const { cluster, clock, primary } = await setup();
    const hold = gate();
    primary.handler = async () => {
      await hold.promise;
      return [{}];
    };
    const stuck = cluster.query('UPDATE t SET v = 1').catch((e) => e);
    await settle();
    const ended = cluster.end({ timeout: 500 });
    await settle();
    await clock.advanceAsync(501);
    await clock.advanceAsync(1_001);
    await ended;
    expect(await stuck).toMatchObject({ code: 'E_PG_CONNECTION' });
    await settle();
    expect(primary.clients.size).toBe(0);
    expect(clock.pending).toBe(0);
    hold.open();
  });

  it('leaves no timer behind and is idempotent', async () => {
    const { cluster, clock } = await setup();
    await cluster.query('SELECT 1');
    const a = cluster.end();
    expect(cluster.end()).toBe(a);
    await a;
    await settle();
    expect(clock.pending).toBe(0);
    await cluster[Symbol.asyncDispose]();
  });
});

describe('stats()', () => {
  it('reports every node', async () => {
    const { cluster } = await setup();
    await cluster.query('SELECT 1');
    const stats = cluster.stats();
    expect(stats).toMatchObject({
      name: 'pg',
      readYourWrites: 'lsn',
      closed: false,
      primary: { name: 'primary', role: 'primary', healthy: true, max: 4, lsn: '0/1000000' },
      replicas: [
        {
          name: 'replica-0',
          role: 'replica',
          healthy: true,
          ejected: false,
          lagMs: 0,
          breaker: 'closed',
          idle: 1,
        },
      ],
    });
    expect(stats.healthChecks).toBeGreaterThanOrEqual(1);
    expect(hasCode(new Error(), 'E_POOL_FULL')).toBe(false);
  });
});
