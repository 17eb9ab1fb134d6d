import { describe, expect, it } from 'vitest';
import { CircuitIsolatedError, CircuitOpenError } from '../../breaker/errors.js';
import { BulkheadFullError, RateLimitedError } from '../../bulkhead/errors.js';
import { FactoryTimeoutError } from '../../cache/errors.js';
import { InvalidOptionError, TimeoutError } from '../../core/errors.js';
import { PoolTimeoutError } from '../../pool/errors.js';
import { directiveTtl, parseCacheControl, storable } from './cache-control.js';
import { requestKey } from './cache-key.js';
import { HttpStatusError } from './errors.js';
import { ifNoneMatch, notModifiedSince } from './etag.js';
import { problemFor, resolveProblemOptions } from './problem.js';
import { mergeVary } from './response-cache.js';
import { retryAfterSeconds } from './retry-after.js';

describe('parseCacheControl', () => {
  it('reads the directives a shared cache decides on, case-insensitively, quoted or not', () => {
    const cc = parseCacheControl('Public, MAX-AGE=60, s-maxage="120", stale-while-revalidate=30');
    expect(cc).toMatchObject({
      maxAge: 60,
      sMaxAge: 120,
      staleWhileRevalidate: 30,
      noStore: false,
      private: false,
    });
    expect(directiveTtl(cc)).toBe(120_000);
    expect(storable(cc)).toBe(true);
  });

  it('no-store, private (with field names) and no-cache make a response unstorable', () => {
    expect(storable(parseCacheControl('no-store'))).toBe(false);
    expect(storable(parseCacheControl('private="set-cookie, x-user", max-age=60'))).toBe(false);
    expect(storable(parseCacheControl('no-cache'))).toBe(false);
    expect(storable(parseCacheControl(['public', 'max-age=5']))).toBe(true);
  });

  it('ignores invalid delta-seconds and unknown directives', () => {
    const cc = parseCacheControl('max-age=-1, max-age=abc, foo=bar, immutable');
    expect(cc.maxAge).toBeUndefined();
    expect(directiveTtl(parseCacheControl(undefined))).toBeUndefined();
  });
});

describe('requestKey', () => {
  it('joins method, path, canonical query and varied headers', () => {
    const headers: Record<string, string> = { 'accept-language': ' fr ' };
    expect(requestKey('GET', '/a?b=2&a=1', ['accept-language', 'x-missing'], (n) => headers[n])).toBe(
      'GET /a?a=1&b=2\naccept-language\u0000fr\nx-missing',
    );
  });

  it('an absent varied header and an empty one differ', () => {
    expect(requestKey('GET', '/', ['x'], () => undefined)).not.toBe(requestKey('GET', '/', ['x'], () => ''));
  });

  it('a trailing ? is the bare path', () => {
    expect(requestKey('GET', '/a?', [], () => undefined)).toBe('GET /a');
  });
});

describe('conditionals', () => {
  it('If-None-Match: * matches anything, malformed lists match nothing', () => {
    expect(ifNoneMatch('*', '"x"')).toBe(true);
    expect(ifNoneMatch('x', '"x"')).toBe(false);
    expect(ifNoneMatch('"a", "x"', '"x"')).toBe(true);
    expect(ifNoneMatch(['"a"', 'W/"x"'], '"x"')).toBe(true);
    expect(ifNoneMatch('"a,x"', '"x"')).toBe(false);
    expect(ifNoneMatch(undefined, '"x"')).toBe(false);
  });

  it('If-Modified-Since compares HTTP dates', () => {
    const lm = 'Wed, 21 Oct 2015 07:28:00 GMT';
    expect(notModifiedSince(lm, lm)).toBe(true);
    expect(notModifiedSince('Wed, 21 Oct 2015 07:27:59 GMT', lm)).toBe(false);
    expect(notModifiedSince('garbage', lm)).toBe(false);
  });
});

describe('mergeVary', () => {
  it("covers the response's Vary with the route's, or refuses", () => {
    expect(mergeVary(['accept-language'], undefined)).toBe('accept-language');
    expect(mergeVary(['accept-language', 'accept'], 'Accept')).toBe('accept-language, accept');
    expect(mergeVary(['accept'], 'accept, x-user')).toBeNull();
    expect(mergeVary(['accept'], '*')).toBeNull();
    expect(mergeVary([], undefined)).toBe('');
  });
});

describe('retryAfterSeconds', () => {
  it('is undefined when the wait is unknown', () => {
    expect(retryAfterSeconds(Number.POSITIVE_INFINITY, 0.5)).toBeUndefined();
    expect(retryAfterSeconds(-1, 0.5)).toBeUndefined();
  });
  it('rounds up, never below one second', () => {
    expect(retryAfterSeconds(0, 0)).toBe(1);
    expect(retryAfterSeconds(1001, 0)).toBe(2);
  });
});

describe('problemFor', () => {
  const opts = resolveProblemOptions(undefined);
  const fixed = () => 0;

  it.each([
    [new CircuitOpenError('open', 4000, 'payments'), 503, '4'],
    [new CircuitIsolatedError('payments'), 503, undefined],
    [new BulkheadFullError('full', 1500, 10), 503, '2'],
    [new RateLimitedError('rate', 'k', 2000), 429, '2'],
    [new TimeoutError(800), 504, undefined],
    [new FactoryTimeoutError('k', 800), 504, undefined],
    [new PoolTimeoutError('primary', 1000), 503, undefined],
    [new InvalidOptionError('x', 1, 'y'), 500, undefined],
  ] as const)('%s -> %i, Retry-After %s', (error, status, retryAfter) => {
    const p = problemFor(error, opts, fixed)!;
    expect(p.status).toBe(status);
    expect(p.headers['retry-after']).toBe(retryAfter);
    expect(p.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(p.body).toMatchObject({ type: 'about:blank', status, code: error.code });
    expect(p.body.detail).not.toContain('payments');
    if (retryAfter) expect(p.body.retryAfter).toBe(Number(retryAfter));
  });

  it('an HttpStatusError keeps its status', () => {
    expect(problemFor(new HttpStatusError(502), opts)!.status).toBe(502);
  });

  it('leaves errors that are not buttress errors alone', () => {
    expect(problemFor(new Error('x'), opts)).toBeUndefined();
  });

  it('types, messages and jitter are options', () => {
    const o = resolveProblemOptions({
      type: (c) => `https://example.com/problems/${c}`,
      exposeMessages: true,
      retryAfterJitter: 0,
    });
    const p = problemFor(new CircuitOpenError('open', 1000, 'payments'), o)!;
    expect(p.body.type).toBe('https://example.com/problems/E_CIRCUIT_OPEN');
    expect(p.body.detail).toContain('payments');
    expect(p.headers['retry-after']).toBe('1');
    expect(() => resolveProblemOptions({ retryAfterJitter: 2 })).toThrow(/errors\.retryAfterJitter/);
    expect(() => resolveProblemOptions({ exposeMessages: 'yes' as unknown as boolean })).toThrow(
      /errors\.exposeMessages/,
    );
    expect(() => resolveProblemOptions({ typo: 1 } as never)).toThrow(/errors\.typo/);
  });
});
