import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import type { Cache } from '../../cache/cache.js';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { bool, clockOption, knownKeys, nonEmptyString, oneOf, optionsObject } from '../../core/validate.js';
import { createHealth, type Health, type HealthOptions } from '../http/health.js';
import {
  type ProblemOptions,
  problemFor,
  type ResolvedProblemOptions,
  resolveProblemOptions,
} from '../http/problem.js';
import { policyOption, type RequestPolicy, RequestRun, routePolicy } from '../http/request-policy.js';
import {
  type CachedResponse,
  type Capture,
  HIT,
  LEAD,
  type ResponseHeaders,
  RouteCache,
  type RouteCacheOptions,
  resolveRouteCache,
  stripConditionals,
} from '../http/response-cache.js';

/*
 * Express middleware over the framework-neutral layer in ../http. Works with Express 4 and 5: it
 * uses only what both have (req.originalUrl, req.path, req.headers, req.res and Node's own
 * ServerResponse methods), and never calls `next` twice.
 */

const kSignal = Symbol('buttress.signal');
const kClientSignal = Symbol('buttress.clientSignal');

/** kSignal: the route policy's signal (a timeout's); kClientSignal: what signalOf returned. */
type Req = Request & { [kSignal]?: AbortSignal; [kClientSignal]?: AbortSignal };

/** What to do with a request that a limiter, an open breaker or a timeout turned away. */
export type RejectMode = 'respond' | 'next';

/**
 * Options of {@link responseCache}: the route's caching rules, and the cache that keeps the responses.
 *
 * @example
 * const options: ExpressCacheOptions = { cache: http, ttl: '30s', staleWhileRevalidate: '5m', vary: ['accept-language'] };
 */
export interface ExpressCacheOptions extends RouteCacheOptions {
  /** Where the responses are kept; give it a namespace of its own (`cache.namespace('http')`). */
  cache: Cache;
  /** Time source for `Age` and freshness. @default systemClock */
  clock?: Clock;
}

/**
 * Caches the responses of a route on a buttress cache: GET (HEAD is answered from the GET entry),
 * 200, 203 and 204 only (never a 206; a `Range` request bypasses it), never a response that sets
 * a cookie or says `private`, `no-store` or `no-cache`; a strong `ETag` and `304` on `If-None-Match`, `Cache-Control` with `max-age` and
 * `stale-while-revalidate`, `Age`, `Cache-Status`. Concurrent misses for one key (in this
 * process, and across instances sharing Redis) run the handler once: the others wait for its
 * response. With `staleWhileRevalidate`, the request that finds the entry stale runs the
 * handler while the requests arriving meanwhile get the stale copy at once.
 *
 * Mount it where the response may be shared: after authentication, before the handler.
 *
 * @example
 * app.get('/products/:id', responseCache({ cache: http, ttl: '30s', staleWhileRevalidate: '5m' }), getProduct);
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
 */
export function responseCache(options: ExpressCacheOptions): RequestHandler {
  const o = optionsObject(options, 'responseCache');
  const { cache, clock, ...route } = o;
  if (typeof (cache as Cache | undefined)?.getOrSet !== 'function') {
    throw new InvalidOptionError('responseCache.cache', cache, 'a Cache (buttress/cache createCache())');
  }
  const rc = new RouteCache(
    cache as Cache,
    resolveRouteCache(route, undefined, 'responseCache'),
    clockOption(clock, 'responseCache.clock'),
  );
  return function buttressResponseCache(req: Request, res: Response, next: NextFunction): void {
    let key: string | undefined;
    try {
      key = rc.key(req.method, req.originalUrl, req.headers);
    } catch (error) {
      next(error);
      return;
    }
    if (key === undefined) {
      next();
      return;
    }
    rc.lookup(key, req.method === 'HEAD', (outcome, value) => {
      if (outcome === HIT) serve(rc, req, res, next, value as CachedResponse);
      else if (outcome === LEAD) lead(req, res, next, value as Capture);
      else next();
    });
  };
}

/** Answers a request from a stored response. */
function serve(rc: RouteCache, req: Request, res: Response, next: NextFunction, entry: CachedResponse): void {
  try {
    const status = rc.writeHit(
      entry,
      req.headers['if-none-match'],
      req.headers['if-modified-since'],
      (name, value) => res.setHeader(name, value),
    );
    res.statusCode = status;
    if (status === 304) {
      res.end();
    } else if (req.method === 'HEAD') {
      res.setHeader('content-length', entry.body.byteLength);
      res.end();
    } else {
      res.end(entry.body);
    }
  } catch (error) {
    next(error);
  }
}

/** Reads a Node response's headers for the capture. */
function headersOf(res: ServerResponse): ResponseHeaders {
  return { get: (name) => res.getHeader(name), names: () => res.getHeaderNames() };
}

type Callback = (error?: Error | null) => void;

/**
 * Runs the handler for the request whose miss started the fill, teeing its response into the
 * capture. The response goes to the client as usual. When the handler sends it in one piece (as
 * `res.json` and `res.send` do) it is cached, gets its ETag, and is answered 304 when the
 * client's copy is still current; a streamed response (`res.write` before `res.end`) is sent as
 * it is and not cached.
 */
function lead(req: Request, res: Response, next: NextFunction, capture: Capture): void {
  // The handler must produce the full response: it is shared with every request waiting for it.
  // (Express would answer the conditionals itself, from its own weak ETag.)
  capture.conditionals = stripConditionals(req.headers);
  const raw = res as ServerResponse;
  const origWriteHead = raw.writeHead;
  const origWrite = raw.write;
  const origEnd = raw.end;
  let built = false;
  const restore = (): void => {
    raw.writeHead = origWriteHead;
    raw.write = origWrite;
    raw.end = origEnd;
  };
  const apply = (headers: Readonly<Record<string, string>>): void => {
    for (const name in headers) raw.setHeader(name, headers[name]!);
  };

  raw.writeHead = function writeHead(this: ServerResponse, ...args: unknown[]) {
    // Headers going out before `end`: a streamed body, which is not kept.
    restore();
    if (!built) {
      built = true;
      // Headers passed to writeHead are not in getHeaders() yet: only a status is known to build on.
      apply(capture.build(args[0] as number, headersOf(this), undefined).headers);
    }
    return (origWriteHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof raw.writeHead;

  raw.write = function write(this: ServerResponse, ...args: unknown[]) {
    restore();
    if (!built && !this.headersSent) {
      built = true;
      apply(capture.build(this.statusCode, headersOf(this), undefined).headers);
    }
    return (origWrite as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof raw.write;

  raw.end = function end(this: ServerResponse, chunk?: unknown, encoding?: unknown, cb?: unknown) {
    restore();
    if (typeof chunk === 'function') {
      cb = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const callback = cb as Callback | undefined;
    const send = (body: unknown): ServerResponse => {
      const args: unknown[] = body === undefined ? [] : encoding === undefined ? [body] : [body, encoding];
      if (callback !== undefined) args.push(callback);
      return (origEnd as (...a: unknown[]) => ServerResponse).apply(this, args);
    };
    if (built || this.headersSent) return send(chunk);
    built = true;
    // Express tags every res.send with a weak ETag of its own; the cache gives the bytes it keeps
    // a strong one instead (a handler's own strong ETag is kept).
    const own = this.getHeader('etag');
    if (typeof own === 'string' && own.startsWith('W/')) this.removeHeader('etag');
    let body: Uint8Array;
    if (chunk === undefined || chunk === null) body = EMPTY;
    else if (typeof chunk === 'string')
      body = Buffer.from(chunk, (encoding as BufferEncoding | undefined) ?? 'utf8');
    else body = chunk as Uint8Array;
    // A HEAD cannot fill a GET entry: it has no body. (HEAD requests never lead; this is a guard.)
    const decision = capture.build(
      this.statusCode,
      headersOf(this),
      req.method === 'HEAD' ? undefined : body,
    );
    apply(decision.headers);
    if (decision.entry !== undefined) {
      // A hook that runs as the headers go out (express-session's cookie) may still set a cookie:
      // the entry is then not kept (Capture.end), and the response must not say it may be.
      const unguard = guardLateCookie(this, decision.headers);
      try {
        if (decision.notModified) return notModified(this, send);
        return send(chunk);
      } finally {
        unguard();
      }
    }
    return send(chunk);
  } as typeof raw.end;

  // Whatever happens (an error answered by an error handler, the client leaving, a handler that
  // never answers until the server's own timeout), the requests waiting on this fill are released.
  res.once('close', () => {
    restore();
    if (built) capture.end(headersOf(raw));
    else capture.abandon();
  });
  next();
}

const EMPTY = new Uint8Array(0);

function notModified(res: ServerResponse, send: (body: unknown) => ServerResponse): ServerResponse {
  res.statusCode = 304;
  for (const name of ['content-type', 'content-length', 'transfer-encoding', 'content-encoding'])
    res.removeHeader(name);
  return send(undefined);
}

/**
 * Until the returned function is called, a `Set-Cookie` set on `res` takes back the caching
 * headers `added` put there (ETag, Cache-Control) and marks the response not stored.
 */
function guardLateCookie(res: ServerResponse, added: Readonly<Record<string, string>>): () => void {
  const own = Object.hasOwn(res, 'setHeader');
  const set = res.setHeader;
  const strip = (): void => {
    if (added.etag !== undefined) res.removeHeader('etag');
    if (added['cache-control'] !== undefined) res.removeHeader('cache-control');
    if (added['cache-status'] !== undefined) set.call(res, 'cache-status', 'buttress; fwd=miss');
  };
  res.setHeader = function setHeader(
    this: ServerResponse,
    name: string,
    value: number | string | readonly string[],
  ) {
    const result = set.call(this, name, value);
    if (name.toLowerCase() === 'set-cookie') strip();
    return result;
  } as typeof res.setHeader;
  return () => {
    if (own) res.setHeader = set;
    else delete (res as { setHeader?: unknown }).setHeader;
  };
}

/**
 * Options of {@link routeGuard}: a route's load shedding, breaker and timeout.
 *
 * @example
 * const guard: RouteGuardOptions = { breaker: payments, timeout: '2s' };
 */
export interface RouteGuardOptions {
  /**
   * Load shedding: a `bulkhead()` (fixed limit) or an `adaptiveLimiter()` (a limit found from
   * latency). Each request holds a slot until its response is sent; over the limit and its
   * queue, `503` with `Retry-After` from the limiter's estimate (whole seconds, jittered).
   */
  limiter?: RequestPolicy;
  /**
   * A circuit breaker (`buttress/breaker`): a 5xx response or a timeout counts as a failure;
   * while it is open the handler does not run: `503` with `Retry-After`.
   */
  breaker?: RequestPolicy;
  /** The handler's deadline: past it the client gets `504` at once and the handler's {@link signalOf} aborts. */
  timeout?: Duration;
  /**
   * `'respond'`: answer a rejected request at once with a problem body (no work at all under
   * overload); `'next'`: pass the error to your error handler instead. @default 'respond'
   */
  onReject?: RejectMode;
  /** Problem body and `Retry-After` settings. */
  problem?: ProblemOptions;
  /** Time source of the timeout. @default systemClock */
  clock?: Clock;
}

const GUARD_KEYS = ['limiter', 'breaker', 'timeout', 'onReject', 'problem', 'clock'] as const;

/**
 * Load shedding, a circuit breaker and a timeout around the rest of the route, composed
 * outermost first (limiter, breaker, timeout) with `wrap()`. A rejected request never reaches
 * the handler: `503` (shed, open circuit) with `Retry-After`. Past the timeout the client gets
 * `504`, the handler's signal ({@link signalOf}) aborts, and whatever the handler sends later is
 * dropped.
 *
 * @example
 * app.post('/checkout', routeGuard({ breaker: payments, timeout: '2s' }), checkout);
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option, or when it names no policy.
 */
export function routeGuard(options: RouteGuardOptions): RequestHandler {
  const o = optionsObject(options, 'routeGuard');
  knownKeys(o, GUARD_KEYS, 'routeGuard');
  const policy = routePolicy(
    {
      limiter: policyOption(o.limiter, 'routeGuard.limiter'),
      breaker: policyOption(o.breaker, 'routeGuard.breaker'),
      timeout: o.timeout,
      clock: o.clock === undefined ? undefined : clockOption(o.clock, 'routeGuard.clock'),
    },
    'routeGuard',
  );
  if (policy === undefined) {
    throw new InvalidOptionError('routeGuard', options, 'a limiter, a breaker or a timeout');
  }
  return guardMiddleware(
    policy,
    undefined,
    rejectMode(o.onReject, 'routeGuard'),
    resolveProblemOptions(o.problem, 'routeGuard.problem'),
  );
}

/**
 * Options of {@link loadShedder}.
 *
 * @example
 * const shedding: LoadShedderOptions = { limiter: adaptiveLimiter({ maxLimit: 200, queue: 50, queueTimeout: '100ms' }) };
 */
export interface LoadShedderOptions {
  /** A `bulkhead()` or an `adaptiveLimiter()`: see {@link RouteGuardOptions.limiter}. */
  limiter: RequestPolicy;
  /**
   * Requests never shed: exact paths (`req.path`) or a predicate. Keep the health routes here,
   * or mount them before the shedder. @default ['/health', '/ready'] (where healthRoutes answers)
   */
  exempt?: readonly string[] | ((req: Request) => boolean);
  /** See {@link RouteGuardOptions.onReject}. @default 'respond' */
  onReject?: RejectMode;
  /** Problem body and `Retry-After` settings. */
  problem?: ProblemOptions;
}

/**
 * Load shedding in front of the handlers, for the whole app (`app.use`) or a router: each
 * request holds a slot of `limiter` until its response is sent; over the limit and its queue,
 * `503` with `Retry-After` (whole seconds from the limiter's estimate, jittered). Health routes
 * are exempt.
 *
 * @example
 * app.use(loadShedder({ limiter: adaptiveLimiter({ maxLimit: 200, queue: 50, queueTimeout: '100ms' }) }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
 */
export function loadShedder(options: LoadShedderOptions): RequestHandler {
  const o = optionsObject(options, 'loadShedder');
  knownKeys(o, ['limiter', 'exempt', 'onReject', 'problem'], 'loadShedder');
  const limiter = policyOption(o.limiter, 'loadShedder.limiter');
  if (limiter === undefined)
    throw new InvalidOptionError('loadShedder.limiter', undefined, 'a bulkhead or adaptiveLimiter');
  return guardMiddleware(
    limiter,
    exemptRule(o.exempt ?? DEFAULT_HEALTH_PATHS, 'loadShedder.exempt'),
    rejectMode(o.onReject, 'loadShedder'),
    resolveProblemOptions(o.problem, 'loadShedder.problem'),
  );
}

const DEFAULT_HEALTH_PATHS: readonly string[] = ['/health', '/ready'];

function rejectMode(value: unknown, prefix: string): RejectMode {
  return oneOf(value, `${prefix}.onReject`, ['respond', 'next'], 'respond');
}

function exemptRule(value: unknown, option: string): (req: Request) => boolean {
  if (typeof value === 'function') return value as (req: Request) => boolean;
  if (Array.isArray(value) && value.every((p) => typeof p === 'string')) {
    const paths = new Set(value as string[]);
    return (req) => paths.has(req.path);
  }
  throw new InvalidOptionError(option, value, 'an array of paths or a function (req) => boolean');
}

function guardMiddleware(
  policy: RequestPolicy,
  exempt: ((req: Request) => boolean) | undefined,
  mode: RejectMode,
  problems: ResolvedProblemOptions,
): RequestHandler {
  return function buttressGuard(req: Request, res: Response, next: NextFunction): void {
    if (exempt?.(req)) {
      next();
      return;
    }
    const run = new RequestRun();
    run.start(
      policy,
      (signal) => {
        (req as Req)[kSignal] = signal;
        res.once('close', () => run.end(res.headersSent ? res.statusCode : 0));
        next();
      },
      (error, entered) => {
        if (!entered) {
          // Shed, or the circuit is open: the handler never ran.
          if (mode === 'next' || res.headersSent) next(error);
          else sendProblem(req, res, error, problems);
        } else if (!res.headersSent) {
          // The deadline passed: answer now; what the handler sends later is dropped.
          sendProblem(req, res, error, problems);
          silence(res);
        }
      },
    );
  };
}

/** After a timeout answered the request, the handler's late writes become no-ops. */
function silence(res: Response): void {
  const raw = res as unknown as Record<string, unknown>;
  const self = () => res;
  for (const name of ['setHeader', 'appendHeader', 'removeHeader', 'writeHead', 'flushHeaders', 'end'])
    raw[name] = self;
  raw.write = () => true;
}

/**
 * The signal of a request's work: aborted when its {@link routeGuard} timeout passes, or when the
 * client goes away. Pass it on to what the handler calls (`fetch`, queries, `cache.getOrSet`).
 *
 * @example
 * app.get('/report', routeGuard({ timeout: '5s' }), async (req, res) => res.json(await build({ signal: signalOf(req) })));
 */
export function signalOf(req: Request): AbortSignal {
  const r = req as Req;
  let signal = r[kClientSignal];
  if (signal !== undefined) return signal;
  const controller = new AbortController();
  const res = req.res;
  if (res !== undefined) {
    if (res.writableFinished) controller.abort(new Error('the response was already sent'));
    else
      res.once('close', () => {
        if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
      });
  }
  const guarded = r[kSignal];
  signal = guarded === undefined ? controller.signal : AbortSignal.any([guarded, controller.signal]);
  r[kClientSignal] = signal;
  return signal;
}

/** Options of {@link healthRoutes}: the checks (see `createHealth`), or a `health` of yours, and the paths. */
export interface HealthRoutesOptions extends HealthOptions {
  /** A `createHealth()` of yours instead of the checks here. */
  health?: Health;
  /** Liveness: 200 while the process answers; no dependency touched. @default '/health' */
  livePath?: string;
  /** Readiness: every check; 503 when one is down. @default '/ready' */
  readyPath?: string;
}

/** The middleware of {@link healthRoutes}, with the paths it answers and its checks. */
export interface HealthMiddleware extends RequestHandler {
  readonly paths: readonly string[];
  readonly health: Health;
}

/**
 * Answers `GET livePath` (liveness) and `GET readyPath` (readiness: Redis, PostgreSQL nodes with
 * replica lag, breaker states, queue depth, caches), JSON, never cached. Readiness is `503` when a
 * check is down, `200` when every one is ok or degraded. Mount it before the load shedder (or keep
 * its paths in the shedder's `exempt`, which holds the default ones).
 *
 * @example
 * app.use(healthRoutes({ redis: { main: redis }, postgres: { main: db }, breakers: { payments }, queues: { emails } }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
 */
export function healthRoutes(options?: HealthRoutesOptions): HealthMiddleware {
  const o = optionsObject(options, 'healthRoutes');
  const { health: given, livePath, readyPath, ...rest } = o;
  const live = nonEmptyString(livePath, 'healthRoutes.livePath', '/health');
  const ready = nonEmptyString(readyPath, 'healthRoutes.readyPath', '/ready');
  if (given !== undefined && Object.keys(rest).length !== 0) {
    throw new InvalidOptionError('healthRoutes.health', given, 'either `health` or check options, not both');
  }
  const health = given ?? createHealth(rest);
  const middleware = function buttressHealth(req: Request, res: Response, next: NextFunction): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      next();
      return;
    }
    const path = req.path;
    if (path === live) {
      sendJson(res, 200, health.liveness());
    } else if (path === ready) {
      health.readiness(signalOf(req)).then(
        (report) => sendJson(res, report.status === 'down' ? 503 : 200, report),
        (error: unknown) => {
          if (!res.headersSent && !res.writableEnded) next(error);
        },
      );
    } else {
      next();
    }
  } as HealthMiddleware;
  Object.defineProperties(middleware, {
    paths: { value: Object.freeze([live, ready]), enumerable: true },
    health: { value: health, enumerable: true },
  });
  return middleware;
}

function sendJson(res: Response, status: number, body: unknown): void {
  if (res.headersSent || res.writableEnded) return;
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

/** Options of {@link problemHandler}. */
export interface ProblemHandlerOptions extends ProblemOptions {
  /**
   * Answer every error, not only buttress's: the others become a bare `500` problem that says
   * nothing of their cause. @default false (they go on to the next error handler)
   */
  all?: boolean;
}

/**
 * A four-argument error handler answering buttress errors with RFC 9457 problem bodies
 * (`application/problem+json`): `E_CIRCUIT_OPEN` and `E_BULKHEAD_FULL` 503, `E_RATE_LIMITED`
 * 429, with `Retry-After` when the error knows it, `E_TIMEOUT` 504, and so on. Other errors go on
 * to the next error handler, unless `all`.
 *
 * @example
 * app.use(problemHandler());
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
 */
export function problemHandler(options?: ProblemHandlerOptions): ErrorRequestHandler {
  const o = optionsObject(options, 'problemHandler');
  const { all, ...rest } = o;
  const answerAll = bool(all, 'problemHandler.all', false);
  const problems = resolveProblemOptions(rest, 'problemHandler');
  return function buttressProblemHandler(
    error: unknown,
    req: Request,
    res: Response,
    next: NextFunction,
  ): void {
    if (res.headersSent || (!answerAll && problemFor(error, problems) === undefined)) {
      next(error);
      return;
    }
    sendProblem(req, res, error, problems);
  };
}

const INTERNAL = {
  type: 'about:blank',
  title: 'Internal Server Error',
  status: 500,
  detail: 'The server could not complete the request.',
} as const;

/**
 * Sends the problem response for `error`: its status, `Retry-After`, an `application/problem+json`
 * body with `instance` set to the request's URL. An error that is not buttress's becomes a bare 500.
 */
export function sendProblem(
  req: Request,
  res: Response,
  error: unknown,
  problems?: ResolvedProblemOptions,
): void {
  const problem = problemFor(error, problems ?? DEFAULT_PROBLEMS);
  res.statusCode = problem?.status ?? 500;
  if (problem === undefined) res.setHeader('content-type', 'application/problem+json; charset=utf-8');
  else for (const name in problem.headers) res.setHeader(name, problem.headers[name]!);
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify({ ...(problem?.body ?? INTERNAL), instance: req.originalUrl }));
}

const DEFAULT_PROBLEMS: ResolvedProblemOptions = resolveProblemOptions(undefined);
