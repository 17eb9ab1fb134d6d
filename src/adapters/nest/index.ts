// buttress/nest: ButtressModule (forRoot / forRootAsync) with the cache, pool and queues as
// providers, @Cached(), @UseBreaker(), @UseTimeout(), load shedding, RFC 9457 problems, health routes.

export * from '../http/index.js';
export {
  ButtressModule,
  type ButtressModuleAsyncOptions,
  type ButtressModuleOptions,
  type ButtressModuleSetup,
} from './module.js';
export {
  BUTTRESS_CACHE,
  BUTTRESS_HEALTH,
  BUTTRESS_OPTIONS,
  BUTTRESS_POOL,
  type ButtressEnhancerOptions,
  ButtressExceptionFilter,
  Cached,
  CachedInterceptor,
  InjectCache,
  InjectHealth,
  InjectPool,
  InjectQueue,
  LoadSheddingGuard,
  PolicyInterceptor,
  queueToken,
  RouteSignal,
  Shed,
  SkipShedding,
  UseBreaker,
  UseTimeout,
} from './nest.js';
