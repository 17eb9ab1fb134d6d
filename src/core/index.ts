export { linkedController, neverAbortedSignal, onAbort, raceAbort, throwIfAborted } from './abort.js';
export { type Clock, systemClock, type Timer } from './clock.js';
export { channel, publish } from './diagnostics.js';
export { type Duration, parseDuration } from './duration.js';
export {
  AbortedError,
  ButtressError,
  type ButtressErrorOptions,
  ClosedError,
  describe,
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
export { type Disposable, Emitter, type Event, noopDisposable, toDisposable } from './events.js';
