/**
 * buttress/queue beside BullMQ on the same Redis (127.0.0.1:6379), in one run, and beside a bare
 * Redis Streams loop (XADD, then XREADGROUP + XACK, no queue semantics at all) as the floor.
 *
 * Cases (ns per job, lower is better; jobs/s printed too):
 *   - enqueue: `add`, 100 in flight at a time
 *   - enqueue: `addBulk` of 1000
 *   - end-to-end: `addBulk` of N, then drained by one worker at concurrency 50 with a no-op
 *     handler; the clock runs from the first add to the last completion. Same durability on both
 *     sides: a job is acknowledged only after its handler finished, and both keep the last 1000
 *     completed jobs (BullMQ's `removeOnComplete: { count: 1000 }`, buttress's default retention).
 *
 * Each round runs every contender once, in a rotated order; the report takes medians across rounds.
 * Needs the Redis that `scripts/services.sh` starts; every key it writes is deleted at the end.
 */
import { randomBytes } from 'node:crypto';
import { Queue as BullQueue, Worker as BullWorker } from 'bullmq';
import { Redis } from 'ioredis';
import { createQueue, type Queue, redisBackend, redisQueueKeys, type Worker } from '../src/queue/index.js';
import { type Bench, type BenchContext, type BenchRow, quantile, row } from './harness.js';

const BENCH = 'queue';
const PREFIX = 'qbench';

interface Contender {
  readonly name: string;
  /** Runs the case once for `n` jobs; resolves when done. */
  run(n: number): Promise<void>;
}

/** Samples every contender once per round, rotating the order; returns ns per job by contender. */
async function sample(
  context: BenchContext,
  caseName: string,
  contenders: readonly Contender[],
  n: number,
  rounds: number,
): Promise<Map<string, number>> {
  const samples = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  // Warm-up: one small run each (JIT, scripts loaded, connections up).
  for (const c of contenders) await c.run(Math.min(n, 500));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(r + k) % contenders.length]!;
      const start = performance.now();
      await c.run(n);
      samples.get(c.name)!.push(((performance.now() - start) * 1e6) / n);
    }
  }
  const medians = new Map<string, number>();
  const round1 = (x: number) => Math.round(x * 10) / 10;
  for (const [name, s] of samples) medians.set(name, quantile(s, 0.5));
  context.record({
    bench: BENCH,
    case: caseName,
    rounds,
    ops: Object.fromEntries(contenders.map((c) => [c.name, n])),
    median_ns: Object.fromEntries([...medians].map(([k, v]) => [k, round1(v)])),
    iqr_ns: Object.fromEntries(
      [...samples].map(([k, s]) => [k, round1(quantile(s, 0.75) - quantile(s, 0.25))]),
    ),
  });
  for (const [name, ns] of medians)
    console.log(`  ${name}: ${Math.round(1e9 / ns).toLocaleString('en')} jobs/s`);
  return medians;
}

const bench: Bench = {
  name: BENCH,
  async run(context) {
    const rows: BenchRow[] = [];
    const wanted = ['enqueue: add', 'enqueue: addBulk', 'end-to-end'].filter((c) => context.selected(c));
    if (wanted.length === 0) return rows;

    const quick = context.quick;
    const rounds = quick ? 2 : 7;
    const run = randomBytes(4).toString('hex');
    const connections: Redis[] = [];
    const connect = (options: Record<string, unknown> = {}) => {
      const r = new Redis({ host: '127.0.0.1', port: 6379, ...options });
      connections.push(r);
      return r;
    };
    const ours = connect();
    // BullMQ wants maxRetriesPerRequest: null on its connections.
    const bullConnection = connect({ maxRetriesPerRequest: null });
    const names: string[] = [];
    const bullQueues: BullQueue[] = [];
    const cleanups: (() => Promise<unknown>)[] = [];

    const ourQueue = (label: string): Queue<{ i: number }> => {
      const name = `${label}-${run}`;
      names.push(name);
      const q = createQueue<{ i: number }>(name, { backend: redisBackend(ours, { prefix: PREFIX }) });
      cleanups.push(() => q.close({ timeout: 0 }));
      return q;
    };
    const bullQueue = (label: string): BullQueue => {
      const q = new BullQueue(`${label}-${run}`, {
        connection: bullConnection,
        prefix: PREFIX,
        defaultJobOptions: { removeOnComplete: { count: 1000 } },
      });
      bullQueues.push(q);
      return q;
    };
    const payloads = (n: number) => Array.from({ length: n }, (_, i) => ({ i }));

    try {
      if (context.selected('enqueue: add')) {
        console.log('\nqueue / enqueue: add, 100 in flight');
        const q = ourQueue('add');
        const b = bullQueue('add');
        const m = await sample(
          context,
          'enqueue: add, 100 in flight',
          [
            {
              name: 'buttress add',
              async run(n) {
                for (let s = 0; s < n; s += 100) {
                  const batch: Promise<unknown>[] = [];
                  for (let i = s; i < Math.min(n, s + 100); i++) batch.push(q.add({ i }));
                  await Promise.all(batch);
                }
              },
            },
            {
              name: 'bullmq add',
              async run(n) {
                for (let s = 0; s < n; s += 100) {
                  const batch: Promise<unknown>[] = [];
                  for (let i = s; i < Math.min(n, s + 100); i++) batch.push(b.add('j', { i }));
                  await Promise.all(batch);
                }
              },
            },
          ],
          quick ? 1000 : 10_000,
          rounds,
        );
        rows.push(
          row(
            BENCH,
            'enqueue: add, 100 in flight',
            ['buttress', m.get('buttress add')!],
            ['bullmq', m.get('bullmq add')!],
          ),
        );
      }

      if (context.selected('enqueue: addBulk')) {
        console.log('\nqueue / enqueue: addBulk of 1000');
        const q = ourQueue('bulk');
        const b = bullQueue('bulk');
        const m = await sample(
          context,
          'enqueue: addBulk of 1000',
          [
            {
              name: 'buttress addBulk',
              async run(n) {
                for (let s = 0; s < n; s += 1000) {
                  await q.addBulk(payloads(Math.min(1000, n - s)).map((payload) => ({ payload })));
                }
              },
            },
            {
              name: 'bullmq addBulk',
              async run(n) {
                for (let s = 0; s < n; s += 1000) {
                  await b.addBulk(payloads(Math.min(1000, n - s)).map((data) => ({ name: 'j', data })));
                }
              },
            },
          ],
          quick ? 3000 : 20_000,
          rounds,
        );
        rows.push(
          row(
            BENCH,
            'enqueue: addBulk of 1000',
            ['buttress', m.get('buttress addBulk')!],
            ['bullmq', m.get('bullmq addBulk')!],
          ),
        );
      }

      if (context.selected('end-to-end')) {
        console.log('\nqueue / end-to-end: addBulk then drain, concurrency 50, no-op handler');
        // Ours: one worker, reused across rounds; each round waits for its n completions.
        const q = ourQueue('e2e');
        let ourDone = 0;
        let ourTarget = 0;
        let ourResolve = () => {};
        const worker: Worker<{ i: number }> = q.process(() => {}, { concurrency: 50 });
        // Counted once acknowledged, as BullMQ's 'completed' event is.
        worker.onCompleted(() => {
          if (++ourDone === ourTarget) ourResolve();
        });
        await worker.ready();

        const b = bullQueue('e2e');
        let bullDone = 0;
        let bullTarget = 0;
        let bullResolve = () => {};
        const bullWorker = new BullWorker(b.name, async () => {}, {
          connection: connect({ maxRetriesPerRequest: null }),
          prefix: PREFIX,
          concurrency: 50,
        });
        bullWorker.on('completed', () => {
          if (++bullDone === bullTarget) bullResolve();
        });
        cleanups.push(() => bullWorker.close());
        await bullWorker.waitUntilReady();

        // The floor: a bare stream, one consumer group, reads of 50 acknowledged in the same
        // round trip as the next read.
        const stream = `{${PREFIX}}:stream-${run}`;
        const producer = ours;
        const consumer = connect();
        await producer.xgroup('CREATE', stream, 'g', '$', 'MKSTREAM');
        cleanups.push(() => producer.del(stream));

        const m = await sample(
          context,
          'end-to-end: addBulk + drain, concurrency 50',
          [
            {
              name: 'buttress',
              async run(n) {
                ourDone = 0;
                ourTarget = n;
                const done = new Promise<void>((resolve) => (ourResolve = resolve));
                for (let s = 0; s < n; s += 1000) {
                  await q.addBulk(payloads(Math.min(1000, n - s)).map((payload) => ({ payload })));
                }
                await done;
              },
            },
            {
              name: 'bullmq',
              async run(n) {
                bullDone = 0;
                bullTarget = n;
                const done = new Promise<void>((resolve) => (bullResolve = resolve));
                for (let s = 0; s < n; s += 1000) {
                  await b.addBulk(payloads(Math.min(1000, n - s)).map((data) => ({ name: 'j', data })));
                }
                await done;
              },
            },
            {
              name: 'bare streams',
              async run(n) {
                for (let s = 0; s < n; s += 1000) {
                  const p = producer.pipeline();
                  for (let i = s; i < Math.min(n, s + 1000); i++)
                    p.xadd(stream, '*', 'd', JSON.stringify({ i }));
                  await p.exec();
                }
                let acked = 0;
                let ids: string[] = [];
                while (acked < n) {
                  const p = consumer.pipeline();
                  if (ids.length > 0) p.xack(stream, 'g', ...ids);
                  p.xreadgroup('GROUP', 'g', 'c', 'COUNT', 50, 'STREAMS', stream, '>');
                  const replies = (await p.exec())!;
                  acked += ids.length;
                  const read = replies[replies.length - 1]![1] as [string, [string, string[]][]][] | null;
                  ids = [];
                  for (const [, entries] of read ?? []) {
                    for (const [id, fields] of entries) {
                      JSON.parse(fields[1]!);
                      ids.push(id);
                    }
                  }
                }
                await producer.xtrim(stream, 'MAXLEN', 1000);
              },
            },
          ],
          quick ? 2000 : 20_000,
          rounds,
        );
        const stats = await q.stats();
        if (stats.active !== 0 || stats.waiting !== 0)
          throw new Error(`queue not drained: ${JSON.stringify(stats)}`);
        rows.push(
          row(
            BENCH,
            'end-to-end: addBulk + drain, c=50',
            ['buttress', m.get('buttress')!],
            ['bullmq', m.get('bullmq')!],
            0.333,
          ),
          row(
            BENCH,
            'end-to-end: vs bare Streams loop',
            ['buttress', m.get('buttress')!],
            ['XADD+XREADGROUP/XACK', m.get('bare streams')!],
          ),
        );
      }
    } finally {
      for (const c of cleanups.reverse()) await c().catch(() => {});
      for (const q of bullQueues) {
        await q.obliterate({ force: true }).catch(() => {});
        await q.close();
      }
      for (const name of names) await ours.del(...redisQueueKeys(name, PREFIX));
      for (const c of connections) c.disconnect();
    }
    return rows;
  },
};

export default bench;
