import type { PoolClient, QueryResultRow } from 'pg';
import type { Clock } from '../../core/clock.js';
import { withDeadline } from '../../core/deadline.js';
import { TimeoutError } from '../../core/errors.js';
import type { PgNode } from './node.js';
import { destroyClient } from './pg.js';

/*
 * Health checks run on a connection of their own per node, outside the pool: a check that had to
 * queue for a pooled connection would fail exactly when the node is busiest, and eject a replica
 * for being loaded rather than unhealthy. The connection is made from the pool's own client class
 * and options (so it has the same host, credentials, TLS and application_name) and remade after
 * any failure. Each check has a deadline covering connect and query; a check that misses it
 * destroys the connection, so a black-holed node costs one socket, not a pile of them.
 *
 * A pool without a client class (not pg-pool) is checked through `pool.query()` instead.
 */

/** Primary: its current WAL insert position (the position every committed write is at or before). */
export const PRIMARY_CHECK_SQL =
  'SELECT pg_is_in_recovery() AS in_recovery, CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS lsn';
/** Replica: how far it has replayed, and whether replay is paused. */
export const REPLICA_CHECK_SQL =
  'SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_replay_lsn()::text AS replay_lsn, CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused';
/** Stops the statement of a backend whose client was aborted. */
export const CANCEL_SQL = 'SELECT pg_cancel_backend($1)';
/** On-demand refresh of a replica's replay position (read-your-writes waiting on it). */
export const REPLAY_LSN_SQL = 'SELECT pg_last_wal_replay_lsn()::text AS replay_lsn';

/** The health connection of one node. */
export class HealthProbe {
  readonly #node: PgNode;
  readonly #clock: Clock;
  readonly #timeout: number;
  #client: PoolClient | undefined;
  #connecting: Promise<PoolClient> | undefined;
  /** The client being connected, so that a missed deadline can destroy it too. */
  #pending: PoolClient | undefined;
  /** Health queries in flight: closing then destroys the connection instead of a polite end. */
  #busy = 0;
  #closed = false;

  constructor(node: PgNode, clock: Clock, timeout: number) {
    this.#node = node;
    this.#clock = clock;
    this.#timeout = timeout;
  }

  /**
   * Runs `sql` and returns its first row, within the health-check deadline.
   * @throws the driver's error, or `E_TIMEOUT` when the deadline passed (the connection is then dropped).
   */
  async run(sql: string, values?: unknown[]): Promise<QueryResultRow> {
    if (this.#closed) throw new Error('health probe closed');
    try {
      return await withDeadline(
        this.#query(sql, values),
        this.#timeout,
        this.#clock,
        () => new TimeoutError(this.#timeout, `Health check of ${this.#node.name}`),
      );
    } catch (error) {
      this.#drop();
      throw error;
    }
  }

  async #query(sql: string, values: unknown[] | undefined): Promise<QueryResultRow> {
    const pool = this.#node.pool;
    if (typeof pool.Client !== 'function') {
      const result = await pool.query(sql, values);
      return result.rows[0] ?? {};
    }
    const client = this.#client ?? (await this.#connect());
    this.#busy++;
    try {
      const result = await client.query(sql, values);
      return result.rows[0] ?? {};
    } finally {
      this.#busy--;
    }
  }

  #connect(): Promise<PoolClient> {
    this.#connecting ??= (async () => {
      const pool = this.#node.pool;
      const client = new pool.Client!(pool.options);
      this.#pending = client;
      // A health connection that the server drops must not crash the process.
      client.on('error', () => {
        if (this.#client === client) this.#client = undefined;
      });
      try {
        await client.connect();
      } catch (error) {
        destroyClient(client);
        throw error;
      }
      if (this.#closed) {
        destroyClient(client);
        throw new Error('health probe closed');
      }
      // The cluster's own connection must not keep the process alive (its timers do not either).
      (client as { unref?: () => void }).unref?.();
      this.#client = client;
      return client;
    })().finally(() => {
      this.#connecting = undefined;
      this.#pending = undefined;
    });
    return this.#connecting;
  }

  #drop(): void {
    const client = this.#client;
    const pending = this.#pending;
    this.#client = undefined;
    this.#pending = undefined;
    if (client !== undefined) destroyClient(client);
    if (pending !== undefined) destroyClient(pending);
  }

  /** Closes the health connection. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#pending !== undefined) destroyClient(this.#pending);
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    // A check in flight may be stuck on a dead link, where a polite end() would wait for it.
    if (this.#busy > 0) destroyClient(client);
    else await client.end().catch(() => destroyClient(client));
  }
}
