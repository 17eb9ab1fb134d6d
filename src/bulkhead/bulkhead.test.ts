import dc from 'node:diagnostics_channel';
import { handleType, isBulkheadRejectedError, retry, wrap } from 'cockatiel';
import { describe, expect, it, vi } from 'vitest';
import { hasCode, isAbortedError } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { type Bulkhead, bulkhead } from './bulkhead.js';
import { BulkheadFullError, isBulkheadFullError } from './errors.js';

/** A call that runs until the test resolves or rejects it. */
function gate<T = string>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Starts `n` calls that each hold their slot until released; returns their releasers. */
function occupy(b: Bulkhead, n: number) {
  const gates = Array.from({ length: n }, () => gate());
  const results = gates.map((g) => b.execute(() => g.promise));
  return { gates, results };
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('bulkhead', () => {
  it('runs at most `limit` calls and rejects beyond limit + queue with E_BULKHEAD_FULL', async () => {
    const b = bulkhead({ limit: 2, queue: 1 });
    let running = 0;
    let peak = 0;
    const gates = [gate(), gate(), gate()];
    const calls = gates.map((g) =>
      b.execute(async () => {
        running++;
        peak = Math.max(peak, running);
        await g.promise;
        running--;
        return 'ok';
      }),
    );
    expect(b.executing).toBe(2);
    expect(b.queued).toBe(1);
    expect(b.executionSlots).toBe(0);
    expect(b.queueSlots).toBe(0);
    const rejected = await settle(b.execute(() => 'never'));
    expect(rejected.ok).toBe(false);
    const err = (rejected as { error: BulkheadFullError }).error;
    expect(err).toBeInstanceOf(BulkheadFullError);
    expect(err.code).toBe('E_BULKHEAD_FULL');
    expect(err.reason).toBe('full');
    expect(err.isBulkheadRejectedError).toBe(true);
    expect(isBulkheadRejectedError(err)).toBe(true);
    expect(isBulkheadFullError(err)).toBe(true);
    expect(err.stack?.split('\n')).toHaveLength(1);
    for (const g of gates) g.resolve('x');
    await expect(Promise.all(calls)).resolves.toEqual(['ok', 'ok', 'ok']);
    expect(peak).toBe(2);
    expect(b.executing).toBe(0);
    expect(b.stats()).toMatchObject({ totalExecuted: 3, totalRejected: 1, executing: 0, queued: 0 });
  });

  it('passes values, errors, sync results, sync throws and thenables through, and frees the slot each time', async () => {
    const b = bulkhead({ limit: 1 });
    await expect(b.execute(() => 1)).resolves.toBe(1);
    await expect(b.execute(async () => 2)).resolves.toBe(2);
    // biome-ignore lint/suspicious/noThenProperty: a non-Promise thenable is what this checks
    const thenable = { then: (r: (v: number) => void) => r(3) } as unknown as PromiseLike<number>;
    await expect(b.execute(() => thenable)).resolves.toBe(3);
    await expect(
      b.execute(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    await expect(b.execute(() => Promise.reject(new Error('async')))).rejects.toThrow('async');
    // 16 more, to cover the untimed fast path as well as the sampled one.
    for (let i = 0; i < 16; i++) {
      await expect(b.execute(() => Promise.reject(new Error('e')))).rejects.toThrow('e');
      await expect(b.execute(() => i)).resolves.toBe(i);
    }
    expect(b.executing).toBe(0);
  });

  it('serves waiters first in, first out by default', async () => {
    const b = bulkhead({ limit: 1, queue: 10 });
    const first = gate();
    const order: number[] = [];
    const running = b.execute(() => first.promise);
    const waiters = [1, 2, 3].map((i) => b.execute(() => order.push(i)));
    first.resolve('x');
    await Promise.all([running, ...waiters]);
    expect(order).toEqual([1, 2, 3]);
  });

  it("serves the newest waiter first with order 'lifo'", async () => {
    const b = bulkhead({ limit: 1, queue: 10, order: 'lifo' });
    const first = gate();
    const order: number[] = [];
    const running = b.execute(() => first.promise);
    const waiters = [1, 2, 3].map((i) => b.execute(() => order.push(i)));
    first.resolve('x');
    await Promise.all([running, ...waiters]);
    expect(order).toEqual([3, 2, 1]);
  });

  it('passes the caller signal to the function, and a shared never-aborting one otherwise', async () => {
    const b = bulkhead({ limit: 1 });
    const ac = new AbortController();
    const seen: AbortSignal[] = [];
    await b.execute(({ signal }) => seen.push(signal), ac.signal);
    await b.execute(({ signal }) => seen.push(signal));
    await b.execute(({ signal }) => seen.push(signal));
    expect(seen[0]).toBe(ac.signal);
    expect(seen[1]).toBe(seen[2]);
    expect(seen[1]!.aborted).toBe(false);
  });

  it('rejects with E_ABORTED when the signal is already aborted, without running', async () => {
    const b = bulkhead({ limit: 1, queue: 1 });
    const fn = vi.fn();
    const ac = new AbortController();
    ac.abort('gone');
    await expect(b.execute(fn, ac.signal)).rejects.toMatchObject({ code: 'E_ABORTED', cause: 'gone' });
    const held = occupy(b, 1);
    await expect(b.execute(fn, ac.signal)).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(fn).not.toHaveBeenCalled();
    held.gates[0]!.resolve('x');
    await held.results[0];
  });

  it('a waiter whose signal aborts leaves at once, and the next waiter gets the slot', async () => {
    const b = bulkhead({ limit: 1, queue: 3 });
    const held = occupy(b, 1);
    const ac = new AbortController();
    const ran: string[] = [];
    const a = b.execute(() => ran.push('a'));
    const aborted = b.execute(() => ran.push('aborted'), ac.signal);
    const c = b.execute(() => ran.push('c'));
    ac.abort('changed my mind');
    const out = await settle(aborted);
    expect(out.ok).toBe(false);
    expect(isAbortedError((out as { error: unknown }).error)).toBe(true);
    expect(b.queued).toBe(2);
    held.gates[0]!.resolve('x');
    await Promise.all([a, c, held.results[0]]);
    expect(ran).toEqual(['a', 'c']);
    expect(b.stats().totalAborted).toBe(1);
  });

  it('a waiter leaves at exactly its queueTimeout with reason queue-timeout; later waiters keep their own deadline', async () => {
    const clock = new FakeClock(0);
    const b = bulkhead({ limit: 1, queue: 5, queueTimeout: 100, clock });
    const held = occupy(b, 1);
    const early = settle(b.execute(() => 'early'));
    clock.advance(60);
    const late = settle(b.execute(() => 'late'));
    clock.advance(39);
    await flushMicrotasks();
    expect(b.queued).toBe(2);
    clock.advance(1);
    const e = await early;
    expect(e.ok).toBe(false);
    expect((e as { error: BulkheadFullError }).error).toMatchObject({
      code: 'E_BULKHEAD_FULL',
      reason: 'queue-timeout',
    });
    expect(b.queued).toBe(1);
    // The slot frees before the second waiter's deadline: it runs.
    clock.advance(30);
    held.gates[0]!.resolve('x');
    expect(await late).toEqual({ ok: true, value: 'late' });
    expect(b.stats().totalQueueTimeouts).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it('estimates retryAfter from the mean execution time, the queue position and the limit', async () => {
    const clock = new FakeClock(0);
    const b = bulkhead({ limit: 2, queue: 1, clock });
    // The first call is always timed: 40ms.
    const g = gate();
    const timed = b.execute(() => g.promise);
    clock.advance(40);
    g.resolve('x');
    await timed;
    expect(b.stats().meanExecutionTime).toBe(40);
    const held = occupy(b, 3);
    const rejected = await settle(b.execute(() => 'x'));
    // A newcomer would be 2nd in the queue: 40ms × 2 / 2 slots.
    expect((rejected as { error: BulkheadFullError }).error.retryAfter).toBe(40);
    for (const gg of held.gates) gg.resolve('x');
    await Promise.all(held.results);
  });

  it('emits onSuccess, onFailure and onReject, and publishes rejections on buttress:bulkhead:reject', async () => {
    const clock = new FakeClock(0);
    const b = bulkhead({ limit: 1, name: 'db', clock });
    const success = vi.fn();
    const failure = vi.fn();
    const reject = vi.fn();
    const published: unknown[] = [];
    const sub = (m: unknown) => published.push(m);
    dc.subscribe('buttress:bulkhead:reject', sub);
    b.onSuccess(success);
    b.onFailure(failure);
    b.onReject(reject);
    const g = gate();
    const p = b.execute(() => g.promise);
    await expect(b.execute(() => 1)).rejects.toMatchObject({ bulkhead: 'db', reason: 'full' });
    clock.advance(25);
    g.resolve('x');
    await p;
    await expect(b.execute(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    dc.unsubscribe('buttress:bulkhead:reject', sub);
    expect(success).toHaveBeenCalledWith({ duration: 25 });
    expect(failure).toHaveBeenCalledWith(expect.objectContaining({ handled: false }));
    expect(reject).toHaveBeenCalledWith({ reason: 'full', retryAfter: 0 });
    expect(published).toEqual([{ kind: 'bulkhead', name: 'db', reason: 'full', retryAfter: 0, limit: 1 }]);
  });

  it("'adaptive-lifo' serves FIFO until the oldest waiter has been over codelTarget for codelInterval, then LIFO", async () => {
    const clock = new FakeClock(0);
    const b = bulkhead({
      limit: 1,
      queue: 100,
      order: 'adaptive-lifo',
      codelTarget: 5,
      codelInterval: 20,
      clock,
    });
    const order: number[] = [];
    let current = gate();
    const holder = () => current.promise;
    const calls: Promise<unknown>[] = [b.execute(holder)];
    /** Lets the running call finish after `ms`, and lets the next waiter start. */
    const step = async (ms: number) => {
      clock.advance(ms);
      const g = current;
      current = gate();
      g.resolve('x');
      await flushMicrotasks();
    };
    for (let i = 0; i < 6; i++) {
      calls.push(
        b.execute(() => {
          order.push(i);
          return holder();
        }),
      );
    }
    // t=0..4: the oldest waiter has waited <= 5ms: FIFO.
    await step(4);
    expect(order).toEqual([0]);
    expect(b.stats().mode).toBe('fifo');
    // t=10: above target since now; not yet for 20ms: still FIFO.
    await step(6);
    expect(order).toEqual([0, 1]);
    // t=31: above target for 21ms: standing queue, LIFO.
    await step(21);
    expect(order).toEqual([0, 1, 5]);
    expect(b.stats().mode).toBe('lifo');
    await step(1);
    expect(order).toEqual([0, 1, 5, 4]);
    // Drain; an empty queue resets to FIFO.
    await step(1);
    await step(1);
    await step(1);
    expect(order).toEqual([0, 1, 5, 4, 3, 2]);
    const late = [10, 11].map((i) =>
      b.execute(() => {
        order.push(i);
        return holder();
      }),
    );
    calls.push(...late);
    await step(1);
    await step(1);
    expect(order.slice(-2)).toEqual([10, 11]);
    expect(b.stats().mode).toBe('fifo');
    current.resolve('x');
    await Promise.all(calls);
  });

  it('close() rejects waiters and later calls with E_CLOSED, lets running calls finish, and leaves no timer', async () => {
    const clock = new FakeClock(0);
    const b = bulkhead({ limit: 1, queue: 2, queueTimeout: '1s', clock });
    const held = occupy(b, 1);
    const waiting = settle(b.execute(() => 'never'));
    expect(clock.pending).toBe(1);
    await b.close();
    expect(clock.pending).toBe(0);
    const w = await waiting;
    expect(hasCode((w as { error: unknown }).error, 'E_CLOSED')).toBe(true);
    await expect(b.execute(() => 1)).rejects.toMatchObject({ code: 'E_CLOSED' });
    held.gates[0]!.resolve('done');
    await expect(held.results[0]).resolves.toBe('done');
    expect(b.executing).toBe(0);
    await b[Symbol.asyncDispose]();
  });

  it('composes with cockatiel retry through wrap(): rejections carry the brand its filters look for', async () => {
    const b = bulkhead({ limit: 1 });
    const held = occupy(b, 1);
    const r = retry(
      handleType(Error, (e) => isBulkheadRejectedError(e)),
      { maxAttempts: 2 },
    );
    const policy = wrap(r, b);
    const attempts: number[] = [];
    r.onRetry(() => attempts.push(1));
    await expect(policy.execute(() => 'x')).rejects.toBeInstanceOf(BulkheadFullError);
    expect(attempts).toHaveLength(2);
    held.gates[0]!.resolve('x');
    await held.results[0];
    await expect(policy.execute(() => 'ok')).resolves.toBe('ok');
  });

  it('a waiter whose function throws synchronously frees its slot for the next waiter', async () => {
    const b = bulkhead({ limit: 1, queue: 3 });
    const held = occupy(b, 1);
    const bad = settle(
      b.execute(() => {
        throw new Error('sync');
      }),
    );
    const bad2 = settle(
      b.execute(() => {
        throw new Error('sync2');
      }),
    );
    const good = b.execute(() => 'good');
    held.gates[0]!.resolve('x');
    expect((await bad).ok).toBe(false);
    expect((await bad2).ok).toBe(false);
    await expect(good).resolves.toBe('good');
    expect(b.executing).toBe(0);
  });
});
