import type { Cache } from '../../cache/cache.js';
import type { GetOrSetOptions, LoaderContext } from '../../cache/types.js';
import type { Clock } from '../../core/clock.js';
import type { Duration } from '../../core/duration.js';
import { InvalidOptionError } from '../../core/errors.js';
import { bool, duration, fn, integer, knownKeys, optionsObject } from '../../core/validate.js';
import { directiveTtl, parseCacheControl, storable } from './cache-control.js';
import { type HeaderReader, requestKey } from './cache-key.js';
import { HttpStatusError } from './errors.js';
import { ifNoneMatch, notModifiedSince, strongEtag } from './etag.js';

/** What a custom cache key is computed from. */
export interface CacheKeyRequest {
  /** `GET` (a `HEAD` is answered from the GET entry, so its key is the GET's). */
  readonly method: string;
  /** Path and query, as the client sent them. */
  readonly url: string;
  /** Reads a request header by its lower-case name. */
  header(name: string): string | readonly string[] | number | undefined;
}

/**
 * Response caching of one route (or the defaults of every cached route). GET and HEAD requests
 * without `Range` only; only 200, 203 and 204 responses are kept (never a 206), and never one
 * that sets a cookie or says `no-store`, `private` or `no-cache`.
 *
 * @example
 * const products: RouteCacheOptions = { ttl: '30s', staleWhileRevalidate: '5m', vary: ['accept-language'] };
 */
export interface RouteCacheOptions {
  /**
   * How long a response stays fresh. A response's own `s-maxage` or `max-age` wins (a handler
   * knows its data best); `max-age=0` means "do not keep". @default '1m'
   */
  ttl?: Duration;
  /**
   * After the TTL, how long the stale response may still be served while one request
   * regenerates it (RFC 5861); it is also served when that request fails with a 5xx. Sent in
   * `Cache-Control` too. @default false
   */
  staleWhileRevalidate?: Duration | false;
  /**
   * Request headers the response depends on: each one's value is part of the cache key, and the
   * response carries `Vary` with them. A response whose own `Vary` names a header not listed here
   * (or `*`) is not cached: it could not be told apart. Case-insensitive. @default []
   */
  vary?: readonly string[];
  /**
   * Replaces the key buttress computes (method, path, canonical query, varied headers). Return
   * `undefined` to leave this request uncached.
   */
  key?: (request: CacheKeyRequest) => string | undefined;
  /** Tags stored with every entry of the route, for `cache.deleteByTag()`. @default none */
  tags?: readonly string[];
  /** Bodies bigger than this are sent as usual but not cached. @default 1_048_576 (1 MiB) */
  maxBodyBytes?: number;
  /**
   * Cache requests that carry `Authorization`. Off by default, as RFC 9111 §3.5 asks of shared
   * caches: one user's answer must not reach another. Listing `authorization` in `vary` keys
   * entries per credential instead. @default false
   */
  authorized?: boolean;
  /**
   * Send `Cache-Control: public, max-age=<remaining>[, stale-while-revalidate=<s>]` on cached
   * responses whose handler set none. @default true
   */
  cacheControl?: boolean;
  /** Send a `Cache-Status` header (RFC 9211), e.g. `buttress; hit; ttl=42`. @default true */
  cacheStatus?: boolean;
}

/** A response as the cache keeps it (in L1 as is, in Redis through the cache's serializer). */
export interface CachedResponse {
  /** Status code: 200, 203 or 204. */
  readonly status: number;
  /** Headers to replay, lower-case names, without per-connection ones (`date`, `content-length`, ...). */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: Uint8Array;
  /** The response's entity tag: the handler's own, or a strong one over the body. */
  readonly etag: string;
  /** When the response was produced, ms since the epoch (the adapter's clock). */
  readonly storedAt: number;
  /** How long it is fresh, in ms. */
  readonly ttl: number;
  /** How long after that it may be served stale while revalidating, in ms. */
  readonly swr: number;
  /** True when the handler set no `Cache-Control`: buttress writes one on each hit. */
  readonly ownCacheControl: boolean;
}

/** The route settings, validated. */
export interface ResolvedRouteCache {
  readonly ttl: number;
  readonly swr: number;
  readonly vary: readonly string[];
  readonly key: ((request: CacheKeyRequest) => string | undefined) | undefined;
  readonly tags: readonly string[] | undefined;
  readonly maxBodyBytes: number;
  readonly authorized: boolean;
  readonly cacheControl: boolean;
  readonly cacheStatus: boolean;
}

const ROUTE_KEYS = [
  'ttl',
  'staleWhileRevalidate',
  'vary',
  'key',
  'tags',
  'maxBodyBytes',
  'authorized',
  'cacheControl',
  'cacheStatus',
] as const;

const MAX_MS = 2 ** 31 - 1;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/**
 * Validates route cache options over `defaults` (the adapter's). `true` takes the defaults.
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the option (under `option`) and the value.
 */
export function resolveRouteCache(
  value: RouteCacheOptions | true | undefined,
  defaults: ResolvedRouteCache | undefined,
  option: string,
): ResolvedRouteCache {
  const o = value === true ? {} : optionsObject(value, option);
  knownKeys(o, ROUTE_KEYS, option);
  const d = defaults ?? DEFAULT_ROUTE_CACHE;
  let vary = d.vary;
  if (o.vary !== undefined) {
    if (!Array.isArray(o.vary))
      throw new InvalidOptionError(`${option}.vary`, o.vary, 'an array of header names');
    vary = o.vary.map((name, i) => {
      const lower = typeof name === 'string' ? name.toLowerCase() : name;
      if (typeof lower !== 'string' || !HEADER_NAME.test(lower)) {
        throw new InvalidOptionError(`${option}.vary[${i}]`, name, 'a header name');
      }
      return lower;
    });
    vary = [...new Set(vary)];
  }
  let tags = d.tags;
  if (o.tags !== undefined) {
    if (!Array.isArray(o.tags) || o.tags.some((t) => typeof t !== 'string' || t.length === 0)) {
      throw new InvalidOptionError(`${option}.tags`, o.tags, 'an array of non-empty strings');
    }
    tags = [...o.tags];
  }
  const swr = o.staleWhileRevalidate;
  return Object.freeze({
    ttl: duration(o.ttl, `${option}.ttl`, d.ttl, 1, MAX_MS),
    swr: swr === false ? 0 : duration(swr, `${option}.staleWhileRevalidate`, d.swr, 0, MAX_MS),
    vary: Object.freeze(vary),
    key:
      o.key === undefined
        ? d.key
        : fn<(request: CacheKeyRequest) => string | undefined>(o.key, `${option}.key`),
    tags: tags === undefined ? undefined : Object.freeze(tags),
    maxBodyBytes: integer(o.maxBodyBytes, `${option}.maxBodyBytes`, 0, MAX_MS, d.maxBodyBytes),
    authorized: bool(o.authorized, `${option}.authorized`, d.authorized),
    cacheControl: bool(o.cacheControl, `${option}.cacheControl`, d.cacheControl),
    cacheStatus: bool(o.cacheStatus, `${option}.cacheStatus`, d.cacheStatus),
  });
}

const DEFAULT_ROUTE_CACHE: ResolvedRouteCache = Object.freeze({
  ttl: 60_000,
  swr: 0,
  vary: Object.freeze([]),
  key: undefined,
  tags: undefined,
  maxBodyBytes: 1_048_576,
  authorized: false,
  cacheControl: true,
  cacheStatus: true,
});

/**
 * Headers a cache must not replay: they describe one connection or one message (RFC 9110
 * §7.6.1), or are recomputed on every answer (`date`, `age`, `content-length`), or must never be
 * shared (`set-cookie`, which makes the response uncacheable anyway).
 */
const UNSTORED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'date',
  'age',
  'content-length',
  'set-cookie',
  'cache-status',
]);

/** The request's conditional headers, taken off the request before the handler runs (see {@link stripConditionals}). */
export interface Conditionals {
  readonly ifNoneMatch: string | undefined;
  readonly ifModifiedSince: string | undefined;
}

/** A response's headers as the framework holds them: read one by lower-case name, list the names. */
export interface ResponseHeaders {
  get(name: string): string | readonly string[] | number | undefined;
  names(): string[];
}

/**
 * Removes `If-None-Match` and `If-Modified-Since` from a request that is about to regenerate a
 * cached response, and returns them. The handler (or the framework: Express answers 304 on its
 * own) must produce the full response, which is what the cache keeps; the adapter then answers
 * the conditional itself from the entry.
 */
export function stripConditionals(headers: Record<string, string | string[] | undefined>): Conditionals {
  const inm = headers['if-none-match'];
  const ims = headers['if-modified-since'];
  if (inm !== undefined) delete headers['if-none-match'];
  if (ims !== undefined) delete headers['if-modified-since'];
  return {
    ifNoneMatch: Array.isArray(inm) ? inm.join(',') : inm,
    ifModifiedSince: Array.isArray(ims) ? ims[0] : ims,
  };
}

/** Whether a request's conditionals say the client's copy of `entry` is current: a 304 is due. */
export function isNotModified(
  ifNoneMatchHeader: string | readonly string[] | undefined,
  ifModifiedSinceHeader: string | undefined,
  etag: string,
  lastModified: string | readonly string[] | undefined,
): boolean {
  // RFC 9110 §13.2.2: If-None-Match, when present, decides alone.
  if (ifNoneMatchHeader !== undefined) return ifNoneMatch(ifNoneMatchHeader, etag);
  return notModifiedSince(ifModifiedSinceHeader, typeof lastModified === 'string' ? lastModified : undefined);
}

/** Headers of a 304: the ones RFC 9110 §15.4.5 says a 304 must repeat, nothing describing a body. */
export const NOT_MODIFIED_HEADERS: ReadonlySet<string> = new Set([
  'cache-control',
  'content-location',
  'etag',
  'expires',
  'vary',
  'last-modified',
  'age',
  'cache-status',
]);

/** How a lookup ended, passed to the adapter's callback. */
export const HIT = 0;
export const LEAD = 1;
export const PASS = 2;
export type LookupOutcome = typeof HIT | typeof LEAD | typeof PASS;

/** The callback of {@link RouteCache.lookup}. */
export type LookupCallback = (
  outcome: LookupOutcome,
  /** The entry for a HIT; the {@link Capture} to fill for a LEAD; undefined for a PASS. */
  value: CachedResponse | Capture | undefined,
) => void;

/**
 * One cached route: computes keys, looks requests up, and turns the response of the request that
 * missed into an entry. Framework-neutral: each adapter feeds it the request, the response's
 * status, headers and body, and writes back what it says. All coalescing, grace, L1/L2 and
 * cross-instance behaviour is the cache's own (`getOrSet`); this class only speaks HTTP.
 */
export class RouteCache {
  readonly settings: ResolvedRouteCache;
  readonly cache: Cache;
  readonly clock: Clock;
  readonly #load: GetOrSetOptions;
  readonly #headerOf: (headers: Record<string, string | string[] | undefined>) => HeaderReader;

  constructor(cache: Cache, settings: ResolvedRouteCache, clock: Clock) {
    this.cache = cache;
    this.settings = settings;
    this.clock = clock;
    const swr = settings.swr;
    // One options object per route: the cache resolves it on misses only, hits never read it.
    this.#load = Object.freeze({
      ttl: settings.ttl,
      grace: swr > 0 ? swr : false,
      // Stale-while-revalidate: requests joining a running regeneration get the stale copy at
      // once; the request that regenerates waits for its own handler (leaderWaits), since that
      // handler is what produces its answer.
      timeout: swr > 0 ? 0 : undefined,
      leaderWaits: true,
      // An early (XFetch) refresh has no request to run the handler: never.
      earlyRefresh: false,
      jitter: 0,
      tags: settings.tags,
    });
    this.#headerOf = (headers) => (name) => headers[name];
  }

  /**
   * The cache key of a request, or undefined when the request must not use the cache: a method
   * other than GET and HEAD, a `Range` header, an `Authorization` header on a route that does
   * not allow it, or a custom key function that declined.
   */
  key(
    method: string,
    url: string,
    headers: Record<string, string | string[] | undefined>,
  ): string | undefined {
    if (method !== 'GET' && method !== 'HEAD') return undefined;
    // A range request wants part of a representation: its answer (a 206) must never fill the
    // entry of the whole one, and answering it from the whole one would ignore the range.
    if (headers.range !== undefined) return undefined;
    const s = this.settings;
    if (!s.authorized && headers.authorization !== undefined && !s.vary.includes('authorization')) {
      return undefined;
    }
    if (s.key !== undefined) {
      const custom = s.key({ method: 'GET', url, header: this.#headerOf(headers) });
      if (custom !== undefined && typeof custom !== 'string') {
        throw new InvalidOptionError('cache.key', custom, 'a function returning a string or undefined');
      }
      return custom;
    }
    // A route that varies on nothing reads no header: no reader made per request.
    return requestKey('GET', url, s.vary, s.vary.length === 0 ? NO_HEADER : this.#headerOf(headers));
  }

  /**
   * Looks `key` up and calls `callback` once: HIT with a fresh (or, under stale-while-revalidate,
   * a graced) entry; LEAD with a {@link Capture} when this request must run the handler and fill
   * the entry (every concurrent request for the key, in this instance and, with Redis, in the
   * fleet, waits for it); PASS when the handler must run uncached (the request that led got an
   * uncacheable answer, or failed). A HEAD never leads: it is answered from the GET entry or
   * passes.
   */
  lookup(key: string, head: boolean, callback: LookupCallback): void {
    if (head) {
      this.cache.get<CachedResponse>(key).then(
        (entry) => callback(entry === undefined ? PASS : HIT, entry),
        () => callback(PASS, undefined),
      );
      return;
    }
    let capture: Capture | undefined;
    // Closures passed inline, not bound to names: every request makes them, and a named closure
    // costs a defineProperty per call under tools that keep function names (tsx, esbuild keepNames).
    this.cache
      .getOrSet(
        key,
        (ctx: LoaderContext): Promise<CachedResponse | undefined> => {
          capture = new Capture(this, ctx);
          callback(LEAD, capture);
          return capture.promise;
        },
        this.#load,
      )
      .then(
        (entry) => {
          if (capture === undefined) callback(entry === undefined ? PASS : HIT, entry);
        },
        () => {
          // The request that led failed (a 5xx with no stale copy, or the cache closed): this one
          // runs its own handler.
          if (capture === undefined) callback(PASS, undefined);
        },
      );
  }

  /**
   * The status to answer a hit with (200-299, or 304 when the request's conditionals match), and
   * every header, through `set`. The body is the entry's, unless the status is 304 or the
   * request is a HEAD.
   */
  writeHit(
    entry: CachedResponse,
    ifNoneMatchHeader: string | readonly string[] | undefined,
    ifModifiedSinceHeader: string | undefined,
    set: (name: string, value: string | readonly string[]) => void,
  ): number {
    const now = this.clock.now();
    const age = now - entry.storedAt;
    const notModified = isNotModified(
      ifNoneMatchHeader,
      ifModifiedSinceHeader,
      entry.etag,
      entry.headers['last-modified'],
    );
    const headers = entry.headers;
    for (const name in headers) {
      if (notModified && !NOT_MODIFIED_HEADERS.has(name)) continue;
      set(name, headers[name]!);
    }
    set('etag', entry.etag);
    set('age', String(age > 0 ? Math.floor(age / 1000) : 0));
    if (entry.ownCacheControl && this.settings.cacheControl)
      set('cache-control', cacheControlFor(entry, age));
    if (this.settings.cacheStatus) {
      set('cache-status', `buttress; hit; ttl=${Math.floor((entry.ttl - age) / 1000)}`);
    }
    return notModified ? 304 : entry.status;
  }
}

/** `public, max-age=<remaining s>[, stale-while-revalidate=<s>]` for an entry of a given age. */
export function cacheControlFor(entry: CachedResponse, ageMs: number): string {
  const remaining = Math.max(0, Math.floor((entry.ttl - Math.max(0, ageMs)) / 1000));
  return entry.swr > 0
    ? `public, max-age=${remaining}, stale-while-revalidate=${Math.floor(entry.swr / 1000)}`
    : `public, max-age=${remaining}`;
}

/** What the adapter must do to the leading request's response, from {@link Capture.build}. */
export interface CaptureDecision {
  /** The entry that will be cached (if nothing vetoes it before the response ends), or undefined. */
  readonly entry: CachedResponse | undefined;
  /** Headers to add to the leading response (ETag, Cache-Control, Vary, Cache-Status). */
  readonly headers: Readonly<Record<string, string>>;
  /** True when the leading request's conditionals match: answer it 304 with no body. */
  readonly notModified: boolean;
}

/**
 * The 2xx statuses a response may be cached with: the ones RFC 9110 §15.1 calls heuristically
 * cacheable, less 206 (a part of a representation is no answer to a request for all of it).
 */
const CACHEABLE_STATUS: ReadonlySet<number> = new Set([200, 203, 204]);

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
const NO_HEADER: HeaderReader = () => undefined;

/**
 * The response of the request that leads a fill. The adapter calls {@link Capture.build} with
 * the final status, headers and body when the response is about to be written, adds the headers
 * it returns, and calls {@link Capture.end} once the response has gone (or {@link Capture.abandon}
 * if it never will). Until then every concurrent request for the key waits.
 */
export class Capture {
  readonly promise: Promise<CachedResponse | undefined>;
  /** The conditionals taken off the request (see {@link stripConditionals}). */
  conditionals: Conditionals | undefined;
  readonly #route: RouteCache;
  readonly #ctx: LoaderContext;
  #resolve!: (entry: CachedResponse | undefined) => void;
  #reject!: (error: unknown) => void;
  #entry: CachedResponse | undefined;
  #status = 0;
  #settled = false;

  constructor(route: RouteCache, ctx: LoaderContext) {
    this.#route = route;
    this.#ctx = ctx;
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** The stale entry at hand while regenerating, if any. */
  get stale(): CachedResponse | undefined {
    return this.#ctx.stale as CachedResponse | undefined;
  }

  /**
   * Decides on the response about to be written: whether it is cached, what headers it gets, and
   * whether the leading request is answered 304. `body` undefined means a body that cannot be
   * kept (a stream): the response is then sent as is and not cached.
   */
  build(status: number, header: ResponseHeaders, body: Uint8Array | string | undefined): CaptureDecision {
    this.#status = status;
    const route = this.#route;
    const s = route.settings;
    const entry = this.#entryOf(status, header, body);
    this.#entry = entry;
    if (entry === undefined) {
      return {
        entry,
        headers: s.cacheStatus ? { 'cache-status': 'buttress; fwd=miss' } : NO_HEADERS,
        notModified: false,
      };
    }
    const headers: Record<string, string> = {};
    if (header.get('etag') === undefined) headers.etag = entry.etag;
    const vary = entry.headers.vary;
    if (vary !== undefined) headers.vary = vary as string;
    if (entry.ownCacheControl && s.cacheControl) headers['cache-control'] = cacheControlFor(entry, 0);
    if (s.cacheStatus) headers['cache-status'] = 'buttress; fwd=miss; stored';
    const c = this.conditionals;
    const notModified =
      c !== undefined &&
      isNotModified(c.ifNoneMatch, c.ifModifiedSince, entry.etag, entry.headers['last-modified']);
    return { entry, headers, notModified };
  }

  #entryOf(
    status: number,
    header: ResponseHeaders,
    body: Uint8Array | string | undefined,
  ): CachedResponse | undefined {
    if (!CACHEABLE_STATUS.has(status) || body === undefined) return undefined;
    if (header.get('set-cookie') !== undefined || header.get('content-range') !== undefined) return undefined;
    const ownCc = header.get('cache-control');
    const cc = parseCacheControl(ownCc as string | string[] | undefined);
    if (!storable(cc)) return undefined;
    const s = this.#route.settings;
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (bytes.byteLength > s.maxBodyBytes) return undefined;
    // The response's own Vary must be covered by the key, or two different answers would share it.
    const ownVary = header.get('vary');
    const vary = mergeVary(s.vary, ownVary);
    if (vary === null) return undefined;
    const ttl = directiveTtl(cc) ?? s.ttl;
    if (ttl <= 0) return undefined;
    if (ttl !== s.ttl) this.#ctx.setTtl(ttl);
    const headers: Record<string, string | string[]> = {};
    collectHeaders(header, headers);
    if (vary !== '') headers.vary = vary;
    const ownEtag = header.get('etag');
    delete headers.etag;
    return {
      status,
      headers,
      body: bytes,
      etag: typeof ownEtag === 'string' ? ownEtag : strongEtag(bytes),
      storedAt: this.#route.clock.now(),
      ttl,
      swr: s.swr,
      ownCacheControl: ownCc === undefined,
    };
  }

  /**
   * The response has been sent. `header` reads its final headers: a cookie set after
   * {@link Capture.build} (by a hook that runs late) still vetoes caching. A 5xx fails the fill,
   * so that requests waiting on it can be answered from a stale copy (stale-if-error) or run
   * their own handler.
   */
  end(header?: ResponseHeaders): void {
    if (this.#settled) return;
    this.#settled = true;
    let entry = this.#entry;
    if (entry !== undefined && header !== undefined && header.get('set-cookie') !== undefined)
      entry = undefined;
    if (this.#status >= 500) this.#reject(new HttpStatusError(this.#status));
    else this.#resolve(entry);
  }

  /** The response will never be built (the client went away, the handler hung up): nothing is cached. */
  abandon(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(undefined);
  }
}

/**
 * The union of the route's varied headers and the response's own `Vary`, as a header value; ''
 * when there is none; null when the response varies on something the key does not cover.
 */
export function mergeVary(
  routeVary: readonly string[],
  own: string | readonly string[] | number | undefined,
): string | null {
  if (own === undefined) return routeVary.join(', ');
  const text = typeof own === 'string' ? own : Array.isArray(own) ? own.join(',') : String(own);
  const names = new Set(routeVary);
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '') continue;
    if (name === '*' || !routeVary.includes(name)) return null;
    names.add(name);
  }
  return [...names].join(', ');
}

function collectHeaders(headers: ResponseHeaders, out: Record<string, string | string[]>): void {
  for (const raw of headers.names()) {
    const name = raw.toLowerCase();
    if (UNSTORED.has(name)) continue;
    const value = headers.get(name);
    if (value === undefined) continue;
    out[name] = typeof value === 'number' ? String(value) : (value as string | string[]);
  }
}
