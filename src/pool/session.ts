import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { PgTransaction } from './cluster.js';
import { formatLsn, maxLsn } from './internal/lsn.js';

/*
 * A session is what read-your-writes is tracked on: one user, one request, one job. It holds the
 * WAL position of its latest write (`'lsn'` mode) and/or a time until which its reads stay on the
 * primary (`'sticky'` mode, or as a fallback when a position could not be learned). Its
 * consistency token carries both to another process: a cookie, a header, a job payload.
 *
 * Token format, version 1: `1.<lsn as hex>.<sticky-until as base-36 ms>`, either part empty;
 * e.g. `1.16b374d848.` after a write at 16/B374D848. Short, cookie- and URL-safe. Tokens are not
 * signed: a forged one can only send its bearer's own reads to the primary.
 */

/** A parsed consistency token. */
export interface ConsistencyPosition {
  /** The WAL position a read must see. */
  readonly lsn: bigint | undefined;
  /** Until when (ms since epoch, the cluster clock's) reads must go to the primary; 0 for none. */
  readonly until: number;
}

const TOKEN = /^1\.([0-9a-f]{0,16})\.([0-9a-z]{0,11})$/;

/** Encodes a position as a consistency token. */
export function encodeToken(lsn: bigint | undefined, until: number): string {
  return `1.${lsn === undefined ? '' : lsn.toString(16)}.${until > 0 ? Math.ceil(until).toString(36) : ''}`;
}

/** Decodes a consistency token; undefined when it is not one. */
export function decodeToken(token: string): ConsistencyPosition | undefined {
  const m = TOKEN.exec(token);
  if (m === null) return undefined;
  const lsn = m[1] === '' ? undefined : BigInt(`0x${m[1]}`);
  const until = m[2] === '' ? 0 : Number.parseInt(m[2]!, 36);
  if (!Number.isSafeInteger(until)) return undefined;
  return { lsn, until };
}

/** Options of a query made through a session (its session is implied). */
export interface PgSessionQueryOptions {
  /** @default 'auto' */
  route?: 'auto' | 'primary' | 'replica';
  signal?: AbortSignal;
}

/** Options of a transaction made through a session. */
export interface PgSessionTransactionOptions {
  isolation?: 'read committed' | 'repeatable read' | 'serializable';
  readOnly?: boolean;
  deferrable?: boolean;
  route?: 'primary' | 'replica';
  signal?: AbortSignal;
}

/** What a session needs from its cluster (implemented by `PgCluster`). */
export interface SessionHost {
  query<R extends QueryResultRow>(
    text: string | QueryConfig,
    values: readonly unknown[] | undefined,
    options: { route?: 'auto' | 'primary' | 'replica'; signal?: AbortSignal; session: PgSession },
  ): Promise<QueryResult<R>>;
  transaction<T>(
    fn: (tx: PgTransaction) => Promise<T> | T,
    options: PgSessionTransactionOptions & { session: PgSession },
  ): Promise<T>;
  connect(options: {
    route?: 'primary' | 'replica';
    signal?: AbortSignal;
    session: PgSession;
  }): Promise<PoolClient>;
  /** Runs `fn` with `session` as the current session (AsyncLocalStorage). */
  runInSession<T>(session: PgSession, fn: () => T): T;
  /** Parses a token; a malformed one becomes "primary for the sticky window". */
  parseToken(token: unknown): ConsistencyPosition;
}

/**
 * A read-your-writes session: reads made through it (or, with `asyncContext`, inside
 * {@link PgSession.run}) see every write made through it, on whichever node they land. Create one
 * with `cluster.session(token?)`.
 *
 * @example
 * const session = cluster.session(req.cookies.pgToken);
 * await session.query('UPDATE users SET name = $1 WHERE id = $2', [name, id]);
 * const { rows } = await session.read('SELECT name FROM users WHERE id = $1', [id]); // sees the update
 * res.cookie('pgToken', session.consistencyToken());
 */
export class PgSession {
  readonly #host: SessionHost;
  #lsn: bigint | undefined;
  #until = 0;

  /** @internal Use `cluster.session()`. */
  constructor(host: SessionHost, position?: ConsistencyPosition) {
    this.#host = host;
    if (position !== undefined) {
      this.#lsn = position.lsn;
      this.#until = position.until;
    }
  }

  /** The WAL position this session's reads must see, if any (`'16/B374D848'`). */
  get lsn(): string | undefined {
    return this.#lsn === undefined ? undefined : formatLsn(this.#lsn);
  }

  /** Until when (ms since epoch) this session's reads stay on the primary; 0 when they need not. */
  get stickyUntil(): number {
    return this.#until;
  }

  /** @internal The position as a bigint, for routing. */
  get position(): bigint | undefined {
    return this.#lsn;
  }

  /** @internal Records a write at `lsn`. */
  advance(lsn: bigint): void {
    this.#lsn = maxLsn(this.#lsn, lsn);
  }

  /** @internal Keeps this session's reads on the primary until `until` (ms since epoch). */
  stickUntil(until: number): void {
    if (until > this.#until) this.#until = until;
  }

  /**
   * Folds another consistency token into this session (say, one from a cookie and one from a
   * job): its reads then see the writes behind both. A malformed token is handled as
   * `cluster.session(token)` handles one: reads stay on the primary for the sticky window.
   */
  merge(token: string): this {
    const position = this.#host.parseToken(token);
    if (position.lsn !== undefined) this.advance(position.lsn);
    this.stickUntil(position.until);
    return this;
  }

  /**
   * A serialisable token of this session's position, to carry to another process (a cookie, a
   * header, a job) and pass to `cluster.session(token)` there. Stable across versions of this
   * package within the same major.
   */
  consistencyToken(): string {
    return encodeToken(this.#lsn, this.#until);
  }

  /** `cluster.query()` in this session. */
  query<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
    options?: PgSessionQueryOptions,
  ): Promise<QueryResult<R>> {
    return this.#host.query<R>(text, values, {
      route: options?.route,
      signal: options?.signal,
      session: this,
    });
  }

  /** `cluster.read()` in this session: a replica that has replayed this session's writes, else the primary. */
  read<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
    options?: Omit<PgSessionQueryOptions, 'route'>,
  ): Promise<QueryResult<R>> {
    return this.#host.query<R>(text, values, { route: 'replica', signal: options?.signal, session: this });
  }

  /** `cluster.transaction()` in this session: a committed write is tracked like a query's. */
  transaction<T>(
    fn: (tx: PgTransaction) => Promise<T> | T,
    options?: PgSessionTransactionOptions,
  ): Promise<T> {
    return this.#host.transaction(fn, { ...options, session: this });
  }

  /**
   * `cluster.connect()` in this session: with `route: 'replica'`, a replica that has replayed this
   * session's writes. Writes made on the client itself are not tracked.
   */
  connect(options?: { route?: 'primary' | 'replica'; signal?: AbortSignal }): Promise<PoolClient> {
    return this.#host.connect({ route: options?.route, signal: options?.signal, session: this });
  }

  /**
   * Runs `fn` with this session as the current one: every cluster call inside it, however deep,
   * uses this session without being passed it. Needs `asyncContext: true` on the cluster.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` when the cluster has no `asyncContext`.
   */
  run<T>(fn: () => T): T {
    return this.#host.runInSession(this, fn);
  }

  toJSON(): { lsn: string | undefined; stickyUntil: number } {
    return { lsn: this.lsn, stickyUntil: this.#until };
  }
}
