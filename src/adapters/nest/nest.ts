import type { ServerResponse } from 'node:http';
import {
  type ArgumentsHost,
  applyDecorators,
  type CallHandler,
  type CanActivate,
  Catch,
  createParamDecorator,
  type ExceptionFilter,
  type ExecutionContext,
  HttpException,
  Inject,
  Injectable,
  type NestInterceptor,
  Optional,
  SetMetadata,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import { lastValueFrom, Observable } from 'rxjs';
import type { BreakerRegistry } from '../../breaker/registry.js';
import type { Cache } from '../../cache/cache.js';
import { type Clock, systemClock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { ButtressError, InvalidOptionError } from '../../core/errors.js';
import { problemFor, type ResolvedProblemOptions, resolveProblemOptions } from '../http/problem.js';
import { policyOption, type RequestPolicy, RequestRun, routePolicy } from '../http/request-policy.js';
import {
  type CachedResponse,
  type Capture,
  HIT,
  LEAD,
  type ResolvedRouteCache,
  type ResponseHeaders,
  RouteCache,
  type RouteCacheOptions,
  resolveRouteCache,
  stripConditionals,
} from '../http/response-cache.js';

/*
 * NestJS enhancers over the framework-neutral layer in ../http. Every injection names its token
 * (@Inject), so nothing depends on emitDecoratorMetadata (tsup's esbuild does not emit it).
 * Requests and responses are read through what both platforms share: on platform-express they
 * are Express's objects, on platform-fastify `request.raw` / `reply.raw` are Node's.
 */

/** Injection token of the module's resolved options. */
export const BUTTRESS_OPTIONS = Symbol.for('buttress:nest:options');
/** Injection token of the cache given to `ButtressModule` (`@InjectCache()`). */
export const BUTTRESS_CACHE = Symbol.for('buttress:nest:cache');
/** Injection token of the PostgreSQL cluster given to `ButtressModule` (`@InjectPool()`). */
export const BUTTRESS_POOL = Symbol.for('buttress:nest:pool');
/** Injection token of the health checks (`@InjectHealth()`). */
export const BUTTRESS_HEALTH = Symbol.for('buttress:nest:health');
/** Injection token of a queue given to `ButtressModule` under `name` (`@InjectQueue(name)`). */
export function queueToken(name: string): string {
  return `buttress:nest:queue:${name}`;
}

/** The options every buttress enhancer reads, as `ButtressModule` provides them. */
export interface ButtressEnhancerOptions {
  cache?: Cache;
  /** Named breakers (or a registry) for `@UseBreaker('name')`. */
  breakers?: Record<string, RequestPolicy> | BreakerRegistry;
  /** The global load shedder, for `LoadSheddingGuard`. */
  limiter?: RequestPolicy;
  /** Problem body settings of `ButtressExceptionFilter`. */
  problems?: ResolvedProblemOptions;
  /** Time source of caching and timeouts. */
  clock?: Clock;
}

const CACHE_META = 'buttress:cached';
const BREAKER_META = 'buttress:breaker';
const TIMEOUT_META = 'buttress:timeout';
const SKIP_SHED_META = 'buttress:skip-shedding';
const SHED_META = 'buttress:shed';
const HTTP_CODE_METADATA = '__httpCode__';

const kSignal = Symbol('buttress.signal');
const kAdmitted = Symbol('buttress.admitted');
const kRouteSignal = Symbol('buttress.routeSignal');

/**
 * What every buttress enhancer is given: Nest's Reflector (for the route's decorators) and the
 * module's options. Subclasses inherit the constructor and its named tokens, so Nest injects
 * them without decorator metadata.
 */
abstract class Enhancer {
  constructor(
    @Inject(Reflector) protected readonly reflector: Reflector,
    @Inject(BUTTRESS_OPTIONS) protected readonly options: ButtressEnhancerOptions,
  ) {}
}

// ---------------------------------------------------------------------------------------------
// Response caching

/**
 * Caches the route's answer on the module's cache: `@Cached({ ttl: '30s', staleWhileRevalidate:
 * '5m', vary: ['accept-language'] })`. GET only (HEAD from the GET entry), 200, 203 and 204 only
 * (never a 206), never an answer that sets a cookie or says private / no-store; a strong `ETag` (and `304` from
 * platform-express's freshness check), `Cache-Control`, `Age`, `Cache-Status`. Concurrent misses
 * run the handler once, in this instance and across instances sharing Redis.
 *
 * The handler's return value is what is cached, serialized once (objects as JSON).
 *
 * @example
 * @Get(':id') @Cached({ ttl: '30s' }) find(@Param('id') id: string) { return this.products.find(id); }
 * @throws {InvalidOptionError} `E_INVALID_OPTION`, when the class is declared, for a bad option.
 */
export function Cached(options?: RouteCacheOptions): MethodDecorator & ClassDecorator {
  const settings = resolveRouteCache(options ?? {}, undefined, 'Cached');
  return applyDecorators(SetMetadata(CACHE_META, settings), UseInterceptors(CachedInterceptor));
}

interface NestRequest {
  method: string;
  url: string;
  originalUrl?: string;
  headers: Record<string, string | string[] | undefined>;
  raw?: NestRequest;
  [kSignal]?: AbortSignal;
  [kAdmitted]?: boolean;
  [kRouteSignal]?: AbortSignal;
}

interface NestResponse {
  raw?: ServerResponse;
}

function rawResponse(res: unknown): ServerResponse {
  return ((res as NestResponse).raw ?? res) as ServerResponse;
}

function rawRequest(req: unknown): NestRequest {
  const r = req as NestRequest;
  return r.raw ?? r;
}

function headersOf(res: ServerResponse): ResponseHeaders {
  return { get: (name) => res.getHeader(name), names: () => res.getHeaderNames() };
}

/** `@Cached()`'s interceptor; also usable on its own with `@UseInterceptors(CachedInterceptor)` and `SetMetadata`. */
@Injectable()
export class CachedInterceptor extends Enhancer implements NestInterceptor {
  readonly #routes = new WeakMap<Function, RouteCache>();

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const rc = this.#route(context);
    if (rc === undefined) return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<NestRequest>();
    const raw = rawRequest(req);
    const platformRes = http.getResponse<unknown>();
    const res = rawResponse(platformRes);
    const key = rc.key(raw.method ?? req.method, req.originalUrl ?? req.url, raw.headers);
    if (key === undefined) return next.handle();
    return new Observable<unknown>((subscriber) => {
      rc.lookup(key, raw.method === 'HEAD', (outcome, value) => {
        if (outcome === HIT) {
          const entry = value as CachedResponse;
          const status = rc.writeHit(entry, raw.headers['if-none-match'], ifModifiedSince(raw), (name, v) =>
            res.setHeader(name, v),
          );
          if (status === 304) {
            answerNotModified(platformRes);
            subscriber.next('');
          } else {
            subscriber.next(
              Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength).toString(),
            );
          }
          subscriber.complete();
        } else if (outcome === LEAD) {
          this.#lead(context, raw, res, platformRes, next, value as Capture).then(
            (body) => {
              subscriber.next(body);
              subscriber.complete();
            },
            (error: unknown) => subscriber.error(error),
          );
        } else {
          next.handle().subscribe(subscriber);
        }
      });
    });
  }

  async #lead(
    context: ExecutionContext,
    req: NestRequest,
    res: ServerResponse,
    platformRes: unknown,
    next: CallHandler,
    capture: Capture,
  ): Promise<unknown> {
    capture.conditionals = stripConditionals(req.headers);
    res.once('close', () => capture.end(headersOf(res)));
    let value: unknown;
    try {
      value = await lastValueFrom(next.handle(), { defaultValue: undefined });
    } catch (error) {
      const status = error instanceof HttpException ? error.getStatus() : 500;
      capture.build(status, headersOf(res), undefined);
      throw error;
    }
    let body: string | undefined;
    if (typeof value === 'string') {
      body = value;
      if (res.getHeader('content-type') === undefined)
        res.setHeader('content-type', 'text/html; charset=utf-8');
    } else if (value !== undefined && value !== null && typeof value === 'object' && !isStream(value)) {
      body = JSON.stringify(value);
      if (res.getHeader('content-type') === undefined)
        res.setHeader('content-type', 'application/json; charset=utf-8');
    }
    const status = this.reflector.get<number | undefined>(HTTP_CODE_METADATA, context.getHandler()) ?? 200;
    const decision = capture.build(status, headersOf(res), body);
    for (const name in decision.headers) res.setHeader(name, decision.headers[name]!);
    if (decision.notModified) {
      answerNotModified(platformRes);
      return '';
    }
    return body ?? value;
  }

  #route(context: ExecutionContext): RouteCache | undefined {
    const handler = context.getHandler();
    let rc = this.#routes.get(handler);
    if (rc === undefined) {
      const settings = this.reflector.getAllAndOverride<ResolvedRouteCache | undefined>(CACHE_META, [
        handler,
        context.getClass(),
      ]);
      const cache = this.options.cache;
      if (settings === undefined) return undefined;
      if (cache === undefined) {
        throw new InvalidOptionError(
          'ButtressModule.cache',
          cache,
          'a Cache, for the routes marked @Cached()',
        );
      }
      rc = new RouteCache(cache, settings, this.options.clock ?? systemClock);
      this.#routes.set(handler, rc);
    }
    return rc;
  }
}

function ifModifiedSince(req: NestRequest): string | undefined {
  const ims = req.headers['if-modified-since'];
  return Array.isArray(ims) ? ims[0] : ims;
}

/**
 * Makes the platform send `304` for this request. Nest sets the route's own status (200) after
 * the interceptors ran, through `res.status()` (Express) or `reply.status()` / `reply.code()`
 * (Fastify): those are shadowed, on this response object only, so the 304 stands; both platforms
 * then send no body for a 304.
 */
function answerNotModified(platformRes: unknown): void {
  const target = platformRes as Record<string, unknown> & { raw?: ServerResponse; statusCode?: number };
  const keep = () => platformRes;
  if (typeof target.code === 'function') (target.code as (s: number) => unknown)(304);
  else target.statusCode = 304;
  for (const name of ['status', 'code']) if (typeof target[name] === 'function') target[name] = keep;
}

function isStream(value: object): boolean {
  return (
    typeof (value as { pipe?: unknown }).pipe === 'function' ||
    typeof (value as { getStream?: unknown }).getStream === 'function'
  );
}

// ---------------------------------------------------------------------------------------------
// Breaker, timeout, per-route shedding

/**
 * Runs the route inside a circuit breaker: `@UseBreaker(payments)`, or by name,
 * `@UseBreaker('payments')`, from the module's `breakers` (a record or a `breakerRegistry()`). A
 * handler that throws (a 5xx, not a 4xx `HttpException`) counts as a failure; while the circuit
 * is open the handler does not run and the client gets `503` with `Retry-After` (through
 * `ButtressExceptionFilter`).
 *
 * @example
 * @Post() @UseBreaker('payments', { timeout: '2s' }) pay(@Body() order: Order) { ... }
 */
export function UseBreaker(
  breaker: RequestPolicy | string,
  options?: { timeout?: Duration },
): MethodDecorator & ClassDecorator {
  if (typeof breaker !== 'string') policyOption(breaker, 'UseBreaker.breaker');
  const timeout = options?.timeout;
  if (timeout !== undefined) routePolicy({ timeout }, 'UseBreaker');
  return applyDecorators(
    SetMetadata(BREAKER_META, breaker),
    ...(timeout === undefined ? [] : [SetMetadata(TIMEOUT_META, timeout)]),
    UseInterceptors(PolicyInterceptor),
  );
}

/**
 * A deadline for the route: past it the client gets `504` and the handler's signal
 * (`@RouteSignal()`) aborts.
 *
 * @example
 * @Get('report') @UseTimeout('5s') report(@RouteSignal() signal: AbortSignal) { return this.reports.build({ signal }); }
 */
export function UseTimeout(timeout: Duration): MethodDecorator & ClassDecorator {
  routePolicy({ timeout }, 'UseTimeout');
  return applyDecorators(SetMetadata(TIMEOUT_META, timeout), UseInterceptors(PolicyInterceptor));
}

/** The interceptor behind `@UseBreaker()` and `@UseTimeout()`. */
@Injectable()
export class PolicyInterceptor extends Enhancer implements NestInterceptor {
  readonly #policies = new WeakMap<Function, RequestPolicy>();

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const policy = this.#policy(context);
    if (policy === undefined) return next.handle();
    const req = rawRequest(context.switchToHttp().getRequest());
    return new Observable<unknown>((subscriber) => {
      policy
        .execute(async ({ signal }) => {
          req[kSignal] = signal;
          try {
            return { value: await lastValueFrom(next.handle(), { defaultValue: undefined }) };
          } catch (error) {
            // A client error is not the dependency failing: it must not trip the breaker.
            if (error instanceof HttpException && error.getStatus() < 500) return { clientError: error };
            throw error;
          }
        })
        .then(
          (outcome) => {
            if ('clientError' in outcome) subscriber.error(outcome.clientError);
            else {
              subscriber.next(outcome.value);
              subscriber.complete();
            }
          },
          (error: unknown) => subscriber.error(error),
        );
    });
  }

  #policy(context: ExecutionContext): RequestPolicy | undefined {
    const handler = context.getHandler();
    let policy = this.#policies.get(handler);
    if (policy === undefined) {
      const targets = [handler, context.getClass()];
      const named = this.reflector.getAllAndOverride<RequestPolicy | string | undefined>(
        BREAKER_META,
        targets,
      );
      const breaker = named === undefined ? undefined : this.#breaker(named);
      const timeout = this.reflector.getAllAndOverride<Duration | undefined>(TIMEOUT_META, targets);
      policy = routePolicy({ breaker, timeout, clock: this.options.clock }, 'UseBreaker');
      if (policy === undefined) return undefined;
      this.#policies.set(handler, policy);
    }
    return policy;
  }

  #breaker(breaker: RequestPolicy | string): RequestPolicy {
    if (typeof breaker !== 'string') return breaker;
    const breakers = this.options.breakers;
    const found =
      breakers === undefined
        ? undefined
        : typeof (breakers as BreakerRegistry).get === 'function' &&
            typeof (breakers as BreakerRegistry).keys === 'function'
          ? (breakers as BreakerRegistry).get(breaker)
          : (breakers as Record<string, RequestPolicy>)[breaker];
    if (found === undefined) {
      throw new InvalidOptionError(
        `ButtressModule.breakers.${breaker}`,
        undefined,
        `a breaker named "${breaker}" for @UseBreaker`,
      );
    }
    return found;
  }
}

/**
 * The signal of the request's work, as a handler parameter: aborted when the route's timeout
 * passes (`@UseTimeout`, `@UseBreaker(..., { timeout })`) or when the client goes away.
 *
 * @example
 * @Get() list(@RouteSignal() signal: AbortSignal) { return this.db.query(sql, { signal }); }
 */
export const RouteSignal = createParamDecorator((_data: unknown, context: ExecutionContext): AbortSignal => {
  const http = context.switchToHttp();
  const req = rawRequest(http.getRequest());
  const known = req[kRouteSignal];
  if (known !== undefined) return known;
  const res = rawResponse(http.getResponse());
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
  });
  const guarded = req[kSignal];
  const signal = guarded === undefined ? controller.signal : AbortSignal.any([guarded, controller.signal]);
  req[kRouteSignal] = signal;
  return signal;
});

// ---------------------------------------------------------------------------------------------
// Load shedding

/**
 * Load shedding: each request holds a slot of the limiter until its response is sent; over the
 * limit and its queue, the request is refused with `E_BULKHEAD_FULL` (answered `503` with
 * `Retry-After` by `ButtressExceptionFilter`). Global with `ButtressModule.forRoot({ limiter,
 * shedding: 'global' })`, or per route or controller with `@Shed()` (the module's limiter) or
 * `@Shed(limiter)`. Routes marked `@SkipShedding()` (the health routes are) are never shed.
 */
@Injectable()
export class LoadSheddingGuard extends Enhancer implements CanActivate {
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean | undefined>(SKIP_SHED_META, targets)) return true;
    const own = this.reflector.getAllAndOverride<RequestPolicy | true | undefined>(SHED_META, targets);
    const limiter = own === undefined || own === true ? this.options.limiter : own;
    if (limiter === undefined) return true;
    const http = context.switchToHttp();
    const res = rawResponse(http.getResponse());
    const req = rawRequest(http.getRequest());
    // Global shedding and @Shed() on one route: the request holds one slot, not two.
    if (req[kAdmitted]) return true;
    req[kAdmitted] = true;
    return new Promise<boolean>((resolve, reject) => {
      const run = new RequestRun();
      run.start(
        limiter,
        () => {
          res.once('close', () => run.end(res.headersSent ? res.statusCode : 0));
          resolve(true);
        },
        (error, entered) => {
          if (!entered) reject(error);
        },
      );
    });
  }
}

/**
 * Sheds load on this route or controller: `@Shed()` with the module's limiter, `@Shed(limiter)`
 * with another one.
 */
export function Shed(limiter?: RequestPolicy): MethodDecorator & ClassDecorator {
  if (limiter !== undefined) policyOption(limiter, 'Shed.limiter');
  return applyDecorators(SetMetadata(SHED_META, limiter ?? true), UseGuards(LoadSheddingGuard));
}

/** Never sheds this route or controller (health checks, admin endpoints). */
export function SkipShedding(): MethodDecorator & ClassDecorator {
  return SetMetadata(SKIP_SHED_META, true);
}

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Answers buttress errors (`E_CIRCUIT_OPEN`, `E_BULKHEAD_FULL`, `E_TIMEOUT`, `E_RATE_LIMITED`...)
 * with their HTTP status, `Retry-After` where known and an RFC 9457 problem body
 * (`application/problem+json`). `ButtressModule` installs it globally unless `problems: false`;
 * other exceptions stay with Nest's own handling.
 */
@Catch(ButtressError)
@Injectable()
export class ButtressExceptionFilter implements ExceptionFilter {
  readonly #problems: ResolvedProblemOptions;

  constructor(
    @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
    @Optional() @Inject(BUTTRESS_OPTIONS) options?: ButtressEnhancerOptions,
  ) {
    this.#problems = options?.problems ?? resolveProblemOptions(undefined);
  }

  catch(error: ButtressError, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const adapter = this.adapterHost.httpAdapter;
    const res = http.getResponse();
    const req = http.getRequest<NestRequest>();
    const problem = problemFor(error, this.#problems);
    const raw = rawResponse(res);
    if (raw.headersSent) return;
    const status = problem?.status ?? 500;
    const body = problem?.body ?? { type: 'about:blank', title: 'Internal Server Error', status: 500 };
    if (problem !== undefined)
      for (const name in problem.headers) adapter.setHeader(res, name, problem.headers[name]!);
    else adapter.setHeader(res, 'content-type', 'application/problem+json; charset=utf-8');
    adapter.setHeader(res, 'cache-control', 'no-store');
    // A string, so that the platform sends it as is under the problem content type.
    adapter.reply(res, JSON.stringify({ ...body, instance: req.originalUrl ?? req.url }), status);
  }
}

/** Injects the module's cache. */
export const InjectCache = (): ParameterDecorator & PropertyDecorator => Inject(BUTTRESS_CACHE);
/** Injects the module's PostgreSQL cluster. */
export const InjectPool = (): ParameterDecorator & PropertyDecorator => Inject(BUTTRESS_POOL);
/** Injects the module's queue named `name`. */
export const InjectQueue = (name: string): ParameterDecorator & PropertyDecorator => Inject(queueToken(name));
/** Injects the module's health checks. */
export const InjectHealth = (): ParameterDecorator & PropertyDecorator => Inject(BUTTRESS_HEALTH);
