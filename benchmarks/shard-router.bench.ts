/**
 * Shard lookup beside hashring 3.2 (the ketama ring most Node.js sharding code uses) in the same
 * process: (a) the time of one lookup, key -> node, at 4 to 256 nodes; (b) how evenly keys spread
 * over the nodes (max/mean node load).
 *
 * Ours: `router.shardFor(key)`, a router of 4096 logical shards over N nodes (an even map). Theirs:
 * `new HashRing(nodes).get(key)` with its defaults (ketama: 160 points per node, its 5000-entry
 * LRU in front). Keys are `user:<n>` strings, cycled from a pool of 65,536: more than hashring's LRU
 * holds, so its lookups mostly miss the cache, as lookups over a large user base do; a second
 * hashring row cycles 1,000 keys, all cache hits, for information.
 */
import HashRing from 'hashring';
import { jumpHash } from '../src/shard-router/hash/jump.js';
import { createKetamaRing } from '../src/shard-router/hash/ketama.js';
import { createRendezvous } from '../src/shard-router/hash/rendezvous.js';
import { createShardRouter, type ShardRouter } from '../src/shard-router/router.js';
import { evenShardMap } from '../src/shard-router/shard-map.js';
import { type Bench, type BenchContext, type BenchRow, measure, row } from './harness.js';

const BENCH = 'shard-router';
const LOGICAL = 4096;
const POOL = 65_536;
const HOT = 1_000;
const BUDGET_NS = 150;
const NODE_COUNTS = [4, 16, 64, 256] as const;

const KEYS = Array.from({ length: POOL }, (_, i) => `user:${(i * 2_654_435_761) % 1e10}`);
const INT_KEYS = Array.from({ length: POOL }, (_, i) => 1_000_000 + i * 7919);

const names = (n: number) => Array.from({ length: n }, (_, i) => `10.0.${i >> 8}.${i & 255}:6379`);

function router(n: number): ShardRouter<string> {
  const nodes = names(n);
  return createShardRouter({
    logicalShards: LOGICAL,
    nodes: Object.fromEntries(nodes.map((name) => [name, name])),
    map: evenShardMap(LOGICAL, nodes),
  });
}

let sink = 0;
/**
 * Where each contender's walk through the key pool is: it carries on from one sample to the next.
 * Restarting at key 0 every sample would hand hashring the same first keys each time, all of them
 * in its LRU after the first sample.
 */
const cursors = new Map<string, number>();
function take(name: string, count: number): number {
  const start = cursors.get(name) ?? 0;
  cursors.set(name, (start + count) % POOL);
  return start;
}

async function lookup(ctx: BenchContext, n: number): Promise<BenchRow[]> {
  const caseName = `shardFor: key -> node, ${n} nodes`;
  const r = router(n);
  const ring = new HashRing(names(n));
  const ours = createKetamaRing(names(n));
  const contenders = [
    {
      name: 'buttress shardFor',
      run(count: number) {
        const start = take('buttress shardFor', count);
        for (let i = start; i < start + count; i++) sink += r.shardFor(KEYS[i & (POOL - 1)]!).logical;
      },
    },
    {
      name: 'buttress shardFor (integer keys)',
      run(count: number) {
        const start = take('buttress shardFor (integer keys)', count);
        for (let i = start; i < start + count; i++) sink += r.shardFor(INT_KEYS[i & (POOL - 1)]!).logical;
      },
    },
    {
      name: 'hashring get',
      run(count: number) {
        const start = take('hashring get', count);
        for (let i = start; i < start + count; i++) sink += ring.get(KEYS[i & (POOL - 1)]!).length;
      },
    },
    {
      name: 'hashring get (hot keys, LRU hits)',
      run(count: number) {
        for (let i = 0; i < count; i++) sink += ring.get(KEYS[i % HOT]!).length;
      },
    },
    {
      name: 'buttress ketama ring get',
      run(count: number) {
        const start = take('buttress ketama ring get', count);
        for (let i = start; i < start + count; i++) sink += ours.get(KEYS[i & (POOL - 1)]!).length;
      },
    },
    {
      name: 'buttress jumpHash',
      run(count: number) {
        const start = take('buttress jumpHash', count);
        for (let i = start; i < start + count; i++) sink += jumpHash(KEYS[i & (POOL - 1)]!, n);
      },
    },
  ];
  if (n <= 16) {
    // O(nodes) per lookup: shown where it is meant to be used, on small node sets.
    const rv = createRendezvous(names(n));
    contenders.push({
      name: 'buttress rendezvous get',
      run(count: number) {
        const start = take('buttress rendezvous get', count);
        for (let i = start; i < start + count; i++) sink += rv.get(KEYS[i & (POOL - 1)]!).length;
      },
    });
  }
  const m = await measure(ctx, BENCH, caseName, contenders);
  // Sanity: the router answers what its map says, and the two rings agree (the same placement).
  for (let i = 0; i < 200; i++) {
    const key = KEYS[i * 97]!;
    const location = r.shardFor(key);
    check(location.node === r.map.nodeOf(location.logical), `shardFor(${key}) disagrees with the map`);
    check(ours.get(key) === ring.get(key), `the ketama rings disagree on ${key}`);
  }
  const ns = m.median('buttress shardFor');
  return [
    row(BENCH, caseName, ['buttress shardFor', ns], ['hashring get', m.median('hashring get')], 0.1),
    row(BENCH, caseName, ['buttress shardFor', ns], [`budget ${BUDGET_NS} ns`, BUDGET_NS], 1),
  ];
}

/**
 * Max/mean keys per node. "Key space" is exact: the share of all hash values each node owns (for
 * the router, its logical shards over 4096; for the ring, the arcs before its points), i.e. the
 * load a uniform hash converges to. "Keys counted" places `count` real keys, sampling noise
 * included. The ring's keys are placed with our ketama ring, which places exactly as hashring's
 * (checked in the lookup case and in the tests) at a fifth of the cost.
 */
function balance(ctx: BenchContext): BenchRow[] {
  const caseName = 'balance: max/mean node load';
  const count = ctx.quick ? 1_000_000 : 4_000_000;
  const rows: BenchRow[] = [];
  const medians: Record<string, number> = {};
  for (const n of NODE_COUNTS) {
    const r = router(n);
    const ringShare = ketamaShares(names(n));
    const mapShare = names(n).map((name) => r.map.shardsOf(name).length / LOGICAL);
    medians[`buttress, key space, ${n} nodes`] = maxOverMean(mapShare);
    medians[`hashring, key space, ${n} nodes`] = maxOverMean(ringShare);
  }
  const n = 256;
  const r = router(n);
  const ring = createKetamaRing(names(n));
  const index = new Map(names(n).map((name, i) => [name, i]));
  const ours = new Float64Array(n);
  const theirs = new Float64Array(n);
  for (let i = 0; i < count; i++) {
    const key = `user:${i}`;
    ours[index.get(r.shardFor(key).node)!]!++;
    theirs[index.get(ring.get(key))!]!++;
  }
  medians[`buttress, ${count} keys counted, 256 nodes`] = maxOverMean(ours);
  medians[`hashring, ${count} keys counted, 256 nodes`] = maxOverMean(theirs);
  ctx.record({
    bench: BENCH,
    case: `${caseName} (ratios, not ns)`,
    rounds: 1,
    ops: Object.fromEntries(Object.keys(medians).map((k) => [k, k.includes('counted') ? count : 1])),
    median_ns: Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
    iqr_ns: Object.fromEntries(Object.keys(medians).map((k) => [k, 0])),
  });
  const keysCounted = medians[`buttress, ${count} keys counted, 256 nodes`]!;
  rows.push(
    row(BENCH, `${caseName}, 256 nodes, sample of keys`, ['buttress', keysCounted], ['budget 1.05', 1.05], 1),
    row(
      BENCH,
      `${caseName}, 256 nodes, sample of keys`,
      ['buttress', keysCounted],
      ['hashring', medians[`hashring, ${count} keys counted, 256 nodes`]!],
    ),
  );
  for (const nodes of NODE_COUNTS) {
    rows.push(
      row(
        BENCH,
        `${caseName}, key space, ${nodes} nodes`,
        ['buttress', medians[`buttress, key space, ${nodes} nodes`]!],
        ['hashring', medians[`hashring, key space, ${nodes} nodes`]!],
      ),
    );
  }
  return rows;
}

/** Each server's share of the 2^32 ring: the arc ending at each of its points. */
function ketamaShares(servers: readonly string[]): number[] {
  const ring = new HashRing(servers as string[]) as unknown as { ring: { value: number; server: string }[] };
  const points = ring.ring;
  const share = new Map(servers.map((s) => [s, 0]));
  for (let i = 0; i < points.length; i++) {
    const start = i === 0 ? points[points.length - 1]!.value - 2 ** 32 : points[i - 1]!.value;
    const p = points[i]!;
    share.set(p.server, share.get(p.server)! + (p.value - start) / 2 ** 32);
  }
  return [...share.values()];
}

function maxOverMean(values: ArrayLike<number>): number {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    max = Math.max(max, values[i]!);
    sum += values[i]!;
  }
  return max / (sum / values.length);
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`shard-router bench: ${message}`);
}

const bench: Bench = {
  name: BENCH,
  async run(ctx) {
    const rows: BenchRow[] = [];
    for (const n of NODE_COUNTS) {
      if (ctx.selected(`shardFor: key -> node, ${n} nodes`)) rows.push(...(await lookup(ctx, n)));
    }
    if (ctx.selected('balance: max/mean node load')) rows.push(...balance(ctx));
    if (sink === 0.5) console.log(sink); // keeps the loops' results alive
    return rows;
  },
};

export default bench;
