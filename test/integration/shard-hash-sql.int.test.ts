import { fc, test } from '@fast-check/vitest';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xxh64 } from '../../src/shard-router/hash/xxh64.js';
import { xxh64Hasher } from '../../src/shard-router/hasher.js';
import { shardRouterSql } from '../../src/shard-router/sql.js';
import { uniqueName } from './pool-helpers.js';

// The key hash in PL/pgSQL (shardRouterSql) against the JavaScript one, on the real PostgreSQL:
// the database must place every key where the router does. The functions go into a schema of this
// file's own in shard_0, dropped afterwards. Nothing skips: no server, no pass.

const schema = uniqueName('bt_hash');
let client: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'shard_0' });
  client.on('error', () => {});
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(shardRouterSql({ schema }));
});

afterAll(async () => {
  await client?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client?.end();
});

const signed = (h: bigint) => BigInt.asIntN(64, h).toString();
const seed = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const shards = fc.oneof(fc.constantFrom(1, 4, 4096), fc.integer({ min: 1, max: 1 << 20 }));

describe('shardRouterSql: the key hash in PostgreSQL', () => {
  test.prop([fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 40 }), seed], {
    numRuns: 15,
  })('buttress_xxh64(bytea, seed) equals xxh64 for any bytes and seed', async (keys, s) => {
    const { rows } = await client.query<{ h: string }>(
      `SELECT ${schema}.buttress_xxh64(k, $2::numeric::bigint)::text AS h FROM unnest($1::bytea[]) WITH ORDINALITY AS t(k, i) ORDER BY i`,
      [keys.map((k) => Buffer.from(k)), signed(s)],
    );
    expect(rows.map((r) => r.h)).toEqual(keys.map((k) => signed(xxh64(k, s))));
  });

  test.prop(
    [fc.array(fc.string({ unit: 'grapheme', maxLength: 40 }), { minLength: 1, maxLength: 40 }), seed],
    {
      numRuns: 15,
    },
  )('buttress_xxh64(text, seed) equals xxh64 of the string (its UTF-8 bytes)', async (keys, s) => {
    const clean = keys.map((k) => k.replaceAll('\u0000', '')); // text cannot hold NUL
    const { rows } = await client.query<{ h: string }>(
      `SELECT ${schema}.buttress_xxh64(k, $2::numeric::bigint)::text AS h FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i`,
      [clean, signed(s)],
    );
    expect(rows.map((r) => r.h)).toEqual(clean.map((k) => signed(xxh64(k, s))));
  });

  test.prop(
    [fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { minLength: 1, maxLength: 40 })],
    {
      numRuns: 15,
    },
  )('buttress_xxh64(bigint) equals xxh64 of the integer (its int64 bytes)', async (keys) => {
    const { rows } = await client.query<{ h: string }>(
      `SELECT ${schema}.buttress_xxh64(k)::text AS h FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i`,
      [keys.map(String)],
    );
    expect(rows.map((r) => r.h)).toEqual(keys.map((k) => signed(xxh64(k))));
  });

  test.prop(
    [
      fc.array(fc.oneof(fc.string({ maxLength: 30 }), fc.maxSafeInteger()), { minLength: 1, maxLength: 40 }),
      shards,
      fc.constantFrom<'modulo' | 'jump'>('modulo', 'jump'),
      fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
    ],
    { numRuns: 20 },
  )(
    'buttress_logical_shard places every key where the router’s hasher does',
    async (keys, n, placement, s) => {
      const hasher = xxh64Hasher({ seed: s, placement });
      const texts = keys.map((k) => (typeof k === 'string' ? k.replaceAll('\u0000', '') : String(k)));
      const ints = keys.filter((k): k is number => typeof k === 'number');
      const { rows } = await client.query<{ t: number }>(
        `SELECT ${schema}.buttress_logical_shard(k, $2, $3::bigint, $4) AS t
         FROM unnest($1::text[]) WITH ORDINALITY AS x(k, i) ORDER BY i`,
        [texts, n, s.toString(), placement],
      );
      expect(rows.map((r) => r.t)).toEqual(texts.map((k) => hasher.logical(k, n)));
      const { rows: intRows } = await client.query<{ t: number }>(
        `SELECT ${schema}.buttress_logical_shard(k, $2, $3::bigint, $4) AS t
         FROM unnest($1::bigint[]) WITH ORDINALITY AS x(k, i) ORDER BY i`,
        [ints.map(String), n, s.toString(), placement],
      );
      expect(intRows.map((r) => r.t)).toEqual(ints.map((k) => hasher.logical(k, n)));
    },
  );

  it('serves an expression index: rows of one logical shard found by the index', async () => {
    const table = `${schema}.users`;
    await client.query(`CREATE TABLE ${table} (user_id bigint PRIMARY KEY)`);
    await client.query(`INSERT INTO ${table} SELECT g FROM generate_series(1, 2000) g`);
    await client.query(`CREATE INDEX ON ${table} (${schema}.buttress_logical_shard(user_id, 64))`);
    const hasher = xxh64Hasher();
    const target = hasher.logical(1, 64);
    const { rows } = await client.query<{ user_id: string }>(
      `SELECT user_id FROM ${table} WHERE ${schema}.buttress_logical_shard(user_id, 64) = $1 ORDER BY user_id`,
      [target],
    );
    const expected = Array.from({ length: 2000 }, (_, i) => i + 1).filter(
      (id) => hasher.logical(id, 64) === target,
    );
    expect(rows.map((r) => Number(r.user_id))).toEqual(expected);
  });

  it('rejects a bad placement and shard count', async () => {
    await expect(client.query(`SELECT ${schema}.buttress_logical_shard('k'::text, 0)`)).rejects.toThrow(
      /logical_shards/,
    );
    await expect(
      client.query(`SELECT ${schema}.buttress_logical_shard('k'::text, 8, 0, 'ring')`),
    ).rejects.toThrow(/placement/);
  });
});
