import type { IDefaultPolicyContext, IFailureEvent, IPolicy, ISuccessEvent } from 'cockatiel';
import { defaultPolicyContext } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, isAbortedError } from '../core/errors.js';
import { Emitter, type Event } from '../core/events.js';
import {
  clockOption,
  duration,
  fn as fnOption,
  integer,
  knownKeys,
  nonEmptyString,
  numberIn,
  optionsObject,
} from '../core/validate.js';
import { ThrottledError } from './errors.js';
import { WindowedCounter } from './internal/windowed-counter.js';

/** Options of {@link adaptiveThrottle}. */
export interface AdaptiveThrottleOptions {
  /** Name shown in errors and stats. */
  name?: string;
  /**
   * How many requests per accepted one the backend may see before the client starts rejecting
   * locally: 2 lets through about twice what the backend accepts. Lower is more aggressive.
   * Between 1 and 100.
   * @default 2
   */
  k?: number;
  /** How far back requests and accepts count. @default '2m' */
  window?: Duration;
  /** Buckets the window is counted in (precision of its edge). @default 24 */
  buckets?: number;
  /**
   * Whether an error means the backend rejected the request (overloaded, throttled, 503, 429),
   * as opposed to accepting and answering it with an error. Errors for which it returns false
   * count as accepts.
   * @default every error is a rejection, except the caller's own abort
   */
  isRejection?: (error: unknown) => boolean;
  /** Source of uniform random numbers in `[0, 1)`, for tests. @default Math.random */
  random?: () => number;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Snapshot returned by {@link AdaptiveThrottle.stats}. */
export interface AdaptiveThrottleStats {
  name: string | undefined;
  /** Requests in the window, local rejections included. */
  requests: number;
  /** Requests the backend accepted in the window. */
  accepts: number;
  /** The local rejection probability now: max(0, (requests - k * accepts) / (requests + 1)). */
  probability: number;
  /** Totals since creation. */
  totalCalls: number;
  totalThrottled: number;
}

/** Event of {@link AdaptiveThrottle.onThrottle}. */
export interface ThrottleEvent {
  probability: number;
}

const REQUESTS = 0;
const ACCEPTS = 1;
const throttleChannel = channel('retry', 'throttle');
const notAborted = (error: unknown) => !isAbortedError(error);

/**
 * Creates client-side adaptive throttling (Google SRE book, "Handling Overload"): the client
 * counts, over a rolling `window`, the requests it made and the ones the backend accepted, and
 * rejects new requests locally with probability
 * `max(0, (requests - k * accepts) / (requests + 1))`, with `E_THROTTLED`. While the backend
 * accepts everything the probability is 0; when it rejects most requests, the client stops
 * sending them (and paying for them) without waiting for a circuit to open, and recovers smoothly
 * as accepts return. Locally rejected requests count as requests.
 *
 * Counts live in a fixed ring of buckets: O(1) per call.
 *
 * @example
 * import { adaptiveThrottle } from 'buttress/retry';
 * const throttle = adaptiveThrottle({ isRejection: (e) => e.status === 429 || e.status === 503 });
 * const res = await throttle.execute(({ signal }) => api.get(path, { signal }));
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for any invalid option.
 */
export function adaptiveThrottle(options?: AdaptiveThrottleOptions): AdaptiveThrottle {
  return new AdaptiveThrottle(options);
}

/** See {@link adaptiveThrottle}. */
export class AdaptiveThrottle implements IPolicy<IDefaultPolicyContext, never> {
  declare readonly _altReturn: never;

  readonly #name: string | undefined;
  readonly #k: number;
  readonly #counter: WindowedCounter;
  readonly #isRejection: (error: unknown) => boolean;
  readonly #random: () => number;
  readonly #clock: Clock;
  #totalCalls = 0;
  #totalThrottled = 0;

  readonly #successEm = new Emitter<ISuccessEvent>();
  readonly #failureEm = new Emitter<IFailureEvent>();
  readonly #throttleEm = new Emitter<ThrottleEvent>();

  /** Fires with the duration of each call that succeeded. */
  readonly onSuccess: Event<ISuccessEvent> = this.#successEm.event;
  /** Fires for each call that failed: `handled` is true when the error counted as a rejection. */
  readonly onFailure: Event<IFailureEvent> = this.#failureEm.event;
  /** Fires for each call rejected locally. */
  readonly onThrottle: Event<ThrottleEvent> = this.#throttleEm.event;

  constructor(options?: AdaptiveThrottleOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['name', 'k', 'window', 'buckets', 'isRejection', 'random', 'clock']);
    this.#name = opts.name === undefined ? undefined : nonEmptyString(opts.name, 'name');
    this.#k = numberIn(opts.k, 'k', 1, 100, 2);
    const window = duration(opts.window, 'window', 120_000, 1000, 86_400_000);
    const buckets = integer(opts.buckets, 'buckets', 1, 3600, 24);
    this.#isRejection = fnOption<(error: unknown) => boolean>(opts.isRejection, 'isRejection', notAborted);
    this.#random = fnOption<() => number>(opts.random, 'random', Math.random);
    this.#clock = clockOption(opts.clock);
    this.#counter = new WindowedCounter(window, buckets, 2);
  }

  /** The throttle's name, if it was given one. */
  get name(): string | undefined {
    return this.#name;
  }

  /** The local rejection probability now. */
  get probability(): number {
    const now = this.#clock.now();
    return this.#probability(this.#counter.total(REQUESTS, now), this.#counter.total(ACCEPTS, now));
  }

  #probability(requests: number, accepts: number): number {
    const p = (requests - this.#k * accepts) / (requests + 1);
    return Math.max(p, 0);
  }

  /**
   * Runs `fn`, unless the throttle rejects it locally.
   * @throws {ThrottledError} `E_THROTTLED` when rejected locally (the backend was not called).
   * @throws {AbortedError} `E_ABORTED` when `signal` is already aborted.
   * @throws whatever `fn` throws.
   */
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    const counter = this.#counter;
    const now = this.#clock.now();
    this.#totalCalls++;
    const p = this.#probability(counter.total(REQUESTS, now), counter.total(ACCEPTS, now));
    if (p > 0 && this.#random() < p) {
      counter.add(REQUESTS, 1, now);
      this.#totalThrottled++;
      if (this.#throttleEm.size !== 0) this.#throttleEm.emit({ probability: p });
      if (throttleChannel.hasSubscribers) throttleChannel.publish({ name: this.#name, probability: p });
      return Promise.reject(new ThrottledError(p, this.#name));
    }
    const timed = this.#successEm.size !== 0 || this.#failureEm.size !== 0;
    let result: PromiseLike<T> | T;
    try {
      result = fn(signal === undefined ? defaultPolicyContext : { signal });
    } catch (error) {
      this.#failed(error, signal, timed, now);
      return Promise.reject(error);
    }
    if (
      result !== null &&
      typeof result === 'object' &&
      typeof (result as PromiseLike<T>).then === 'function'
    ) {
      return Promise.resolve(result).then(
        (value) => {
          this.#succeeded(timed, now);
          return value;
        },
        (error: unknown) => {
          this.#failed(error, signal, timed, now);
          throw error;
        },
      );
    }
    this.#succeeded(timed, now);
    return Promise.resolve(result as T);
  }

  // Outcomes are counted when known, requests and accepts in the same bucket; a call the caller
  // aborted says nothing about the backend and is not counted at all.
  #succeeded(timed: boolean, start: number): void {
    const now = this.#clock.now();
    this.#counter.add(REQUESTS, 1, now);
    this.#counter.add(ACCEPTS, 1, now);
    if (timed && this.#successEm.size !== 0) this.#successEm.emit({ duration: now - start });
  }

  #failed(error: unknown, signal: AbortSignal | undefined, timed: boolean, start: number): void {
    if (signal?.aborted) return;
    const now = this.#clock.now();
    let rejected: boolean;
    try {
      rejected = this.#isRejection(error);
    } catch {
      rejected = true;
    }
    this.#counter.add(REQUESTS, 1, now);
    if (!rejected) this.#counter.add(ACCEPTS, 1, now);
    if (timed && this.#failureEm.size !== 0) {
      this.#failureEm.emit({ duration: now - start, handled: rejected, reason: { error: error as Error } });
    }
  }

  /** Counts and probability as a plain object. */
  stats(): AdaptiveThrottleStats {
    const now = this.#clock.now();
    const requests = this.#counter.total(REQUESTS, now);
    const accepts = this.#counter.total(ACCEPTS, now);
    return {
      name: this.#name,
      requests,
      accepts,
      probability: this.#probability(requests, accepts),
      totalCalls: this.#totalCalls,
      totalThrottled: this.#totalThrottled,
    };
  }
}
