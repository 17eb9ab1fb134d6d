import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { canonicalQuery, requestKey } from './cache-key.js';
import { ifNoneMatch, strongEtag } from './etag.js';
import { retryAfterSeconds } from './retry-after.js';

const token = fc.stringMatching(/^[a-z0-9_]{1,6}$/);
const param = fc.tuple(token, fc.option(token, { nil: undefined }));
const render = (pairs: [string, string | undefined][]) =>
  pairs.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join('&');
const noHeaders = () => undefined;

describe('cache key', () => {
  test.prop([fc.array(param, { minLength: 1, maxLength: 8 })])(
    'the key is independent of the order of distinct query parameters',
    (pairs) => {
      const distinct = [...new Map(pairs.map((p) => [p[0], p])).values()];
      const shuffled = [...distinct].reverse();
      expect(requestKey('GET', `/p?${render(distinct)}`, [], noHeaders)).toBe(
        requestKey('GET', `/p?${render(shuffled)}`, [], noHeaders),
      );
    },
  );

  test.prop([token, fc.array(token, { minLength: 2, maxLength: 4 })])(
    'values of a repeated parameter keep their order',
    (name, values) => {
      fc.pre(new Set(values).size === values.length);
      const forward = values.map((v) => `${name}=${v}`).join('&');
      const backward = [...values]
        .reverse()
        .map((v) => `${name}=${v}`)
        .join('&');
      expect(canonicalQuery(forward)).not.toBe(canonicalQuery(backward));
    },
  );

  test.prop([
    fc.array(fc.stringMatching(/^[a-z-]{1,8}$/), { maxLength: 3 }),
    fc.dictionary(fc.stringMatching(/^[a-z-]{1,8}$/), fc.string({ maxLength: 6 })),
    fc.dictionary(fc.stringMatching(/^[a-z-]{1,8}$/), fc.string({ maxLength: 6 })),
  ])('two requests share a key only when every varied header has the same (trimmed) value', (vary, a, b) => {
    const get = (h: Record<string, string>) => (name: string) =>
      Object.hasOwn(h, name) ? h[name] : undefined;
    const same = vary.every(
      (n) =>
        (Object.hasOwn(a, n) ? a[n]!.trim() : undefined) === (Object.hasOwn(b, n) ? b[n]!.trim() : undefined),
    );
    expect(requestKey('GET', '/x', vary, get(a)) === requestKey('GET', '/x', vary, get(b))).toBe(same);
  });

  test.prop([fc.webPath(), fc.webPath()])('different paths never share a key', (p1, p2) => {
    fc.pre(p1 !== p2 && !p1.includes('?') && !p2.includes('?'));
    expect(requestKey('GET', p1, [], noHeaders)).not.toBe(requestKey('GET', p2, [], noHeaders));
  });
});

describe('entity tags', () => {
  const tagList = fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/), { maxLength: 4 });

  test.prop([fc.uint8Array({ maxLength: 64 }), tagList, tagList, fc.boolean()])(
    "a body's strong ETag matches an If-None-Match that lists it anywhere, weak or strong",
    (body, before, after, weak) => {
      const etag = strongEtag(body);
      const list = [
        ...before.map((t) => `"${t}"`),
        weak ? `W/${etag}` : etag,
        ...after.map((t) => `W/"${t}"`),
      ];
      expect(ifNoneMatch(list.join(', '), etag)).toBe(true);
    },
  );

  test.prop([fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 64 })])(
    "a body's ETag never matches another body's",
    (a, b) => {
      fc.pre(Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0);
      expect(ifNoneMatch(strongEtag(b), strongEtag(a))).toBe(false);
    },
  );
});

describe('Retry-After', () => {
  test.prop([
    fc.double({ min: 0, max: 1e7, noNaN: true }),
    fc.double({ min: 0, max: 1, noNaN: true }),
    fc.double({ min: 0, max: 0.9999999, noNaN: true }),
  ])(
    'Retry-After is a whole number of seconds, at least 1, between the estimate and the estimate plus its jitter',
    (ms, jitter, r) => {
      const s = retryAfterSeconds(ms, jitter, () => r)!;
      expect(Number.isInteger(s)).toBe(true);
      expect(s).toBeGreaterThanOrEqual(Math.max(1, Math.ceil(ms / 1000)));
      expect(s).toBeLessThanOrEqual(
        Math.max(Math.ceil(ms / 1000), Math.ceil((Math.max(ms, 1000) / 1000) * (1 + jitter))),
      );
    },
  );

  test.prop([fc.double({ min: 0, max: 60_000, noNaN: true })])(
    'jitter spreads a burst over more than one second',
    (ms) => {
      const seen = new Set<number>();
      for (let i = 0; i < 100; i++) seen.add(retryAfterSeconds(ms, 0.5, () => i / 100)!);
      expect(seen.size).toBeGreaterThan(1);
    },
  );
});
