import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgCluster, type PgCluster } from '../../src/pool/index.js';
import { dropFenceSchemaSql } from '../../src/shard-router/fence.js';
import {
  createIdGenerator,
  createShardRouter,
  decodeId,
  evenShardMap,
  idGeneratorSql,
  pgShardMapStore,
  redisShardMapStore,
  type ShardMapStore,
  type ShardRouter,
  shardRouterSql,
} from '../../src/shard-router/index.js';
import { createTcpProxy } from '../../src/testing/index.js';
import { adminQuery, PRIMARY, uniqueName, waitFor } from './pool-helpers.js';

// Against the four shard databases of the shared primary (scripts/services.sh creates shard_0 ..
// shard_3) and the shared Redis. Every table, function, schema and key here carries a random
// suffix and is dropped afterwards; nothing skips when a server is missing.

const DATABASES = ['shard_0', 'shard_1', 'shard_2', 'shard_3'] as const;
const app = uniqueName('sr_it');
const table = uniqueName('sr_users');
const prefix = uniqueName('bt');
const fnSchema = uniqueName('sr_fn');
const LOGICAL = 256;
const USERS = 10_000;

const pools: pg.Pool[] = [];
function pool(database: string, options: pg.PoolConfig = {}): pg.Pool {
  const p = new pg.Pool({ ...PRIMARY, database, application_name: app, max: 4, ...options });
  p.on('error', () => {});
  pools.push(p);
  return p;
}

function nodesOf(): Record<string, pg.Pool> {
  return Object.fromEntries(DATABASES.map((db) => [db, pool(db)]));
}

const userKey = (i: number) => `user:${i}`;

beforeAll(async () => {
  for (const db of DATABASES) {
    await adminQuery(
      { ...PRIMARY, database: db },
      `CREATE TABLE ${table} (user_id text PRIMARY KEY, logical integer NOT NULL, name text NOT NULL)`,
    );
    await adminQuery({ ...PRIMARY, database: db }, `CREATE SCHEMA ${fnSchema}`);
    await adminQuery({ ...PRIMARY, database: db }, shardRouterSql({ schema: fnSchema }));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end().catch(() => {})));
  for (const db of DATABASES) {
    await adminQuery({ ...PRIMARY, database: db }, `DROP TABLE IF EXISTS ${table}`);
    await adminQuery({ ...PRIMARY, database: db }, `DROP SCHEMA IF EXISTS ${fnSchema} CASCADE`);
    await adminQuery({ ...PRIMARY, database: db }, dropFenceSchemaSql(prefix));
  }
}, 60_000);

/** Runs `fn` over `items` with at most `n` in flight. */
async function inParallel<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

describe('10,000 users on shard_0 .. shard_3', () => {
  let router: ShardRouter<pg.Pool>;

  beforeAll(async () => {
    router = createShardRouter({
      logicalShards: LOGICAL,
      nodes: nodesOf(),
      map: evenShardMap(LOGICAL, [...DATABASES]),
      fencePrefix: prefix,
    });
    await router.installFences();
    const users = Array.from({ length: USERS }, (_, i) => i);
    await inParallel(users, 12, (i) =>
      router.transaction(userKey(i), (client, { logical }) =>
        client.query(`INSERT INTO ${table} (user_id, logical, name) VALUES ($1, $2, $3)`, [
          userKey(i),
          logical,
          `n${i}`,
        ]),
      ),
    );
  }, 120_000);

  it('every row lives where the map says, once, on the logical shard the SQL hash computes too', async () => {
    const seen = new Map<string, string>();
    for (const db of DATABASES) {
      const rows = await adminQuery<{ user_id: string; logical: number; sql_logical: number }>(
        { ...PRIMARY, database: db },
        `SELECT user_id, logical, ${fnSchema}.buttress_logical_shard(user_id, ${LOGICAL}) AS sql_logical FROM ${table}`,
      );
      for (const row of rows) {
        expect(seen.has(row.user_id)).toBe(false);
        seen.set(row.user_id, db);
        const location = router.shardFor(row.user_id);
        expect(row.logical).toBe(location.logical);
        expect(row.sql_logical).toBe(location.logical);
        expect(location.node).toBe(db);
      }
    }
    expect(seen.size).toBe(USERS);
  });

  it("a fenced transaction leaves the caller's statements the session's lock_timeout, and read-only ones read-only", async () => {
    const [inside, readOnly] = await Promise.all([
      router.transaction(
        'user:1',
        async (client) => (await client.query('SHOW lock_timeout')).rows[0].lock_timeout,
      ),
      router.transaction(
        'user:1',
        async (client) => (await client.query('SHOW transaction_read_only')).rows[0].transaction_read_only,
        { readOnly: true },
      ),
    ]);
    expect(inside).toBe('0');
    expect(readOnly).toBe('on');
  });

  it('all() counts add up to 10,000, by node and by logical shard', async () => {
    const byNode = await router.all(async (p, { logicals }) => {
      const { rows } = await p.query(`SELECT count(*)::int AS n FROM ${table} WHERE logical = ANY ($1)`, [
        logicals,
      ]);
      return rows[0].n as number;
    });
    expect(byNode.failures).toEqual([]);
    expect(byNode.results).toHaveLength(4);
    expect(byNode.results.reduce((s, r) => s + r.value, 0)).toBe(USERS);
    const byLogical = await router.all(
      async (p, { logical }) => {
        const { rows } = await p.query(`SELECT count(*)::int AS n FROM ${table} WHERE logical = $1`, [
          logical,
        ]);
        return rows[0].n as number;
      },
      { by: 'logical', concurrency: 8 },
    );
    expect(byLogical.results).toHaveLength(LOGICAL);
    expect(byLogical.results.reduce((s, r) => s + r.value, 0)).toBe(USERS);
  });

  it("a node's connections killed mid-all(): partial 'allow' returns the others and names the failure", async () => {
    const proxy = await createTcpProxy({ target: { host: PRIMARY.host, port: PRIMARY.port } });
    try {
      const nodes = nodesOf();
      nodes.shard_2 = pool('shard_2', { host: proxy.host, port: proxy.port });
      const r = createShardRouter({ logicalShards: LOGICAL, nodes, map: router.map, fencePrefix: prefix });
      let started = 0;
      const pending = r.all(
        async (p, { logicals }) => {
          started++;
          const { rows } = await p.query(
            `SELECT count(*)::int AS n, pg_sleep(0.3) FROM ${table} WHERE logical = ANY ($1)`,
            [logicals],
          );
          return rows[0].n as number;
        },
        { partial: 'allow', timeout: '10s' },
      );
      await waitFor(() => started === 4 && proxy.connections > 0, 'the four queries to be in flight');
      proxy.refuse().cut(); // the node goes away with its query running
      const { results, failures } = await pending;
      expect(results.map((x) => x.node).sort()).toEqual(['shard_0', 'shard_1', 'shard_3']);
      expect(failures).toHaveLength(1);
      expect(failures[0]!.node).toBe('shard_2');
      expect(failures[0]!.error).toBeInstanceOf(Error);
      const shard2 = router.map.shardsOf('shard_2');
      const expected = USERS - (await countOn('shard_2', shard2));
      expect(results.reduce((s, x) => s + x.value, 0)).toBe(expected);
      const strict = await r.all(async (p) => (await p.query('SELECT 1')).rowCount).catch((e: unknown) => e);
      expect(strict).toMatchObject({ code: 'E_SCATTER_FAILED' });
    } finally {
      await proxy.close();
    }
  });
});

async function countOn(db: string, logicals: number[]): Promise<number> {
  const rows = await adminQuery<{ n: number }>(
    { ...PRIMARY, database: db },
    `SELECT count(*)::int AS n FROM ${table} WHERE logical = ANY ($1)`,
    [logicals],
  );
  return rows[0]!.n;
}

describe('buttress PgCluster nodes', () => {
  it("routes fenced transactions to each cluster's primary, and run() hands over the cluster", async () => {
    const clusters: Record<string, PgCluster> = {
      shard_1: createPgCluster({
        Pool: pg.Pool,
        primary: { ...PRIMARY, database: 'shard_1', max: 2, application_name: app },
      }),
      shard_3: createPgCluster({
        Pool: pg.Pool,
        primary: { ...PRIMARY, database: 'shard_3', max: 2, application_name: app },
      }),
    };
    const clusterPrefix = uniqueName('btc');
    try {
      const router = createShardRouter({
        logicalShards: 32,
        nodes: clusters,
        map: evenShardMap(32, ['shard_1', 'shard_3']),
        fencePrefix: clusterPrefix,
      });
      await router.installFences();
      const keys = ['cluster:a', 'cluster:b', 'cluster:c', 'cluster:d', 'cluster:e', 'cluster:f'];
      for (const key of keys) {
        await router.transaction(key, (client, { logical }) =>
          client.query(`INSERT INTO ${table} (user_id, logical, name) VALUES ($1, $2, 'c')`, [key, logical]),
        );
      }
      for (const key of keys) {
        const rows = await router.run(
          key,
          async (cluster) =>
            (await cluster.query(`SELECT logical FROM ${table} WHERE user_id = $1`, [key])).rows,
        );
        expect(rows).toEqual([{ logical: router.shardFor(key).logical }]);
      }
      expect(new Set(keys.map((k) => router.shardFor(k).node)).size).toBe(2);
    } finally {
      for (const cluster of Object.values(clusters)) {
        await cluster.query(`DELETE FROM ${table} WHERE user_id LIKE 'cluster:%'`).catch(() => {});
        await cluster.query(dropFenceSchemaSql(clusterPrefix)).catch(() => {});
        await cluster.end();
      }
    }
  });
});

describe('IDs minted by PostgreSQL', () => {
  it('the PL/pgSQL function mints the layout decodeId reads, and its _shard() reads JavaScript IDs', async () => {
    const fn = `${fnSchema}.next_id`;
    const epoch = Date.UTC(2024, 0, 1);
    const config = { ...PRIMARY, database: 'shard_1' };
    await adminQuery(config, idGeneratorSql({ epoch, functionName: fn }));
    const before = Date.now();
    const rows = await adminQuery<{ id: string }>(
      config,
      `SELECT ${fn}(777)::text AS id FROM generate_series(1, 50)`,
    );
    const after = Date.now();
    const ids = rows.map((r) => BigInt(r.id));
    expect(new Set(ids).size).toBe(50);
    for (const id of ids) {
      const d = decodeId(id, { epoch });
      expect(d.shard).toBe(777);
      expect(d.timestamp).toBeGreaterThanOrEqual(before - 1000);
      expect(d.timestamp).toBeLessThanOrEqual(after + 1000);
    }
    const js = createIdGenerator({ epoch });
    const mine = await js.next(4242);
    const back = await adminQuery<{ s: number }>(config, `SELECT ${fn}_shard($1::bigint) AS s`, [
      mine.toString(),
    ]);
    expect(back[0]!.s).toBe(4242);
    await expect(adminQuery(config, `SELECT ${fn}(8192)`)).rejects.toThrow(/outside/);
  });
});

/**
 * Two routers on two store instances of one map: the first stores version 1, the second loads
 * it; once `subscribed()`, a move stored by the first reaches the second by push alone (no polling).
 */
async function pushBetweenRouters(s1: ShardMapStore, s2: ShardMapStore, subscribed: () => Promise<boolean>) {
  const nodes = { a: {}, b: {} };
  const first = createShardRouter({
    logicalShards: 16,
    nodes,
    map: evenShardMap(16, ['a', 'b']),
    store: s1,
    pollInterval: false,
  });
  await first.publishMap(first.map);
  const second = await createShardRouter({
    logicalShards: 16,
    nodes,
    store: s2,
    pollInterval: false,
  }).ready();
  expect(second.mapVersion).toBe(1);
  await waitFor(subscribed, 'the subscriptions');
  await first.publishMap(first.map.withMove(9, 'a'));
  await waitFor(() => second.mapVersion === 2, 'the pushed map');
  expect(second.locate(9).node).toBe('a');
  expect(await s1.compareAndSet(1, first.map.toJSON())).toBe(false);
  await first.close();
  await second.close();
}

describe('shared map stores push to every router', () => {
  it('PostgreSQL: a map stored by one router reaches the other by NOTIFY', async () => {
    const control = pool('shard_0');
    const storeTable = uniqueName('sr_map');
    const s1 = pgShardMapStore(control, { table: storeTable, name: 'users' });
    const s2 = pgShardMapStore(control, { table: storeTable, name: 'users' });
    try {
      await pushBetweenRouters(s1, s2, () => serverListening(storeTable));
    } finally {
      await s1.close();
      await s2.close();
      await adminQuery({ ...PRIMARY, database: 'shard_0' }, `DROP TABLE IF EXISTS ${storeTable}`);
    }
  });

  it('Redis: a map stored by one router reaches the other by pub/sub', async () => {
    const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
    const namespace = uniqueName('sr');
    const s1 = redisShardMapStore(redis, { namespace, name: 'users' });
    const s2 = redisShardMapStore(redis, { namespace, name: 'users' });
    try {
      await redis.connect();
      const channel = `{${namespace}:shard-map:users}:events`;
      await pushBetweenRouters(s1, s2, async () => Number((await redis.pubsub('NUMSUB', channel))[1]) === 2);
    } finally {
      await s1.close();
      await s2.close();
      await redis.del(`{${namespace}:shard-map:users}:map`);
      redis.disconnect();
    }
  });
});

/** Whether both stores' LISTEN connections are up: each idles after reading the stored version. */
async function serverListening(storeTable: string): Promise<boolean> {
  const rows = await adminQuery<{ n: number }>(
    { ...PRIMARY, database: 'shard_0' },
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE application_name = $1 AND state = 'idle' AND query LIKE $2`,
    [app, `SELECT version FROM ${storeTable} %`],
  );
  return rows[0]!.n >= 2;
}
