import { ButtressError, hasCode } from '../core/errors.js';

/**
 * A loader ran longer than its `hardTimeout` and there was no graced value to serve instead:
 * code `E_FACTORY_TIMEOUT`. The loader's `signal` was aborted with this error.
 */
export class FactoryTimeoutError extends ButtressError {
  /** The hard timeout that was exceeded, in milliseconds. */
  readonly timeout: number;
  /** The cache key being loaded. */
  readonly key: string;

  constructor(key: string, timeout: number) {
    super('E_FACTORY_TIMEOUT', `Loader for cache key ${JSON.stringify(key)} timed out after ${timeout}ms`, {
      noStack: true,
    });
    this.key = key;
    this.timeout = timeout;
  }
}

/** A value could not be serialized for the Redis layer: code `E_CACHE_SERIALIZE`; `cause` says why. */
export class CacheSerializeError extends ButtressError {
  /** The cache key being written. */
  readonly key: string;

  constructor(key: string, serializer: string, cause: unknown) {
    super(
      'E_CACHE_SERIALIZE',
      `Cannot serialize the value of cache key ${JSON.stringify(key)} with the ${serializer} serializer: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.key = key;
  }
}

/**
 * A payload read from Redis could not be decoded (corrupt, foreign, or written by another
 * serializer): code `E_CACHE_CORRUPT`. Never thrown to callers: the read counts as a miss and the
 * error goes to `onError`.
 */
export class CacheCorruptError extends ButtressError {
  /** The cache key whose payload was unreadable. */
  readonly key: string;

  constructor(key: string, cause: unknown) {
    super(
      'E_CACHE_CORRUPT',
      `Unreadable payload for cache key ${JSON.stringify(key)}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause, noStack: true },
    );
    this.key = key;
  }
}

/**
 * The Redis layer could not be used: its connection is not ready, its circuit breaker is open, or
 * the call failed or timed out (`cause` holds which): code `E_CACHE_UNAVAILABLE`. Never thrown to
 * callers: writes report it as `{ degraded: true, error }`, reads fall back to L1 and the loader.
 */
export class CacheUnavailableError extends ButtressError {
  constructor(cause?: unknown) {
    super('E_CACHE_UNAVAILABLE', 'The cache Redis layer is unavailable', { cause, noStack: true });
  }
}

/** True for {@link FactoryTimeoutError}. */
export const isFactoryTimeoutError = (e: unknown): e is FactoryTimeoutError =>
  hasCode(e, 'E_FACTORY_TIMEOUT');

/** True for {@link CacheSerializeError}. */
export const isCacheSerializeError = (e: unknown): e is CacheSerializeError =>
  hasCode(e, 'E_CACHE_SERIALIZE');

/** True for {@link CacheCorruptError}. */
export const isCacheCorruptError = (e: unknown): e is CacheCorruptError => hasCode(e, 'E_CACHE_CORRUPT');

/** True for {@link CacheUnavailableError}. */
export const isCacheUnavailableError = (e: unknown): e is CacheUnavailableError =>
  hasCode(e, 'E_CACHE_UNAVAILABLE');
