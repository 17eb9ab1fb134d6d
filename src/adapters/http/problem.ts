import { type ErrorCode, isButtressError } from '../../core/errors.js';
import { bool, fn, fraction, knownKeys, optionsObject } from '../../core/validate.js';
import { retryAfterSeconds } from './retry-after.js';

/** A JSON problem body (RFC 9457), with buttress's stable `code` as an extension member. */
export interface ProblemDetails {
  /** A URI naming the kind of problem; `about:blank` means "what the status says". */
  type: string;
  /** Short human-readable summary of the kind of problem (the status phrase for `about:blank`). */
  title: string;
  /** The HTTP status, repeated for clients that only see the body. */
  status: number;
  /** What happened, for a human. Never the internal error message unless `exposeMessages` is on. */
  detail: string;
  /** The buttress error code (`E_CIRCUIT_OPEN`, ...), stable across versions: match on it. */
  code: string;
  /** Seconds to wait before retrying, when known (the same value as the `Retry-After` header). */
  retryAfter?: number;
}

/** An HTTP answer for an error: status, headers and the problem body. */
export interface Problem {
  status: number;
  /** `content-type: application/problem+json`, and `retry-after` when known. */
  headers: Record<string, string>;
  body: ProblemDetails;
}

/** Options of {@link problemFor} and of every adapter's error mapping. */
export interface ProblemOptions {
  /**
   * The problem `type` URI for an error code. @default `() => 'about:blank'` (the title is then
   * the status phrase, as RFC 9457 §4.2.1 asks)
   */
  type?: (code: string) => string;
  /** Put the error's own message in `detail`. Messages name breakers and bulkheads: keep it off in public APIs. @default false */
  exposeMessages?: boolean;
  /** Spread of `Retry-After`, a fraction added at most (see {@link retryAfterSeconds}). @default 0.5 */
  retryAfterJitter?: number;
}

/** Options validated once, at construction. */
export interface ResolvedProblemOptions {
  type: ((code: string) => string) | undefined;
  exposeMessages: boolean;
  jitter: number;
}

const PROBLEM_KEYS = ['type', 'exposeMessages', 'retryAfterJitter'] as const;

/** Validates {@link ProblemOptions}. @throws {InvalidOptionError} `E_INVALID_OPTION`. */
export function resolveProblemOptions(
  value: ProblemOptions | undefined,
  option = 'errors',
): ResolvedProblemOptions {
  const o = optionsObject(value, option);
  knownKeys(o, PROBLEM_KEYS, option);
  return {
    type: o.type === undefined ? undefined : fn<(code: string) => string>(o.type, `${option}.type`),
    exposeMessages: bool(o.exposeMessages, `${option}.exposeMessages`, false),
    jitter: o.retryAfterJitter === 0 ? 0 : fraction(o.retryAfterJitter, `${option}.retryAfterJitter`, 0.5),
  };
}

interface Mapping {
  status: number;
  detail: string;
}

/**
 * Error code -> HTTP status. Overload and open circuits are 503 (the service cannot answer now,
 * come back later), timeouts are 504 (something behind the handler did not answer in time), a
 * rate limit is 429 (this client is over its share). Codes not listed are server faults: 500.
 */
export const STATUS_BY_CODE: Readonly<Partial<Record<ErrorCode, Mapping>>> = Object.freeze({
  E_CIRCUIT_OPEN: {
    status: 503,
    detail: 'A dependency of this endpoint is failing; it is not being called for now.',
  },
  E_CIRCUIT_ISOLATED: { status: 503, detail: 'A dependency of this endpoint was taken out of service.' },
  E_BULKHEAD_FULL: { status: 503, detail: 'The service is at capacity; try again later.' },
  E_THROTTLED: { status: 503, detail: 'A dependency of this endpoint is rejecting calls; try again later.' },
  E_POOL_TIMEOUT: { status: 503, detail: 'No database connection became available in time.' },
  E_POOL_FULL: { status: 503, detail: 'The database is at capacity; try again later.' },
  E_PG_CONNECTION: { status: 503, detail: 'The database could not be reached.' },
  E_QUEUE_UNAVAILABLE: { status: 503, detail: 'The job queue could not be reached.' },
  E_CACHE_UNAVAILABLE: { status: 503, detail: 'The cache could not be reached.' },
  E_RATE_LIMITED: { status: 429, detail: 'Too many requests; slow down.' },
  E_TIMEOUT: { status: 504, detail: 'The request did not complete in time.' },
  E_FACTORY_TIMEOUT: { status: 504, detail: 'The request did not complete in time.' },
  E_REDIS_TIMEOUT: { status: 504, detail: 'A dependency did not answer in time.' },
});

const PHRASES: Record<number, string> = {
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** The HTTP status for a buttress error, 500 for codes that mean a fault; undefined for other errors. */
export function statusFor(error: unknown): number | undefined {
  if (!isButtressError(error)) return undefined;
  if (error.code === 'E_HTTP_STATUS') return (error as unknown as { status: number }).status;
  return STATUS_BY_CODE[error.code]?.status ?? 500;
}

/**
 * The HTTP answer for a buttress error: status, `Retry-After` in jittered whole seconds when the
 * error knows when to come back (`retryAfter` on open circuits, full bulkheads and rate limits),
 * and a problem body. `undefined` for errors that are not buttress's: they stay the framework's.
 *
 * @example
 * const p = problemFor(err, resolveProblemOptions(undefined));
 * if (p) res.writeHead(p.status, p.headers).end(JSON.stringify(p.body));
 */
export function problemFor(
  error: unknown,
  options: ResolvedProblemOptions,
  random: () => number = Math.random,
): Problem | undefined {
  if (!isButtressError(error)) return undefined;
  const code = error.code;
  const status = statusFor(error)!;
  const mapping = STATUS_BY_CODE[code];
  const title = PHRASES[status] ?? 'Error';
  const type = options.type === undefined ? 'about:blank' : options.type(code);
  const body: ProblemDetails = {
    type,
    title,
    status,
    detail: options.exposeMessages
      ? error.message
      : (mapping?.detail ?? 'The server could not complete the request.'),
    code,
  };
  const headers: Record<string, string> = { 'content-type': 'application/problem+json; charset=utf-8' };
  const after = (error as { retryAfter?: unknown }).retryAfter;
  if ((status === 503 || status === 429) && typeof after === 'number') {
    const seconds = retryAfterSeconds(after, options.jitter, random);
    if (seconds !== undefined) {
      headers['retry-after'] = String(seconds);
      body.retryAfter = seconds;
    }
  }
  return { status, headers, body };
}
