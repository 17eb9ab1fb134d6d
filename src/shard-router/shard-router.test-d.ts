import type pg from 'pg';
import { describe, expectTypeOf, it } from 'vitest';
import type { PgCluster } from '../pool/index.js';
import {
  createIdGenerator,
  createShardRouter,
  type DecodedId,
  evenShardMap,
  rendezvous,
  type ScatterResult,
  type ShardLocation,
  type ShardRouter,
  type SqlClient,
} from './index.js';

declare const pool: pg.Pool;
declare const cluster: PgCluster;

describe('shard-router types', () => {
  it('carries the node type from `nodes` to run() and all()', async () => {
    const router = createShardRouter({
      logicalShards: 64,
      nodes: { a: pool, b: pool },
      map: evenShardMap(64, ['a', 'b']),
    });
    expectTypeOf(router).toEqualTypeOf<ShardRouter<pg.Pool>>();
    expectTypeOf(router.shardFor('k')).toEqualTypeOf<ShardLocation>();
    const n = await router.run('k', (node, { logical }) => {
      expectTypeOf(node).toEqualTypeOf<pg.Pool>();
      return logical;
    });
    expectTypeOf(n).toEqualTypeOf<number>();
    const all = await router.all((node) => {
      expectTypeOf(node).toEqualTypeOf<pg.Pool>();
      return 'x';
    });
    expectTypeOf(all).toEqualTypeOf<ScatterResult<string>>();
    await router.transaction(router.shardForId(1n), (client, { attempt }) => {
      expectTypeOf(client).toEqualTypeOf<SqlClient>();
      expectTypeOf(attempt).toEqualTypeOf<number>();
    });
    const clusters = createShardRouter({
      logicalShards: 4,
      nodes: { c: cluster },
      map: evenShardMap(4, ['c']),
    });
    expectTypeOf(clusters.node('c')).toEqualTypeOf<PgCluster>();
  });

  it('takes keys of the four kinds only', () => {
    const router = createShardRouter({ logicalShards: 4, nodes: { a: 1 }, map: evenShardMap(4, ['a']) });
    router.shardFor('s');
    router.shardFor(1);
    router.shardFor(1n);
    router.shardFor(new Uint8Array(2));
    // @ts-expect-error objects are not keys
    router.shardFor({ id: 1 });
  });

  it('mints bigint IDs, or strings, and overloads rendezvous by k', async () => {
    const ids = createIdGenerator();
    expectTypeOf(await ids.next(1)).toEqualTypeOf<bigint>();
    expectTypeOf(await ids.nextString(1)).toEqualTypeOf<string>();
    expectTypeOf(ids.decode(1n)).toEqualTypeOf<DecodedId>();
    expectTypeOf(rendezvous(['a', 'b'], 'k')).toEqualTypeOf<string>();
    expectTypeOf(rendezvous(['a', 'b'], 'k', { k: 2 })).toEqualTypeOf<string[]>();
  });
});
