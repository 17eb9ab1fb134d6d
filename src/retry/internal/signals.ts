import { ButtressError } from '../../core/errors.js';
import { canAbort, type DeferredSignal, kDeferred, listen } from '../../core/signals.js';

/*
 * Creating an AbortSignal is the dominant cost of a policy call on Node 20 (several microseconds:
 * Node builds each one as an EventTarget and then swaps its prototype). Everything here exists to
 * create signals only when a callee actually reads one. The detection of never-aborting signals
 * lives in src/core/signals.ts, shared with the breaker.
 */

export { canAbort } from '../../core/signals.js';

/**
 * Reason given to a callee's signal when the call it belongs to has settled (cockatiel's
 * `abortOnReturn`): one shared, stackless error instead of a DOMException per call.
 */
export const settledReason: ButtressError = Object.freeze(
  new ButtressError('E_ABORTED', 'The operation has settled; its signal was released', { noStack: true }),
) as ButtressError;

/**
 * An AbortSignal that exists only once someone reads it (a {@link DeferredSignal}). Aborting it
 * before then just records the reason and tells its subscribers; the signal, when created,
 * starts aborted. Linked lazily to a parent, itself possibly deferred.
 */
export class LazySignal implements DeferredSignal {
  declare readonly [kDeferred]: true;
  #controller: AbortController | undefined;
  #parent: AbortSignal | DeferredSignal | undefined;
  #unlink: (() => void) | undefined;
  #listeners: ((reason: unknown) => void)[] | undefined;
  #aborted = false;
  #reason: unknown;

  constructor(parent: AbortSignal | DeferredSignal | undefined) {
    this.#parent = canAbort(parent) ? parent : undefined;
  }

  /** The signal, created on first read. */
  get signal(): AbortSignal {
    let controller = this.#controller;
    if (controller === undefined) {
      controller = this.#controller = new AbortController();
      if (this.#aborted) controller.abort(this.#reason);
      else this.#follow();
    }
    return controller.signal;
  }

  /** True once aborted (whether or not the signal has been created). */
  get aborted(): boolean {
    return this.#aborted || (this.#parent?.aborted ?? false);
  }

  /** Why it aborted (undefined while it has not). */
  get reason(): unknown {
    return this.#aborted ? this.#reason : this.#parent?.reason;
  }

  subscribe(listener: (reason: unknown) => void): () => void {
    const list = (this.#listeners ??= []);
    list.push(listener);
    this.#follow();
    return () => {
      const i = this.#listeners?.indexOf(listener) ?? -1;
      if (i !== -1) this.#listeners!.splice(i, 1);
    };
  }

  /** Starts listening to the parent, once. */
  #follow(): void {
    const parent = this.#parent;
    if (parent === undefined || this.#unlink !== undefined || this.#aborted) return;
    if (parent.aborted) this.abort(parent.reason);
    else this.#unlink = listen(parent, (reason) => this.abort(reason));
  }

  /** Aborts the signal (now, or at creation if nobody has read it yet). Idempotent. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.dispose();
    this.#controller?.abort(reason);
    const listeners = this.#listeners;
    if (listeners !== undefined) {
      this.#listeners = undefined;
      for (const l of listeners) l(reason);
    }
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

Object.defineProperty(LazySignal.prototype, kDeferred, { value: true });
