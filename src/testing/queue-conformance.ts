import { randomBytes } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import { systemClock } from '../core/clock.js';
import type { QueueBackend, QueueStore } from '../queue/backend.js';
import { createQueue, type Queue } from '../queue/queue.js';
import type { Job, JobAddMessage, JobProcessMessage, QueueOptions } from '../queue/types.js';

/*
 * The contract every queue backend keeps, as tests any runner can register: pass your test
 * framework's `describe`, `it` and `expect` (vitest, Jest and node:test with an expect library all
 * fit), so this module imports no test framework itself.
 *
 * The tests run in real time with short delays (tens to hundreds of ms) and generous bounds, so
 * they hold on a loaded 2-core CI machine; each creates queues with a fresh random name and closes
 * them at the end.
 */

/** The test functions the suite registers its tests with (vitest's or Jest's fit as they are). */
export interface ConformanceTestApi {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>, timeout?: number): void;
  /** Any runner's `expect` (vitest, Jest, expect.js...). */
  expect(value: unknown): any;
}

/** Options of {@link queueBackendConformance}. */
export interface QueueConformanceOptions {
  /** Called after each test with the queue names it used (delete their keys, for example). */
  cleanup?(names: readonly string[]): Promise<void> | void;
  /** Per-test timeout passed to `it`, ms. @default 20000 */
  timeout?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, what: string, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await sleep(5);
  }
}

async function rejection(
  promise: Promise<unknown>,
): Promise<{ code?: string; index?: number; path?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string };
  }
  throw new Error('expected a rejection');
}

function throwsSync(fn: () => unknown): { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as { code?: string };
  }
  throw new Error('expected a throw');
}

/** One test's queues, backend and store handles, closed at the end. */
class Harness {
  readonly names: string[] = [];
  readonly #queues: Queue<any>[] = [];
  readonly #stores: QueueStore[] = [];

  constructor(readonly backend: QueueBackend) {}

  name(): string {
    const name = `conf-${randomBytes(5).toString('hex')}`;
    this.names.push(name);
    return name;
  }

  queue<T = unknown>(name: string, options: Omit<QueueOptions, 'backend'> = {}): Queue<T> {
    const q = createQueue<T>(name, { ...options, backend: this.backend });
    this.#queues.push(q);
    return q;
  }

  /** The raw store of `name`: what a second process (or a dead worker) would see. */
  store(name: string): QueueStore {
    const s = this.backend.open(name, { clock: systemClock });
    this.#stores.push(s);
    return s;
  }

  async close(): Promise<void> {
    await Promise.all(this.#queues.map((q) => q.close({ timeout: 0 })));
    await Promise.all(this.#stores.map((s) => s.close()));
  }
}

const ghostFetch = (store: QueueStore, token: string, lockDuration: number, max = 1) =>
  store.fetch({
    token,
    max,
    lockDuration,
    rateLimit: undefined,
    completed: [],
    retention: { count: 100, age: 60_000 },
  });

/**
 * Registers the queue backend conformance tests.
 *
 * @param label Shown in the suite's name, e.g. `'redis'`.
 * @param makeBackend Returns the backend under test; called once per test.
 * @param api Your runner's `{ describe, it, expect }`.
 * @example
 * import { describe, it, expect } from 'vitest';
 * import { queueBackendConformance } from 'buttress/testing';
 * queueBackendConformance('my backend', () => myBackend(), { describe, it, expect });
 */
export function queueBackendConformance(
  label: string,
  makeBackend: () => QueueBackend | Promise<QueueBackend>,
  api: ConformanceTestApi,
  options: QueueConformanceOptions = {},
): void {
  const { describe, expect } = api;
  const timeout = options.timeout ?? 20_000;

  const test = (name: string, body: (h: Harness) => Promise<void>) =>
    api.it(
      name,
      async () => {
        const h = new Harness(await makeBackend());
        try {
          await body(h);
        } finally {
          await h.close();
          await options.cleanup?.(h.names);
        }
      },
      timeout,
    );

  describe(`queue backend conformance: ${label}`, () => {
    test('runs an added job once, with its payload, id and attempt 1', async (h) => {
      const q = h.queue<{ n: number }>(h.name());
      const added = await q.add({ n: 42 });
      expect(added.duplicate).toBe(false);
      const seen: Job<{ n: number }>[] = [];
      q.process((job) => {
        seen.push(job);
      });
      await until(() => seen.length === 1, 'the job');
      await sleep(50);
      expect(seen.length).toBe(1);
      expect(seen[0]!.id).toBe(added.id);
      expect(seen[0]!.payload).toEqual({ n: 42 });
      expect(seen[0]!.attempt).toBe(1);
      expect(seen[0]!.stalls).toBe(0);
    });

    test('addBulk returns distinct ids in order, and every job runs once', async (h) => {
      const q = h.queue<number>(h.name());
      const added = await q.addBulk(Array.from({ length: 120 }, (_, i) => ({ payload: i })));
      expect(new Set(added.map((a) => a.id)).size).toBe(120);
      const runs = new Map<string, number>();
      q.process(
        (job) => {
          runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
          expect(job.payload).toBe(added.findIndex((a) => a.id === job.id));
        },
        { concurrency: 7 },
      );
      await until(() => runs.size === 120, 'every job');
      await sleep(50);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
    });

    test('runs jobs of one priority in FIFO order', async (h) => {
      const q = h.queue<number>(h.name());
      for (let i = 0; i < 30; i++) await q.add(i);
      const order: number[] = [];
      q.process((job) => {
        order.push(job.payload);
      });
      await until(() => order.length === 30, 'every job');
      expect(order).toEqual(Array.from({ length: 30 }, (_, i) => i));
    });

    test('runs lower priority numbers first, FIFO within a priority', async (h) => {
      const q = h.queue<[number, number]>(h.name());
      const prios = [3, 0, 1, 3, 2, 0, 1, 1, 2_097_152, 0, 3];
      await q.addBulk(
        prios.map((p, i) => ({ payload: [p, i] as [number, number], options: { priority: p } })),
      );
      const order: [number, number][] = [];
      q.process((job) => {
        order.push(job.payload);
      });
      await until(() => order.length === prios.length, 'every job');
      const expected = prios
        .map((p, i) => [p, i] as [number, number])
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      expect(order).toEqual(expected);
    });

    test('never runs a delayed job before its delay, and wakes an idle worker for it', async (h) => {
      const q = h.queue<string>(h.name());
      const ran: Record<string, number> = {};
      q.process(
        (job) => {
          ran[job.payload] = Date.now();
        },
        { pollInterval: 60_000 },
      );
      await sleep(50);
      const start = Date.now();
      await q.add('late', { delay: 400 });
      await q.add('now');
      await until(() => ran.late !== undefined, 'the delayed job', 5000);
      expect(ran.now! - start).toBeLessThan(1000);
      // Redis keeps time by its own clock; allow a little skew between the two.
      expect(ran.late! - start).toBeGreaterThanOrEqual(380);
      expect((await q.stats()).delayed).toBe(0);
    });

    test('a job added to an idle worker runs without waiting for the poll', async (h) => {
      const q = h.queue(h.name());
      let ran = 0;
      q.process(
        () => {
          ran++;
        },
        { pollInterval: 60_000 },
      );
      await sleep(150);
      const start = Date.now();
      await q.add('x');
      await until(() => ran === 1, 'the job', 3000);
      expect(Date.now() - start).toBeLessThan(2000);
    });

    test('jobId makes add idempotent while the job exists, completed and retained included', async (h) => {
      const q = h.queue<number>(h.name());
      const a = await q.add(1, { jobId: 'order:7' });
      const b = await q.add(2, { jobId: 'order:7' });
      const [c, d] = await q.addBulk([
        { payload: 3, options: { jobId: 'order:8' } },
        { payload: 4, options: { jobId: 'order:8' } },
      ]);
      expect(a).toEqual({ id: 'order:7', duplicate: false });
      expect(b).toEqual({ id: 'order:7', duplicate: true });
      expect(c!.duplicate).toBe(false);
      expect(d!.duplicate).toBe(true);
      const payloads: number[] = [];
      q.process((job) => {
        payloads.push(job.payload);
      });
      await until(() => payloads.length === 2, 'the jobs');
      await sleep(50);
      expect(payloads.sort()).toEqual([1, 3]);
      expect((await q.add(5, { jobId: 'order:7' })).duplicate).toBe(true);
    });

    test('dedupeWindow keeps a jobId taken after its job is gone; without it the id is free again', async (h) => {
      const windowed = h.queue(h.name(), { dedupeWindow: '1m', retention: { completed: false } });
      const plain = h.queue(h.name(), { retention: { completed: false } });
      for (const q of [windowed, plain]) {
        await q.add('a', { jobId: 'once' });
        let done = 0;
        const w = q.process(() => {
          done++;
        });
        await until(() => done === 1, 'the job');
        await w.close();
      }
      await sleep(50);
      expect((await windowed.add('b', { jobId: 'once' })).duplicate).toBe(true);
      expect((await plain.add('b', { jobId: 'once' })).duplicate).toBe(false);
    });

    test('refuses payloads that would not survive JSON, writing nothing', async (h) => {
      const q = h.queue<unknown>(h.name());
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic.self = cyclic;
      const bad: unknown[] = [
        () => 1,
        Symbol('s'),
        10n,
        Number.NaN,
        Number.POSITIVE_INFINITY,
        new Map(),
        new Set([1]),
        new Date(),
        cyclic,
        { nested: { list: [1, undefined] } },
        undefined,
      ];
      for (const payload of bad) {
        const e = await rejection(q.add(payload));
        expect(e.code).toBe('E_JOB_SERIALIZE');
      }
      const e = await rejection(
        q.addBulk([{ payload: 1 }, { payload: { when: new Date() } }, { payload: 3 }]),
      );
      expect(e.code).toBe('E_JOB_SERIALIZE');
      expect(e.index).toBe(1);
      expect(e.path).toBe('payload.when');
      const s = await q.stats();
      expect(s.waiting + s.delayed).toBe(0);
      // What JSON keeps as is passes.
      await q.add({ s: 'x', n: -1.5, b: true, z: null, a: [1, 'two', { three: [] }], skipped: undefined });
      expect((await q.stats()).waiting).toBe(1);
    });

    test('refuses bad options with E_INVALID_OPTION', async (h) => {
      const q = h.queue(h.name());
      for (const o of [
        { jobId: '123' },
        { jobId: '' },
        { priority: -1 },
        { priority: 1.5 },
        { attempts: 0 },
        { delay: -5 },
        { backoff: { type: 'linear' } },
        { nope: 1 },
      ]) {
        const e = await rejection(q.add('x', o as never));
        expect(e.code).toBe('E_INVALID_OPTION');
      }
      expect(throwsSync(() => q.process(() => {}, { concurrency: 0 })).code).toBe('E_INVALID_OPTION');
      expect(throwsSync(() => q.process(() => {}, { lockDuration: 'soon' as never })).code).toBe(
        'E_INVALID_OPTION',
      );
    });

    test('retries a failing job with its backoff until it succeeds', async (h) => {
      const q = h.queue<string>(h.name());
      const attempts: number[] = [];
      const failures: (number | undefined)[] = [];
      q.onFailed((e) => failures.push(e.retryIn));
      let completed = 0;
      q.onCompleted(() => completed++);
      await q.add('flaky', { attempts: 3, backoff: { type: 'fixed', delay: 30, jitter: 0 } });
      q.process((job, ctx) => {
        attempts.push(ctx.attempt);
        expect(job.attempt).toBe(ctx.attempt);
        if (job.attempt < 3) throw new Error(`fail ${job.attempt}`);
      });
      await until(() => completed === 1, 'completion');
      expect(attempts).toEqual([1, 2, 3]);
      expect(failures).toEqual([30, 30]);
      const s = await q.stats();
      expect(s.failed).toBe(0);
      expect(s.completed).toBe(1);
    });

    test('dead-letters a job out of attempts; retry(id) runs it again; purge empties the set', async (h) => {
      const q = h.queue<string>(h.name());
      let fail = true;
      const runs: string[] = [];
      let dead = 0;
      q.onFailed((e) => {
        if (e.deadLettered) dead++;
      });
      const { id } = await q.add('doomed', { attempts: 2, backoff: { delay: 10, jitter: 0 } });
      await q.add('doomed-too', { attempts: 1 });
      q.process((job) => {
        runs.push(job.payload);
        if (fail) {
          const e = new Error(`no ${job.payload}`) as Error & { code: string };
          e.code = 'APP_MAILBOX_FULL';
          throw e;
        }
      });
      await until(() => dead === 2, 'two dead letters');
      const letters = await q.deadLetters();
      expect(letters.map((l) => l.payload).sort()).toEqual(['doomed', 'doomed-too']);
      const doomed = letters.find((l) => l.id === id)!;
      expect(doomed.attempts).toBe(2);
      expect(doomed.error.message).toBe('no doomed');
      expect(doomed.error.code).toBe('APP_MAILBOX_FULL');
      expect(doomed.failedAt).toBeGreaterThan(Date.now() - 60_000);
      expect((await q.stats()).failed).toBe(2);
      fail = false;
      await q.retry(id);
      await until(() => runs.filter((r) => r === 'doomed').length === 3, 'the retried job');
      const e = await rejection(q.retry(id));
      expect(e.code).toBe('E_JOB_NOT_FOUND');
      expect(await q.purge()).toBe(1);
      expect(await q.deadLetters()).toEqual([]);
      expect((await q.stats()).failed).toBe(0);
    });

    test('retry of an unknown id rejects E_JOB_NOT_FOUND', async (h) => {
      const q = h.queue(h.name());
      const e = await rejection(q.retry('nope'));
      expect(e.code).toBe('E_JOB_NOT_FOUND');
    });

    test('never runs more than concurrency jobs at once', async (h) => {
      const q = h.queue(h.name());
      await q.addBulk(Array.from({ length: 40 }, (_, i) => ({ payload: i })));
      let running = 0;
      let peak = 0;
      let done = 0;
      q.process(
        async () => {
          running++;
          peak = Math.max(peak, running);
          await sleep(5);
          running--;
          done++;
        },
        { concurrency: 4 },
      );
      await until(() => done === 40, 'every job');
      expect(peak).toBeLessThanOrEqual(4);
      expect(peak).toBeGreaterThanOrEqual(2);
    });

    test("aborts the handler's signal past the job timeout and fails the attempt", async (h) => {
      const q = h.queue(h.name());
      let reason: { code?: string } | undefined;
      let dead = 0;
      q.onFailed((e) => {
        if (e.deadLettered) dead++;
      });
      await q.add('slow', { timeout: 60, attempts: 1 });
      q.process(
        (_job, { signal }) =>
          new Promise<void>((resolve) => {
            signal.addEventListener('abort', () => {
              reason = signal.reason;
              resolve();
            });
          }),
      );
      await until(() => dead === 1, 'the dead letter');
      expect(reason?.code).toBe('E_JOB_TIMEOUT');
      const [letter] = await q.deadLetters();
      expect(letter!.error.code).toBe('E_JOB_TIMEOUT');
    });

    test('a job whose lease expired returns to waiting, at most maxStalls times, then is dead-lettered', async (h) => {
      const name = h.name();
      const q = h.queue<string>(name);
      const ghost = h.store(name);
      await q.add('orphan');
      // A worker that leases the job and dies: nobody renews the lease.
      const leased = await ghostFetch(ghost, 'dead-worker', 50);
      expect(leased.jobs.length).toBe(1);
      const stalled: string[] = [];
      q.onStalled((e) => stalled.push(e.outcome));
      const runs: Job<string>[] = [];
      q.process(
        (job) => {
          runs.push(job);
        },
        { lockDuration: 100, maxStalls: 1 },
      );
      await until(() => runs.length === 1, 'the recovered job', 5000);
      expect(runs[0]!.stalls).toBe(1);
      expect(runs[0]!.attempt).toBe(1);
      expect(stalled).toContain('requeued');

      // Twice in a row with maxStalls 1: dead-lettered.
      const q2 = h.queue<string>(h.name());
      const ghost2 = h.store(q2.name);
      await q2.add('cursed');
      await ghostFetch(ghost2, 'dead-1', 20);
      await sleep(60);
      expect((await ghost2.recoverStalled(1, 100, { count: 100, age: 60_000 }, '{}')).requeued.length).toBe(
        1,
      );
      await ghostFetch(ghost2, 'dead-2', 20);
      await sleep(60);
      const second = await ghost2.recoverStalled(
        1,
        100,
        { count: 100, age: 60_000 },
        '{"message":"stalled"}',
      );
      expect(second.deadLettered.length).toBe(1);
      const s = await q2.stats();
      expect(s.failed).toBe(1);
      expect(s.stalled).toBe(2);
      expect(s.waiting + s.active).toBe(0);
    });

    test('an acknowledgement or renewal with a lost lease is refused', async (h) => {
      const name = h.name();
      const q = h.queue(name);
      const store = h.store(name);
      const { id } = await q.add('x');
      await ghostFetch(store, 'A', 30);
      await sleep(60);
      await store.recoverStalled(5, 100, { count: 10, age: 60_000 }, '{}');
      const b = await ghostFetch(store, 'B', 10_000);
      expect(b.jobs.map((j) => j.id)).toEqual([id]);
      expect(await store.extend([{ id, token: 'A' }], 1000)).toEqual([id]);
      const ack = await store.fetch({
        token: 'A2',
        max: 0,
        lockDuration: 1000,
        rateLimit: undefined,
        completed: [{ id, token: 'A' }],
        retention: { count: 10, age: 60_000 },
      });
      expect(ack.refused).toEqual([id]);
      expect(
        await store.fail([{ id, token: 'A', retryIn: -1, error: '{}' }], { count: 10, age: 60_000 }),
      ).toEqual([false]);
      expect((await q.stats()).active).toBe(1);
      const ok = await store.fetch({
        token: 'B2',
        max: 0,
        lockDuration: 1000,
        rateLimit: undefined,
        completed: [{ id, token: 'B' }],
        retention: { count: 10, age: 60_000 },
      });
      expect(ok.refused).toEqual([]);
      const s = await q.stats();
      expect(s.active).toBe(0);
      expect(s.completed).toBe(1);
    });

    test('extend keeps a lease alive past its lockDuration', async (h) => {
      const name = h.name();
      const q = h.queue(name);
      const store = h.store(name);
      const { id } = await q.add('x');
      const { jobs } = await ghostFetch(store, 'T', 80);
      expect(jobs.length).toBe(1);
      expect(await store.extend([{ id, token: 'T' }], 5000)).toEqual([]);
      await sleep(200);
      const r = await store.recoverStalled(5, 100, { count: 10, age: 60_000 }, '{}');
      expect(r.requeued).toEqual([]);
      expect((await q.stats()).active).toBe(1);
    });

    test('heartbeat renews the lease, and rejects E_JOB_LEASE_LOST once it is gone', async (h) => {
      const name = h.name();
      const q = h.queue(name);
      const other = h.store(name);
      // Connected and its scripts loaded before the race below, so its recovery is not delayed.
      await other.recoverStalled(5, 100, { count: 10, age: 60_000 }, '{}');
      await q.add('x');
      let first: unknown = 'pending';
      let lost: { code?: string } | undefined;
      let aborted: { code?: string } | undefined;
      q.process(
        async (job, ctx) => {
          if (job.stalls > 0) return;
          await ctx.heartbeat();
          first = 'ok';
          // The worker's background renewal may still slip in between the busy wait and the
          // other store's recovery (they travel on different connections), and then the lease is
          // legitimately alive: try again, a few times, to see it lost.
          for (let tries = 0; tries < 5 && lost === undefined; tries++) {
            const until = Date.now() + 250;
            while (Date.now() < until) {
              // Blocks the event loop past lockDuration: no background renewal can run.
            }
            await other.recoverStalled(5, 100, { count: 10, age: 60_000 }, '{}');
            try {
              await ctx.heartbeat();
            } catch (error) {
              lost = error as { code?: string };
            }
          }
          aborted = ctx.signal.reason;
        },
        { lockDuration: 100, maxStalls: 5 },
      );
      await until(() => lost !== undefined, 'the lost lease');
      expect(first).toBe('ok');
      expect(lost?.code).toBe('E_JOB_LEASE_LOST');
      expect(aborted?.code).toBe('E_JOB_LEASE_LOST');
    });

    test('close lets running jobs finish until its deadline, then aborts and releases the rest at once', async (h) => {
      const name = h.name();
      const q = h.queue<string>(name);
      await q.add('quick');
      await q.add('stuck');
      let quickDone = false;
      let stuckReason: { code?: string } | undefined;
      let started = 0;
      const w = q.process(
        async (job, { signal }) => {
          started++;
          if (job.payload === 'quick') {
            await sleep(50);
            quickDone = true;
            return;
          }
          await new Promise<void>((resolve) =>
            signal.addEventListener('abort', () => {
              stuckReason = signal.reason;
              resolve();
            }),
          );
        },
        { concurrency: 2, lockDuration: 60_000 },
      );
      await until(() => started === 2, 'both jobs to start');
      const t0 = Date.now();
      await w.close({ timeout: 300 });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(quickDone).toBe(true);
      expect(stuckReason?.code).toBe('E_CLOSED');
      expect(w.running).toBe(0);
      const s = await q.stats();
      expect(s.completed).toBe(1);
      expect(s.active).toBe(0);
      expect(s.waiting).toBe(1);
      // Another worker takes the released job at once, not after the 60 s lock.
      const q2 = h.queue<string>(name);
      let taken: string | undefined;
      q2.process((job) => {
        taken = job.payload;
      });
      await until(() => taken !== undefined, 'the released job', 3000);
      expect(taken).toBe('stuck');
    });

    test('close stops taking jobs; add and process after queue.close reject E_CLOSED', async (h) => {
      const q = h.queue(h.name());
      let runs = 0;
      const w = q.process(() => {
        runs++;
      });
      await w.close();
      await q.add('later');
      await sleep(150);
      expect(runs).toBe(0);
      await q.close();
      expect((await rejection(q.add('x'))).code).toBe('E_CLOSED');
      expect(throwsSync(() => q.process(() => {})).code).toBe('E_CLOSED');
    });

    test('the rate limit caps jobs started per window across workers', async (h) => {
      const name = h.name();
      const a = h.queue(name);
      const b = h.queue(name);
      await a.addBulk(Array.from({ length: 9 }, (_, i) => ({ payload: i })));
      const starts: number[] = [];
      const t0 = Date.now();
      for (const q of [a, b]) {
        q.process(
          () => {
            starts.push(Date.now() - t0);
          },
          { concurrency: 5, rateLimit: { max: 3, duration: 400 } },
        );
      }
      await until(() => starts.length === 9, 'every job', 10_000);
      starts.sort((x, y) => x - y);
      // Fixed windows of 400 ms: 3 jobs in each, so the 4th and 7th wait for the next windows.
      expect(starts[3]! - starts[0]!).toBeGreaterThanOrEqual(300);
      expect(starts[6]! - starts[0]!).toBeGreaterThanOrEqual(700);
    });

    test('stats counts waiting, delayed, active, failed and completed jobs', async (h) => {
      const q = h.queue<string>(h.name());
      await q.addBulk([
        { payload: 'ok' },
        { payload: 'ok' },
        { payload: 'bad', options: { attempts: 1 } },
        { payload: 'hang' },
        { payload: 'later', options: { delay: 60_000 } },
      ]);
      expect(await q.stats()).toMatchObject({ waiting: 4, delayed: 1, active: 0, failed: 0, completed: 0 });
      let release = () => {};
      q.process(
        (job) => {
          if (job.payload === 'bad') throw new Error('bad');
          if (job.payload === 'hang') return new Promise<void>((resolve) => (release = resolve));
        },
        { concurrency: 4 },
      );
      let s = await q.stats();
      for (let i = 0; i < 200 && !(s.completed === 2 && s.failed === 1); i++) {
        await sleep(10);
        s = await q.stats();
      }
      expect(s).toMatchObject({
        waiting: 0,
        delayed: 1,
        active: 1,
        failed: 1,
        completed: 2,
        deadLettered: 1,
      });
      expect(s.throughput).toBeGreaterThan(0);
      release();
    });

    test('retention keeps at most `count` completed jobs (and their ids)', async (h) => {
      const q = h.queue(h.name(), { retention: { completed: { count: 2, age: '1h' } } });
      let done = 0;
      q.process(
        () => {
          done++;
        },
        { concurrency: 1 },
      );
      for (let i = 1; i <= 5; i++) {
        await q.add(i, { jobId: `j${i}` });
        await until(() => done === i, `job ${i}`);
      }
      let s = await q.stats();
      for (let i = 0; i < 100 && s.completed < 5; i++) {
        await sleep(10);
        s = await q.stats();
      }
      expect(s.retained).toBe(2);
      expect((await q.add(0, { jobId: 'j5' })).duplicate).toBe(true);
      expect((await q.add(0, { jobId: 'j1' })).duplicate).toBe(false);
    });

    test('emits drained once the queue is empty and the last job finished', async (h) => {
      const q = h.queue(h.name());
      let drained = 0;
      q.onDrained(() => drained++);
      await q.addBulk(Array.from({ length: 10 }, (_, i) => ({ payload: i })));
      let done = 0;
      q.process(
        async () => {
          await sleep(2);
          done++;
        },
        { concurrency: 3 },
      );
      await until(() => drained === 1, 'drained');
      expect(done).toBe(10);
    });

    test('queues of one name on one backend share jobs: each runs once', async (h) => {
      const name = h.name();
      const a = h.queue<number>(name);
      const b = h.queue<number>(name);
      const runs = new Map<number, number>();
      const record = (job: Job<number>) => {
        runs.set(job.payload, (runs.get(job.payload) ?? 0) + 1);
      };
      a.process(record, { concurrency: 3 });
      b.process(record, { concurrency: 3 });
      await a.addBulk(Array.from({ length: 100 }, (_, i) => ({ payload: i })));
      await Promise.all(Array.from({ length: 100 }, (_, i) => b.add(100 + i)));
      await until(() => runs.size === 200, 'every job');
      await sleep(50);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
    });

    test('an aborted signal rejects add with E_ABORTED and writes nothing', async (h) => {
      const q = h.queue(h.name());
      const e = await rejection(q.add('x', { signal: AbortSignal.abort() }));
      expect(e.code).toBe('E_ABORTED');
      expect((await q.stats()).waiting).toBe(0);
    });

    test('headers a tracing subscriber gives a job at add reach the worker that runs it', async (h) => {
      // What buttress/otel relies on to carry a trace context: the backend keeps the record whole.
      const name = h.name();
      const onAdd = (m: unknown) => {
        const message = m as JobAddMessage;
        if (message.queue === name) message.headers.traceparent = `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`;
      };
      const seen: (Readonly<Record<string, string>> | undefined)[] = [];
      const onProcess = (m: unknown) => {
        const message = m as JobProcessMessage;
        if (message.queue === name) seen.push(message.headers);
      };
      dc.subscribe('tracing:buttress:queue:add:start', onAdd);
      dc.subscribe('tracing:buttress:queue:process:start', onProcess);
      try {
        const q = h.queue<number>(name);
        await q.add(1);
        await q.addBulk([{ payload: 2 }, { payload: 3, options: { delay: 10 } }]);
        const ran: number[] = [];
        q.process((job) => {
          ran.push(job.payload);
        });
        await until(() => ran.length === 3, 'the three jobs');
        expect(ran.sort()).toEqual([1, 2, 3]);
        expect(seen).toEqual(Array(3).fill({ traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01` }));
      } finally {
        dc.unsubscribe('tracing:buttress:queue:add:start', onAdd);
        dc.unsubscribe('tracing:buttress:queue:process:start', onProcess);
      }
    });
  });
}
