import { noop } from 'cockatiel';
import { neverAbortedSignal, onAbort } from '../../core/abort.js';
import { ButtressError } from '../../core/errors.js';

/*
 * Creating an AbortSignal is the dominant cost of a policy call on Node 20 (several microseconds:
 * Node builds each one as an EventTarget and then swaps its prototype). Everything here exists to
 * create signals only when a callee actually reads one.
 */

// cockatiel's policies pass their own never-aborted signal down when the caller gave none; learn
// which object it is (the callback runs synchronously) so we can skip listening to it.
let cockatielNever: AbortSignal | undefined;
void noop.execute(({ signal }) => {
  if (!signal.aborted) cockatielNever = signal;
});

/** True when `signal` can ever abort: not undefined and not one of the known never-aborted signals. */
export function canAbort(signal: AbortSignal | undefined): signal is AbortSignal {
  return signal !== undefined && signal !== neverAbortedSignal && signal !== cockatielNever;
}

/**
 * Reason given to a callee's signal when the call it belongs to has settled (cockatiel's
 * `abortOnReturn`): one shared, stackless error instead of a DOMException per call.
 */
export const settledReason: ButtressError = Object.freeze(
  new ButtressError('E_ABORTED', 'The operation has settled; its signal was released', { noStack: true }),
) as ButtressError;

/**
 * An AbortSignal that exists only once someone reads it. Aborting it before then just records
 * the reason; the signal, when created, starts aborted. Linked lazily to a parent signal.
 */
export class LazySignal {
  #controller: AbortController | undefined;
  #parent: AbortSignal | undefined;
  #unlink: (() => void) | undefined;
  #aborted = false;
  #reason: unknown;

  constructor(parent: AbortSignal | undefined) {
    this.#parent = canAbort(parent) ? parent : undefined;
  }

  /** The signal, created on first read. */
  get signal(): AbortSignal {
    let controller = this.#controller;
    if (controller === undefined) {
      controller = this.#controller = new AbortController();
      const parent = this.#parent;
      if (this.#aborted) controller.abort(this.#reason);
      else if (parent !== undefined) {
        if (parent.aborted) controller.abort(parent.reason);
        else this.#unlink = onAbort(parent, (reason) => this.abort(reason));
      }
    }
    return controller.signal;
  }

  /** True once aborted (whether or not the signal has been created). */
  get aborted(): boolean {
    return this.#aborted || (this.#controller?.signal.aborted ?? false);
  }

  /** Aborts the signal (now, or at creation if nobody has read it yet). Idempotent. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.dispose();
    this.#controller?.abort(reason);
  }

  /** Stops following the parent. */
  dispose(): void {
    const unlink = this.#unlink;
    if (unlink !== undefined) {
      this.#unlink = undefined;
      unlink();
    }
    this.#parent = undefined;
  }
}
