import { describe, expect, it } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { isJobSerializeError } from './errors.js';
import {
  backoffDelay,
  DEFAULT_JOB_OPTIONS,
  decodeRecord,
  headerTail,
  resolveJobOptions,
} from './internal/record.js';
import { memoryBackend } from './memory-backend.js';
import { createQueue, type Queue } from './queue.js';
import type { Job } from './types.js';

// Timing of the memory backend under a FakeClock: no real sleeping. The worker schedules its
// round trips with process.nextTick and promises, so each step yields to the event loop.

const settle = async (rounds = 5) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** Advances `ms` in steps of `step`, letting the worker react after each. */
async function advance(clock: FakeClock, ms: number, step = 10): Promise<void> {
  for (let done = 0; done < ms; done += step) {
    clock.advance(Math.min(step, ms - done));
    await settle(2);
  }
  await settle();
}

function fixture<T = unknown>(options: Parameters<typeof createQueue>[1] = {}) {
  const clock = new FakeClock(0);
  const queue = createQueue<T>('q', { clock, ...options });
  return { clock, queue };
}

describe('retries and backoff under FakeClock', () => {
  it('waits delay * 2^(attempt-1) between attempts (exponential, no jitter)', async () => {
    const { clock, queue } = fixture();
    const starts: number[] = [];
    await queue.add('x', { attempts: 4, backoff: { delay: 100, jitter: 0 } });
    queue.process(() => {
      starts.push(clock.now());
      throw new Error('always');
    });
    await settle();
    await advance(clock, 1000, 1);
    // Each retry runs its backoff after the previous failure, plus the worker's 1 ms of rounding.
    expect(starts.length).toBe(4);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    expect(gaps.map((g, i) => g - [100, 200, 400][i]!).every((d) => d >= 0 && d <= 2)).toBe(true);
    const [dead] = await queue.deadLetters();
    expect(dead!.attempts).toBe(4);
    expect(dead!.failedAt).toBe(starts[3]);
    await queue.close();
  });

  it('fixed backoff and maxDelay cap', async () => {
    const { clock, queue } = fixture({ defaults: { backoff: { type: 'fixed', delay: 250, jitter: 0 } } });
    const starts: number[] = [];
    await queue.add('fixed', { attempts: 3 });
    await queue.add('capped', {
      attempts: 4,
      backoff: { type: 'exponential', delay: 100, maxDelay: 150, jitter: 0 },
    });
    const seen: Record<string, number[]> = { fixed: [], capped: [] };
    queue.process(
      (job: Job) => {
        seen[job.payload as string]!.push(clock.now());
        starts.push(clock.now());
        throw new Error('no');
      },
      { concurrency: 2 },
    );
    await settle();
    await advance(clock, 1000, 1);
    const gaps = (t: number[]) => t.slice(1).map((x, i) => x - t[i]!);
    const near = (got: number[], want: number[]) =>
      got.length === want.length && got.every((g, i) => g - want[i]! >= 0 && g - want[i]! <= 2);
    expect(near(gaps(seen.fixed!), [250, 250])).toBe(true);
    expect(near(gaps(seen.capped!), [100, 150, 150])).toBe(true);
    await queue.close();
  });

  it('jitter spreads each delay within [d * (1 - jitter), d]', () => {
    const o = resolveJobOptions({ backoff: { delay: 1000, jitter: 0.5 } }, DEFAULT_JOB_OPTIONS, 'options');
    expect(backoffDelay(o, 1, 0)).toBe(1000);
    expect(backoffDelay(o, 1, 0.999999)).toBe(500);
    expect(backoffDelay(o, 3, 0)).toBe(4000);
    expect(backoffDelay(o, 3, 0.5)).toBe(3000);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(o, 2, Math.random());
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
    // Huge attempt numbers stay finite and capped.
    expect(backoffDelay(o, 10_000, 0)).toBe(o.maxDelay);
  });

  it('a delayed job runs at its due time, not a tick before', async () => {
    const { clock, queue } = fixture();
    const ran: number[] = [];
    queue.process(() => {
      ran.push(clock.now());
    });
    await settle();
    await queue.add('x', { delay: 500 });
    await advance(clock, 499, 1);
    expect(ran).toEqual([]);
    await advance(clock, 5, 1);
    expect(ran.length).toBe(1);
    expect(ran[0]).toBeGreaterThanOrEqual(500);
    expect(ran[0]).toBeLessThanOrEqual(502);
    await queue.close();
  });

  it("a job timeout aborts the handler's signal at the deadline", async () => {
    const { clock, queue } = fixture();
    let abortedAt: number | undefined;
    await queue.add('x', { timeout: 300, attempts: 1 });
    queue.process(
      (_job, { signal }) =>
        new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => {
            abortedAt = clock.now();
            resolve();
          }),
        ),
    );
    await settle();
    await advance(clock, 400);
    expect(abortedAt).toBeGreaterThanOrEqual(300);
    expect(abortedAt).toBeLessThanOrEqual(310);
    expect((await queue.stats()).failed).toBe(1);
    await queue.close();
  });
});

describe('leases under FakeClock', () => {
  it("a dead worker's job returns to waiting after lockDuration, not before", async () => {
    const clock = new FakeClock(0);
    const backend = memoryBackend({ clock });
    const queue = createQueue('q', { backend, clock });
    await queue.add('x');
    // The "dead worker": leases the job, never renews it.
    const store = backend.open('q', { clock });
    await store.fetch({
      token: 'dead',
      max: 1,
      lockDuration: 1000,
      rateLimit: undefined,
      completed: [],
      retention: { count: 10, age: 1000 },
    });
    const ran: number[] = [];
    queue.process(
      (job) => {
        ran.push(clock.now());
        expect(job.stalls).toBe(1);
      },
      { lockDuration: 1000 },
    );
    await settle();
    await advance(clock, 1000, 50);
    expect(ran).toEqual([]);
    // Found by the next maintenance pass (every lockDuration / 2) after the lease expired.
    await advance(clock, 600, 50);
    expect(ran.length).toBe(1);
    expect(ran[0]).toBeGreaterThan(1000);
    expect(ran[0]).toBeLessThanOrEqual(1500);
    await queue.close();
  });

  it('a running job keeps its lease: background renewal every lockDuration / 2', async () => {
    const { clock, queue } = fixture();
    let release = () => {};
    let runs = 0;
    await queue.add('long');
    queue.process(
      () => {
        runs++;
        return new Promise<void>((resolve) => (release = resolve));
      },
      { lockDuration: 200, concurrency: 2 },
    );
    await settle();
    await advance(clock, 5000, 20);
    expect(runs).toBe(1);
    expect((await queue.stats()).stalled).toBe(0);
    release();
    await settle();
    expect((await queue.stats()).completed).toBe(1);
    await queue.close();
  });

  it('close waits until its timeout, then releases: the job runs again at once elsewhere', async () => {
    const clock = new FakeClock(0);
    const backend = memoryBackend({ clock });
    const a = createQueue('q', { backend, clock });
    const b = createQueue('q', { backend, clock });
    await a.add('x');
    let reason: { code?: string } | undefined;
    const w = a.process(
      (_job, { signal }) =>
        new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            resolve();
          }),
        ),
      { lockDuration: 60_000 },
    );
    await settle();
    let closed = false;
    void w.close({ timeout: 1000 }).then(() => (closed = true));
    await advance(clock, 900, 50);
    expect(closed).toBe(false);
    expect(reason).toBeUndefined();
    await advance(clock, 200, 50);
    expect(reason?.code).toBe('E_CLOSED');
    expect(closed).toBe(true);
    const ran: number[] = [];
    b.process(() => {
      ran.push(clock.now());
    });
    await settle();
    expect(ran.length).toBe(1);
    await a.close();
    await b.close();
  });

  it('leaves no timer behind once closed', async () => {
    const { clock, queue } = fixture();
    await queue.add('x', { timeout: 1000 });
    await queue.add('y', { delay: 5000 });
    queue.process(() => {}, { concurrency: 3 });
    await settle();
    await advance(clock, 100);
    await queue.close();
    await settle();
    expect(clock.pending).toBe(0);
  });
});

describe('options and records', () => {
  it('validates createQueue and process options, naming the option and the value', () => {
    const cases: [() => unknown, string][] = [
      [() => createQueue(''), 'name'],
      [() => createQueue('q', { backend: {} as never }), 'backend'],
      [() => createQueue('q', { nope: 1 } as never), 'nope'],
      [() => createQueue('q', { defaults: { attempts: 0 } }), 'defaults.attempts'],
      [() => createQueue('q', { defaults: { jobId: 'x' } }), 'defaults.jobId'],
      [() => createQueue('q', { defaults: { backoff: { jitter: 2 } } }), 'defaults.backoff.jitter'],
      [() => createQueue('q', { retention: { completed: { count: -1 } } }), 'retention.completed.count'],
      [() => createQueue('q', { dedupeWindow: 'forever' as never }), 'dedupeWindow'],
    ];
    for (const [make, option] of cases) {
      try {
        make();
        expect.unreachable(`${option} passed`);
      } catch (error) {
        expect((error as { code?: string }).code).toBe('E_INVALID_OPTION');
        expect((error as { option?: string }).option).toBe(option);
      }
    }
    const q: Queue = createQueue('q');
    for (const [options, option] of [
      [{ concurrency: 1001 }, 'concurrency'],
      [{ maxStalls: -1 }, 'maxStalls'],
      [{ rateLimit: { max: 0, duration: 1000 } }, 'rateLimit.max'],
      [{ rateLimit: { max: 1 } }, 'rateLimit.duration'],
      [{ lockDuration: 5 }, 'lockDuration'],
    ] as const) {
      expect(() => q.process(() => {}, options as never)).toThrow(expect.objectContaining({ option }));
    }
  });

  it('a record carries the options a worker elsewhere needs', () => {
    const o = resolveJobOptions(
      {
        priority: 7,
        attempts: 9,
        timeout: '2s',
        backoff: { type: 'fixed', delay: '3s', maxDelay: '1m', jitter: 0.25 },
      },
      DEFAULT_JOB_OPTIONS,
      'options',
    );
    const record = `123${headerTail(o)}${JSON.stringify({ a: [1, 'x\ny'] })}`;
    const d = decodeRecord(record);
    expect(d.createdAt).toBe(123);
    expect(d.payload).toEqual({ a: [1, 'x\ny'] });
    expect(d.options).toMatchObject({
      priority: 7,
      attempts: 9,
      timeout: 2000,
      backoffType: 'f',
      backoffDelay: 3000,
      maxDelay: 60_000,
      jitter: 0.25,
    });
  });

  it('names the path of the value that cannot be stored', async () => {
    const q = createQueue('q');
    const error = await q.add({ user: { tags: ['a', { at: new Date(0) }] } }).catch((e: unknown) => e);
    expect(isJobSerializeError(error)).toBe(true);
    expect((error as { path: string }).path).toBe('payload.user.tags[1].at');
    expect((error as Error).message).toMatch(/Date/);
    await q.close();
  });

  it('coalesces adds of one tick into one backend call, each resolving its own id', async () => {
    const q = createQueue('q');
    const results = await Promise.all([
      q.add(1),
      q.add(2, { jobId: 'two' }),
      q.add(3, { jobId: 'two' }),
      q.add(4),
    ]);
    expect(results.map((r) => r.duplicate)).toEqual([false, false, true, false]);
    expect(results[1]!.id).toBe('two');
    expect(new Set(results.map((r) => r.id)).size).toBe(3);
    await q.close();
  });
});
