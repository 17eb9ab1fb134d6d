import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fc, test } from '@fast-check/vitest';
import express from 'express';
import { describe, expect } from 'vitest';
import { createCache } from '../../cache/cache.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { responseCache } from './index.js';

// Random request sequences through a real Express server: what the cache answers is always what
// the handler answers for that request, and what one client was given privately never reaches
// another.

const request = fc.record({
  id: fc.constantFrom('1', '2'),
  params: fc.shuffledSubarray(['a=1', 'b=2', 'c=3']),
  lang: fc.constantFrom('en', 'fr', undefined),
  // The handler sets a cookie when it runs for this request (a login, say). The header is not in
  // the key, so such a request may still be answered from the cache: what must never happen is a
  // cookie reaching any request but the one the handler ran for.
  login: fc.boolean(),
  /** ms the clock moves before the request. */
  wait: fc.constantFrom(0, 0, 400, 1_200),
});

type Req = typeof request extends fc.Arbitrary<infer T> ? T : never;

/** What the handler answers for a request: a function of what the route's key covers, and the clock. */
function expected(r: Req): { id: string; q: string[]; lang: string | null } {
  // fetch sends `accept-language: *` when none is given.
  return { id: r.id, q: [...r.params].sort(), lang: r.lang ?? '*' };
}

describe('responseCache through Express', () => {
  test.prop([fc.array(request, { minLength: 1, maxLength: 12 })], { numRuns: 25 })(
    'a cached answer is always the handler’s answer for that key, never older than the TTL, and never one that set a cookie',
    async (requests) => {
      const clock = new FakeClock();
      const cache = createCache({ clock, namespace: 'prop' });
      let version = 0;
      let sessions = 0;
      const app = express();
      app.get(
        '/items/:id',
        responseCache({ cache, clock, ttl: '1s', vary: ['accept-language'] }),
        (req, res) => {
          const q = Object.entries(req.query)
            .map(([k, v]) => `${k}=${String(v)}`)
            .sort();
          if (req.headers['x-login'] === '1') res.cookie('sid', `s${++sessions}`);
          res.json({
            id: req.params.id,
            q,
            lang: req.headers['accept-language'] ?? null,
            version: ++version,
            at: clock.now(),
          });
        },
      );
      const server = app.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const cookies = new Set<string>();
      try {
        for (const r of requests) {
          clock.advance(r.wait);
          const headers: Record<string, string> = {};
          if (r.lang !== undefined) headers['accept-language'] = r.lang;
          if (r.login) headers['x-login'] = '1';
          const res = await fetch(`${base}/items/${r.id}${r.params.length ? `?${r.params.join('&')}` : ''}`, {
            headers,
          });
          const body = (await res.json()) as ReturnType<typeof expected> & { at: number };
          expect(body).toMatchObject(expected(r));
          // Fresh means within the TTL of when the handler produced it.
          expect(clock.now() - body.at).toBeLessThan(1_000);
          const cookie = res.headers.get('set-cookie');
          if (cookie !== null) {
            expect(r.login).toBe(true);
            expect(cookies.has(cookie)).toBe(false);
            cookies.add(cookie);
          }
        }
      } finally {
        server.closeAllConnections();
        server.close();
        await cache.close();
      }
    },
    30_000,
  );
});
