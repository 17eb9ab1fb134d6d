import { throwIfAborted } from '../../core/abort.js';
import type { Clock, Timer } from '../../core/clock.js';
import { ClosedError, InvalidOptionError } from '../../core/errors.js';
import type { Disposable } from '../../core/events.js';
import { clockOption, knownKeys, nonEmptyString, optionsObject } from '../../core/validate.js';
import { PgCluster } from '../../pool/index.js';
import { defaultSqlConnect, type SqlClient } from '../fence.js';
import type { ShardMapSpec } from '../shard-map.js';
import { parseStoredMap, type ShardMapStore, VersionWatchers } from './store.js';

/** What {@link pgShardMapStore} needs: a `pg.Pool` or a buttress `PgCluster` (its primary is used). */
export interface PgStorePool {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
}

/** Options of {@link pgShardMapStore}. */
export interface PgShardMapStoreOptions {
  /** Which map: routers sharing a name share a map. @default 'default' */
  name?: string;
  /** The table holding maps (created if missing). @default 'buttress_shard_map' */
  table?: string;
  /** The NOTIFY channel. @default the table's name */
  channel?: string;
  /** Time source for reconnecting the LISTEN connection. @default systemClock */
  clock?: Clock;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;
const RECONNECT_MIN = 250;
const RECONNECT_MAX = 30_000;

/**
 * A shard map store in a PostgreSQL table (`name`, `version`, `map jsonb`), changed by a
 * compare-and-set UPDATE that NOTIFYs the new version in the same statement (so the push is sent
 * exactly when the change commits). Watching routers LISTEN on one connection of the store's own,
 * taken from `pool` and held; when it drops it is opened again with backoff, and the stored
 * version is read then, so a push missed meanwhile is caught up. `pool` stays yours.
 *
 * Keep the map on a database every router can reach (the primary of a small control database,
 * or one of the shard nodes): PgBouncer in transaction mode breaks LISTEN, so point it at the
 * server directly.
 *
 * @example
 * import pg from 'pg';
 * import { createShardRouter, pgShardMapStore } from 'buttress/shard-router';
 *
 * const control = new pg.Pool({ database: 'control' });
 * const store = pgShardMapStore(control, { name: 'users' });
 * declare const nodes: Record<string, pg.Pool>;
 * const router = await createShardRouter({ logicalShards: 4096, nodes, store }).ready();
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a pool without `query`, or a bad option.
 */
export function pgShardMapStore(pool: PgStorePool, options?: PgShardMapStoreOptions): PgShardMapStore {
  return new PgShardMapStore(pool, options);
}

/** See {@link pgShardMapStore}. */
export class PgShardMapStore implements ShardMapStore {
  readonly name: string;
  readonly #pool: PgStorePool;
  readonly #map: string;
  readonly #table: string;
  readonly #channel: string;
  readonly #clock: Clock;
  readonly #watchers = new VersionWatchers();
  #ensured: Promise<void> | undefined;
  #client: (SqlClient & { on?: Function; off?: Function }) | undefined;
  #connecting = false;
  #retry: Timer | undefined;
  #backoff = RECONNECT_MIN;
  #closed = false;

  constructor(pool: PgStorePool, options?: PgShardMapStoreOptions) {
    if (typeof pool !== 'object' || pool === null || typeof pool.query !== 'function') {
      throw new InvalidOptionError('pool', pool, 'a pg.Pool or a buttress PgCluster');
    }
    const opts = optionsObject(options);
    knownKeys(opts, ['name', 'table', 'channel', 'clock']);
    this.#pool = pool;
    this.#map = nonEmptyString(opts.name, 'name', 'default');
    this.#table = identifier(opts.table, 'table', 'buttress_shard_map');
    this.#channel = identifier(opts.channel, 'channel', this.#table.replace('.', '_'));
    this.#clock = clockOption(opts.clock);
    this.name = `postgres:${this.#table}/${this.#map}`;
  }

  /** A statement on the pool; a PgCluster's always on its primary (a replica may lag behind a switch). */
  #query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }> {
    const pool = this.#pool;
    return pool instanceof PgCluster
      ? pool.query(text, values, { route: 'primary' })
      : pool.query(text, values);
  }

  #ensure(): Promise<void> {
    this.#ensured ??= this.#query(
      // One simple query is one implicit transaction: the lock ends with it, whatever happens.
      `SELECT pg_advisory_xact_lock(hashtext('${this.#table}:setup'));
         CREATE TABLE IF NOT EXISTS ${this.#table} (
           name text PRIMARY KEY,
           version bigint NOT NULL,
           map jsonb NOT NULL,
           updated_at timestamptz NOT NULL DEFAULT now()
         );`,
    ).then(
      () => undefined,
      (error: unknown) => {
        this.#ensured = undefined;
        throw error;
      },
    );
    return this.#ensured;
  }

  async load(signal?: AbortSignal): Promise<ShardMapSpec | undefined> {
    if (this.#closed) throw new ClosedError('PgShardMapStore');
    throwIfAborted(signal);
    await this.#ensure();
    const result = await this.#query(`SELECT map::text AS map FROM ${this.#table} WHERE name = $1`, [
      this.#map,
    ]);
    const raw = result.rows[0]?.map;
    return raw === undefined ? undefined : parseStoredMap(raw);
  }

  async compareAndSet(
    expected: number | undefined,
    next: ShardMapSpec,
    signal?: AbortSignal,
  ): Promise<boolean> {
    if (this.#closed) throw new ClosedError('PgShardMapStore');
    throwIfAborted(signal);
    await this.#ensure();
    const json = JSON.stringify(next);
    // The NOTIFY is part of the statement: it is delivered when (and only if) the change commits.
    const result =
      expected === undefined
        ? await this.#query(
            `WITH stored AS (
               INSERT INTO ${this.#table} (name, version, map) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (name) DO NOTHING RETURNING version)
             SELECT pg_notify($4, $1 || ':' || version) FROM stored`,
            [this.#map, next.version, json, this.#channel],
          )
        : await this.#query(
            `WITH stored AS (
               UPDATE ${this.#table} SET version = $2, map = $3::jsonb, updated_at = now()
               WHERE name = $1 AND version = $5 RETURNING version)
             SELECT pg_notify($4, $1 || ':' || version) FROM stored`,
            [this.#map, next.version, json, this.#channel, expected],
          );
    return result.rowCount === 1;
  }

  watch(listener: (version: number) => void): Disposable {
    if (this.#closed) throw new ClosedError('PgShardMapStore');
    const watching = this.#watchers.add(listener);
    if (this.#client === undefined && !this.#connecting && this.#retry === undefined) void this.#listen();
    return watching;
  }

  /** Opens the LISTEN connection; on failure, tries again with backoff. */
  async #listen(): Promise<void> {
    this.#connecting = true;
    let client: (SqlClient & { on?: Function; off?: Function }) | undefined;
    try {
      await this.#ensure();
      client = (await defaultSqlConnect(this.#pool, 'store', undefined)) as SqlClient & { on?: Function };
      if (this.#closed) {
        client.release(true);
        return;
      }
      client.on?.('notification', this.#onNotification);
      client.on?.('error', this.#onLost);
      client.on?.('end', this.#onLost);
      await client.query(`LISTEN ${this.#channel}`);
      this.#client = client;
      this.#backoff = RECONNECT_MIN;
      // Catch up on what was missed while not listening.
      const result = await client.query(`SELECT version FROM ${this.#table} WHERE name = $1`, [this.#map]);
      const version = Number(result.rows[0]?.version);
      if (Number.isSafeInteger(version)) this.#watchers.emit(version);
    } catch {
      if (client !== undefined && this.#client !== client) {
        this.#detach(client);
        client.release(true);
      }
      this.#scheduleReconnect();
    } finally {
      this.#connecting = false;
    }
  }

  readonly #onNotification = (message: { channel: string; payload?: string }): void => {
    if (message.channel !== this.#channel || typeof message.payload !== 'string') return;
    const sep = message.payload.lastIndexOf(':');
    if (message.payload.slice(0, sep) !== this.#map) return;
    const version = Number(message.payload.slice(sep + 1));
    if (Number.isSafeInteger(version)) this.#watchers.emit(version);
  };

  readonly #onLost = (): void => {
    const client = this.#client;
    if (client === undefined) return;
    this.#client = undefined;
    this.#detach(client);
    client.release(true);
    this.#scheduleReconnect();
  };

  #detach(client: SqlClient & { off?: Function }): void {
    client.off?.('notification', this.#onNotification);
    client.off?.('error', this.#onLost);
    client.off?.('end', this.#onLost);
    // A released client may still report its socket's last error: keep one listener.
    (client as { on?: Function }).on?.('error', noop);
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retry !== undefined) return;
    const wait = this.#backoff;
    this.#backoff = Math.min(RECONNECT_MAX, this.#backoff * 2);
    this.#retry = this.#clock.setTimeout(() => {
      this.#retry = undefined;
      if (!this.#closed) void this.#listen();
    }, wait);
  }

  /** Stops listening and releases the store's connection (never `pool`). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watchers.close();
    if (this.#retry !== undefined) this.#clock.clearTimeout(this.#retry);
    this.#retry = undefined;
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) {
      this.#detach(client);
      try {
        await client.query(`UNLISTEN ${this.#channel}`);
        client.release();
      } catch {
        client.release(true);
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function identifier(value: unknown, option: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !IDENT.test(value)) {
    throw new InvalidOptionError(option, value, 'a lowercase SQL identifier, optionally schema-qualified');
  }
  return value;
}

function noop(): void {}
