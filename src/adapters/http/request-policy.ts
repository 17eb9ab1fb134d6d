import type { IDefaultPolicyContext } from 'cockatiel';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { timeout as timeoutPolicy } from '../../retry/timeout.js';
import { wrap } from '../../retry/wrap.js';
import { HttpStatusError, isHttpStatusError } from './errors.js';

/**
 * Any policy a request can run in: a buttress `bulkhead`, `adaptiveLimiter` (or one of its
 * partitions), `circuitBreaker`, `rateLimiter(...).policy(key)`, a `wrap()` of several, or a
 * cockatiel policy.
 */
export interface RequestPolicy {
  execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T>;
}

/** The policies of one route, outermost first: shed load, then the breaker, then the deadline. */
export interface RoutePolicyParts {
  /** The load shedder: a bulkhead or adaptive limiter. Its rejections answer 503 + Retry-After. */
  limiter?: RequestPolicy | undefined;
  /** The route's circuit breaker: 5xx answers and timeouts count as failures; open answers 503. */
  breaker?: RequestPolicy | undefined;
  /** The route's deadline: past it the request is answered 504 and the handler's signal aborts. */
  timeout?: Duration | undefined;
  /** Time source of the timeout. */
  clock?: Clock | undefined;
}

/** Checks a policy option: anything with an `execute` function. */
export function policyOption(value: unknown, option: string): RequestPolicy | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || typeof (value as RequestPolicy).execute !== 'function') {
    throw new InvalidOptionError(
      option,
      value,
      'a policy with execute() (bulkhead, adaptiveLimiter, circuitBreaker, ...)',
    );
  }
  return value as RequestPolicy;
}

/**
 * The one policy a route's requests run in, composed with `wrap()` from the parts given, or
 * undefined when there is none (the route then costs nothing).
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad timeout.
 */
export function routePolicy(parts: RoutePolicyParts, option = 'route'): RequestPolicy | undefined {
  const layers: RequestPolicy[] = [];
  if (parts.limiter !== undefined) layers.push(parts.limiter);
  if (parts.breaker !== undefined) layers.push(parts.breaker);
  if (parts.timeout !== undefined) {
    try {
      layers.push(
        timeoutPolicy(parts.timeout, parts.clock === undefined ? undefined : { clock: parts.clock }),
      );
    } catch (error) {
      if (error instanceof InvalidOptionError)
        throw new InvalidOptionError(`${option}.timeout`, parts.timeout, 'a duration');
      throw error;
    }
  }
  if (layers.length === 0) return undefined;
  if (layers.length === 1) return layers[0];
  return wrap(...(layers as Parameters<typeof wrap>)) as unknown as RequestPolicy;
}

/**
 * One request's run through its route policy. The adapter creates it when the request arrives
 * and calls {@link RequestRun.end} with the status once the response has gone (or the
 * connection closed): the slot is held, the breaker timed and the deadline armed for exactly the
 * request's life.
 */
export class RequestRun {
  readonly #done: Promise<void>;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;
  #ended = false;

  constructor() {
    this.#done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A 5xx that ends the request after its deadline already answered reaches no policy.
    this.#done.then(undefined, noop);
  }

  /**
   * Runs the request in `policy`. `enter` is called, with the signal the handler should watch,
   * once the policies admit the request (at once, or when a queued request gets its slot).
   * `fail` is called when a policy rejects it: before `enter` (shed, open circuit: answer with
   * the error), or after (the deadline passed: answer with the error unless the response has
   * started). A 5xx the handler sent itself is not reported: it was already answered.
   */
  start(
    policy: RequestPolicy,
    enter: (signal: AbortSignal) => void,
    fail: (error: unknown, entered: boolean) => void,
  ): void {
    let entered = false;
    policy
      .execute((ctx) => {
        entered = true;
        enter(ctx.signal);
        return this.#done;
      })
      .then(undefined, (error: unknown) => {
        if (!isHttpStatusError(error)) fail(error, entered);
      });
  }

  /** The response ended with `status` (0 when the connection closed without one). */
  end(status: number): void {
    if (this.#ended) return;
    this.#ended = true;
    if (status >= 500) this.#reject(new HttpStatusError(status));
    else this.#resolve();
  }
}

function noop(): void {}
