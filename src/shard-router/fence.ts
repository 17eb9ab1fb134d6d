import type { PoolClient } from 'pg';
import { InvalidOptionError } from '../core/errors.js';
import { PgCluster } from '../pool/index.js';
import type { FenceState } from './errors.js';

/*
 * Fencing: what makes a write routed with an old map fail instead of landing on a node that no
 * longer owns its logical shard. Every node keeps one row per logical shard it knows about in
 * `<prefix>_fence`:
 *
 *   owned     the node owns the shard: routed transactions run
 *   copying   the node owns it and a move is copying it away: transactions run, and their
 *             changes are recorded in `<prefix>_changes` for the move's catch-up
 *   incoming  a move is copying it here; not switched yet: transactions are refused
 *   moved     it moved away (to `peer`, at `map_version`): transactions are refused
 *
 * A routed transaction starts with `<prefix>_enter(logical)`, which reads the row FOR SHARE: many
 * transactions share the lock, and it stays held until each commits. A move freezes the shard by
 * taking the row FOR UPDATE, which waits for the transactions in flight to finish and holds new
 * ones at their `enter`; it marks the row `moved` and commits, and the held transactions then read
 * `moved` and fail with E_STALE_SHARD_MAP, so the router retries them on the new node. Writes of
 * other logical shards never wait: each shard has its own row.
 */

/**
 * A connection the router runs SQL on: a pg `PoolClient` or anything with its `query` and
 * `release`. Multi-statement text without parameters must be accepted (pg's simple query).
 */
export interface SqlClient {
  query(text: string, values?: readonly unknown[]): Promise<any>;
  release(error?: Error | boolean): void;
}

/**
 * How the router opens a SQL connection on a node, for fenced transactions, fence setup and
 * moves. The default handles a buttress `PgCluster` (its primary) and a `pg.Pool`.
 */
export type SqlConnect<N> = (node: N, name: string, signal: AbortSignal | undefined) => Promise<SqlClient>;

/**
 * The default {@link SqlConnect}: a buttress `PgCluster`'s primary (`connect({ signal })`), or any
 * pool with a `connect()` resolving to a client (`pg.Pool`).
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a node that has neither.
 */
export function defaultSqlConnect(
  node: unknown,
  name: string,
  signal: AbortSignal | undefined,
): Promise<SqlClient> {
  if (node instanceof PgCluster) return node.connect({ route: 'primary', signal }) as Promise<SqlClient>;
  const pool = node as { connect?: () => Promise<PoolClient> } | null;
  if (typeof pool === 'object' && pool !== null && typeof pool.connect === 'function') {
    return pool.connect() as Promise<SqlClient>;
  }
  return Promise.reject(
    new InvalidOptionError(
      `nodes.${name}`,
      node,
      'a pg.Pool or a buttress PgCluster for SQL work (or pass the router a `connect` option)',
    ),
  );
}

const PREFIX = /^[a-z_][a-z0-9_]{0,39}$/;

/** Validates the name prefix of the router's tables and functions. */
export function fencePrefix(value: unknown): string {
  if (value === undefined) return 'buttress_shard';
  if (typeof value !== 'string' || !PREFIX.test(value)) {
    throw new InvalidOptionError('fencePrefix', value, 'a lowercase SQL identifier of at most 40 characters');
  }
  return value;
}

/** The custom setting a routed transaction sets when its shard is being copied away. */
export function captureSetting(prefix: string): string {
  return `buttress.capture_${prefix}`;
}

/**
 * SQL creating the fence table, the change log and the functions, idempotently, under an advisory
 * lock (so two processes setting up at once do not race on `CREATE ... IF NOT EXISTS`).
 */
export function fenceSchemaSql(prefix: string): string {
  const setting = captureSetting(prefix);
  return `SELECT pg_advisory_xact_lock(hashtext('${prefix}:setup'));
CREATE TABLE IF NOT EXISTS ${prefix}_fence (
  logical integer PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('owned', 'copying', 'incoming', 'moved')),
  map_version bigint NOT NULL,
  peer text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${prefix}_changes (
  id bigserial PRIMARY KEY,
  logical integer NOT NULL,
  tbl text NOT NULL,
  pk jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS ${prefix}_changes_logical ON ${prefix}_changes (logical, id);
CREATE OR REPLACE FUNCTION ${prefix}_enter(shard integer, OUT state text, OUT map_version bigint)
LANGUAGE plpgsql VOLATILE AS $fence$
BEGIN
  -- FOR SHARE: held until this transaction ends, so a move's FOR UPDATE waits for it.
  SELECT f.state, f.map_version INTO state, map_version
    FROM ${prefix}_fence f WHERE f.logical = shard FOR SHARE;
  IF state = 'copying' THEN
    PERFORM set_config('${setting}', shard::text, true);
  END IF;
END
$fence$;
CREATE OR REPLACE FUNCTION ${prefix}_capture() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $fence$
DECLARE
  shard text := current_setting('${setting}', true);
  old_key jsonb;
  new_key jsonb;
  r jsonb;
BEGIN
  -- Only transactions that entered a shard being copied away record their changes.
  IF shard IS NULL OR shard = '' THEN
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    r := to_jsonb(OLD);
    SELECT jsonb_object_agg(c, r -> c) INTO old_key FROM unnest(TG_ARGV) AS c;
    INSERT INTO ${prefix}_changes (logical, tbl, pk)
      VALUES (shard::integer, quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), old_key);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    r := to_jsonb(NEW);
    SELECT jsonb_object_agg(c, r -> c) INTO new_key FROM unnest(TG_ARGV) AS c;
    IF old_key IS DISTINCT FROM new_key THEN
      INSERT INTO ${prefix}_changes (logical, tbl, pk)
        VALUES (shard::integer, quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), new_key);
    END IF;
  END IF;
  RETURN NULL;
END
$fence$;`;
}

/** SQL dropping everything {@link fenceSchemaSql} created (the capture triggers go with the function). */
export function dropFenceSchemaSql(prefix: string): string {
  return `DROP FUNCTION IF EXISTS ${prefix}_capture() CASCADE;
DROP FUNCTION IF EXISTS ${prefix}_enter(integer);
DROP TABLE IF EXISTS ${prefix}_changes;
DROP TABLE IF EXISTS ${prefix}_fence;`;
}

/** A fence row as the router reads it. */
export interface FenceRow {
  readonly state: FenceState;
  readonly mapVersion: number | undefined;
}

/** The BEGIN of a routed transaction and its fence check, in one round trip. */
export function enterSql(prefix: string, logical: number, begin: string, readOnly: boolean): string {
  // `logical` is an integer we computed: safe to inline, which lets the statements travel as one
  // simple query. FOR SHARE is refused in a read-only transaction, so a read-only one turns
  // read-only after its fence check (PostgreSQL allows that switch, not the reverse).
  // The lock_timeout `begin` set bounds the wait at a frozen shard only: the caller's own
  // statements get the session's setting back.
  return `${begin}; SELECT state, map_version FROM ${prefix}_enter(${logical | 0}); SET LOCAL lock_timeout TO DEFAULT${
    readOnly ? '; SET TRANSACTION READ ONLY' : ''
  }`;
}

/** Reads the fence row out of the result of {@link enterSql}. */
export function readEnter(result: unknown): FenceRow {
  const results = (Array.isArray(result) ? result : [result]) as {
    command?: string;
    rows?: { state: string | null; map_version: string | null }[];
  }[];
  const row = results.find((r) => r.command === 'SELECT')?.rows?.[0];
  if (row === undefined || row.state === null) return { state: 'missing', mapVersion: undefined };
  return {
    state: row.state as FenceState,
    mapVersion: row.map_version === null ? undefined : Number(row.map_version),
  };
}

/** True for the states in which a node runs routed transactions for the shard. */
export function accepts(state: FenceState): boolean {
  return state === 'owned' || state === 'copying';
}
