import dc from 'node:diagnostics_channel';
import { BulkheadRejectedError, handleAll, retry, wrap } from 'cockatiel';
import { describe, expect, it, vi } from 'vitest';
import { ButtressError, isInvalidOptionError, TimeoutError } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { type AdaptiveLimiter, adaptiveLimiter, isOverloadError } from './adaptive-limiter.js';
import { BulkheadFullError } from './errors.js';
import type { LimitAlgorithmFactory } from './limit-algorithm.js';

/** A call the test finishes by hand, after the fake clock advanced by its latency. */
function pending(clock: FakeClock) {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    fn: () => promise,
    finish(after: number, error?: unknown) {
      clock.advance(after);
      if (error === undefined) resolve();
      else reject(error);
    },
  };
}

/** An algorithm that records its samples and returns the limits it is told to. */
function recording(next: (n: number) => number = () => 5): LimitAlgorithmFactory & {
  samples: [number, number, boolean][];
} {
  const samples: [number, number, boolean][] = [];
  let limit = 5;
  return {
    name: 'recording',
    samples,
    create: (bounds) => {
      limit = bounds.initialLimit;
      return {
        get limit() {
          return limit;
        },
        update(rtt, inflight, didDrop) {
          samples.push([rtt, inflight, didDrop]);
          limit = next(samples.length);
          return limit;
        },
      };
    },
  };
}

async function run(
  limiter: AdaptiveLimiter | { execute: AdaptiveLimiter['execute'] },
  clock: FakeClock,
  latency: number,
  error?: unknown,
) {
  const call = pending(clock);
  const p = limiter.execute(call.fn).catch((e) => e);
  call.finish(latency, error);
  return p;
}

describe('adaptiveLimiter', () => {
  it('admits up to the limit, rejects beyond it with E_BULKHEAD_FULL, and exposes limit and inflight', async () => {
    const clock = new FakeClock(0);
    const limiter = adaptiveLimiter({ initialLimit: 2, clock, name: 'api' });
    expect(limiter.limit).toBe(2);
    const a = pending(clock);
    const b = pending(clock);
    const pa = limiter.execute(a.fn);
    const pb = limiter.execute(b.fn);
    expect(limiter.inflight).toBe(2);
    const err = await limiter.execute(() => 'x').catch((e) => e);
    expect(err).toBeInstanceOf(BulkheadFullError);
    expect(err).toMatchObject({ code: 'E_BULKHEAD_FULL', reason: 'full', limit: 2, bulkhead: 'api' });
    a.finish(5);
    b.finish(5);
    await Promise.all([pa, pb]);
    expect(limiter.inflight).toBe(0);
    expect(limiter.stats()).toMatchObject({ algorithm: 'vegas', totalExecuted: 2, totalRejected: 1 });
  });

  it('feeds every sample to the algorithm with window: false: rtt, inflight at start, drop', async () => {
    const clock = new FakeClock(0);
    const algorithm = recording();
    const limiter = adaptiveLimiter({ algorithm, initialLimit: 5, window: false, clock });
    const a = pending(clock);
    const b = pending(clock);
    const pa = limiter.execute(a.fn);
    const pb = limiter.execute(b.fn);
    a.finish(3);
    await pa;
    b.finish(4, new BulkheadRejectedError(1, 1));
    await pb.catch(() => {});
    expect(algorithm.samples).toEqual([
      [3, 1, false],
      [7, 2, true],
    ]);
  });

  it('counts calls slower than `timeout` and overload errors as drops, ignores other errors, aborted calls and samples under 100µs', async () => {
    const clock = new FakeClock(0);
    const algorithm = recording();
    const limiter = adaptiveLimiter({ algorithm, window: false, timeout: 50, clock });
    await run(limiter, clock, 60); // late: a drop
    await run(limiter, clock, 5, new TimeoutError(5)); // E_TIMEOUT: a drop
    await run(limiter, clock, 5, new BulkheadFullError('full', 0, 1)); // ours: a drop
    await run(limiter, clock, 5, Object.assign(new Error('x'), { code: 'E_BULKHEAD_FULL' })); // by code
    await run(limiter, clock, 5, new Error('404')); // ignored
    await run(limiter, clock, 0.05); // under 100µs: ignored
    await expect(limiter.execute(() => 1)).resolves.toBe(1); // synchronous: 0ms, ignored
    const ac = new AbortController();
    const call = pending(clock);
    const p = limiter.execute(call.fn, ac.signal).catch((e) => e);
    ac.abort();
    call.finish(5, new Error('aborted by caller'));
    await p;
    expect(algorithm.samples).toEqual([
      [60, 1, true],
      [5, 1, true],
      [5, 1, true],
      [5, 1, true],
    ]);
    expect(limiter.stats()).toMatchObject({ totalDropped: 4, totalIgnored: 4 });
  });

  it('isDrop decides which errors mean overload', async () => {
    const clock = new FakeClock(0);
    const algorithm = recording();
    const limiter = adaptiveLimiter({
      algorithm,
      window: false,
      clock,
      isDrop: (e) => (e as { status?: number }).status === 503,
    });
    await run(limiter, clock, 5, Object.assign(new Error('busy'), { status: 503 }));
    await run(limiter, clock, 5, new TimeoutError(5));
    expect(algorithm.samples).toEqual([[5, 1, true]]);
    expect(isOverloadError(new TimeoutError(1))).toBe(true);
    expect(isOverloadError(new BulkheadRejectedError(1, 1))).toBe(true);
    expect(isOverloadError(new Error('x'))).toBe(false);
    expect(isOverloadError('E_TIMEOUT')).toBe(false);
  });

  it('groups samples into windows: mean RTT, largest inflight, any drop', async () => {
    const clock = new FakeClock(0);
    const algorithm = recording();
    const limiter = adaptiveLimiter({
      algorithm,
      initialLimit: 10,
      window: { minSamples: 3, minTime: 100, maxTime: 100 },
      clock,
    });
    const calls = [pending(clock), pending(clock), pending(clock)];
    const ps = calls.map((c) => limiter.execute(c.fn).catch(() => {}));
    calls[0]!.finish(2);
    await flushMicrotasks();
    calls[1]!.finish(2, new TimeoutError(1));
    await flushMicrotasks();
    calls[2]!.finish(2);
    await Promise.all(ps);
    // Three samples: 2ms, 4ms (dropped), 6ms; the drop's RTT is left out of the mean.
    expect(algorithm.samples).toEqual([[4, 3, true]]);
    // The next window ends 100ms after the last one closed.
    for (let i = 0; i < 5; i++) await run(limiter, clock, 10);
    expect(algorithm.samples).toHaveLength(1);
    await run(limiter, clock, 60);
    expect(algorithm.samples).toHaveLength(2);
    expect(algorithm.samples[1]).toEqual([(5 * 10 + 60) / 6, 1, false]);
  });

  it('keeps the limit within [minLimit, maxLimit] whatever the algorithm returns', async () => {
    const clock = new FakeClock(0);
    const values = [1e9, -5, Number.NaN, 7.9, Number.POSITIVE_INFINITY, 3];
    const algorithm = recording((n) => values[n - 1]!);
    const limiter = adaptiveLimiter({
      algorithm,
      minLimit: 4,
      maxLimit: 50,
      initialLimit: 10,
      window: false,
      clock,
    });
    const seen: number[] = [];
    limiter.onLimitChange(({ limit }) => seen.push(limit));
    for (let i = 0; i < values.length; i++) {
      await run(limiter, clock, 5);
      seen.push(limiter.limit);
    }
    // onLimitChange events interleaved with the limit read after each call
    expect(seen).toEqual([50, 50, 4, 4, 4, 7, 7, 7, 4, 4]);
    expect(seen.every((l) => l >= 4 && l <= 50)).toBe(true);
    expect(limiter.limit).toBe(4);
    expect(limiter.stats().limitChanges).toBeGreaterThan(0);
  });

  it('reports limit changes on onLimitChange and buttress:bulkhead:limit', async () => {
    const clock = new FakeClock(0);
    const limiter = adaptiveLimiter({ algorithm: 'aimd', initialLimit: 2, window: false, clock, name: 'x' });
    const events: unknown[] = [];
    const published: unknown[] = [];
    const sub = (m: unknown) => published.push(m);
    dc.subscribe('buttress:bulkhead:limit', sub);
    limiter.onLimitChange((e) => events.push(e));
    await run(limiter, clock, 5); // inflight 1 × 2 >= 2: +1
    dc.unsubscribe('buttress:bulkhead:limit', sub);
    expect(events).toEqual([{ limit: 3, previous: 2 }]);
    expect(published).toEqual([{ name: 'x', limit: 3, previous: 2 }]);
  });

  it('queues over the limit and dispatches waiters as calls complete, or rejects them on queueTimeout', async () => {
    const clock = new FakeClock(0);
    const limiter = adaptiveLimiter({
      algorithm: recording(() => 1),
      initialLimit: 1,
      queue: 2,
      queueTimeout: 30,
      window: false,
      clock,
    });
    const first = pending(clock);
    const p1 = limiter.execute(first.fn);
    const ran: string[] = [];
    const p2 = limiter.execute(() => ran.push('second'));
    const p3 = limiter.execute(() => ran.push('third')).catch((e) => e);
    expect(limiter.queued).toBe(2);
    await expect(limiter.execute(() => 'x')).rejects.toMatchObject({ reason: 'full' });
    first.finish(10);
    await p1;
    await p2;
    expect(await p3).toBe(2);
    expect(ran).toEqual(['second', 'third']);
    const holder = pending(clock);
    const ph = limiter.execute(holder.fn);
    const waiting = limiter.execute(() => 'late').catch((e) => e);
    clock.advance(30);
    const err = await waiting;
    expect(err).toMatchObject({ code: 'E_BULKHEAD_FULL', reason: 'queue-timeout' });
    holder.finish(1);
    await ph;
    expect(clock.pending).toBe(0);
  });

  describe('partitions', () => {
    it('guarantee each partition max(1, ceil(limit × share)) slots, even when others borrowed the rest', async () => {
      const clock = new FakeClock(0);
      const limiter = adaptiveLimiter({
        algorithm: recording(() => 10),
        initialLimit: 10,
        partitions: { live: 0.7, batch: 0.3 },
        window: false,
        clock,
      });
      const live = limiter.partition('live');
      const batch = limiter.partition('batch');
      expect(limiter.partition('live')).toBe(live);
      expect([live.limit, batch.limit]).toEqual([7, 3]);
      // batch borrows the whole limit while live is idle
      const held = Array.from({ length: 10 }, () => pending(clock));
      const ps = held.map((c) => batch.execute(c.fn).catch((e) => e));
      expect(batch.inflight).toBe(10);
      await expect(batch.execute(() => 1)).rejects.toMatchObject({ partition: 'batch', reason: 'full' });
      await expect(limiter.execute(() => 1)).rejects.toMatchObject({ partition: undefined });
      // live still gets its 7 guaranteed slots
      const liveCalls = Array.from({ length: 7 }, () => pending(clock));
      const lps = liveCalls.map((c) => live.execute(c.fn));
      expect(live.inflight).toBe(7);
      expect(limiter.inflight).toBe(17);
      await expect(live.execute(() => 1)).rejects.toMatchObject({ partition: 'live' });
      for (const c of [...held, ...liveCalls]) c.finish(1);
      await Promise.all([...ps, ...lps]);
      expect(limiter.stats().partitions).toEqual({
        live: { share: 0.7, limit: 7, inflight: 0, queued: 0 },
        batch: { share: 0.3, limit: 3, inflight: 0, queued: 0 },
      });
    });

    it('hands a freed slot to a waiting partition under its share first, then lets others borrow', async () => {
      const clock = new FakeClock(0);
      const limiter = adaptiveLimiter({
        algorithm: recording(() => 4),
        initialLimit: 4,
        queue: 5,
        partitions: { live: 0.5, batch: 0.5 },
        window: false,
        clock,
      });
      const live = limiter.partition('live');
      const batch = limiter.partition('batch');
      const liveHeld = [pending(clock), pending(clock)];
      const batchHeld = [pending(clock), pending(clock)];
      const ps = [...liveHeld.map((c) => live.execute(c.fn)), ...batchHeld.map((c) => batch.execute(c.fn))];
      const order: string[] = [];
      const hold = pending(clock);
      const start = (name: string) => () => {
        order.push(name);
        return hold.fn();
      };
      // Every slot is taken and each partition holds its guaranteed 2: all three wait.
      const waits = [
        batch.execute(start('batch')),
        live.execute(start('live')),
        limiter.execute(start('none')),
      ];
      expect(limiter.queued).toBe(3);
      // A live call ends: live is under its share, so its waiter goes first although batch's came earlier.
      liveHeld[0]!.finish(1);
      await flushMicrotasks();
      expect(order).toEqual(['live']);
      batchHeld[0]!.finish(1);
      await flushMicrotasks();
      expect(order).toEqual(['live', 'batch']);
      // No partition waits any more: the call in no partition borrows the next free slot.
      liveHeld[1]!.finish(1);
      await flushMicrotasks();
      expect(order).toEqual(['live', 'batch', 'none']);
      batchHeld[1]!.finish(1);
      hold.finish(1);
      await Promise.all([...ps, ...waits]);
      expect(limiter.inflight).toBe(0);
    });

    it('reject unknown partition names and bad shares with E_INVALID_OPTION', () => {
      const limiter = adaptiveLimiter({ partitions: { a: 0.5 } });
      expect(() => limiter.partition('b')).toThrow(/"partition".*'a'/);
      expect(() => adaptiveLimiter().partition('a')).toThrow(/none are configured/);
      expect(() => adaptiveLimiter({ partitions: { a: 0.6, b: 0.6 } })).toThrow(/summing to at most 1/);
      expect(() => adaptiveLimiter({ partitions: { a: 0 } })).toThrow(/"partitions.a"/);
      expect(() => adaptiveLimiter({ partitions: {} })).toThrow(/"partitions"/);
    });
  });

  it('accepts the algorithm by name with its options alongside, or as a factory, and rejects strays', () => {
    expect(adaptiveLimiter({ algorithm: 'gradient2', rttTolerance: 2 }).stats().algorithm).toBe('gradient2');
    expect(adaptiveLimiter({ algorithm: 'aimd', backoffRatio: 0.5 }).stats().algorithm).toBe('aimd');
    expect(adaptiveLimiter({ algorithm: 'vegas', smoothing: 0.5 }).stats().algorithm).toBe('vegas');
    const err = (() => {
      try {
        adaptiveLimiter({ algorithm: 'aimd', rttTolerance: 2 } as never);
      } catch (e) {
        return e;
      }
    })();
    expect(isInvalidOptionError(err)).toBe(true);
    expect((err as { option: string }).option).toBe('rttTolerance');
    expect(() => adaptiveLimiter({ algorithm: 'cubic' } as never)).toThrow(/"algorithm"/);
  });

  it('close() rejects waiters and later calls with E_CLOSED and leaves no timer', async () => {
    const clock = new FakeClock(0);
    const limiter = adaptiveLimiter({ initialLimit: 1, queue: 1, queueTimeout: 100, clock });
    const call = pending(clock);
    const p = limiter.execute(call.fn);
    const waiting = limiter.execute(() => 1).catch((e) => e);
    await limiter.close();
    expect(await waiting).toMatchObject({ code: 'E_CLOSED' });
    await expect(limiter.execute(() => 1)).rejects.toMatchObject({ code: 'E_CLOSED' });
    call.finish(1);
    await p;
    expect(clock.pending).toBe(0);
    await limiter[Symbol.asyncDispose]();
  });

  it('composes with cockatiel through wrap(), and emits onSuccess/onFailure/onReject', async () => {
    const clock = new FakeClock(0);
    const limiter = adaptiveLimiter({ initialLimit: 1, clock });
    const success = vi.fn();
    const failure = vi.fn();
    const reject = vi.fn();
    limiter.onSuccess(success);
    limiter.onFailure(failure);
    limiter.onReject(reject);
    const policy = wrap(retry(handleAll, { maxAttempts: 1 }), limiter);
    await expect(policy.execute(() => 'ok')).resolves.toBe('ok');
    await expect(policy.execute(() => Promise.reject(new ButtressError('E_TIMEOUT', 't')))).rejects.toThrow(
      't',
    );
    const call = pending(clock);
    const p = limiter.execute(call.fn);
    await expect(limiter.execute(() => 1)).rejects.toBeInstanceOf(BulkheadFullError);
    call.finish(1);
    await p;
    expect(success).toHaveBeenCalledTimes(2);
    expect(failure).toHaveBeenCalledWith(expect.objectContaining({ handled: true }));
    expect(reject).toHaveBeenCalledWith(expect.objectContaining({ reason: 'full', partition: undefined }));
    const partition = adaptiveLimiter({ partitions: { a: 1 } }).partition('a');
    await expect(wrap(partition, retry(handleAll, { maxAttempts: 1 })).execute(() => 2)).resolves.toBe(2);
  });
});
