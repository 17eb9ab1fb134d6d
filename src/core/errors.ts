/**
 * Every stable error code buttress can throw, with a one-line meaning. `docs/errors.md` lists
 * each of them; a test fails when one is missing there.
 */
export const ErrorCodes = {
  E_INVALID_OPTION: 'An option passed to a factory or call has a value outside its documented domain.',
  E_CIRCUIT_OPEN:
    'The circuit breaker is open (or half-open with all probe slots taken) and rejected the call.',
  E_CIRCUIT_ISOLATED: 'The circuit breaker was isolated by hand with `isolate()` and rejects every call.',
  E_ABORTED: 'The caller aborted the operation through its AbortSignal.',
  E_CLOSED: 'The object was closed; it accepts no more calls.',
  E_TIMEOUT: 'The operation did not finish within its deadline.',
  E_REDIS_TIMEOUT: 'A Redis command did not answer within the configured Redis timeout.',
  E_BULKHEAD_FULL:
    'The bulkhead or concurrency limiter is at its limit with a full queue, or a waiter left the queue on its timeout.',
  E_RATE_LIMITED: 'The rate limiter refused the call: the key is over its rate.',
  E_THROTTLED:
    'Client-side adaptive throttling rejected the call locally because the backend has been rejecting.',
  E_FACTORY_TIMEOUT:
    "A cache loader (getOrSet's factory) did not finish within its hardTimeout and no graced value could stand in.",
  E_CACHE_SERIALIZE:
    'The cache could not serialize a value for its Redis layer (a function, a symbol, a cycle, ...).',
  E_CACHE_CORRUPT:
    "A payload read from the cache's Redis layer could not be decoded; it was treated as a miss.",
  E_CACHE_UNAVAILABLE:
    "The cache's Redis layer was unreachable (connection not ready, circuit open, or timed out); the operation ran on L1 only.",
  E_QUEUE_UNAVAILABLE:
    "The queue's Redis backend was unreachable or did not answer within its timeout; the operation may or may not have been applied.",
  E_QUEUE_EVICTION_POLICY:
    "The queue's Redis runs with a maxmemory-policy that may evict keys (jobs would be lost) and the backend was told to refuse it.",
  E_JOB_SERIALIZE:
    'A job payload cannot be stored as JSON without loss (a function, a symbol, a BigInt, a cycle, a Map, NaN...).',
  E_JOB_TIMEOUT:
    "A job's handler ran past the job's timeout; its signal was aborted and the attempt counts as failed.",
  E_JOB_LEASE_LOST:
    "A worker lost a job's lease (not renewed within lockDuration, or released on close); another worker may run the job.",
  E_JOB_NOT_FOUND: 'No job with that id in the state the operation needs (retry takes a dead-lettered job).',
  E_POOL_TIMEOUT:
    "No database connection became available within the pool's acquireTimeout (busy pool, or a server slow to accept connections).",
  E_POOL_FULL:
    "The pool's waiting queue was at maxWaiting: the caller was rejected at once instead of piling up behind the others.",
  E_PGBOUNCER_UNSUPPORTED:
    'The statement uses a session-level feature (SET, LISTEN, a named prepared statement, ...) that PgBouncer transaction pooling breaks.',
  E_PG_QUERY:
    'PostgreSQL rejected a statement (a constraint, a syntax error, a conflict, ...); sqlState holds its SQLSTATE.',
  E_PG_CONNECTION:
    'A PostgreSQL node could not be reached or dropped the connection (refused, reset, terminated, shutting down).',
  E_HTTP_STATUS:
    "A route's handler answered with a 5xx status: the HTTP adapters count it as a failure for the route's breaker and limiter.",
} as const;

/** A stable buttress error code. */
export type ErrorCode = keyof typeof ErrorCodes;

/** Extra fields carried by an error, shown in its message context and kept on the object. */
export interface ButtressErrorOptions {
  cause?: unknown;
  /** Skip capturing a stack trace (for hot-path rejections that happen in bulk). */
  noStack?: boolean;
}

/**
 * The base of every error buttress throws. Check it with {@link isButtressError} or by `code`,
 * never by message text: codes are stable across versions, messages are not.
 */
export class ButtressError extends Error {
  /** Stable machine-readable code, see {@link ErrorCodes}. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ButtressErrorOptions) {
    if (options?.noStack) {
      // Capturing a stack costs microseconds; open circuits and full bulkheads reject in bulk,
      // and their stack would only point at buttress internals anyway.
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      super(message, options.cause === undefined ? undefined : { cause: options.cause });
      Error.stackTraceLimit = limit;
    } else {
      super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    }
    this.code = code;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** Thrown when an option fails validation. Names the option and the value received. */
export class InvalidOptionError extends ButtressError {
  /** Dotted path of the offending option, e.g. `strategy.failureRate`. */
  readonly option: string;
  /** The value that was received. */
  readonly received: unknown;

  constructor(option: string, received: unknown, expected: string) {
    super(
      'E_INVALID_OPTION',
      `Invalid option "${option}": expected ${expected}, received ${describe(received)}`,
    );
    this.option = option;
    this.received = received;
  }
}

/** Thrown when an operation is aborted through its `AbortSignal`. */
export class AbortedError extends ButtressError {
  constructor(reason?: unknown) {
    super('E_ABORTED', 'The operation was aborted', { cause: reason });
  }
}

/** Thrown by any call on an object after its `close()`. */
export class ClosedError extends ButtressError {
  constructor(what: string) {
    super('E_CLOSED', `${what} is closed`);
  }
}

/** Thrown when an operation exceeds its deadline. */
export class TimeoutError extends ButtressError {
  /** The deadline that was exceeded, in milliseconds. */
  readonly timeout: number;
  constructor(timeout: number, what = 'The operation', code: 'E_TIMEOUT' | 'E_REDIS_TIMEOUT' = 'E_TIMEOUT') {
    super(code, `${what} timed out after ${timeout}ms`, { noStack: true });
    this.timeout = timeout;
  }
}

/** True for any error thrown by buttress. */
export const isButtressError = (e: unknown): e is ButtressError => e instanceof ButtressError;

/** True when `e` is a buttress error with the given code. */
export const hasCode = <C extends ErrorCode>(e: unknown, code: C): e is ButtressError & { code: C } =>
  e instanceof ButtressError && e.code === code;

/** True for {@link InvalidOptionError}. */
export const isInvalidOptionError = (e: unknown): e is InvalidOptionError => e instanceof InvalidOptionError;

/** True for {@link AbortedError}. */
export const isAbortedError = (e: unknown): e is AbortedError => hasCode(e, 'E_ABORTED');

/** True for {@link TimeoutError} (any timeout code). */
export const isTimeoutError = (e: unknown): e is TimeoutError => e instanceof TimeoutError;

/** Renders a received value for an error message without throwing on odd inputs. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return truncate(JSON.stringify(value));
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'symbol') return value.toString();
  try {
    const json = JSON.stringify(value);
    return json === undefined ? Object.prototype.toString.call(value) : truncate(json);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
