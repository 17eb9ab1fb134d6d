import { ButtressError } from '../core/errors.js';

/** Why a call was rejected without running. */
export type RejectReason = 'open' | 'half-open' | 'isolated';

/**
 * Rejection of a call by an open (or saturated half-open) circuit: code `E_CIRCUIT_OPEN`.
 * Carries cockatiel's `isBrokenCircuitError` brand, so cockatiel's guards and retry filters
 * recognise it. Captures no stack trace: open circuits reject in bulk.
 */
export class CircuitOpenError extends ButtressError {
  /** cockatiel brand: `isBrokenCircuitError(e)` is true. */
  readonly isBrokenCircuitError = true;
  /** Milliseconds until the circuit will admit a trial call (0 when it is half-open now). */
  readonly retryAfter: number;
  /** Why the call was rejected. */
  readonly reason: RejectReason;
  /** Name of the breaker, when it has one. */
  readonly breaker: string | undefined;

  constructor(reason: RejectReason, retryAfter: number, breaker?: string) {
    super(
      'E_CIRCUIT_OPEN',
      reason === 'half-open'
        ? `Circuit${breaker ? ` "${breaker}"` : ''} is half-open and every trial slot is taken`
        : `Circuit${breaker ? ` "${breaker}"` : ''} is open; retry after ${Math.ceil(retryAfter)}ms`,
      { noStack: true },
    );
    this.retryAfter = retryAfter;
    this.reason = reason;
    this.breaker = breaker;
  }
}

/**
 * Rejection by a circuit isolated by hand with `isolate()`: code `E_CIRCUIT_ISOLATED`. Carries
 * cockatiel's `isBrokenCircuitError` and `isIsolatedCircuitError` brands.
 */
export class CircuitIsolatedError extends ButtressError {
  readonly isBrokenCircuitError = true;
  readonly isIsolatedCircuitError = true;
  /** Always `'isolated'`. */
  readonly reason: RejectReason = 'isolated';
  /** Unknown: an isolated circuit stays closed to calls until every isolation is disposed. */
  readonly retryAfter = Number.POSITIVE_INFINITY;
  readonly breaker: string | undefined;

  constructor(breaker?: string) {
    super('E_CIRCUIT_ISOLATED', `Circuit${breaker ? ` "${breaker}"` : ''} is isolated`, { noStack: true });
    this.breaker = breaker;
  }
}

/** True for `E_CIRCUIT_OPEN` rejections. */
export const isCircuitOpenError = (e: unknown): e is CircuitOpenError => e instanceof CircuitOpenError;

/** True for `E_CIRCUIT_ISOLATED` rejections. */
export const isCircuitIsolatedError = (e: unknown): e is CircuitIsolatedError =>
  e instanceof CircuitIsolatedError;

/** True for any rejection by a breaker (open, half-open saturated or isolated). */
export const isBrokenCircuitError = (e: unknown): e is CircuitOpenError | CircuitIsolatedError =>
  e instanceof CircuitOpenError || e instanceof CircuitIsolatedError;
