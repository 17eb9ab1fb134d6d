// The framework-neutral part every adapter subpath (buttress/express, buttress/fastify,
// buttress/nest) exports as well: health checks, problem bodies, the session store, the types
// of route options. Each adapter's index re-exports this barrel.
export { type CacheControl, parseCacheControl } from './cache-control.js';
export { HttpStatusError, isHttpStatusError } from './errors.js';
export {
  type CheckResult,
  createHealth,
  Health,
  type HealthCheck,
  type HealthOptions,
  type HealthReport,
  type HealthStatus,
} from './health.js';
export {
  type Problem,
  type ProblemDetails,
  type ProblemOptions,
  problemFor,
  type ResolvedProblemOptions,
  resolveProblemOptions,
  STATUS_BY_CODE,
  statusFor,
} from './problem.js';
export type { RequestPolicy } from './request-policy.js';
export type { CachedResponse, CacheKeyRequest, RouteCacheOptions } from './response-cache.js';
export { retryAfterSeconds } from './retry-after.js';
export { CacheSessionStore, type SessionStoreOptions } from './session-store.js';
