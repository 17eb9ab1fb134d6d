/**
 * buttress/pool beside raw `pg.Pool` (pg 8 on pg-pool 3), in the same process, against the local
 * PostgreSQL (127.0.0.1:5432) and its streaming replica (5433) from `scripts/services.sh --replica`:
 *
 * - a routed `cluster.query()` (classification, routing, the gate, typed errors) against
 *   `pool.query()` on the same server with the same `max`: `SELECT 1` and a primary-key lookup,
 *   one caller at a time and 50 at once (so 40 wait for one of the 10 connections);
 * - checking a connection out and back in: `cluster.connect()` + `release()` against
 *   `pool.connect()` + `release()`;
 * - the share of reads a mixed read/write load with read-your-writes (`'lsn'`) still sends to the
 *   replica, each of 50 users reading through its own session.
 *
 * A query is a round trip to a server on the same 2-core machine, tens of microseconds, so a
 * sample is at least 1000 of them (the harness's floor) and a full run takes about a minute.
 */
import pg from 'pg';
import { createPgCluster, type PgCluster } from '../src/pool/index.js';
import { type Bench, type BenchContext, type BenchRow, measure, quantile, row } from './harness.js';

const BENCH = 'pool';
const PRIMARY = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const REPLICA = { host: '127.0.0.1', port: 5433, user: 'postgres', database: 'test' };
const MAX = 10;
const CONCURRENCY = 50;
const ROWS = 10_000;
/** Throughput at least 0.95 of raw pg-pool's: time per query at most 1 / 0.95 of it. */
const THROUGHPUT_GOAL = 1.053;
const ACQUIRE_GOAL = 1.2;
const TABLE = `bench_pool_${process.pid}`;
const SELECT_1 = 'SELECT 1';
const BY_ID = `SELECT id, v FROM ${TABLE} WHERE id = $1`;

/** Spreads primary-key lookups over the table without a random number per call. */
const idOf = (i: number): number => ((i * 7_919) % ROWS) + 1;

async function setupTable(): Promise<void> {
  const client = new pg.Client(PRIMARY);
  await client.connect();
  try {
    await client.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await client.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, v int NOT NULL)`);
    await client.query(`INSERT INTO ${TABLE} SELECT g, 0 FROM generate_series(1, ${ROWS}) g`);
    await client.query(`ANALYZE ${TABLE}`);
  } finally {
    await client.end();
  }
  // The mixed case reads it on the replica.
  const replica = new pg.Client(REPLICA);
  await replica.connect();
  try {
    for (let i = 0; ; i++) {
      const { rows } = await replica.query('SELECT to_regclass($1) AS t', [TABLE]);
      if (rows[0].t !== null) break;
      if (i > 500) throw new Error(`pool bench: ${TABLE} did not reach the replica on 5433`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    await replica.end();
  }
}

async function dropTable(): Promise<void> {
  const client = new pg.Client(PRIMARY);
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${TABLE}`).finally(() => client.end());
}

/** ns per query of raw and ours for one statement, sequential or 50 concurrent. */
async function queries(
  ctx: BenchContext,
  raws: readonly [pg.Pool, pg.Pool],
  ours: PgCluster,
  caseName: string,
  statement: 'select1' | 'pk',
  concurrent: boolean,
): Promise<BenchRow[]> {
  const [raw, raw2] = raws;
  const m = await measure(
    ctx,
    BENCH,
    caseName,
    concurrent
      ? [
          {
            name: 'pg.Pool',
            async run(n) {
              let next = 0;
              const worker = async () => {
                while (next < n) {
                  const i = next++;
                  if (statement === 'select1') await raw.query(SELECT_1);
                  else await raw.query(BY_ID, [idOf(i)]);
                }
              };
              const workers: Promise<void>[] = [];
              for (let w = 0; w < CONCURRENCY; w++) workers.push(worker());
              await Promise.all(workers);
            },
          },
          {
            name: 'pg.Pool #2',
            async run(n) {
              let next = 0;
              const worker = async () => {
                while (next < n) {
                  const i = next++;
                  if (statement === 'select1') await raw2.query(SELECT_1);
                  else await raw2.query(BY_ID, [idOf(i)]);
                }
              };
              const workers: Promise<void>[] = [];
              for (let w = 0; w < CONCURRENCY; w++) workers.push(worker());
              await Promise.all(workers);
            },
          },
          {
            name: 'buttress',
            async run(n) {
              let next = 0;
              const worker = async () => {
                while (next < n) {
                  const i = next++;
                  if (statement === 'select1') await ours.query(SELECT_1);
                  else await ours.query(BY_ID, [idOf(i)]);
                }
              };
              const workers: Promise<void>[] = [];
              for (let w = 0; w < CONCURRENCY; w++) workers.push(worker());
              await Promise.all(workers);
            },
          },
        ]
      : [
          {
            name: 'pg.Pool',
            async run(n) {
              if (statement === 'select1') for (let i = 0; i < n; i++) await raw.query(SELECT_1);
              else for (let i = 0; i < n; i++) await raw.query(BY_ID, [idOf(i)]);
            },
          },
          {
            name: 'pg.Pool #2',
            async run(n) {
              if (statement === 'select1') for (let i = 0; i < n; i++) await raw2.query(SELECT_1);
              else for (let i = 0; i < n; i++) await raw2.query(BY_ID, [idOf(i)]);
            },
          },
          {
            name: 'buttress',
            async run(n) {
              if (statement === 'select1') for (let i = 0; i < n; i++) await ours.query(SELECT_1);
              else for (let i = 0; i < n; i++) await ours.query(BY_ID, [idOf(i)]);
            },
          },
        ],
  );
  // Each pool talks to its own server backends, and on a busy 2-core machine where a backend
  // gets scheduled moves a sub-100 µs round trip by 10% or more. So the anchor is the mean of two
  // identical raw pools, round by round, and a second row shows how far two identical pools
  // differ: the noise floor of the case.
  const a = m.samples.get('pg.Pool')!;
  const b = m.samples.get('pg.Pool #2')!;
  const anchor = quantile(
    a.map((x, k) => (x + b[k]!) / 2),
    0.5,
  );
  return [
    row(
      BENCH,
      caseName,
      ['buttress', m.median('buttress')],
      ['pg.Pool (mean of 2)', anchor],
      THROUGHPUT_GOAL,
    ),
    row(
      BENCH,
      `${caseName} (noise floor)`,
      ['pg.Pool #2', m.median('pg.Pool #2')],
      ['pg.Pool', m.median('pg.Pool')],
    ),
  ];
}

async function acquireRelease(ctx: BenchContext, raw: pg.Pool, ours: PgCluster): Promise<BenchRow[]> {
  const caseName = 'acquire/release, sequential';
  const m = await measure(ctx, BENCH, caseName, [
    {
      name: 'pg.Pool',
      async run(n) {
        for (let i = 0; i < n; i++) {
          const client = await raw.connect();
          client.release();
        }
      },
    },
    {
      name: 'buttress',
      async run(n) {
        for (let i = 0; i < n; i++) {
          const client = await ours.connect();
          client.release();
        }
      },
    },
  ]);
  return [
    row(BENCH, caseName, ['buttress', m.median('buttress')], ['pg.Pool', m.median('pg.Pool')], ACQUIRE_GOAL),
  ];
}

/** A small deterministic PRNG (mulberry32), so every run draws the same mix. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * 50 users, each with its own session, for `ms`: 10% of operations update the user's own row,
 * 90% read (half the user's own row, half another's), every read through the session. Checks
 * that no read of one's own row is older than one's last write; returns the routing counters.
 */
async function mixed(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = 'mixed 90% reads / 10% writes, read-your-writes lsn, 50 sessions: reads on the replica';
  const cluster = createPgCluster({
    Pool: pg.Pool,
    primary: { ...PRIMARY, max: MAX },
    replicas: [{ ...REPLICA, max: MAX }],
    readYourWrites: 'lsn',
    healthCheckInterval: '200ms',
  });
  try {
    await cluster.checkHealth();
    const ms = ctx.quick ? 1_000 : 4_000;
    const until = performance.now() + ms;
    let operations = 0;
    const workers: Promise<void>[] = [];
    for (let user = 1; user <= CONCURRENCY; user++) {
      workers.push(
        (async () => {
          const random = prng(user);
          const session = cluster.session();
          let mine = 0;
          while (performance.now() < until) {
            const draw = random();
            operations++;
            if (draw < 0.1) {
              const { rows } = await session.query(
                `UPDATE ${TABLE} SET v = v + 1 WHERE id = $1 RETURNING v`,
                [user],
              );
              mine = rows[0].v;
            } else if (draw < 0.55) {
              const { rows } = await session.query(`SELECT v FROM ${TABLE} WHERE id = $1`, [user]);
              if (rows[0].v < mine)
                throw new Error(`pool bench: user ${user} read ${rows[0].v} after writing ${mine}`);
            } else {
              await session.query(`SELECT v FROM ${TABLE} WHERE id = $1`, [idOf(Math.floor(draw * ROWS))]);
            }
          }
        })(),
      );
    }
    await Promise.all(workers);
    const { routing, replicas } = cluster.stats();
    if (routing.failovers !== 0)
      throw new Error(`pool bench: ${routing.failovers} failovers in the mixed case`);
    const share = routing.readsOnReplica / routing.reads;
    console.log(`\n${BENCH} / ${caseName}`);
    console.log(
      `  ${operations} operations in ${ms} ms (${Math.round((operations / ms) * 1_000)}/s); ` +
        `${routing.reads} reads: ${routing.readsOnReplica} on the replica (${(share * 100).toFixed(1)}%), ` +
        `${routing.rywFallbacks} kept on the primary by read-your-writes; replica lag ${replicas[0]?.lagMs ?? '?'} ms`,
    );
    // Not a timing: the row's two numbers are counts, and its ratio is the share offloaded.
    return [row(BENCH, caseName, ['reads on replica', routing.readsOnReplica], ['all reads', routing.reads])];
  } finally {
    await cluster.end();
  }
}

const CASES = {
  select1: 'routed query: SELECT 1, sequential',
  pk: 'routed query: primary-key lookup, sequential',
  select1Concurrent: `routed query: SELECT 1, ${CONCURRENCY} concurrent`,
  pkConcurrent: `routed query: primary-key lookup, ${CONCURRENCY} concurrent`,
  acquire: 'acquire/release, sequential',
  mixed: 'mixed 90% reads / 10% writes, read-your-writes lsn, 50 sessions: reads on the replica',
} as const;

const bench: Bench = {
  name: BENCH,
  async run(ctx) {
    if (!Object.values(CASES).some((c) => ctx.selected(c))) return [];
    await setupTable();
    // The same pool settings on both sides; the cluster has no replica here, so every statement
    // goes to the primary, as the raw pool's do, and what differs is buttress's own work.
    const raw = new pg.Pool({ ...PRIMARY, max: MAX });
    const raw2 = new pg.Pool({ ...PRIMARY, max: MAX });
    const raws = [raw, raw2] as const;
    const ours = createPgCluster({ Pool: pg.Pool, primary: { ...PRIMARY, max: MAX } });
    const rows: BenchRow[] = [];
    try {
      if (ctx.selected(CASES.select1))
        rows.push(...(await queries(ctx, raws, ours, CASES.select1, 'select1', false)));
      if (ctx.selected(CASES.pk)) rows.push(...(await queries(ctx, raws, ours, CASES.pk, 'pk', false)));
      if (ctx.selected(CASES.select1Concurrent)) {
        rows.push(...(await queries(ctx, raws, ours, CASES.select1Concurrent, 'select1', true)));
      }
      if (ctx.selected(CASES.pkConcurrent))
        rows.push(...(await queries(ctx, raws, ours, CASES.pkConcurrent, 'pk', true)));
      if (ctx.selected(CASES.acquire)) rows.push(...(await acquireRelease(ctx, raw, ours)));
      const stats = ours.stats();
      if (stats.primary.inUse !== 0 || stats.primary.timeouts !== 0 || stats.primary.rejectedFull !== 0) {
        throw new Error(
          `pool bench: the cluster's gate is not idle or turned callers away: ${JSON.stringify(stats.primary)}`,
        );
      }
      if (raw.waitingCount !== 0 || raw2.waitingCount !== 0)
        throw new Error('pool bench: the raw pool still has waiters');
      if (ctx.selected(CASES.mixed)) rows.push(...(await mixed(ctx)));
    } finally {
      await ours.end();
      await raw.end();
      await raw2.end();
      await dropTable();
    }
    return rows;
  },
};

export default bench;
