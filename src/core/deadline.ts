import type { Clock } from './clock.js';
import { sharedTimerWheel, TimerEntry } from './timer-wheel.js';

/** One deadline: the wheel node and the promise's settle functions in one allocation. */
class Deadline<T> extends TimerEntry {
  settled = false;

  constructor(
    readonly resolve: (value: T) => void,
    readonly reject: (error: unknown) => void,
    readonly timeoutError: () => unknown,
  ) {
    super();
  }

  fire(): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(this.timeoutError());
  }
}

/**
 * Settles like `call`, or rejects with `timeoutError()` after `ms`. The deadline lives on the
 * clock's shared timer wheel (an O(1) insert and cancel, no libuv timer per call): it fires no
 * earlier than `ms` and at most one 1 ms tick later. `call` itself is not cancelled, and
 * `timeoutError` is only called when the deadline fires, so a call in time builds no error.
 *
 * @example
 * const reply = await withDeadline(store.take(key), 250, clock, () => new TimeoutError(250, 'Store call'));
 * @throws whatever `call` rejects with, or what `timeoutError()` returns once `ms` have passed.
 */
export function withDeadline<T>(
  call: PromiseLike<T>,
  ms: number,
  clock: Clock,
  timeoutError: () => unknown,
): Promise<T> {
  const wheel = sharedTimerWheel(clock);
  return new Promise<T>((resolve, reject) => {
    const deadline = new Deadline<T>(resolve, reject, timeoutError);
    wheel.insert(deadline, ms);
    call.then(
      (value) => {
        if (deadline.settled) return;
        deadline.settled = true;
        wheel.cancel(deadline);
        resolve(value);
      },
      (error: unknown) => {
        if (deadline.settled) return;
        deadline.settled = true;
        wheel.cancel(deadline);
        reject(error);
      },
    );
  });
}
