import { AbortedError } from './errors.js';

/** A signal that never aborts; shared so calls without a signal allocate nothing. */
export const neverAbortedSignal: AbortSignal = new AbortController().signal;

/** The policy context of a call made without a signal: shared, so such calls allocate nothing. */
export const defaultPolicyContext: { readonly signal: AbortSignal } = Object.freeze({
  signal: neverAbortedSignal,
});

/** Throws `E_ABORTED` if `signal` is already aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError(signal.reason);
}

/**
 * Runs `onAbort` once when `signal` aborts; returns a function that removes the listener.
 * Always call the returned function when the guarded work ends, or the listener leaks.
 */
export function onAbort(signal: AbortSignal | undefined, onAbort: (reason: unknown) => void): () => void {
  if (!signal || signal === neverAbortedSignal) return noop;
  if (signal.aborted) {
    onAbort(signal.reason);
    return noop;
  }
  const listener = () => onAbort(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/**
 * Resolves or rejects with `promise`, or rejects with `E_ABORTED` as soon as `signal` aborts,
 * whichever comes first. The underlying work is not cancelled: pass the signal to it too.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal || signal === neverAbortedSignal) return promise;
  if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const off = onAbort(signal, (reason) => reject(new AbortedError(reason)));
    promise.then(
      (v) => {
        off();
        resolve(v);
      },
      (e) => {
        off();
        reject(e);
      },
    );
  });
}

/**
 * Links a child controller to an optional parent signal: the child aborts when the parent does.
 * Returns the controller and a function that unlinks it.
 */
export function linkedController(parent: AbortSignal | undefined): {
  controller: AbortController;
  unlink: () => void;
} {
  const controller = new AbortController();
  const unlink = onAbort(parent, (reason) => controller.abort(reason));
  return { controller, unlink };
}

function noop(): void {}
