import { ButtressError } from '../core/errors.js';

/**
 * Local rejection by {@link adaptiveThrottle}: code `E_THROTTLED`. The backend was not called,
 * because it has been rejecting a large share of recent requests (Google SRE client-side
 * throttling). Captures no stack trace: throttled calls are rejected in bulk.
 */
export class ThrottledError extends ButtressError {
  /** The rejection probability in force when the call was rejected, in `[0, 1)`. */
  readonly probability: number;
  /** Name of the throttle, when it has one. */
  readonly throttle: string | undefined;

  constructor(probability: number, throttle?: string) {
    super(
      'E_THROTTLED',
      `Throttled${throttle ? ` by "${throttle}"` : ''}: the backend has been rejecting requests (local rejection probability ${probability.toFixed(3)})`,
      { noStack: true },
    );
    this.probability = probability;
    this.throttle = throttle;
  }
}

/** True for `E_THROTTLED` rejections. */
export const isThrottledError = (e: unknown): e is ThrottledError => e instanceof ThrottledError;
