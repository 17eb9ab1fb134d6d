import { InvalidOptionError } from '../core/errors.js';
import { knownKeys, optionsObject } from '../core/validate.js';

/*
 * The shard router's key hash in PostgreSQL, so the database can place rows itself: select a
 * logical shard's rows for a move (the built-in PostgreSQL copy does), index them by logical shard,
 * or check a row's placement. PL/pgSQL has no unsigned or wrapping 64-bit arithmetic (bigint `+`
 * and `*` raise on overflow), so a uint64 is carried in a bigint's 64 bits (two's complement: a
 * hash of 2^63 or more reads negative), products are built from 16-bit limbs that never overflow,
 * and shifts, which PostgreSQL does not check, wrap as unsigned shifts do.
 *
 * It is slow next to the JavaScript (tens of microseconds per key): fine for a move's scan of a
 * table, or an expression index, not for a hot query path. A stored logical-shard column is the
 * faster alternative for big tables (see docs/shard-router.md, "Copying a logical shard").
 */

/** Options of {@link shardRouterSql}. */
export interface ShardRouterSqlOptions {
  /** Schema to create the functions in. @default the first schema of the search_path */
  schema?: string;
}

const SCHEMA = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * SQL text creating the shard router's hash functions in PostgreSQL (idempotent: `CREATE OR
 * REPLACE`), all `IMMUTABLE STRICT PARALLEL SAFE`:
 *
 * - `buttress_xxh64(key, seed bigint DEFAULT 0) RETURNS bigint`, for `key` of type `bytea`
 *   (its bytes), `text` (its UTF-8 bytes) or `bigint` (its 8 bytes little-endian): the same 64-bit
 *   value as `xxh64(key, seed)` in JavaScript, as a bigint (negative when at or above 2^63);
 * - `buttress_logical_shard(key, logical_shards integer, seed bigint DEFAULT 0,
 *   placement text DEFAULT 'modulo') RETURNS integer`, for the same key types: the logical shard
 *   the router's default hasher (`xxh64Hasher({ seed, placement })`) gives the key;
 * - the helpers they use: `buttress_u64_mul`, `buttress_u64_add`, `buttress_u64_rotl`,
 *   `buttress_u64_mod`, `buttress_jump_hash`.
 *
 * Integer columns of other widths cast to bigint (`int4` does so implicitly); a `uuid` key that
 * JavaScript hashes as its canonical string hashes here as `key::text`.
 *
 * @example
 * await pool.query(shardRouterSql());
 * await pool.query('CREATE INDEX ON users (buttress_logical_shard(user_id, 4096))');
 * const { rows } = await pool.query(
 *   'SELECT * FROM users WHERE buttress_logical_shard(user_id, 4096) = $1', [logical]);
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad schema name.
 */
export function shardRouterSql(options?: ShardRouterSqlOptions): string {
  const opts = optionsObject(options);
  knownKeys(opts, ['schema']);
  if (opts.schema !== undefined && (typeof opts.schema !== 'string' || !SCHEMA.test(opts.schema))) {
    throw new InvalidOptionError('schema', opts.schema, 'a schema name (letters, digits, _)');
  }
  const s = opts.schema === undefined ? '' : `${opts.schema}.`;
  return `-- buttress shard-router: XXH64 key hash and logical shard placement (see docs/shard-router.md).
CREATE OR REPLACE FUNCTION ${s}buttress_u64_mul(a bigint, b bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
DECLARE
  -- a * b mod 2^64. Every partial product is below 2^49, so nothing overflows.
  al bigint := a & 4294967295;
  ah bigint := (a >> 32) & 4294967295;
  bl bigint := b & 4294967295;
  bh bigint := (b >> 32) & 4294967295;
  a0 bigint := al & 65535;
  a1 bigint := al >> 16;
  b0 bigint := bl & 65535;
  b1 bigint := bl >> 16;
  p bigint := a0 * b0;
  t bigint;
  w bigint;
  hi bigint;
BEGIN
  t := a1 * b0 + (p >> 16);
  w := a0 * b1 + (t & 65535);
  hi := a1 * b1 + (t >> 16) + (w >> 16)
    + ((ah * b0 + (((ah * b1) & 65535) << 16)) & 4294967295)
    + ((bh * a0 + (((bh * a1) & 65535) << 16)) & 4294967295);
  RETURN ((hi & 4294967295) << 32) | ((w & 65535) << 16) | (p & 65535);
END
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_u64_add(a bigint, b bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
DECLARE
  lo bigint := (a & 4294967295) + (b & 4294967295);
BEGIN
  RETURN ((((a >> 32) & 4294967295) + ((b >> 32) & 4294967295) + (lo >> 32)) << 32) | (lo & 4294967295);
END
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_u64_rotl(a bigint, r integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  SELECT (a << r) | ((a >> (64 - r)) & ~((-1)::bigint << r))
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_u64_mod(h bigint, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  -- (h as unsigned) mod n, from its two 32-bit words
  SELECT ((((h >> 32) & 4294967295) % n * (4294967296 % n) + (h & 4294967295) % n) % n)::integer
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_jump_hash(h bigint, buckets integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
DECLARE
  -- Lamping and Veach's jump consistent hash of the uint64 h.
  k bigint := h;
  b bigint := -1;
  j bigint := 0;
BEGIN
  WHILE j < buckets LOOP
    b := j;
    k := ${s}buttress_u64_add(${s}buttress_u64_mul(k, 2862933555777619845), 1);
    j := floor((b + 1)::float8 * (2147483648::float8 / (((k >> 33) & 2147483647) + 1)::float8))::bigint;
  END LOOP;
  RETURN b::integer;
END
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_xxh64_round(acc bigint, lane bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  SELECT ${s}buttress_u64_mul(
    ${s}buttress_u64_rotl(${s}buttress_u64_add(acc, ${s}buttress_u64_mul(lane, -4417276706812531889)), 31),
    -7046029288634856825)
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_xxh64_avalanche(h bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
BEGIN
  h := h # ((h >> 33) & 2147483647);
  h := ${s}buttress_u64_mul(h, -4417276706812531889);
  h := h # ((h >> 29) & 34359738367);
  h := ${s}buttress_u64_mul(h, 1609587929392839161);
  RETURN h # ((h >> 32) & 4294967295);
END
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_xxh64(data bytea, seed bigint DEFAULT 0) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
DECLARE
  -- The XXH64 primes as signed bigints: 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
  -- 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5.
  p1 constant bigint := -7046029288634856825;
  p2 constant bigint := -4417276706812531889;
  p3 constant bigint := 1609587929392839161;
  p4 constant bigint := -8796714831421723037;
  p5 constant bigint := 2870177450012600261;
  len integer := length(data);
  i integer := 0;
  h bigint;
  v1 bigint;
  v2 bigint;
  v3 bigint;
  v4 bigint;
  lane bigint;
BEGIN
  IF len >= 32 THEN
    v1 := ${s}buttress_u64_add(${s}buttress_u64_add(seed, p1), p2);
    v2 := ${s}buttress_u64_add(seed, p2);
    v3 := seed;
    v4 := ${s}buttress_u64_add(seed, 7046029288634856825); -- seed - p1
    WHILE i <= len - 32 LOOP
      FOR j IN 0..3 LOOP
        lane := get_byte(data, i)::bigint | (get_byte(data, i + 1)::bigint << 8)
          | (get_byte(data, i + 2)::bigint << 16) | (get_byte(data, i + 3)::bigint << 24)
          | (get_byte(data, i + 4)::bigint << 32) | (get_byte(data, i + 5)::bigint << 40)
          | (get_byte(data, i + 6)::bigint << 48) | (get_byte(data, i + 7)::bigint << 56);
        CASE j
          WHEN 0 THEN v1 := ${s}buttress_xxh64_round(v1, lane);
          WHEN 1 THEN v2 := ${s}buttress_xxh64_round(v2, lane);
          WHEN 2 THEN v3 := ${s}buttress_xxh64_round(v3, lane);
          ELSE v4 := ${s}buttress_xxh64_round(v4, lane);
        END CASE;
        i := i + 8;
      END LOOP;
    END LOOP;
    h := ${s}buttress_u64_add(${s}buttress_u64_add(${s}buttress_u64_rotl(v1, 1), ${s}buttress_u64_rotl(v2, 7)),
      ${s}buttress_u64_add(${s}buttress_u64_rotl(v3, 12), ${s}buttress_u64_rotl(v4, 18)));
    h := ${s}buttress_u64_add(${s}buttress_u64_mul(h # ${s}buttress_xxh64_round(0, v1), p1), p4);
    h := ${s}buttress_u64_add(${s}buttress_u64_mul(h # ${s}buttress_xxh64_round(0, v2), p1), p4);
    h := ${s}buttress_u64_add(${s}buttress_u64_mul(h # ${s}buttress_xxh64_round(0, v3), p1), p4);
    h := ${s}buttress_u64_add(${s}buttress_u64_mul(h # ${s}buttress_xxh64_round(0, v4), p1), p4);
  ELSE
    h := ${s}buttress_u64_add(seed, p5);
  END IF;
  h := ${s}buttress_u64_add(h, len);
  WHILE i + 8 <= len LOOP
    lane := get_byte(data, i)::bigint | (get_byte(data, i + 1)::bigint << 8)
      | (get_byte(data, i + 2)::bigint << 16) | (get_byte(data, i + 3)::bigint << 24)
      | (get_byte(data, i + 4)::bigint << 32) | (get_byte(data, i + 5)::bigint << 40)
      | (get_byte(data, i + 6)::bigint << 48) | (get_byte(data, i + 7)::bigint << 56);
    h := ${s}buttress_u64_add(${s}buttress_u64_mul(${s}buttress_u64_rotl(h # ${s}buttress_xxh64_round(0, lane), 27), p1), p4);
    i := i + 8;
  END LOOP;
  IF i + 4 <= len THEN
    lane := get_byte(data, i)::bigint | (get_byte(data, i + 1)::bigint << 8)
      | (get_byte(data, i + 2)::bigint << 16) | (get_byte(data, i + 3)::bigint << 24);
    h := ${s}buttress_u64_add(${s}buttress_u64_mul(${s}buttress_u64_rotl(h # ${s}buttress_u64_mul(lane, p1), 23), p2), p3);
    i := i + 4;
  END IF;
  WHILE i < len LOOP
    h := ${s}buttress_u64_mul(${s}buttress_u64_rotl(h # ${s}buttress_u64_mul(get_byte(data, i)::bigint, p5), 11), p1);
    i := i + 1;
  END LOOP;
  RETURN ${s}buttress_xxh64_avalanche(h);
END
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_xxh64(key text, seed bigint DEFAULT 0) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  SELECT ${s}buttress_xxh64(convert_to(key, 'UTF8'), seed)
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_xxh64(key bigint, seed bigint DEFAULT 0) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  -- The 8 bytes of key little-endian: one lane.
  SELECT ${s}buttress_xxh64_avalanche(
    ${s}buttress_u64_add(
      ${s}buttress_u64_mul(
        ${s}buttress_u64_rotl(
          ${s}buttress_u64_add(${s}buttress_u64_add(seed, 2870177450012600261), 8) # ${s}buttress_xxh64_round(0, key),
          27),
        -7046029288634856825),
      -8796714831421723037))
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_place(h bigint, logical_shards integer, placement text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
BEGIN
  IF logical_shards < 1 THEN
    RAISE EXCEPTION 'logical_shards must be at least 1, got %', logical_shards USING ERRCODE = '22003';
  END IF;
  IF placement = 'modulo' THEN
    RETURN ${s}buttress_u64_mod(h, logical_shards);
  ELSIF placement = 'jump' THEN
    RETURN ${s}buttress_jump_hash(h, logical_shards);
  END IF;
  RAISE EXCEPTION 'placement must be ''modulo'' or ''jump'', got %', placement USING ERRCODE = '22023';
END
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_logical_shard(key bytea, logical_shards integer, seed bigint DEFAULT 0, placement text DEFAULT 'modulo') RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  SELECT ${s}buttress_place(${s}buttress_xxh64(key, seed), logical_shards, placement)
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_logical_shard(key text, logical_shards integer, seed bigint DEFAULT 0, placement text DEFAULT 'modulo') RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  SELECT ${s}buttress_place(${s}buttress_xxh64(key, seed), logical_shards, placement)
$buttress$;

CREATE OR REPLACE FUNCTION ${s}buttress_logical_shard(key bigint, logical_shards integer, seed bigint DEFAULT 0, placement text DEFAULT 'modulo') RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $buttress$
  SELECT ${s}buttress_place(${s}buttress_xxh64(key, seed), logical_shards, placement)
$buttress$;
`;
}
