import type { Disposable } from '../core/events.js';

/** A circuit transition as published to, and received from, the fleet. */
export type SharedTransition =
  | {
      readonly state: 'open' /** Milliseconds until the circuit admits trial calls (relative, so clock skew between hosts does not matter). */;
      readonly halfOpenIn: number;
    }
  | { readonly state: 'closed' };

/** What a shared state tells the breaker it is attached to. */
export interface SharedStateListener {
  /** Another instance (or the stored state at attach time) says the circuit is open. */
  remoteOpen(halfOpenIn: number): void;
  /** Another instance's trial calls closed the circuit. */
  remoteClose(): void;
}

/**
 * Circuit state shared by every instance of a service that uses the same key, so a failing
 * upstream seen by one instance is protected by all of them. `redisBreakerState()` is the
 * built-in; implement this interface to share state through something else.
 *
 * Contract: no method may throw or hang a caller. When the shared medium is unreachable,
 * {@link SharedCircuitState.publish} drops the message and {@link SharedCircuitState.acquireProbe}
 * grants the probe locally, so each instance falls back to its own state.
 */
export interface SharedCircuitState {
  /** Starts delivering remote transitions to `listener`; called once by the breaker. */
  attach(listener: SharedStateListener): Disposable;
  /** Tells the fleet about a local transition. Fire and forget. */
  publish(transition: SharedTransition): void;
  /**
   * Asks for the fleet-wide half-open probe lease. Resolves true when this instance may send
   * trial calls (also when the shared medium is unreachable), false when another instance holds
   * the lease. Must settle within the implementation's own timeout.
   */
  acquireProbe(signal?: AbortSignal): Promise<boolean>;
  /** Gives the probe lease back (only if this instance holds it). Fire and forget. */
  releaseProbe(): void;
  /** Releases the shared state's own resources (never the user's connection). */
  close(): Promise<void>;
}
