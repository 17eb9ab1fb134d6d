import { ButtressError } from '../core/errors.js';

/*
 * The pool's error family. Pool rejections (`E_POOL_TIMEOUT`, `E_POOL_FULL`) happen in bulk when a
 * database is overloaded, so they capture no stack trace. Errors that wrap the driver's keep it as
 * `cause`, with every known password scrubbed from its text (see internal/redact.ts) before it is
 * attached: a connection string's password must never reach a log through an error.
 */

/** The fields PostgreSQL sends with an error (a subset of pg's `DatabaseError`). */
export interface PgErrorFields {
  /** The SQLSTATE, e.g. `'23505'` (unique_violation). */
  readonly sqlState: string | undefined;
  readonly severity: string | undefined;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly schema: string | undefined;
  readonly table: string | undefined;
  readonly column: string | undefined;
  readonly constraint: string | undefined;
  /** 1-based character position of the error in the statement, as a string (as the server sends it). */
  readonly position: string | undefined;
}

/**
 * No connection of `node` became available within `acquireTimeout`: code `E_POOL_TIMEOUT`.
 * The statement was not sent. No stack trace: an overloaded database times callers out in bulk.
 */
export class PoolTimeoutError extends ButtressError {
  /** The node that was asked for a connection: `'primary'`, `'replica-0'`, ... */
  readonly node: string;
  /** The acquire timeout, in ms. */
  readonly timeout: number;
  constructor(node: string, timeout: number) {
    super('E_POOL_TIMEOUT', `No connection to ${node} became available within ${timeout}ms`, {
      noStack: true,
    });
    this.node = node;
    this.timeout = timeout;
  }
}

/**
 * `node` already had `maxWaiting` callers waiting for a connection: code `E_POOL_FULL`. Rejected
 * at once; the statement was not sent. No stack trace.
 */
export class PoolFullError extends ButtressError {
  readonly node: string;
  /** The bound on waiting callers that was reached. */
  readonly maxWaiting: number;
  constructor(node: string, maxWaiting: number) {
    super(
      'E_POOL_FULL',
      `Every connection to ${node} is busy and ${maxWaiting} callers are already waiting (maxWaiting)`,
      { noStack: true },
    );
    this.node = node;
    this.maxWaiting = maxWaiting;
  }
}

/** A session-level feature that PgBouncer's transaction pooling breaks. */
export type SessionFeature =
  | 'set'
  | 'reset'
  | 'listen'
  | 'unlisten'
  | 'prepare'
  | 'named-statement'
  | 'hold-cursor'
  | 'advisory-lock'
  | 'temp-table'
  | 'load';

const FEATURE_ADVICE: Record<SessionFeature, string> = {
  set: 'SET outlives the transaction on a server connection other clients share: use SET LOCAL inside transaction(), or set it in the connection options',
  reset: 'RESET changes session state on a server connection other clients share',
  listen:
    'LISTEN needs a session of its own: use a direct connection (not through PgBouncer) for notifications',
  unlisten: 'UNLISTEN needs a session of its own: use a direct connection (not through PgBouncer)',
  prepare: 'a prepared statement lives in one server session, which the next transaction may not get',
  'named-statement':
    'a named prepared statement lives in one server session, which the next query may not get: drop `name`',
  'hold-cursor': 'a WITH HOLD cursor outlives the transaction on a server connection other clients share',
  'advisory-lock':
    'a session-level advisory lock is held by a server connection other clients share: use pg_advisory_xact_lock inside transaction()',
  'temp-table':
    'a temporary table outside a transaction lives in a server session the next query may not get',
  load: 'LOAD changes session state on a server connection other clients share',
};

/**
 * The statement uses a session-level feature that PgBouncer's transaction pooling breaks, and the
 * cluster was created with `pgbouncer: 'transaction'`: code `E_PGBOUNCER_UNSUPPORTED`. Nothing was
 * sent: the guard fails loudly instead of letting the feature misbehave silently.
 */
export class PgBouncerUnsupportedError extends ButtressError {
  /** Which feature was refused. */
  readonly feature: SessionFeature;
  constructor(feature: SessionFeature) {
    super(
      'E_PGBOUNCER_UNSUPPORTED',
      `Refused under PgBouncer transaction pooling (pgbouncer: 'transaction'): ${FEATURE_ADVICE[feature]}`,
    );
    this.feature = feature;
  }
}

/**
 * PostgreSQL rejected a statement: code `E_PG_QUERY`. `sqlState` holds the SQLSTATE (pg's
 * `err.code`), `cause` the driver's error. The message says which node ran it.
 *
 * @example
 * try {
 *   await cluster.query('INSERT INTO users (email) VALUES ($1)', [email]);
 * } catch (err) {
 *   if (isPgQueryError(err) && err.sqlState === '23505') return 'taken';
 *   throw err;
 * }
 */
export class PgQueryError extends ButtressError implements PgErrorFields {
  /** The node the statement ran on. */
  readonly node: string;
  readonly sqlState: string | undefined;
  readonly severity: string | undefined;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly schema: string | undefined;
  readonly table: string | undefined;
  readonly column: string | undefined;
  readonly constraint: string | undefined;
  readonly position: string | undefined;

  constructor(node: string, message: string, fields: Partial<PgErrorFields>, cause: unknown) {
    super('E_PG_QUERY', `${message} (on ${node}${fields.sqlState ? `, SQLSTATE ${fields.sqlState}` : ''})`, {
      cause,
    });
    this.node = node;
    this.sqlState = fields.sqlState;
    this.severity = fields.severity;
    this.detail = fields.detail;
    this.hint = fields.hint;
    this.schema = fields.schema;
    this.table = fields.table;
    this.column = fields.column;
    this.constraint = fields.constraint;
    this.position = fields.position;
  }
}

/**
 * A node could not be reached, or dropped the connection: code `E_PG_CONNECTION`. `sent` is false
 * when the failure came before the statement was sent (so it is safe to run it elsewhere), true
 * when the statement may have run.
 */
export class PgConnectionError extends ButtressError {
  readonly node: string;
  /** Whether the statement had been sent when the connection failed. */
  readonly sent: boolean;
  /** The SQLSTATE when the server said why (`57P01` admin shutdown, `57P03` cannot connect now, ...). */
  readonly sqlState: string | undefined;
  constructor(node: string, message: string, sent: boolean, sqlState: string | undefined, cause: unknown) {
    super(
      'E_PG_CONNECTION',
      `Connection to ${node} failed${sent ? ' during the statement' : ''}: ${message}`,
      {
        cause,
      },
    );
    this.node = node;
    this.sent = sent;
    this.sqlState = sqlState;
  }
}

/** True for `E_POOL_TIMEOUT`. */
export const isPoolTimeoutError = (e: unknown): e is PoolTimeoutError => e instanceof PoolTimeoutError;
/** True for `E_POOL_FULL`. */
export const isPoolFullError = (e: unknown): e is PoolFullError => e instanceof PoolFullError;
/** True for `E_PGBOUNCER_UNSUPPORTED`. */
export const isPgBouncerUnsupportedError = (e: unknown): e is PgBouncerUnsupportedError =>
  e instanceof PgBouncerUnsupportedError;
/** True for `E_PG_QUERY`. */
export const isPgQueryError = (e: unknown): e is PgQueryError => e instanceof PgQueryError;
/** True for `E_PG_CONNECTION`. */
export const isPgConnectionError = (e: unknown): e is PgConnectionError => e instanceof PgConnectionError;
