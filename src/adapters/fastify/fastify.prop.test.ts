import { fc, test } from '@fast-check/vitest';
import Fastify from 'fastify';
import { expect } from 'vitest';
import { createCache } from '../../cache/cache.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { buttress } from './index.js';

// A request: a path, query parameters in some order, and the two headers the route varies on or not.
const request = fc.record({
  path: fc.constantFrom('/a', '/b'),
  query: fc.uniqueArray(fc.tuple(fc.constantFrom('x', 'y', 'z'), fc.constantFrom('1', '2')), {
    selector: ([k]) => k,
    maxLength: 3,
  }),
  lang: fc.option(fc.constantFrom('en', 'fr'), { nil: undefined }),
  trace: fc.constantFrom('t1', 't2'),
  wait: fc.constantFrom(0, 0, 0, 30_000),
});

test.prop([fc.array(request, { minLength: 1, maxLength: 30 })], { numRuns: 40 })(
  "a cached answer is always the handler's answer to an equivalent request, and each equivalence class is filled once per TTL",
  async (requests) => {
    const clock = new FakeClock();
    const app = Fastify();
    await app.register(buttress, { cache: createCache({ clock }), clock });
    let runs = 0;
    // The answer depends on the path, the query (as parsed, so not on its order) and Accept-Language,
    // never on X-Trace: the route varies on accept-language only.
    const answer = (path: string, query: Record<string, string>, lang: string | undefined) =>
      JSON.stringify({ path, query: Object.fromEntries(Object.entries(query).sort()), lang: lang ?? null });
    app.get(
      '/:p',
      { config: { buttress: { cache: { ttl: '1m', vary: ['accept-language'] } } } },
      async (req, reply) => {
        runs++;
        reply.type('application/json');
        return answer(
          req.url.split('?')[0]!,
          req.query as Record<string, string>,
          req.headers['accept-language'],
        );
      },
    );
    await app.ready();
    const filled = new Map<string, number>(); // class -> fill time
    let expectedRuns = 0;
    try {
      for (const r of requests) {
        clock.advance(r.wait);
        const qs = r.query.map(([k, v]) => `${k}=${v}`).join('&');
        const res = await app.inject({
          url: qs ? `${r.path}?${qs}` : r.path,
          headers: { ...(r.lang ? { 'accept-language': r.lang } : {}), 'x-trace': r.trace },
        });
        const query = Object.fromEntries(r.query);
        expect(res.statusCode).toBe(200);
        expect(res.body).toBe(answer(r.path, query, r.lang));
        const cls = `${r.path}|${JSON.stringify(Object.entries(query).sort())}|${r.lang}`;
        const at = filled.get(cls);
        if (at === undefined || clock.now() - at >= 60_000) {
          filled.set(cls, clock.now());
          expectedRuns++;
        }
        expect(runs).toBe(expectedRuns);
      }
    } finally {
      await app.close();
    }
  },
);
