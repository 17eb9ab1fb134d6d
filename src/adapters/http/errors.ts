import { ButtressError } from '../../core/errors.js';

/**
 * A handler answered with a server error (status 500-599): code `E_HTTP_STATUS`. The adapters run
 * each request inside the route's policies (limiter, breaker, timeout); this is the failure those
 * policies see for a 5xx answer, so a breaker opens on a route that keeps failing. It is never
 * sent to the client (the handler's own answer already was), and captures no stack trace.
 */
export class HttpStatusError extends ButtressError {
  /** The status the handler answered with. */
  readonly status: number;

  constructor(status: number) {
    super('E_HTTP_STATUS', `The handler answered with status ${status}`, { noStack: true });
    this.status = status;
  }
}

/** True for {@link HttpStatusError}. */
export const isHttpStatusError = (e: unknown): e is HttpStatusError => e instanceof HttpStatusError;
