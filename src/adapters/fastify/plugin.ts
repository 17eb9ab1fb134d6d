import type {
  FastifyError,
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  onResponseHookHandler,
  onSendHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
import type { CircuitBreaker } from '../../breaker/circuit-breaker.js';
import type { BreakerRegistry } from '../../breaker/registry.js';
import { type Cache, createCache } from '../../cache/cache.js';
import type { CacheOptions } from '../../cache/types.js';
import { neverAbortedSignal } from '../../core/abort.js';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { bool, clockOption, knownKeys, nonEmptyString, optionsObject } from '../../core/validate.js';
import { createHealth, Health, type HealthOptions } from '../http/health.js';
import { type Problem, type ProblemOptions, problemFor, resolveProblemOptions } from '../http/problem.js';
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

/** What a route asks of buttress, in its `config.buttress`. */
export interface ButtressRouteConfig {
  /** Cache this route's GET (and HEAD) responses: `true` for the plugin's defaults, or options. */
  cache?: boolean | RouteCacheOptions;
  /** `false` exempts the route from the plugin's load shedder (health routes always are). @default true */
  shed?: boolean;
  /** A limiter for this route instead of the plugin's `shed` (a bulkhead, an adaptive limiter or a partition of one). */
  limiter?: RequestPolicy;
  /** The route's circuit breaker, or the name of one in the plugin's `breakers`. */
  breaker?: CircuitBreaker | string;
  /** The route's deadline: past it the request is answered 504 and `request.buttressSignal` aborts. */
  timeout?: Duration;
}

/** Health and readiness endpoints. */
export interface FastifyHealthOptions extends HealthOptions {
  /** Liveness path. @default '/health' */
  path?: string;
  /** Readiness path. @default '/ready' */
  readyPath?: string;
}

/** Options of the buttress Fastify plugin. */
export interface ButtressFastifyOptions {
  /**
   * The cache responses are kept in (with `l2`, shared by every instance); needed by routes with
   * `cache`. A `Cache` stays yours; `CacheOptions` make the plugin create one, closed in `onClose`.
   */
  cache?: Cache | CacheOptions;
  /** Defaults of every cached route's options. */
  cacheDefaults?: RouteCacheOptions;
  /**
   * The load shedder in front of every route (except health routes and routes with
   * `shed: false`): a bulkhead or adaptive limiter. Cache hits never take a slot: they cost no work.
   */
  shed?: RequestPolicy;
  /** Breakers routes refer to by name (`config.buttress.breaker: 'payments'`): an object, or a registry keyed by name. */
  breakers?: Record<string, CircuitBreaker> | BreakerRegistry;
  /**
   * Answer buttress errors with their status (503, 504, 429, ...), `Retry-After` and an RFC 9457
   * problem body, through an error handler that passes every other error to the one it replaces.
   * `false` leaves the error handler alone: set `false` when you set your own, and call
   * `fastify.buttress.problem(error)` in it (Fastify warns when a handler replaces another in one scope).
   * @default {}
   */
  errors?: ProblemOptions | false;
  /** Health (`GET /health`) and readiness (`GET /ready`) routes, exempt from shedding. @default none */
  health?: FastifyHealthOptions | Health;
  /** Time source for ages and deadlines; use the cache's. @default systemClock */
  clock?: Clock;
}

/** `fastify.buttress`. */
export interface ButtressFastifyDecoration {
  /** The response cache, if any. */
  readonly cache: Cache | undefined;
  /** The health checks, if any. */
  readonly health: Health | undefined;
  /** The status, headers and problem body for a buttress error; undefined for other errors. */
  problem(error: unknown): Problem | undefined;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** buttress's options for this route. */
    buttress?: ButtressRouteConfig;
  }
  interface FastifyInstance {
    /** The buttress plugin's cache, health checks and error mapping. */
    buttress: ButtressFastifyDecoration;
  }
  interface FastifyRequest {
    /**
     * Aborts when the route's `timeout` passes (the request has then been answered 504): pass it
     * to the database and HTTP calls the handler makes. Never aborts on routes without a timeout.
     */
    readonly buttressSignal: AbortSignal;
  }
}

const OPTION_KEYS = ['cache', 'cacheDefaults', 'shed', 'breakers', 'errors', 'health', 'clock'] as const;
const ROUTE_KEYS = ['cache', 'shed', 'limiter', 'breaker', 'timeout'] as const;
const HEALTH_KEYS = ['path', 'readyPath'] as const;

/** Per-request state, one slot on the request (declared with decorateRequest, so shapes stay stable). */
const kState = Symbol('buttress');
interface RequestState {
  capture: Capture | undefined;
  run: RequestRun | undefined;
  signal: AbortSignal | undefined;
}
type StatefulRequest = FastifyRequest & { [kState]: RequestState | null };

function stateOf(request: FastifyRequest): RequestState {
  const r = request as StatefulRequest;
  let s = r[kState];
  if (s === null) s = r[kState] = { capture: undefined, run: undefined, signal: undefined };
  return s;
}

/** Fastify's reply headers as the shared layer reads them. */
function replyHeaders(reply: FastifyReply): ResponseHeaders {
  return {
    get: (name) => reply.getHeader(name) as string | string[] | number | undefined,
    names: () => Object.keys(reply.getHeaders()),
  };
}

function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

const plugin: FastifyPluginCallback<ButtressFastifyOptions> = (fastify, options, done) => {
  try {
    setup(fastify, options);
  } catch (error) {
    done(error as Error);
    return;
  }
  done();
};

function setup(fastify: FastifyInstance, options: ButtressFastifyOptions): void {
  const o = optionsObject(options, 'options');
  // Registration options (`prefix`, `logLevel`) arrive mixed into a plugin's own options.
  const { prefix: _prefix, logLevel: _logLevel, ...own } = o as Record<string, unknown>;
  knownKeys(own, OPTION_KEYS);
  const clock = clockOption(o.clock);
  let cache: Cache | undefined;
  if (o.cache !== undefined) {
    if (typeof o.cache !== 'object' || o.cache === null) {
      throw new InvalidOptionError(
        'cache',
        o.cache,
        'a Cache (buttress/cache createCache()) or CacheOptions',
      );
    }
    if (typeof (o.cache as Cache).getOrSet === 'function') cache = o.cache as Cache;
    else {
      const own = createCache(o.cache as CacheOptions);
      cache = own;
      fastify.addHook('onClose', (_instance, closed) => {
        own.close().then(() => closed(), closed);
      });
    }
  }
  const cacheDefaults: ResolvedRouteCache | undefined =
    o.cacheDefaults === undefined
      ? undefined
      : resolveRouteCache(o.cacheDefaults, undefined, 'cacheDefaults');
  const shed = policyOption(o.shed, 'shed');
  const breakers = o.breakers;
  const problems = o.errors === false ? undefined : resolveProblemOptions(o.errors ?? undefined, 'errors');
  const problemOptions = problems ?? resolveProblemOptions(undefined, 'errors');
  const health = healthOf(o.health);

  fastify.decorate('buttress', {
    cache,
    health: health?.health,
    problem: (error: unknown) => problemFor(error, problemOptions),
  } satisfies ButtressFastifyDecoration);
  fastify.decorateRequest(kState as unknown as string, null);
  fastify.decorateRequest('buttressSignal', {
    getter(this: FastifyRequest) {
      return (this as StatefulRequest)[kState]?.signal ?? neverAbortedSignal;
    },
  });

  if (problems !== undefined) {
    const previous = fastify.errorHandler;
    fastify.setErrorHandler(function buttressErrorHandler(
      this: FastifyInstance,
      error: FastifyError,
      request,
      reply,
    ) {
      const p = problemFor(error, problems);
      if (p === undefined) return previous.call(this, error, request, reply);
      if (p.status >= 500) request.log.warn({ err: error }, 'buttress: %s', error.code);
      reply.code(p.status).headers(p.headers).send(p.body);
    });
  }

  const breakerNamed = (name: string, route: string): CircuitBreaker => {
    if (breakers === undefined) {
      throw new InvalidOptionError(
        `${route}.breaker`,
        name,
        'a breaker, or a name in the plugin option `breakers`',
      );
    }
    const registry = breakers as BreakerRegistry;
    if (typeof registry.get === 'function' && typeof registry.keys === 'function') return registry.get(name);
    const b = (breakers as Record<string, CircuitBreaker>)[name];
    if (b === undefined)
      throw new InvalidOptionError(`${route}.breaker`, name, `one of ${Object.keys(breakers).join(', ')}`);
    return b;
  };

  fastify.addHook('onRoute', (route) => {
    const label = `route ${route.method} ${route.url} config.buttress`;
    const exempt = (route.config as { [kHealthRoute]?: boolean } | undefined)?.[kHealthRoute] === true;
    const cfgRaw = route.config?.buttress;
    const cfg = cfgRaw === undefined ? {} : optionsObject(cfgRaw, label);
    knownKeys(cfg, ROUTE_KEYS, label);
    const shedHere = exempt ? false : bool(cfg.shed, `${label}.shed`, true);
    const limiter = shedHere ? (policyOption(cfg.limiter, `${label}.limiter`) ?? shed) : undefined;
    const breaker =
      cfg.breaker === undefined
        ? undefined
        : typeof cfg.breaker === 'string'
          ? breakerNamed(nonEmptyString(cfg.breaker, `${label}.breaker`), label)
          : (policyOption(cfg.breaker, `${label}.breaker`) as CircuitBreaker);
    const policy = routePolicy({ limiter, breaker, timeout: cfg.timeout, clock }, label);

    const onRequest: onRequestHookHandler[] = [];
    const onSend: onSendHookHandler[] = [];
    const onResponse: onResponseHookHandler[] = [];
    if (cfg.cache !== undefined && cfg.cache !== false) {
      if (cache === undefined)
        throw new InvalidOptionError(`${label}.cache`, cfg.cache, 'a `cache` in the plugin options first');
      const settings = resolveRouteCache(
        cfg.cache === true ? true : cfg.cache,
        cacheDefaults,
        `${label}.cache`,
      );
      const routeCache = new RouteCache(cache, settings, clock);
      onRequest.push(cacheLookup(routeCache));
      onSend.push(cacheCapture);
      onResponse.push(cacheEnd);
    }
    if (policy !== undefined) {
      onRequest.push(policyEnter(policy));
      onResponse.push(policyEnd);
    }
    if (onRequest.length === 0) return;
    // Route hooks run after the application's: authentication hooks run before a cached answer,
    // and cookie/session hooks have set their headers before the response is captured. A client
    // that leaves early is watched on the raw response, and only by the requests that hold
    // something (a fill, a slot): a cache hit pays for no listener.
    route.onRequest = [...toArray(route.onRequest), ...onRequest];
    if (onSend.length !== 0) route.onSend = [...toArray(route.onSend), ...onSend];
    route.onResponse = [...toArray(route.onResponse), ...onResponse];
  });

  if (health !== undefined) {
    const config = { [kHealthRoute]: true };
    fastify.get(health.path, { config, logLevel: 'warn' }, (_request, reply) => {
      reply.header('cache-control', 'no-store').send(health.health.liveness());
    });
    fastify.get(health.readyPath, { config, logLevel: 'warn' }, async (_request, reply) => {
      const report = await health.health.readiness();
      reply.code(report.status === 'down' ? 503 : 200).header('cache-control', 'no-store');
      return report;
    });
  }
}

/** Marks the plugin's health routes: never shed, never cached. */
const kHealthRoute = Symbol('buttress health route');

function healthOf(value: FastifyHealthOptions | Health | undefined) {
  if (value === undefined) return undefined;
  if (value instanceof Health) return { health: value, path: '/health', readyPath: '/ready' };
  const o = optionsObject(value, 'health');
  const { path, readyPath, ...checks } = o;
  knownKeys({ path, readyPath }, HEALTH_KEYS, 'health');
  return {
    health: createHealth(checks as HealthOptions),
    path: nonEmptyString(path, 'health.path', '/health'),
    readyPath: nonEmptyString(readyPath, 'health.readyPath', '/ready'),
  };
}

function toArray<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function cacheLookup(route: RouteCache): onRequestHookHandler {
  return function buttressCacheLookup(request, reply, done) {
    const key = route.key(request.method, request.url, request.headers);
    if (key === undefined) {
      done();
      return;
    }
    route.lookup(key, request.method === 'HEAD', (outcome, value) => {
      if (outcome === HIT) {
        // Answered here: the route's other hooks (policy) and its handler do not run.
        sendHit(route, request, reply, value as CachedResponse);
        return;
      }
      if (outcome === LEAD) {
        const capture = value as Capture;
        capture.conditionals = stripConditionals(request.headers);
        stateOf(request).capture = capture;
        // onResponse ends the capture; a 'close' before the response finished means the client left.
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) capture.abandon();
        });
      }
      done();
    });
  };
}

function sendHit(
  route: RouteCache,
  request: FastifyRequest,
  reply: FastifyReply,
  entry: CachedResponse,
): void {
  const headers = request.headers;
  const status = route.writeHit(
    entry,
    headers['if-none-match'],
    headers['if-modified-since'],
    (name, value) => void reply.header(name, value),
  );
  reply.code(status);
  // A HEAD gets the body too: Fastify's HEAD routes turn it into the Content-Length and send none.
  if (status === 304) reply.send();
  else reply.send(asBuffer(entry.body));
}

const cacheCapture: onSendHookHandler = function buttressCacheCapture(request, reply, payload, done) {
  const capture = (request as StatefulRequest)[kState]?.capture;
  if (capture === undefined) {
    done(null, payload);
    return;
  }
  const body =
    typeof payload === 'string' || Buffer.isBuffer(payload)
      ? payload
      : payload === null || payload === undefined
        ? ''
        : undefined;
  const decision = capture.build(reply.statusCode, replyHeaders(reply), body);
  const add = decision.headers;
  for (const name in add) reply.header(name, add[name]);
  if (decision.notModified) {
    reply.code(304);
    done(null, null);
    return;
  }
  done(null, payload);
};

const cacheEnd: onResponseHookHandler = function buttressCacheEnd(request, reply, done) {
  (request as StatefulRequest)[kState]?.capture?.end(replyHeaders(reply));
  done();
};

const policyEnd: onResponseHookHandler = function buttressPolicyEnd(request, reply, done) {
  (request as StatefulRequest)[kState]?.run?.end(reply.statusCode);
  done();
};

function policyEnter(policy: RequestPolicy): onRequestHookHandler {
  return function buttressPolicy(request, reply, done) {
    const state = stateOf(request);
    const run = new RequestRun();
    state.run = run;
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) run.end(0);
    });
    run.start(
      policy,
      (signal) => {
        state.signal = signal;
        done();
      },
      (error, inside) => {
        if (!inside) {
          // Rejected before the handler ran: the framework's error path answers (503, 429...).
          run.end(0);
          state.capture?.abandon();
          done(error as FastifyError);
        } else if (!reply.sent) {
          // The deadline passed while the handler runs: answer now; its late reply is dropped.
          reply.send(error);
        }
      },
    );
  };
}

/**
 * The buttress Fastify plugin: response caching, load shedding, per-route breakers and
 * timeouts, buttress errors answered as RFC 9457 problems, health and readiness routes. Register
 * it before the routes it applies to (it reads their `config.buttress` as they are added).
 *
 * @example
 * const app = Fastify();
 * await app.register(buttress, { cache, shed: adaptiveLimiter({ maxLimit: 200 }), health: { redis: { main: redis } } });
 * app.get('/products/:id', { config: { buttress: { cache: { ttl: '30s' } } } }, (req) => getProduct(req.params.id));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` at registration or when a route is added, naming the option.
 */
export const buttress = fp(plugin, { fastify: '>=5.0.0', name: 'buttress' });
