/**
 * Bulkhead hot paths, beside cockatiel 3.2.1 `bulkhead(limit, queue)` and p-limit 7 in the same
 * process: (a) acquiring and releasing a free slot, above a bare `await fn()`; (b) a burst of
 * concurrent calls ten times the limit, most of which wait in the queue.
 */
import { bulkhead as cockatielBulkhead } from 'cockatiel';
import pLimit from 'p-limit';
import { bulkhead } from '../src/bulkhead/index.js';
import { type Bench, type BenchContext, type BenchRow, measure, row } from './harness.js';

const BENCH = 'bulkhead';
const LIMIT = 10;
const QUEUE = 100;
/** Calls started at once in the queued case: ten times the limit, within the queue. */
const BURST = 100;

/** The protected function: an async no-op. */
const upstream = async (): Promise<void> => {};

async function uncontended(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = 'acquire/release: overhead over bare await';
  const ours = bulkhead({ limit: LIMIT, queue: QUEUE });
  const theirs = cockatielBulkhead(LIMIT, QUEUE);
  const limit = pLimit(LIMIT);
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
          for (let i = 0; i < n; i++) await ours.execute(upstream);
        },
      },
      {
        name: 'cockatiel',
        async run(n) {
          for (let i = 0; i < n; i++) await theirs.execute(upstream);
        },
      },
      {
        name: 'p-limit',
        async run(n) {
          for (let i = 0; i < n; i++) await limit(upstream);
        },
      },
    ]);
    expect(ours.executing === 0 && ours.queued === 0, 'a buttress slot was not released');
    expect(ours.stats().totalRejected === 0, 'the buttress bulkhead rejected a call');
    expect(theirs.executionSlots === LIMIT && limit.activeCount === 0, 'an anchor kept a slot');
    const overhead = m.overhead('buttress', 'bare await');
    return [
      row(BENCH, caseName, ['buttress', overhead], ['cockatiel', m.overhead('cockatiel', 'bare await')], 1),
      row(BENCH, caseName, ['buttress', overhead], ['p-limit', m.overhead('p-limit', 'bare await')]),
    ];
  } finally {
    await ours.close();
  }
}

/**
 * `BURST` calls at once through a limit of `LIMIT`: ten run, ninety queue, each freed slot goes
 * to a waiter. One operation is one burst; rows are per call (burst time / BURST).
 */
async function queued(ctx: BenchContext): Promise<BenchRow[]> {
  const caseName = `queued: bursts of ${BURST} calls, limit ${LIMIT}, per call`;
  const ours = bulkhead({ limit: LIMIT, queue: QUEUE });
  const theirs = cockatielBulkhead(LIMIT, QUEUE);
  const limit = pLimit(LIMIT);
  const pending: Promise<void>[] = new Array(BURST);
  try {
    const m = await measure(ctx, BENCH, caseName, [
      {
        name: 'bare await',
        async run(n) {
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < BURST; j++) pending[j] = upstream();
            await Promise.all(pending);
          }
        },
      },
      {
        name: 'buttress',
        async run(n) {
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < BURST; j++) pending[j] = ours.execute(upstream);
            await Promise.all(pending);
          }
        },
      },
      {
        name: 'cockatiel',
        async run(n) {
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < BURST; j++) pending[j] = theirs.execute(upstream);
            await Promise.all(pending);
          }
        },
      },
      {
        name: 'p-limit',
        async run(n) {
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < BURST; j++) pending[j] = limit(upstream);
            await Promise.all(pending);
          }
        },
      },
    ]);
    expect(ours.stats().totalRejected === 0, 'the buttress bulkhead rejected a call of a burst');
    expect(ours.executing === 0 && ours.queued === 0, 'a buttress slot was not released');
    const perCall = (name: string) => m.overhead(name, 'bare await') / BURST;
    return [
      row(BENCH, caseName, ['buttress', perCall('buttress')], ['cockatiel', perCall('cockatiel')]),
      row(BENCH, caseName, ['buttress', perCall('buttress')], ['p-limit', perCall('p-limit')]),
    ];
  } finally {
    await ours.close();
  }
}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new Error(`bulkhead bench: ${message}`);
}

const bench: Bench = {
  name: BENCH,
  async run(ctx) {
    const rows: BenchRow[] = [];
    if (ctx.selected('acquire/release: overhead over bare await')) rows.push(...(await uncontended(ctx)));
    if (ctx.selected(`queued: bursts of ${BURST} calls, limit ${LIMIT}, per call`))
      rows.push(...(await queued(ctx)));
    return rows;
  },
};

export default bench;
