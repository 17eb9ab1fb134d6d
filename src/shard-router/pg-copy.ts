import { InvalidOptionError } from '../core/errors.js';
import { bool, integer, knownKeys, nonEmptyString, optionsObject } from '../core/validate.js';
import type { SqlClient } from './fence.js';
import type { Xxh64Hasher } from './hasher.js';
import type { CopyContext, ShardCopier } from './move.js';
import { shardRouterSql } from './sql.js';

/*
 * The built-in copier for PostgreSQL tables that carry their rows' shard. It selects a logical
 * shard's rows on the source by one of:
 *
 *   logicalColumn  a stored logical-shard column (fast with an index on it: the recommended way
 *                  for big tables);
 *   idColumn       IDs minted by the ID generator (the shard is in the ID's bits);
 *   keyColumn      the shard key itself, hashed in SQL by `shardRouterSql()`'s functions, exactly
 *                  as the router hashes it (a scan computing the hash per row: fine for small
 *                  tables, or with an expression index on `buttress_logical_shard(key, n)`).
 *
 * Rows travel as JSON text (`to_jsonb(row)::text`, never parsed in JavaScript, so 64-bit integers
 * and numerics keep every digit) and land with `INSERT ... ON CONFLICT (primary key) DO UPDATE`,
 * so every step can run again. Changes made while the copy runs are recorded by a trigger on each
 * table (`<prefix>_capture`, installed on the source on the first move and left in place: it is a
 * no-op for transactions of shards not being moved) as primary keys in `<prefix>_changes`; a
 * catch-up round takes a batch of them, reads those rows' current state on the source, and
 * upserts or deletes them on the target, in one transaction per side.
 */

/** One table {@link pgTableCopier} copies. Give exactly one of `logicalColumn`, `idColumn`, `keyColumn`. */
export interface PgCopyTable {
  /** The table, optionally schema-qualified (`'orders'`, `'app.orders'`). Must exist on both nodes. */
  table: string;
  /** A column holding each row's logical shard. */
  logicalColumn?: string;
  /** A column holding IDs from the ID generator (the router's `ids` layout). */
  idColumn?: string;
  /**
   * A column holding the shard key, of the kind the router is given: text-like columns for string
   * keys (`uuid` hashes as its text), integer columns for number/bigint keys, `bytea` for bytes.
   * Needs the router's default hasher kind (`xxh64Hasher`).
   */
  keyColumn?: string;
  /** Primary key columns. @default the table's primary key, from the catalog */
  primaryKey?: readonly string[];
}

/** Options of {@link pgTableCopier}. */
export interface PgTableCopierOptions {
  /** The tables of the logical shard (all of them: what is not listed is not moved). */
  tables: readonly PgCopyTable[];
  /** Rows per batch. @default 1000 */
  batchSize?: number;
  /** After the switch, delete the shard's rows from the source. @default true */
  deleteSource?: boolean;
  /** Schema of `shardRouterSql()`'s functions (installed on the source for `keyColumn` tables). @default the search_path's */
  sqlSchema?: string;
}

interface ResolvedTable {
  /** `schema.table`, quoted as the capture trigger records it. */
  readonly name: string;
  readonly pk: readonly string[];
  readonly columns: readonly string[];
  /** SQL predicate on alias `t`, with the logical shard as `$1`. */
  readonly predicate: string;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
/** Batches one catch-up round applies at most before handing back to the move. */
const MAX_ROUND_BATCHES = 50;

/**
 * The built-in copier of {@link ShardRouter.moveShard} for PostgreSQL tables carrying their
 * rows' shard (see {@link PgCopyTable}). Co-located tables (a user's orders, keyed by user) move
 * together: list them all.
 *
 * @example
 * import { pgTableCopier } from 'buttress/shard-router';
 * declare const router: import('buttress/shard-router').ShardRouter<import('pg').Pool>;
 * await router.moveShard(17, 'pg-c', {
 *   copy: pgTableCopier({
 *     tables: [
 *       { table: 'users', keyColumn: 'user_id' },
 *       { table: 'orders', logicalColumn: 'logical' },
 *     ],
 *   }),
 * });
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a table without exactly one of the shard
 *   columns, a bad identifier, or a bad batch size.
 */
export function pgTableCopier<N>(options: PgTableCopierOptions): ShardCopier<N> {
  const opts = optionsObject(options);
  knownKeys(opts, ['tables', 'batchSize', 'deleteSource', 'sqlSchema']);
  if (!Array.isArray(opts.tables) || opts.tables.length === 0) {
    throw new InvalidOptionError('tables', opts.tables, 'a non-empty array of tables');
  }
  const tables = opts.tables.map((t, i) => checkTable(t, `tables[${i}]`));
  const batchSize = integer(opts.batchSize, 'batchSize', 1, 100_000, 1000);
  const deleteSource = bool(opts.deleteSource, 'deleteSource', true);
  const sqlSchema =
    opts.sqlSchema === undefined
      ? undefined
      : identifier(nonEmptyString(opts.sqlSchema, 'sqlSchema'), 'sqlSchema');
  const fnPrefix = sqlSchema === undefined ? '' : `${quoteIdent(sqlSchema)}.`;

  let resolved: ResolvedTable[] | undefined;

  async function resolve(
    context: Omit<CopyContext<N>, 'phase'>,
    client: SqlClient,
  ): Promise<ResolvedTable[]> {
    if (resolved !== undefined) return resolved;
    const out: ResolvedTable[] = [];
    for (const t of tables) {
      const info = await client.query(
        `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass`,
        [t.table],
      );
      const name = info.rows[0].name as string;
      const cols = await client.query(
        `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
         ORDER BY attnum`,
        [name],
      );
      const columns = (cols.rows as { attname: string; type: string }[]).map((r) => r.attname);
      const types = new Map(
        (cols.rows as { attname: string; type: string }[]).map((r) => [r.attname, r.type]),
      );
      let pk = t.primaryKey;
      if (pk === undefined) {
        const pkRows = await client.query(
          `SELECT a.attname FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = $1::regclass AND i.indisprimary
           ORDER BY array_position(i.indkey, a.attnum)`,
          [name],
        );
        pk = (pkRows.rows as { attname: string }[]).map((r) => r.attname);
        if (pk.length === 0) {
          throw new InvalidOptionError(
            `tables.${t.table}.primaryKey`,
            undefined,
            'a primary key on the table, or primaryKey',
          );
        }
      }
      out.push({ name, pk, columns, predicate: predicate(t, types, context) });
    }
    resolved = out;
    return out;
  }

  function predicate(
    t: PgCopyTable,
    types: Map<string, string>,
    context: Omit<CopyContext<N>, 'phase'>,
  ): string {
    if (t.logicalColumn !== undefined) return `t.${quoteIdent(t.logicalColumn)} = $1`;
    if (t.idColumn !== undefined) {
      const layout = context.router.idLayout;
      const shift = layout.workerBits + layout.sequenceBits;
      const mask = 2 ** layout.shardBits - 1;
      return `((t.${quoteIdent(t.idColumn)} >> ${shift}) & ${mask}) = $1`;
    }
    const column = t.keyColumn!;
    const type = types.get(column);
    if (type === undefined)
      throw new InvalidOptionError(`tables.${t.table}.keyColumn`, column, 'a column of the table');
    const hasher = context.router.hasher as Partial<Xxh64Hasher>;
    if (typeof hasher.seed !== 'bigint' || (hasher.placement !== 'modulo' && hasher.placement !== 'jump')) {
      throw new InvalidOptionError(
        `tables.${t.table}.keyColumn`,
        column,
        'a router using xxh64Hasher (a custom hasher cannot be computed in SQL: use logicalColumn)',
      );
    }
    let key = `t.${quoteIdent(column)}`;
    if (/^(smallint|integer|bigint)$/.test(type)) key = `${key}::bigint`;
    else if (type === 'bytea') key = `${key}`;
    else key = `${key}::text`;
    const seed = BigInt.asIntN(64, hasher.seed);
    return `${fnPrefix}buttress_logical_shard(${key}, ${context.router.logicalShards}, ${seed}, '${hasher.placement}') = $1`;
  }

  async function withBoth<T>(
    context: Omit<CopyContext<N>, 'phase'>,
    fn: (source: SqlClient, target: SqlClient, tables: ResolvedTable[]) => Promise<T>,
  ): Promise<T> {
    const source = await context.connect('from');
    let target: SqlClient | undefined;
    let failure: Error | undefined;
    try {
      target = await context.connect('to');
      return await fn(source, target, await resolve(context, source));
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      throw error;
    } finally {
      source.release(failure);
      target?.release(failure);
    }
  }

  /** Upserts rows given as a JSON array text into `t` on `client`. */
  function upsert(client: SqlClient, t: ResolvedTable, json: string): Promise<unknown> {
    const cols = t.columns.map(quoteIdent).join(', ');
    const nonKey = t.columns.filter((c) => !t.pk.includes(c));
    const conflict =
      nonKey.length === 0
        ? 'DO NOTHING'
        : `DO UPDATE SET ${nonKey.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}`;
    return client.query(
      `INSERT INTO ${t.name} (${cols}) OVERRIDING SYSTEM VALUE
       SELECT ${cols} FROM jsonb_populate_recordset(NULL::${t.name}, $1::jsonb)
       ON CONFLICT (${t.pk.map(quoteIdent).join(', ')}) ${conflict}`,
      [json],
    );
  }

  /** The bulk copy: keyset pages of the shard's rows, source -> target. */
  async function bulk(
    context: CopyContext<N>,
    source: SqlClient,
    target: SqlClient,
    all: ResolvedTable[],
  ): Promise<number> {
    let copied = 0;
    for (const t of all) {
      const pk = t.pk.map((c) => `t.${quoteIdent(c)}`).join(', ');
      const after = t.pk.map((c) => `k.${quoteIdent(c)}`).join(', ');
      let last: string | undefined;
      for (;;) {
        const page = await source.query(
          `SELECT to_jsonb(t)::text AS r, jsonb_build_object(${t.pk.map((c) => `'${c.replace(/'/g, "''")}', t.${quoteIdent(c)}`).join(', ')})::text AS k
           FROM ${t.name} t
           WHERE ${t.predicate}${last === undefined ? '' : ` AND (${pk}) > (SELECT ${after} FROM jsonb_populate_record(NULL::${t.name}, $3::jsonb) k)`}
           ORDER BY ${pk} LIMIT $2`,
          last === undefined ? [context.logical, batchSize] : [context.logical, batchSize, last],
        );
        const rows = page.rows as { r: string; k: string }[];
        if (rows.length === 0) break;
        await upsert(target, t, `[${rows.map((r) => r.r).join(',')}]`);
        copied += rows.length;
        last = rows[rows.length - 1]!.k;
        if (rows.length < batchSize) break;
      }
    }
    return copied;
  }

  /** One catch-up batch: takes recorded changes on the source and applies them on the target. */
  async function catchUpBatch(
    context: CopyContext<N>,
    source: SqlClient,
    target: SqlClient,
    all: ResolvedTable[],
  ): Promise<number> {
    const prefix = context.fencePrefix;
    await source.query('BEGIN');
    try {
      const taken = await source.query(
        `DELETE FROM ${prefix}_changes WHERE id IN (
           SELECT id FROM ${prefix}_changes WHERE logical = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING tbl, pk::text AS pk`,
        [context.logical, batchSize],
      );
      const changes = taken.rows as { tbl: string; pk: string }[];
      if (changes.length === 0) {
        await source.query('COMMIT');
        return 0;
      }
      const byTable = new Map<string, Set<string>>();
      for (const c of changes) {
        let set = byTable.get(c.tbl);
        if (set === undefined) byTable.set(c.tbl, (set = new Set()));
        set.add(c.pk);
      }
      await target.query('BEGIN');
      try {
        for (const [name, keys] of byTable) {
          const t = all.find((x) => x.name === name);
          // A table not listed has changes recorded by another move's trigger set: not ours to copy.
          if (t === undefined) continue;
          const keyJson = `[${[...keys].join(',')}]`;
          const join = t.pk.map((c) => `t.${quoteIdent(c)} = k.${quoteIdent(c)}`).join(' AND ');
          const current = await source.query(
            `SELECT to_jsonb(t)::text AS r FROM ${t.name} t
             JOIN jsonb_populate_recordset(NULL::${t.name}, $2::jsonb) k ON ${join}
             WHERE ${t.predicate}`,
            [context.logical, keyJson],
          );
          const rows = current.rows as { r: string }[];
          if (rows.length > 0) await upsert(target, t, `[${rows.map((r) => r.r).join(',')}]`);
          // Keys whose row is gone (or left the shard) are deleted on the target.
          await target.query(
            `DELETE FROM ${t.name} t USING jsonb_populate_recordset(NULL::${t.name}, $1::jsonb) k
             WHERE ${join} AND NOT EXISTS (
               SELECT 1 FROM jsonb_populate_recordset(NULL::${t.name}, $2::jsonb) f
               WHERE ${t.pk.map((c) => `f.${quoteIdent(c)} = k.${quoteIdent(c)}`).join(' AND ')})`,
            [keyJson, `[${rows.map((r) => r.r).join(',')}]`],
          );
        }
        await target.query('COMMIT');
      } catch (error) {
        await target.query('ROLLBACK').catch(() => {});
        throw error;
      }
      // Only now are the changes consumed: a failure above leaves them for the next round.
      await source.query('COMMIT');
      return changes.length;
    } catch (error) {
      await source.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }

  /** Deletes the shard's rows of every table on `client`, in batches. */
  async function purge(
    context: Omit<CopyContext<N>, 'phase'>,
    client: SqlClient,
    all: ResolvedTable[],
  ): Promise<void> {
    for (const t of all) {
      for (;;) {
        const deleted = await client.query(
          `DELETE FROM ${t.name} WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM ${t.name} t WHERE ${t.predicate} LIMIT $2))`,
          [context.logical, batchSize],
        );
        if ((deleted.rowCount ?? 0) < batchSize) break;
      }
    }
  }

  return {
    async prepare(context) {
      await withBoth(context, async (source, target, all) => {
        if (tables.some((t) => t.keyColumn !== undefined)) {
          await source.query(shardRouterSql(sqlSchema === undefined ? undefined : { schema: sqlSchema }));
          await target.query(shardRouterSql(sqlSchema === undefined ? undefined : { schema: sqlSchema }));
        }
        const prefix = context.fencePrefix;
        for (const t of all) {
          // Creating a trigger locks the whole table against writes for a moment (it waits for
          // the writes in flight): done once per table and source, and bounded by lockTimeout.
          const present = await source.query(
            `SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2 AND NOT tgisinternal`,
            [t.name, `${prefix}_capture`],
          );
          if (present.rows.length > 0) continue;
          const args = t.pk.map((c) => `'${c.replace(/'/g, "''")}'`).join(', ');
          await source.query(
            `BEGIN; SET LOCAL lock_timeout = ${Math.ceil(context.lockTimeout)};
             CREATE OR REPLACE TRIGGER ${prefix}_capture AFTER INSERT OR UPDATE OR DELETE ON ${t.name}
             FOR EACH ROW EXECUTE FUNCTION ${prefix}_capture(${args});
             COMMIT`,
          );
        }
        // Rows of the shard left on the target by an earlier move must not outlive this copy.
        await purge(context, target, all);
      });
    },
    async copy(context) {
      return withBoth(context, async (source, target, all) => {
        if (context.phase === 'copy') return bulk(context, source, target, all);
        let applied = 0;
        for (let batch = 1; ; batch++) {
          const n = await catchUpBatch(context, source, target, all);
          applied += n;
          // The final round (writes frozen) drains the log; a catch-up round, with writes still
          // flowing, stops at its first short batch, or after MAX_ROUND_BATCHES: the move then
          // decides whether to go on or freeze.
          if (context.phase === 'final' ? n === 0 : n < batchSize || batch >= MAX_ROUND_BATCHES) break;
        }
        return applied;
      });
    },
    async cleanup(context, { moved }) {
      await withBoth(context, async (source, target, all) => {
        if (moved) {
          if (deleteSource) await purge(context, source, all);
        } else {
          await purge(context, target, all);
        }
      });
    },
  };
}

function checkTable(value: unknown, option: string): PgCopyTable {
  const t = optionsObject(value as PgCopyTable, option);
  knownKeys(t, ['table', 'logicalColumn', 'idColumn', 'keyColumn', 'primaryKey'], option);
  const table = nonEmptyString(t.table, `${option}.table`);
  for (const part of table.split('.')) identifier(part, `${option}.table`);
  const given = (['logicalColumn', 'idColumn', 'keyColumn'] as const).filter((k) => t[k] !== undefined);
  if (given.length !== 1) {
    throw new InvalidOptionError(option, value, 'exactly one of logicalColumn, idColumn, keyColumn');
  }
  identifier(t[given[0]!] as unknown, `${option}.${given[0]}`);
  if (t.primaryKey !== undefined) {
    if (!Array.isArray(t.primaryKey) || t.primaryKey.length === 0) {
      throw new InvalidOptionError(`${option}.primaryKey`, t.primaryKey, 'a non-empty array of column names');
    }
    t.primaryKey.forEach((c, i) => {
      identifier(c, `${option}.primaryKey[${i}]`);
    });
  }
  return t as PgCopyTable;
}

function identifier(value: unknown, option: string): string {
  if (typeof value !== 'string' || !IDENT.test(value)) {
    throw new InvalidOptionError(option, value, 'a SQL identifier (letters, digits, _ and $)');
  }
  return value;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
