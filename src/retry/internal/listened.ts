import { type Emitter, type Event, toDisposable } from '../../core/events.js';

/**
 * Subscribing through `event(emitter, changed)` calls `changed` after every subscription and
 * unsubscription, so a policy can keep a plain boolean ("does anybody listen?") for its hot path
 * instead of asking two emitters per call: a getter with a private field, measured at 5-10 ns
 * per call.
 */
export function listenedEvent<T>(emitter: Emitter<T>, changed: () => void): Event<T> {
  return (listener) => {
    const subscription = emitter.event(listener);
    changed();
    return toDisposable(() => {
      subscription.dispose();
      changed();
    });
  };
}
