// buttress/bulkhead: fixed and adaptive concurrency limits, and rate limits.
export {
  AdaptiveLimiter,
  type AdaptiveLimiterBaseOptions,
  type AdaptiveLimiterOptions,
  type AdaptiveLimiterStats,
  adaptiveLimiter,
  isOverloadError,
  type LimitAlgorithmName,
  type LimitChangeEvent,
  type LimiterPartition,
  type LimiterRejectEvent,
  type SampleWindowOptions,
} from './adaptive-limiter.js';
export { type AimdOptions, aimd } from './algorithms/aimd.js';
export { type Gradient2Options, gradient2 } from './algorithms/gradient2.js';
export { type LimitFunction, type VegasOptions, vegas } from './algorithms/vegas.js';
export {
  Bulkhead,
  type BulkheadOptions,
  type BulkheadRejectEvent,
  type BulkheadStats,
  bulkhead,
  type QueueOrder,
} from './bulkhead.js';
export {
  BulkheadFullError,
  type BulkheadRejectReason,
  isBulkheadFullError,
  isRateLimitedError,
  RateLimitedError,
  type RateLimitReason,
} from './errors.js';
export type { LimitAlgorithm, LimitAlgorithmFactory, LimitBounds } from './limit-algorithm.js';
export type { GcraParams, RateLimitDecision, RateLimitStore } from './rate-limit-store.js';
export {
  RateLimiter,
  type RateLimiterOptions,
  type RateLimiterStats,
  type RateLimitPolicy,
  type RateLimitPolicyOptions,
  type RateLimitRejectEvent,
  rateLimiter,
} from './rate-limiter.js';
export { type MemoryStoreOptions, memoryStore } from './stores/memory-store.js';
export { type RedisStoreOptions, redisStore } from './stores/redis-store.js';
