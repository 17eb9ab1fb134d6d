/** Something that can be released; also usable with `using`. */
export interface Disposable {
  dispose(): void;
  [Symbol.dispose](): void;
}

/** Subscribes a listener; call `dispose()` on the result to unsubscribe. Compatible with cockatiel's `Event<T>`. */
export type Event<T> = (listener: (data: T) => void) => Disposable;

/** Builds a disposable from a function; safe to dispose more than once. */
export function toDisposable(release: () => void): Disposable {
  let done = false;
  const dispose = () => {
    if (done) return;
    done = true;
    release();
  };
  return { dispose, [Symbol.dispose]: dispose };
}

/** A disposable that does nothing. */
export const noopDisposable: Disposable = Object.freeze({ dispose() {}, [Symbol.dispose]() {} });

/**
 * A minimal typed event emitter. Listener storage is allocated only when someone subscribes, and
 * callers check {@link Emitter.size} before building an event object, so unobserved events cost
 * one property read.
 */
export class Emitter<T> {
  #listeners: ((data: T) => void)[] | undefined;

  /** Subscribe to this emitter. */
  readonly event: Event<T> = (listener) => {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    (this.#listeners ??= []).push(listener);
    return toDisposable(() => {
      const list = this.#listeners;
      if (!list) return;
      const i = list.indexOf(listener);
      if (i !== -1) list.splice(i, 1);
      if (list.length === 0) this.#listeners = undefined;
    });
  };

  /** Number of listeners. */
  get size(): number {
    return this.#listeners?.length ?? 0;
  }

  /**
   * Calls every listener with `data`. A throwing listener does not stop the others, nor the
   * operation that emitted: its error is rethrown asynchronously, where the process sees it.
   */
  emit(data: T): void {
    const list = this.#listeners;
    if (!list) return;
    if (list.length === 1) {
      callListener(list[0]!, data);
      return;
    }
    for (const l of list.slice()) callListener(l, data);
  }

  /** Drops every listener. */
  clear(): void {
    this.#listeners = undefined;
  }
}

function callListener<T>(listener: (data: T) => void, data: T): void {
  try {
    listener(data);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
