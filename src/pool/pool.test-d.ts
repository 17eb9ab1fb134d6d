import pg from 'pg';
import { describe, expectTypeOf, it } from 'vitest';
import {
  classifySql,
  createPgCluster,
  type PgCluster,
  type PgClusterOptions,
  type PgSession,
  type PgTransaction,
  type SqlClassification,
} from './index.js';

declare const cluster: PgCluster;

describe('pool types', () => {
  it('takes pg pool configs, connection strings and pg.Pool instances', () => {
    expectTypeOf(
      createPgCluster({ Pool: pg.Pool, primary: 'postgres://localhost/app' }),
    ).toEqualTypeOf<PgCluster>();
    expectTypeOf(createPgCluster).parameter(0).toMatchTypeOf<PgClusterOptions>();
    createPgCluster({
      Pool: pg.Pool,
      primary: { host: 'db', max: 20 },
      replicas: [new pg.Pool({ host: 'replica' }), 'postgres://replica-2/app'],
      readYourWrites: 'sticky',
      maxReplicaLag: '2s',
      acquireTimeout: 5_000,
      maxLifetime: false,
      pgbouncer: 'transaction',
    });
    // @ts-expect-error: not a mode
    createPgCluster({ primary: 'x', readYourWrites: 'always' });
    // @ts-expect-error: the primary is required
    createPgCluster({ Pool: pg.Pool });
  });

  it('query results are typed by their row', async () => {
    const { rows } = await cluster.query<{ id: number }>('SELECT id FROM t WHERE id = $1', [1]);
    expectTypeOf(rows).toEqualTypeOf<{ id: number }[]>();
    expectTypeOf(cluster.read('SELECT 1')).resolves.toMatchTypeOf<pg.QueryResult>();
    // @ts-expect-error: not a route
    cluster.query('SELECT 1', [], { route: 'secondary' });
  });

  it('transaction returns what the callback returns and hands a pg client', async () => {
    const id = await cluster.transaction(async (tx) => {
      expectTypeOf(tx).toEqualTypeOf<PgTransaction>();
      expectTypeOf(tx.client).toEqualTypeOf<pg.PoolClient>();
      return 42;
    });
    expectTypeOf(id).toEqualTypeOf<number>();
    // @ts-expect-error: not an isolation level
    void cluster.transaction(async () => 1, { isolation: 'snapshot' });
  });

  it('sessions, tokens and the classifier', () => {
    const session = cluster.session('1.16b374d848.');
    expectTypeOf(session).toEqualTypeOf<PgSession>();
    expectTypeOf(session.consistencyToken()).toEqualTypeOf<string>();
    expectTypeOf(session.lsn).toEqualTypeOf<string | undefined>();
    expectTypeOf(classifySql('SELECT 1')).toEqualTypeOf<SqlClassification>();
    expectTypeOf(classifySql('SELECT 1').kind).toEqualTypeOf<'read' | 'write'>();
  });
});
