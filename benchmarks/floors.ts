/**
 * The floors: for each benchmark row that guards a hot path, the worst `ratio = ours / anchor` a
 * run may show. `npm run bench` (and so CI's quick pass in `.ci/run`) exits non-zero when a row
 * crosses its floor, and when an unfiltered run finds a floor whose row no bench produced any more
 * (a renamed case must take its floor along).
 *
 * How the numbers were set: several runs on the project's 2-core machine while other jobs shared
 * it, `--quick` (what CI runs: 7 rounds of 2 ms samples) and full; a floor sits above the worst
 * ratio those runs showed, with room for a noisier day, and below the ratio a real regression of
 * the path would give (each `basis` says which runs and what it catches). Rows measured against a
 * time budget rather than a library (`200 ns budget`) move with the machine's load, so their
 * floors are wider. Rows left out (the noise floors, the "for information" mixes, the absolute
 * memory figures against a bare lru-cache) inform; they do not gate.
 *
 * A new benchmark (the shard router's, an adapter's) adds its rows here once a few runs have shown
 * where they sit; benchmarks/README.md lists every floor beside the last full run's ratio.
 */

/** One row of the table: which benchmark row it guards, and its bound. */
export interface Floor {
  /** The bench module (`breaker`, `cache`, ...), as in the results. */
  readonly bench: string;
  /** The case, exactly as the bench names it. */
  readonly case: string;
  /** The contender measured (`buttress`, `buttress getOrSet`, ...). */
  readonly ours: string;
  /** The contender it is compared with. */
  readonly anchor: string;
  /** The run fails when the ratio is above this (rows where lower is better: almost all). */
  readonly max?: number;
  /** The run fails when the ratio is below this (rows where higher is better: a share). */
  readonly min?: number;
  /** What the runs here showed, and what crossing it would mean. */
  readonly basis: string;
}

export const floors: readonly Floor[] = [
  // -- breaker -------------------------------------------------------------------------------
  {
    bench: 'breaker',
    case: 'closed: overhead over bare await',
    ours: 'buttress',
    anchor: 'cockatiel',
    max: 0.5,
    basis:
      'runs here 0.23 to 0.29; the issue goal. Losing the fast path (an async frame per call) gives ~0.9',
  },
  {
    bench: 'breaker',
    case: 'open: reject a call (await + catch)',
    ours: 'buttress',
    anchor: 'cockatiel',
    max: 0.7,
    basis: 'runs here 0.37 to 0.44; a rejection that captured a stack trace again would give ~1',
  },
  {
    bench: 'breaker',
    case: 'registry: execute(key, fn) overhead, 1000 keys',
    ours: 'buttress registry',
    anchor: 'Map + cockatiel',
    max: 1.8,
    basis:
      'runs here 0.95 to 1.21 (an unbounded Map is the floor, not a peer); a second lookup per call gives ~2',
  },
  // -- bulkhead ------------------------------------------------------------------------------
  {
    bench: 'bulkhead',
    case: 'acquire/release: overhead over bare await',
    ours: 'buttress',
    anchor: 'cockatiel',
    max: 1.2,
    basis: "runs here 0.44 to 0.77; the goal is 1. An async frame per call (cockatiel's design) gives ~1.5",
  },
  {
    bench: 'bulkhead',
    case: 'queued: bursts of 100 calls, limit 10, per call',
    ours: 'buttress',
    anchor: 'cockatiel',
    max: 0.7,
    basis: 'runs here 0.33 to 0.36; an Array.shift() queue or a promise per slot hand-off gives ~1',
  },
  // -- cache ---------------------------------------------------------------------------------
  {
    bench: 'cache',
    case: 'getOrSet L1 hit (buttress)',
    ours: 'buttress getOrSet',
    anchor: '300 ns budget',
    max: 1,
    basis: 'runs here 0.30 (~90 ns); the issue goal, 300 ns per awaited hit, with a 3x margin for load',
  },
  {
    bench: 'cache',
    case: 'getOrSet L1 hit (anchors)',
    ours: 'buttress getOrSet',
    anchor: 'bentocache getOrSet',
    max: 0.05,
    basis: 'runs here 0.02; the issue goal (20x bentocache). An allocation per hit doubles ours',
  },
  {
    bench: 'cache',
    case: 'getOrSet L2 hit, 100 in flight',
    ours: 'buttress getOrSet',
    anchor: 'bentocache getOrSet',
    max: 0.8,
    basis: 'runs here 0.44; a lost read batching (a round trip per key) gives ~1.5',
  },
  {
    bench: 'cache',
    case: 'getOrSet L2 hit, 100 in flight',
    ours: 'buttress getOrSet',
    anchor: 'ioredis GET',
    max: 2,
    basis: 'runs here 1.2 to 1.4 (goal 1.25, met in quiet runs only); a second round trip per hit gives > 2',
  },
  {
    bench: 'cache',
    case: 'write-through set, 100 in flight',
    ours: 'buttress set',
    anchor: 'bentocache set',
    max: 1.5,
    basis: 'runs here 0.93; the goal is 1. A second script call per set gives ~1.8',
  },
  {
    bench: 'cache',
    case: 'memory: heap bytes per L1 entry',
    ours: 'buttress',
    anchor: 'bentocache (serializes, default)',
    max: 0.9,
    basis: 'runs here 0.60 (248 B against 410 B); a second object per entry gives ~0.9',
  },
  // -- pool ----------------------------------------------------------------------------------
  {
    bench: 'pool',
    case: 'routed query: primary-key lookup, sequential',
    ours: 'buttress',
    anchor: 'pg.Pool (mean of 2)',
    max: 1.5,
    basis:
      'runs here 0.65 to 1.02, while two identical raw pools differ by up to 1.4 in a quick run: only a gross regression shows',
  },
  {
    bench: 'pool',
    case: 'routed query: SELECT 1, 50 concurrent',
    ours: 'buttress',
    anchor: 'pg.Pool (mean of 2)',
    max: 1.5,
    basis: 'runs here 0.74 to 1.12; the noise floor (two raw pools) reaches 1.1 to 1.4',
  },
  {
    bench: 'pool',
    case: 'acquire/release, sequential',
    ours: 'buttress',
    anchor: 'pg.Pool',
    max: 2.5,
    basis:
      "runs here 1.03 (full) to 1.6 (quick, 1000 calls a sample); a timer per checkout (pg-pool's own timeout) gives ~2 in full runs",
  },
  {
    bench: 'pool',
    case: 'mixed 90% reads / 10% writes, read-your-writes lsn, 50 sessions: reads on the replica',
    ours: 'reads on replica',
    anchor: 'all reads',
    min: 0.4,
    basis:
      'a share, higher is better: runs here 0.76 to 0.77. Below 0.4 the replica is being skipped (lag tracking or routing broken)',
  },
  // -- queue ---------------------------------------------------------------------------------
  {
    bench: 'queue',
    case: 'enqueue: add, 100 in flight',
    ours: 'buttress',
    anchor: 'bullmq',
    max: 0.4,
    basis: 'runs here 0.13; losing the per-tick coalescing (a script call per add) gives ~0.6',
  },
  {
    bench: 'queue',
    case: 'enqueue: addBulk of 1000',
    ours: 'buttress',
    anchor: 'bullmq',
    max: 0.4,
    basis: 'runs here 0.13',
  },
  {
    bench: 'queue',
    case: 'end-to-end: addBulk + drain, c=50',
    ours: 'buttress',
    anchor: 'bullmq',
    max: 0.333,
    basis: 'runs here 0.11; the issue goal (3x BullMQ jobs/s). A round trip per acknowledgement gives ~0.5',
  },
  // -- retry ---------------------------------------------------------------------------------
  {
    bench: 'retry',
    case: 'timeout: overhead over bare await',
    ours: 'buttress (aggressive)',
    anchor: 'cockatiel (aggressive)',
    max: 0.1,
    basis: "runs here 0.01; a timer or an AbortController per call (cockatiel's design) gives ~1",
  },
  {
    bench: 'retry',
    case: 'timeout: overhead over bare await',
    ours: 'buttress (aggressive)',
    anchor: '200 ns budget',
    max: 2,
    basis:
      'runs here 0.60 to 0.92, up to 1.7 under heavy load (341 ns); the goal is 1. A timer per call gives ~5',
  },
  {
    bench: 'retry',
    case: 'wrap(retry, breaker, timeout): overhead',
    ours: 'buttress',
    anchor: 'cockatiel',
    max: 0.05,
    basis:
      "runs here 0.02 to 0.03; the issue goal (20x). Creating the timeout's signal on the way down gives ~0.4",
  },
  {
    bench: 'retry',
    case: 'retry: overhead over bare await',
    ours: 'buttress',
    anchor: 'cockatiel',
    max: 0.6,
    basis: 'runs here 0.30 to 0.33; an async frame per attempt gives ~1',
  },
];
