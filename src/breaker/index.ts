export {
  type BreakEvent,
  CircuitBreaker,
  type CircuitBreakerJSON,
  type CircuitBreakerOptions,
  type CircuitBreakerStats,
  type CircuitState,
  circuitBreaker,
  type FailureFilter,
  type HalfOpenBackoff,
  type HalfOpenBackoffContext,
  type RejectEvent,
} from './circuit-breaker.js';
export {
  CircuitIsolatedError,
  CircuitOpenError,
  isBrokenCircuitError,
  isCircuitIsolatedError,
  isCircuitOpenError,
  type RejectReason,
} from './errors.js';
export {
  RedisBreakerState,
  type RedisBreakerStateOptions,
  type RedisBreakerStateStats,
  type RedisConnection,
  redisBreakerState,
} from './redis-state.js';
export {
  BreakerRegistry,
  type BreakerRegistryOptions,
  type BreakerRegistryStats,
  breakerRegistry,
} from './registry.js';
export type { SharedCircuitState, SharedStateListener, SharedTransition } from './shared-state.js';
export { type ConsecutiveOptions, consecutive } from './strategies/consecutive.js';
export { type CountWindowOptions, countWindow } from './strategies/count-window.js';
export { type TimeWindowOptions, timeWindow } from './strategies/time-window.js';
export type { BreakerStrategy, BreakerStrategyFactory, HalfOpenVerdict, WindowCounts } from './strategy.js';
