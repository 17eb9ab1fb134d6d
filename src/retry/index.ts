export {
  AdaptiveThrottle,
  type AdaptiveThrottleOptions,
  type AdaptiveThrottleStats,
  adaptiveThrottle,
  type ThrottleEvent,
} from './adaptive-throttle.js';
export {
  type BudgetExhaustedEvent,
  BudgetedRetry,
  type BudgetedRetryOptions,
  budgetedRetry,
  type RetryFilter,
} from './budgeted-retry.js';
export { isThrottledError, ThrottledError } from './errors.js';
export {
  Hedge,
  type HedgeEvent,
  type HedgeOptions,
  type HedgeStats,
  hedge,
  type IHedgeContext,
  type PercentileDelay,
} from './hedge.js';
export { Retry, type RetryEvent, type RetryOptions, type RetryStats, retry } from './retry.js';
export {
  RetryBudget,
  type RetryBudgetLike,
  type RetryBudgetOptions,
  type RetryBudgetStats,
  retryBudget,
} from './retry-budget.js';
export {
  Timeout,
  type TimeoutEvent,
  type TimeoutOptions,
  type TimeoutStats,
  type TimeoutStrategy,
  timeout,
} from './timeout.js';
export { PolicyWrap, wrap } from './wrap.js';
