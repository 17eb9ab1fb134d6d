/**
 * The surge: shoppers, driven by autocannon over loopback.
 *
 * Each shopper is one keep-alive connection making one request a second (autocannon's
 * `connectionRate: 1`): browsers read product pages, buyers check out. A few shoppers are there
 * the whole run; the surge's shoppers arrive in waves over `rampMs` and leave at `until`. Waves
 * start at spread-out instants, so their once-a-second requests interleave instead of all landing
 * on the same millisecond. A shopper waits for each answer, up to `timeoutS`, as a person would.
 */
import autocannon from 'autocannon';
import { seededRandom } from './world.js';

export interface SurgeProfile {
  /** Length of a run, ms. */
  durationMs: number;
  /** Shoppers present the whole run. */
  baseline: number;
  /** The surge's shoppers: how many, when they arrive (over `rampMs`, in `waves`) and leave. */
  surge: { shoppers: number; from: number; until: number; rampMs: number; waves: number };
  /** Share of shoppers who check out; the others browse product pages. */
  buyerShare: number;
  /** Products in the sale; shoppers favour the first ones (a few hot items). */
  products: number;
  /** How long a shopper waits for an answer, s. */
  timeoutS: number;
  /** When the payment provider, swamped by the whole sale, goes down (ms into the run). */
  brownout: { from: number; until: number };
}

/** About 25 s a run: two runs and the set-up take about a minute. */
export const fullSurge: SurgeProfile = {
  durationMs: 24_000,
  baseline: 40,
  surge: { shoppers: 600, from: 3_000, until: 19_000, rampMs: 2_000, waves: 20 },
  buyerShare: 0.15,
  products: 40,
  timeoutS: 3,
  brownout: { from: 9_000, until: 13_000 },
};

/** The same shape in 5 s a run (`--quick`, and the test). */
export const quickSurge: SurgeProfile = {
  durationMs: 5_000,
  baseline: 40,
  surge: { shoppers: 500, from: 500, until: 4_000, rampMs: 1_000, waves: 10 },
  buyerShare: 0.15,
  products: 40,
  timeoutS: 3,
  brownout: { from: 1_500, until: 2_500 },
};

export type ShopperKind = 'browse' | 'buy';

/** What the shoppers saw, per kind of request. */
export interface Observed {
  /** Latency of every answer, ms, in arrival order. */
  latencies: number[];
  /** Answers by status code. */
  statuses: Map<number, number>;
  /** 503 answers with a Retry-After header (load shed), by the error code in their body. */
  shed: Map<string, number>;
  /** Answers a response cache served (`Cache-Status: ...; hit`), without running the handler. */
  cacheHits: number;
  /** 503 answers without Retry-After (the store failed rather than shed). */
  unavailable: number;
  /** Latency of the shed answers, ms, by error code. */
  shedLatencies: Map<string, number[]>;
  /** Requests that got no answer: timed out (the shopper gave up) or a connection error. */
  timeouts: number;
  connectionErrors: number;
}

export interface SurgeResult {
  browse: Observed;
  buy: Observed;
  elapsedMs: number;
}

const observed = (): Observed => ({
  latencies: [],
  statuses: new Map(),
  shed: new Map(),
  cacheHits: 0,
  unavailable: 0,
  shedLatencies: new Map(),
  timeouts: 0,
  connectionErrors: 0,
});

interface Group {
  kind: ShopperKind;
  shoppers: number;
  startMs: number;
  endMs: number;
}

/** The groups of shoppers of a profile: baseline and surge waves, each split into browsers and buyers. */
export function groups(profile: SurgeProfile): Group[] {
  const out: Group[] = [];
  let buyers = 0;
  let total = 0;
  const split = (shoppers: number, startMs: number, endMs: number) => {
    // Cumulative rounding keeps the buyers' share exact over the whole run.
    total += shoppers;
    const buy = Math.round(total * profile.buyerShare) - buyers;
    buyers += buy;
    if (shoppers - buy > 0) out.push({ kind: 'browse', shoppers: shoppers - buy, startMs, endMs });
    if (buy > 0) out.push({ kind: 'buy', shoppers: buy, startMs, endMs });
  };
  // The baseline in four waves a quarter of a second apart, for the same interleaving.
  const base = profile.baseline;
  for (let i = 0; i < 4; i++) {
    split(Math.floor(base / 4) + (i < base % 4 ? 1 : 0), i * 250, profile.durationMs);
  }
  const { shoppers, from, until, rampMs, waves } = profile.surge;
  for (let i = 0; i < waves; i++) {
    const size = Math.floor(shoppers / waves) + (i < shoppers % waves ? 1 : 0);
    // Wave i arrives i/waves of the way through the ramp, plus a spread over the second so that
    // waves landing on whole seconds do not share an instant.
    const start = from + Math.round((rampMs * i) / waves + ((i * 137) % 1000) / waves);
    split(size, start, until);
  }
  return out;
}

/** Drives `profile` against the store at `url` and returns what its shoppers saw. */
export async function surge(url: string, profile: SurgeProfile): Promise<SurgeResult> {
  const result: SurgeResult = { browse: observed(), buy: observed(), elapsedMs: 0 };
  const start = performance.now();
  let shopper = 0;
  const runs = groups(profile).map(
    (group, index) =>
      new Promise<void>((resolve, reject) => {
        setTimeout(() => {
          const seen = result[group.kind];
          const random = seededRandom(1000 + index);
          // Hot items: the square of a uniform draw favours the first products.
          const pick = () => 1 + Math.floor(profile.products * random() ** 2);
          const request: autocannon.Request =
            group.kind === 'browse'
              ? { method: 'GET', setupRequest: (req) => ({ ...req, path: `/products/${pick()}` }) }
              : {
                  method: 'POST',
                  path: '/checkout',
                  headers: { 'content-type': 'application/json' },
                  setupRequest: (req) => ({
                    ...req,
                    body: JSON.stringify({ productId: pick(), customer: `shopper${++shopper}` }),
                  }),
                };
          // autocannon calls onResponse (status, body, headers) and then emits 'response'
          // (latency) for the same answer, synchronously: `shedCode` carries one to the other.
          let shedCode: string | undefined;
          request.onResponse = (status, body, _context, headers) => {
            if (String(headers?.['cache-status']).includes('; hit')) seen.cacheHits++;
            if (status !== 503) return;
            if (headers?.['retry-after'] === undefined) {
              seen.unavailable++;
              return;
            }
            shedCode = /"code":"(\w+)"/.exec(body)?.[1] ?? 'unknown';
            seen.shed.set(shedCode, (seen.shed.get(shedCode) ?? 0) + 1);
          };
          const instance = autocannon(
            {
              url,
              connections: group.shoppers,
              connectionRate: 1,
              // Half a second past a whole number of seconds: autocannon stops its connections at
              // the deadline, and a deadline on a whole second would cut off the answers to the
              // requests every shopper sends at that very moment.
              duration: Math.floor((group.endMs - group.startMs) / 1000) + 0.5,
              timeout: profile.timeoutS,
              requests: [request],
            },
            (error) => (error ? reject(error) : resolve()),
          );
          instance.on('response', (_client, statusCode, _bytes, latency) => {
            seen.latencies.push(latency);
            seen.statuses.set(statusCode, (seen.statuses.get(statusCode) ?? 0) + 1);
            if (shedCode !== undefined) {
              const latencies = seen.shedLatencies.get(shedCode) ?? [];
              latencies.push(latency);
              seen.shedLatencies.set(shedCode, latencies);
              shedCode = undefined;
            }
          });
          instance.on('reqError', (error) => {
            if (/timed out/.test(String(error?.message))) seen.timeouts++;
            else seen.connectionErrors++;
          });
        }, group.startMs);
      }),
  );
  await Promise.all(runs);
  result.elapsedMs = performance.now() - start;
  return result;
}
