import type { Pool, PoolClient, PoolConfig } from 'pg';
import { ButtressError } from '../../core/errors.js';
import { PgConnectionError, type PgErrorFields, PgQueryError } from '../errors.js';
import type { Redactor } from './redact.js';

/*
 * What the cluster touches of node-postgres, reached through `import type` only: the package must
 * load without pg installed. Pools are either built by the user's `Pool` class from a config or
 * handed in ready-made; clients come from those pools.
 */

/** A pg-pool instance, with the parts of pg-pool the typings leave out. */
export type PgPool = Pool & {
  /** pg-pool keeps the options it was built with (max, connection settings) here. */
  readonly options: PoolConfig & { max?: number };
  /** The client class pg-pool instantiates (pg's `Client`, or the `Client` option). */
  readonly Client?: new (
    config: unknown,
  ) => PoolClient;
};

/** Destroys a client's socket at once (a query in flight fails), or ends it when there is no socket. */
export function destroyClient(client: PoolClient): void {
  const stream = (client as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  if (stream !== undefined) stream.destroy();
  else client.end().catch(noop);
}

function noop(): void {}

/** Socket-level error codes of a node that cannot be reached or went away. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** pg's messages for a connection that failed or ended. */
const CONNECTION_MESSAGES =
  /Connection terminated|connection timeout|timeout expired|timeout exceeded when trying to connect|not queryable|Client has encountered a connection error|Connection ended|read ECONNRESET|socket hang up/i;

/** pg's refusal to send on a client that already lost its connection: the statement never left. */
const NOT_SENT = /not queryable|Client was closed/i;

/**
 * SQLSTATEs meaning "this server cannot serve you now": connection exceptions (class 08), admin
 * or crash shutdown, not accepting connections yet, too many connections.
 */
function isConnectionSqlState(state: string): boolean {
  return (
    state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03' || state === '53300'
  );
}

function sqlStateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True when `error` says the connection failed or the node is unavailable, rather than the statement. */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof PgConnectionError) return true;
  if (error instanceof ButtressError || typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return true;
    const state = sqlStateOf(error);
    if (state !== undefined) return isConnectionSqlState(state);
  }
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && CONNECTION_MESSAGES.test(message);
}

/**
 * The typed error a driver failure surfaces as: `E_PG_CONNECTION` for connection failures,
 * `E_PG_QUERY` for what the server rejected, with the driver's error as `cause`, scrubbed of
 * passwords. buttress's own errors (timeouts, aborts) pass through unchanged.
 */
export function toPgError(error: unknown, node: string, sent: boolean, redactor: Redactor): unknown {
  if (error instanceof ButtressError) return error;
  redactor.error(error);
  const message = redactor.text(
    typeof (error as { message?: unknown } | null)?.message === 'string'
      ? (error as { message: string }).message
      : String(error),
  );
  const state = sqlStateOf(error);
  if (isConnectionFailure(error)) {
    // pg refuses a statement on a client whose connection already failed without sending it.
    return new PgConnectionError(node, message, sent && !NOT_SENT.test(message), state, error);
  }
  const e = error as Partial<Record<string, unknown>>;
  const str = (v: unknown) => (typeof v === 'string' ? redactor.text(v) : undefined);
  const fields: Partial<PgErrorFields> = {
    sqlState: state,
    severity: str(e.severity),
    detail: str(e.detail),
    hint: str(e.hint),
    schema: str(e.schema),
    table: str(e.table),
    column: str(e.column),
    constraint: str(e.constraint),
    position: str(e.position),
  };
  return new PgQueryError(node, message, fields, error);
}
