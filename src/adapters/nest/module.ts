import {
  Controller,
  type DynamicModule,
  Get,
  Inject,
  type InjectionToken,
  Module,
  type ModuleMetadata,
  type OnApplicationShutdown,
  type Provider,
  Res,
} from '@nestjs/common';
import { APP_FILTER, APP_GUARD, HttpAdapterHost } from '@nestjs/core';
import type { BreakerRegistry } from '../../breaker/registry.js';
import type { Cache } from '../../cache/cache.js';
import type { Clock } from '../../core/clock.js';
import { InvalidOptionError } from '../../core/errors.js';
import { bool, clockOption, knownKeys, nonEmptyString, oneOf, optionsObject } from '../../core/validate.js';
import type { PgCluster } from '../../pool/cluster.js';
import type { Queue } from '../../queue/queue.js';
import { createHealth, Health, type HealthOptions } from '../http/health.js';
import { type ProblemOptions, resolveProblemOptions } from '../http/problem.js';
import { policyOption, type RequestPolicy } from '../http/request-policy.js';
import {
  BUTTRESS_CACHE,
  BUTTRESS_HEALTH,
  BUTTRESS_OPTIONS,
  BUTTRESS_POOL,
  type ButtressEnhancerOptions,
  ButtressExceptionFilter,
  CachedInterceptor,
  LoadSheddingGuard,
  PolicyInterceptor,
  queueToken,
  SkipShedding,
} from './nest.js';

/**
 * What `ButtressModule` provides. Every instance stays yours (the module closes nothing unless
 * `closeOnShutdown`).
 *
 * @example
 * ButtressModule.forRoot({ cache, pool: db, queues: { emails }, breakers, limiter, health: { redis: { main: redis } } })
 */
export interface ButtressModuleOptions {
  /** The cache `@Cached()` routes use, injectable with `@InjectCache()`. */
  cache?: Cache;
  /** A PostgreSQL cluster (buttress/pool), injectable with `@InjectPool()`; added to readiness. */
  pool?: PgCluster;
  /** Queues (buttress/queue) by name, injectable with `@InjectQueue(name)`; their depth is in readiness. */
  queues?: Record<string, Queue<any>>;
  /** Breakers by name (or a `breakerRegistry()`) for `@UseBreaker('name')`; their states are in readiness. */
  breakers?: Record<string, RequestPolicy> | BreakerRegistry;
  /** The load shedder of `LoadSheddingGuard` and `@Shed()`: a `bulkhead()` or `adaptiveLimiter()`. */
  limiter?: RequestPolicy;
  /**
   * Readiness checks beyond the ones the module adds by itself (the pool, queues, breakers and
   * cache above), as `createHealth` takes them; or a `Health` of yours. @default the module's own
   */
  health?: HealthOptions | Health;
  /** Problem bodies of `ButtressExceptionFilter`. */
  problems?: ProblemOptions;
  /** Time source of caching and timeouts. @default systemClock */
  clock?: Clock;
  /** Close the cache, the queues and the pool when the application shuts down. @default false */
  closeOnShutdown?: boolean;
}

/** What `forRoot` / `forRootAsync` decide when the module is declared (it shapes routes and enhancers). */
export interface ButtressModuleSetup {
  /** Register the module for the whole application. @default true */
  global?: boolean;
  /**
   * `'global'`: every route is shed through `LoadSheddingGuard` (an `APP_GUARD`); `'routes'`:
   * only routes marked `@Shed()`. @default 'global' when `limiter` is given to forRoot, else 'routes'
   */
  shedding?: 'global' | 'routes';
  /** Install `ButtressExceptionFilter` as an `APP_FILTER`. @default true */
  problemFilter?: boolean;
  /**
   * The health routes: liveness at `live`, readiness at `ready` (503 when a check is down), never
   * shed; `false` for none. @default { live: 'health', ready: 'ready' }
   */
  healthRoutes?: { live?: string; ready?: string } | false;
  /** Queue names, so `@InjectQueue(name)` has a provider before the factory has run (forRootAsync). */
  queueNames?: readonly string[];
}

/** Options of {@link ButtressModule.forRootAsync}. */
export interface ButtressModuleAsyncOptions extends ButtressModuleSetup, Pick<ModuleMetadata, 'imports'> {
  useFactory: (...args: any[]) => ButtressModuleOptions | Promise<ButtressModuleOptions>;
  inject?: InjectionToken[];
}

const OPTION_KEYS = [
  'cache',
  'pool',
  'queues',
  'breakers',
  'limiter',
  'health',
  'problems',
  'clock',
  'closeOnShutdown',
] as const;
const SETUP_KEYS = ['global', 'shedding', 'problemFilter', 'healthRoutes', 'queueNames'] as const;

/** The module's options once validated, as the enhancers and providers read them. */
interface Resolved extends ButtressEnhancerOptions {
  readonly pool: PgCluster | undefined;
  readonly queues: Record<string, Queue<any>>;
  readonly health: Health;
  readonly closeOnShutdown: boolean;
}

function resolve(options: ButtressModuleOptions): Resolved {
  const o = optionsObject(options, 'ButtressModule');
  knownKeys(o, OPTION_KEYS, 'ButtressModule');
  if (o.cache !== undefined && typeof (o.cache as Cache).getOrSet !== 'function') {
    throw new InvalidOptionError('ButtressModule.cache', o.cache, 'a Cache (buttress/cache)');
  }
  if (o.pool !== undefined && typeof (o.pool as PgCluster).stats !== 'function') {
    throw new InvalidOptionError('ButtressModule.pool', o.pool, 'a PgCluster (buttress/pool)');
  }
  const queues = (o.queues ?? {}) as Record<string, Queue<any>>;
  for (const [name, q] of Object.entries(queues)) {
    if (typeof (q as Queue<any>)?.add !== 'function')
      throw new InvalidOptionError(`ButtressModule.queues.${name}`, q, 'a Queue');
  }
  const limiter = policyOption(o.limiter, 'ButtressModule.limiter');
  let health: Health;
  if (o.health instanceof Health) {
    health = o.health;
  } else {
    const h = optionsObject(o.health, 'ButtressModule.health') as HealthOptions;
    health = createHealth({
      ...h,
      postgres: { ...(o.pool === undefined ? {} : { main: o.pool }), ...h.postgres },
      queues: { ...queues, ...h.queues },
      caches: { ...(o.cache === undefined ? {} : { main: o.cache }), ...h.caches },
      ...(h.breakers === undefined && o.breakers !== undefined
        ? { breakers: o.breakers as Record<string, never> | BreakerRegistry }
        : {}),
      ...(h.clock === undefined && o.clock !== undefined ? { clock: o.clock } : {}),
    });
  }
  return {
    cache: o.cache,
    pool: o.pool,
    queues,
    breakers: o.breakers,
    limiter,
    health,
    problems: resolveProblemOptions(o.problems, 'ButtressModule.problems'),
    clock: o.clock === undefined ? undefined : clockOption(o.clock, 'ButtressModule.clock'),
    closeOnShutdown: bool(o.closeOnShutdown, 'ButtressModule.closeOnShutdown', false),
  };
}

interface Setup {
  global: boolean;
  shedding: 'global' | 'routes';
  problemFilter: boolean;
  health: { live: string; ready: string } | false;
  queueNames: readonly string[];
}

function setupOf(value: ButtressModuleSetup, hasLimiter: boolean): Setup {
  const o = optionsObject(value, 'ButtressModule');
  const routes = o.healthRoutes;
  let health: Setup['health'];
  if (routes === false) health = false;
  else {
    const r = optionsObject(routes, 'ButtressModule.healthRoutes');
    knownKeys(r, ['live', 'ready'], 'ButtressModule.healthRoutes');
    health = {
      live: nonEmptyString(r.live, 'ButtressModule.healthRoutes.live', 'health'),
      ready: nonEmptyString(r.ready, 'ButtressModule.healthRoutes.ready', 'ready'),
    };
  }
  const names = o.queueNames ?? [];
  if (!Array.isArray(names) || !names.every((n) => typeof n === 'string' && n.length > 0)) {
    throw new InvalidOptionError('ButtressModule.queueNames', names, 'an array of queue names');
  }
  return {
    global: bool(o.global, 'ButtressModule.global', true),
    shedding: oneOf(
      o.shedding,
      'ButtressModule.shedding',
      ['global', 'routes'],
      hasLimiter ? 'global' : 'routes',
    ),
    problemFilter: bool(o.problemFilter, 'ButtressModule.problemFilter', true),
    health,
    queueNames: names,
  };
}

function splitSetup(
  options: ButtressModuleOptions & ButtressModuleSetup,
): [ButtressModuleOptions, ButtressModuleSetup] {
  const o = optionsObject(options, 'ButtressModule') as Record<string, unknown>;
  const setup: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o))
    ((SETUP_KEYS as readonly string[]).includes(k) ? setup : rest)[k] = v;
  return [rest as ButtressModuleOptions, setup as ButtressModuleSetup];
}

/** A controller answering the health routes at the given paths; created per module, since paths are decorator arguments. */
function healthController(paths: { live: string; ready: string }): new (...args: any[]) => unknown {
  @SkipShedding()
  @Controller()
  class ButtressHealthController {
    constructor(
      @Inject(BUTTRESS_HEALTH) private readonly health: Health,
      @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
    ) {}

    @Get(paths.live)
    live(@Res() res: unknown): void {
      this.#send(res, 200, this.health.liveness());
    }

    @Get(paths.ready)
    async ready(@Res() res: unknown): Promise<void> {
      const report = await this.health.readiness();
      this.#send(res, report.status === 'down' ? 503 : 200, report);
    }

    #send(res: unknown, status: number, body: unknown): void {
      const adapter = this.adapterHost.httpAdapter;
      adapter.setHeader(res, 'cache-control', 'no-store');
      adapter.setHeader(res, 'content-type', 'application/json; charset=utf-8');
      adapter.reply(res, JSON.stringify(body), status);
    }
  }
  return ButtressHealthController;
}

const kResolved = Symbol('buttress:nest:resolved');

/** Closes what the module was told to close, when the application shuts down. */
class ShutdownHook implements OnApplicationShutdown {
  constructor(private readonly options: Resolved) {}
  async onApplicationShutdown(): Promise<void> {
    if (!this.options.closeOnShutdown) return;
    await Promise.allSettled([
      this.options.cache?.close(),
      ...Object.values(this.options.queues).map((q) => q.close()),
      this.options.pool?.end(),
    ]);
  }
}

/**
 * buttress for NestJS: the cache, pool and queues as providers, `@Cached()` responses,
 * `@UseBreaker()` / `@UseTimeout()`, load shedding (`LoadSheddingGuard`, `@Shed()`), RFC 9457
 * problem bodies for buttress errors (`ButtressExceptionFilter`), and health routes reporting
 * Redis, PostgreSQL nodes (with replica lag), breakers and queue depth.
 *
 * @example
 * @Module({ imports: [ButtressModule.forRoot({ cache, pool: db, limiter, breakers: { payments } })], controllers: [ProductsController] })
 * class AppModule {}
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with static factories
export class ButtressModule {
  /**
   * The module with its instances given now.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
   */
  static forRoot(options: ButtressModuleOptions & ButtressModuleSetup = {}): DynamicModule {
    const [rest, setupOptions] = splitSetup(options);
    const resolved = resolve(rest);
    const setup = setupOf(
      { queueNames: Object.keys(resolved.queues), ...setupOptions },
      resolved.limiter !== undefined,
    );
    return moduleOf(setup, { provide: kResolved, useValue: resolved });
  }

  /**
   * The module with its instances made by a factory (from `ConfigService`, say). What shapes
   * routes and enhancers (`shedding`, `healthRoutes`, `queueNames`...) is given here, up front.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option (the factory's: when it runs).
   */
  static forRootAsync(options: ButtressModuleAsyncOptions): DynamicModule {
    const { useFactory, inject, imports, ...setupOptions } = options;
    if (typeof useFactory !== 'function')
      throw new InvalidOptionError('ButtressModule.useFactory', useFactory, 'a function');
    const setup = setupOf(setupOptions, setupOptions.shedding === 'global');
    const module = moduleOf(setup, {
      provide: kResolved,
      useFactory: async (...args: unknown[]) => resolve(await useFactory(...args)),
      inject: inject ?? [],
    });
    return { ...module, imports: [...(imports ?? [])] };
  }
}

/** The dynamic module for a setup and the provider of its resolved options. */
function moduleOf(setup: Setup, resolved: Provider): DynamicModule {
  const fromResolved = (provide: InjectionToken, pick: (r: Resolved) => unknown): Provider => ({
    provide,
    useFactory: pick,
    inject: [kResolved],
  });
  const providers: Provider[] = [
    resolved,
    fromResolved(BUTTRESS_OPTIONS, (r) => r),
    fromResolved(BUTTRESS_CACHE, (r) => r.cache ?? null),
    fromResolved(BUTTRESS_POOL, (r) => r.pool ?? null),
    fromResolved(BUTTRESS_HEALTH, (r) => r.health),
    ...setup.queueNames.map((name) =>
      fromResolved(queueToken(name), (r) => {
        const q = r.queues[name];
        if (q === undefined)
          throw new InvalidOptionError(`ButtressModule.queues.${name}`, undefined, 'a Queue');
        return q;
      }),
    ),
    { provide: ShutdownHook, useFactory: (r: Resolved) => new ShutdownHook(r), inject: [kResolved] },
    CachedInterceptor,
    PolicyInterceptor,
    LoadSheddingGuard,
    ButtressExceptionFilter,
  ];
  if (setup.shedding === 'global') providers.push({ provide: APP_GUARD, useExisting: LoadSheddingGuard });
  if (setup.problemFilter) providers.push({ provide: APP_FILTER, useExisting: ButtressExceptionFilter });
  return {
    module: ButtressModule,
    global: setup.global,
    providers,
    controllers: setup.health === false ? [] : [healthController(setup.health)],
    exports: [
      BUTTRESS_OPTIONS,
      BUTTRESS_CACHE,
      BUTTRESS_POOL,
      BUTTRESS_HEALTH,
      ...setup.queueNames.map(queueToken),
      CachedInterceptor,
      PolicyInterceptor,
      LoadSheddingGuard,
      ButtressExceptionFilter,
    ],
  };
}
