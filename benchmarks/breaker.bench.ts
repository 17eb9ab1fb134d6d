/**
 * Circuit breaker hot paths, beside cockatiel 3.2.1 and opossum 9 in the same process:
 * (a) closed-state overhead above a bare `await fn()`, (b) rejecting on an open circuit,
 * (c) registry lookup over 1000 keys (and a call through it).
 */
import {
  type CircuitBreakerPolicy,
  CircuitState as CockatielState,
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  handleAll,
  isBrokenCircuitError,
} from 'cockatiel';
import { LRUCache } from 'lru-cache';
import Opossum from 'opossum';
import {
  breakerRegistry,
  type CircuitBreaker,
  circuitBreaker,
  consecutive,
  isCircuitOpenError,
} from '../src/breaker/index.js';
import { type Bench, type BenchContext, type BenchRow, measure, row } from './harness.js';

const BENCH = 'breaker';
const KEYS = 1000;

/**
 * The protected function: an async no-op. It throws only while `failing` is set, which is how
 * the open-state case trips the breakers through their real path; sharing one function keeps
 * each library's call site seeing a single callee.
 */
let failing = false;
const boom = new Error('upstream down');
const upstream = async (): Promise<void> => {
  if (failing) throw boom;
};

const ours = () => circuitBreaker({ strategy: consecutive(5), halfOpenAfter: '1h' });
const cockatiel = () =>
  cockatielBreaker(handleAll, { halfOpenAfter: 3_600_000, breaker: new ConsecutiveBreaker(5) });
/** Like-for-like with ours and cockatiel: no per-call timeout. */
const opossum = () => new Opossum(upstream, { timeout: false, resetTimeout: 3_600_000 });
/** Opossum as most users run it: a 10 s timeout per call, a timer armed and cleared per call. */
const opossumDefault = () => new Opossum(upstream, { resetTimeout: 3_600_000 });

async function closedOverhead(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = 'closed: overhead over bare await';
  const b = ours();
  const c = cockatiel();
  const o = opossum();
  const od = opossumDefault();
  try {
    const m = await measure(ctx, BENCH, caseName, [
      {
        name: 'bare await',
        async run(n) {
          for (let i = 0; i < n; i++) await upstream();
        },
      },
      {
        name: 'buttress',
        async run(n) {
          for (let i = 0; i < n; i++) await b.execute(upstream);
        },
      },
      {
        name: 'cockatiel',
        async run(n) {
          for (let i = 0; i < n; i++) await c.execute(upstream);
        },
      },
      {
        name: 'opossum',
        async run(n) {
          for (let i = 0; i < n; i++) await o.fire();
        },
      },
      {
        name: 'opossum (10s timeout)',
        async run(n) {
          for (let i = 0; i < n; i++) await od.fire();
        },
      },
    ]);
    expect(b.state === 'closed' && b.stats().totalFailures === 0, 'buttress breaker left the closed state');
    expect(c.state === CockatielState.Closed, 'cockatiel breaker left the closed state');
    expect(o.closed && od.closed, 'opossum breaker left the closed state');
    const ourOverhead = m.overhead('buttress', 'bare await');
    return [
      row(
        BENCH,
        caseName,
        ['buttress', ourOverhead],
        ['cockatiel', m.overhead('cockatiel', 'bare await')],
        0.5,
      ),
      row(BENCH, caseName, ['buttress', ourOverhead], ['opossum', m.overhead('opossum', 'bare await')]),
      row(
        BENCH,
        caseName,
        ['buttress', ourOverhead],
        ['opossum (10s timeout)', m.overhead('opossum (10s timeout)', 'bare await')],
      ),
    ];
  } finally {
    o.shutdown();
    od.shutdown();
  }
}

async function openRejection(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = 'open: reject a call (await + catch)';
  const b = ours();
  const c = cockatiel();
  const o = opossum();
  try {
    failing = true;
    for (let i = 0; i < 5; i++) {
      await b.execute(upstream).catch(() => {});
      await c.execute(upstream).catch(() => {});
    }
    o.open(); // opossum opens on a failure percentage over a rolling window: open it by hand.
    failing = false;
    expect(b.state === 'open' && c.state === CockatielState.Open && o.opened, 'a breaker did not open');

    let rejected = 0;
    const m = await measure(ctx, BENCH, caseName, [
      {
        // The floor: what awaiting any rejected promise and catching it costs in Node itself.
        name: 'bare await of a rejection',
        async run(n) {
          for (let i = 0; i < n; i++) {
            try {
              await Promise.reject(boom);
            } catch (e) {
              if (e === boom) rejected++;
            }
          }
        },
      },
      {
        name: 'buttress',
        async run(n) {
          for (let i = 0; i < n; i++) {
            try {
              await b.execute(upstream);
            } catch (e) {
              if (isCircuitOpenError(e)) rejected++;
            }
          }
        },
      },
      {
        name: 'cockatiel',
        async run(n) {
          for (let i = 0; i < n; i++) {
            try {
              await c.execute(upstream);
            } catch (e) {
              if (isBrokenCircuitError(e)) rejected++;
            }
          }
        },
      },
      {
        name: 'opossum',
        async run(n) {
          for (let i = 0; i < n; i++) {
            try {
              await o.fire();
            } catch (e) {
              if ((e as { code?: string }).code === 'EOPENBREAKER') rejected++;
            }
          }
        },
      },
    ]);
    // Every call of every sample must have been rejected (warm-up calls add more).
    const calls = [...m.ops.values()].reduce((a, n) => a + n, 0);
    expect(rejected >= calls * ctx.rounds, 'some calls on an open circuit were not rejected');
    expect(
      b.state === 'open' && c.state === CockatielState.Open && o.opened,
      'a breaker left the open state',
    );
    return [
      row(BENCH, caseName, ['buttress', m.median('buttress')], ['cockatiel', m.median('cockatiel')]),
      row(BENCH, caseName, ['buttress', m.median('buttress')], ['opossum', m.median('opossum')]),
    ];
  } finally {
    failing = false;
    o.shutdown();
  }
}

/**
 * cockatiel and opossum have no keyed registry: the nearest thing a user writes is a `Map` from
 * key to a cockatiel breaker, created on first use. Ours is an LRU-bounded, idle-expiring
 * registry (lru-cache underneath), so raw lru-cache is shown too, as what the bound costs.
 */
async function registry(ctx: BenchContext): Promise<BenchRow[]> {
  const lookup = 'registry: get(key), 1000 keys';
  const call = 'registry: execute(key, fn) overhead, 1000 keys';
  if (!ctx.selected(lookup) && !ctx.selected(call)) return [];
  const keys = Array.from({ length: KEYS }, (_, i) => `upstream-${i}.internal:8080`);
  const reg = breakerRegistry({ create: () => ({ halfOpenAfter: '1m' }), maxKeys: KEYS });
  const map = new Map<string, CircuitBreakerPolicy>();
  const cockatielFor = (key: string): CircuitBreakerPolicy => {
    let policy = map.get(key);
    if (policy === undefined) {
      policy = cockatiel();
      map.set(key, policy);
    }
    return policy;
  };
  for (const k of keys) {
    reg.get(k);
    cockatielFor(k);
  }
  // The registry's own cache settings (keep in step with src/breaker/registry.ts), so the
  // difference is what the registry adds on top of lru-cache.
  const lru = new LRUCache<string, CircuitBreaker>({
    max: KEYS,
    ttl: 600_000,
    updateAgeOnGet: true,
    ttlAutopurge: false,
    ttlResolution: 0,
    perf: { now: () => Date.now() },
  });
  for (const k of keys) lru.set(k, reg.get(k));

  const rows: BenchRow[] = [];
  if (ctx.selected(lookup)) {
    const m = await measure(ctx, BENCH, lookup, [
      {
        name: 'buttress registry',
        run(n) {
          for (let i = 0, j = 0; i < n; i++, j = j + 1 === KEYS ? 0 : j + 1) {
            if (reg.get(keys[j]!) === undefined) throw new Error('missing');
          }
        },
      },
      {
        name: 'Map + cockatiel',
        run(n) {
          for (let i = 0, j = 0; i < n; i++, j = j + 1 === KEYS ? 0 : j + 1) {
            if (cockatielFor(keys[j]!) === undefined) throw new Error('missing');
          }
        },
      },
      {
        name: 'lru-cache get (ttl)',
        run(n) {
          for (let i = 0, j = 0; i < n; i++, j = j + 1 === KEYS ? 0 : j + 1) {
            if (lru.get(keys[j]!) === undefined) throw new Error('missing');
          }
        },
      },
    ]);
    expect(reg.size === KEYS && map.size === KEYS, 'a registry grew or shrank during lookups');
    rows.push(
      row(
        BENCH,
        lookup,
        ['buttress registry', m.median('buttress registry')],
        ['Map + cockatiel', m.median('Map + cockatiel')],
      ),
    );
  }

  if (ctx.selected(call)) {
    const m = await measure(ctx, BENCH, call, [
      {
        name: 'bare await',
        async run(n) {
          for (let i = 0, j = 0; i < n; i++, j = j + 1 === KEYS ? 0 : j + 1) {
            if (keys[j] === undefined) throw new Error('missing');
            await upstream();
          }
        },
      },
      {
        name: 'buttress registry',
        async run(n) {
          for (let i = 0, j = 0; i < n; i++, j = j + 1 === KEYS ? 0 : j + 1)
            await reg.execute(keys[j]!, upstream);
        },
      },
      {
        name: 'Map + cockatiel',
        async run(n) {
          for (let i = 0, j = 0; i < n; i++, j = j + 1 === KEYS ? 0 : j + 1)
            await cockatielFor(keys[j]!).execute(upstream);
        },
      },
    ]);
    rows.push(
      row(
        BENCH,
        call,
        ['buttress registry', m.overhead('buttress registry', 'bare await')],
        ['Map + cockatiel', m.overhead('Map + cockatiel', 'bare await')],
      ),
    );
  }
  await reg.close();
  return rows;
}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new Error(`breaker bench: ${message}`);
}

const bench: Bench = {
  name: BENCH,
  async run(ctx) {
    const rows: BenchRow[] = [];
    if (ctx.selected('closed: overhead over bare await')) rows.push(...(await closedOverhead(ctx)));
    if (ctx.selected('open: reject a call (await + catch)')) rows.push(...(await openRejection(ctx)));
    rows.push(...(await registry(ctx)));
    return rows;
  },
};

export default bench;
