// The part of src/core that users see: errors, the Clock contract and durations.
export { type Clock, systemClock, type Timer } from './clock.js';
export type { LifecycleMessage, TracedMessage } from './diagnostics.js';
export { type Duration, parseDuration } from './duration.js';
export {
  AbortedError,
  ButtressError,
  ClosedError,
  type ErrorCode,
  ErrorCodes,
  hasCode,
  InvalidOptionError,
  isAbortedError,
  isButtressError,
  isInvalidOptionError,
  isTimeoutError,
  TimeoutError,
} from './errors.js';
export type { Disposable, Event } from './events.js';
