import { EventEmitter } from 'node:events';
import pg from 'pg';

/*
 * A fake PostgreSQL node for unit tests, driven through the real pg-pool: the pool logic under the
 * cluster is the production one, only the wire is fake. Each FakeServer answers the cluster's
 * health queries from its own state (WAL positions, recovery, reachability) and user statements
 * through a handler; statements can be held open with gates to exhaust a pool. Nothing here uses
 * a timer, so a FakeClock keeps every deadline of the code under test in the test's hands.
 */

export interface FakeRow {
  [column: string]: unknown;
}

export type Handler = (
  sql: string,
  values: unknown[] | undefined,
  server: FakeServer,
) => FakeRow[] | Promise<FakeRow[]>;

function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** One fake node. */
export class FakeServer {
  /** Accepts connections; when false, connects fail with ECONNREFUSED. */
  up = true;
  /** New connections never complete (a black-holed host). */
  hangConnect = false;
  /** Health queries never answer. */
  hangHealth = false;
  inRecovery: boolean;
  /** Primary: current insert position. Replica: replayed position. */
  lsn = 0x1000000n;
  paused = false;
  /** The WAL-position query after a write fails (a role without EXECUTE on it, say). */
  failLsnQuery = false;
  handler: Handler = () => [{ ok: 1 }];
  /** Statements seen, in order (health checks excluded). */
  readonly log: string[] = [];
  readonly clients = new Set<FakeClient>();
  connects = 0;
  healthQueries = 0;

  constructor(
    readonly name: string,
    role: 'primary' | 'replica',
  ) {
    this.inRecovery = role === 'replica';
  }

  /** Simulates a write on a primary: the WAL advances. */
  write(bytes = 0x100n): void {
    this.lsn += bytes;
  }

  /** Drops every open connection (the server went away). */
  killConnections(): void {
    for (const c of [...this.clients])
      c.serverClosed(Object.assign(new Error('Connection terminated unexpectedly'), {}));
  }
}

let nextPid = 1;

/** A pg Client stand-in; `options.server` picks its FakeServer. */
export class FakeClient extends EventEmitter {
  readonly server: FakeServer;
  _queryable = true;
  _ending = false;
  readonly processID = nextPid++;
  #txStatus: 'I' | 'T' | 'E' = 'I';
  #connected = false;
  readonly connection: { stream: { destroy: () => void } };

  constructor(options: { server: FakeServer }) {
    super();
    this.server = options.server;
    this.connection = { stream: { destroy: () => this.serverClosed(new Error('Connection terminated')) } };
  }

  connect(cb?: (err?: Error) => void): Promise<void> | undefined {
    const p = new Promise<void>((resolve, reject) => {
      this.server.connects++;
      if (this.server.hangConnect) {
        this.#onDestroyWhileConnecting = () =>
          reject(new Error('Connection terminated due to connection timeout'));
        return;
      }
      queueMicrotask(() => {
        if (!this.server.up) {
          reject(
            Object.assign(new Error(`connect ECONNREFUSED ${this.server.name}`), { code: 'ECONNREFUSED' }),
          );
          return;
        }
        this.#connected = true;
        this.server.clients.add(this);
        resolve();
      });
    });
    if (cb) {
      p.then(
        () => cb(),
        (e) => cb(e),
      );
      return undefined;
    }
    return p;
  }

  #onDestroyWhileConnecting: (() => void) | undefined;

  /** The server dropped the connection: pending statements fail, the client emits 'error'. */
  serverClosed(error: Error): void {
    if (this.#onDestroyWhileConnecting) {
      this.#onDestroyWhileConnecting();
      this.#onDestroyWhileConnecting = undefined;
      return;
    }
    if (!this._queryable) return;
    this._queryable = false;
    this.server.clients.delete(this);
    for (const reject of this.#pending) reject(error);
    this.#pending.clear();
    if (this.listenerCount('error') > 0) this.emit('error', error);
    this.emit('end');
  }

  readonly #pending = new Set<(e: Error) => void>();

  getTransactionStatus(): 'I' | 'T' | 'E' {
    return this.#txStatus;
  }

  query(
    text: string | { text: string; values?: unknown[] },
    values?: unknown[] | ((...a: unknown[]) => void),
    cb?: (...a: unknown[]) => void,
  ): Promise<{ rows: FakeRow[]; rowCount: number; command: string; fields: [] }> | undefined {
    if (typeof values === 'function') {
      cb = values;
      values = undefined;
    }
    const sql = typeof text === 'string' ? text : text.text;
    const vals = (typeof text === 'string' ? values : text.values) as unknown[] | undefined;
    const p = this.#run(sql, vals);
    if (cb) {
      const callback = cb;
      p.then(
        (r) => callback(undefined, r),
        (e) => callback(e),
      );
      return undefined;
    }
    return p;
  }

  async #run(
    sql: string,
    values: unknown[] | undefined,
  ): Promise<{ rows: FakeRow[]; rowCount: number; command: string; fields: [] }> {
    if (!this._queryable || !this.#connected)
      throw new Error('Client has encountered a connection error and is not queryable');
    const server = this.server;
    const rows = await new Promise<FakeRow[]>((resolve, reject) => {
      this.#pending.add(reject);
      const done = (r: FakeRow[]) => {
        this.#pending.delete(reject);
        resolve(r);
      };
      const fail = (e: unknown) => {
        this.#pending.delete(reject);
        reject(e);
      };
      if (
        sql.startsWith('SELECT pg_is_in_recovery() AS in_recovery') ||
        sql.startsWith('SELECT pg_last_wal_replay_lsn()')
      ) {
        server.healthQueries++;
        if (server.hangHealth) return;
        queueMicrotask(() => {
          if (sql.includes('pg_current_wal_insert_lsn')) {
            done([{ in_recovery: server.inRecovery, lsn: server.inRecovery ? null : formatLsn(server.lsn) }]);
          } else if (sql.startsWith('SELECT pg_last_wal_replay_lsn()')) {
            done([{ replay_lsn: server.inRecovery ? formatLsn(server.lsn) : null }]);
          } else {
            done([
              {
                in_recovery: server.inRecovery,
                replay_lsn: server.inRecovery ? formatLsn(server.lsn) : null,
                paused: server.inRecovery ? server.paused : null,
              },
            ]);
          }
        });
        return;
      }
      if (sql === 'SELECT pg_current_wal_insert_lsn()::text AS lsn') {
        if (server.failLsnQuery) {
          queueMicrotask(() => fail(Object.assign(new Error('permission denied'), { code: '42501' })));
          return;
        }
        queueMicrotask(() => done([{ lsn: formatLsn(server.lsn) }]));
        return;
      }
      server.log.push(sql);
      const upper = sql.trim().toUpperCase();
      if (upper.startsWith('BEGIN')) this.#txStatus = 'T';
      else if (upper === 'COMMIT' || upper === 'ROLLBACK') this.#txStatus = 'I';
      Promise.resolve()
        .then(() => server.handler(sql, values, server))
        .then(done, (e) => {
          if (this.#txStatus === 'T') this.#txStatus = 'E';
          fail(e);
        });
    });
    return { rows, rowCount: rows.length, command: sql.split(' ')[0]!.toUpperCase(), fields: [] };
  }

  end(cb?: (err?: Error) => void): Promise<void> | undefined {
    this._ending = true;
    this._queryable = false;
    for (const reject of this.#pending) reject(new Error('Connection terminated'));
    this.#pending.clear();
    this.server.clients.delete(this);
    queueMicrotask(() => this.emit('end'));
    if (cb) {
      queueMicrotask(() => cb());
      return undefined;
    }
    return Promise.resolve();
  }

  ref(): void {}
  unref(): void {}
}

/** The real pg-pool over fake clients of `server`. */
export function fakePool(server: FakeServer, options: Record<string, unknown> = {}): pg.Pool {
  return new pg.Pool({
    Client: FakeClient as never,
    server,
    idleTimeoutMillis: 0,
    max: 4,
    ...options,
  } as never);
}

/** A `Pool` class (like pg's) that builds pools of fake clients; the server is picked by `config.server`. */
export class FakePoolClass extends pg.Pool {
  constructor(config: Record<string, unknown> = {}) {
    super({ Client: FakeClient as never, idleTimeoutMillis: 0, ...config } as never);
  }
}

/** A deferred value, to hold a statement open until the test lets it finish. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
