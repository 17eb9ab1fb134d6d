import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { hasCode } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { bulkhead } from './bulkhead.js';
import { isBulkheadFullError } from './errors.js';
import type { QueueOrder } from './internal/wait-queue.js';

interface Arrival {
  /** ms after the previous arrival */
  gap: number;
  /** how long the call runs once started */
  duration: number;
  /** ms after its arrival at which the caller aborts, if it does */
  abortAfter: number | undefined;
}

const arrival = (withAborts: boolean): fc.Arbitrary<Arrival> =>
  fc.record({
    gap: fc.integer({ min: 0, max: 15 }),
    duration: fc.integer({ min: 0, max: 40 }),
    abortAfter: withAborts
      ? fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined })
      : fc.constant(undefined),
  });

/**
 * The declared order, restated: which waiter (by index into the waiting list, oldest first) a
 * freed slot goes to. For adaptive-lifo this is the documented CoDel rule.
 */
class OrderModel {
  readonly waiting: { id: number; at: number }[] = [];
  #aboveSince = Number.NaN;
  constructor(
    readonly order: QueueOrder,
    readonly target: number,
    readonly interval: number,
  ) {}

  next(now: number): number {
    let index: number;
    if (this.order === 'fifo') index = 0;
    else if (this.order === 'lifo') index = this.waiting.length - 1;
    else if (now - this.waiting[0]!.at <= this.target) {
      this.#aboveSince = Number.NaN;
      index = 0;
    } else {
      if (Number.isNaN(this.#aboveSince)) this.#aboveSince = now;
      index = now - this.#aboveSince >= this.interval ? this.waiting.length - 1 : 0;
    }
    const [w] = this.waiting.splice(index, 1);
    if (this.waiting.length === 0) this.#aboveSince = Number.NaN;
    return w!.id;
  }
}

test.prop([
  fc.integer({ min: 1, max: 4 }),
  fc.integer({ min: 0, max: 8 }),
  fc.constantFrom<QueueOrder>('fifo', 'lifo', 'adaptive-lifo'),
  fc.integer({ min: 0, max: 10 }),
  fc.integer({ min: 0, max: 30 }),
  fc.array(arrival(false), { minLength: 1, maxLength: 40 }),
])(
  'a bulkhead never runs more than limit and serves waiters in the declared order',
  async (limit, queue, order, codelTarget, codelInterval, arrivals) => {
    const clock = new FakeClock(0);
    const b = bulkhead({ limit, queue, order, codelTarget, codelInterval, clock });
    const model = new OrderModel(order, codelTarget, codelInterval);
    let running = 0;
    const violations: string[] = [];
    const calls: Promise<unknown>[] = [];
    let t = 0;
    arrivals.forEach(({ gap, duration }, id) => {
      t += gap;
      clock.setTimeout(() => {
        let started = false;
        const queuedBefore = b.queued;
        const fullBefore = b.executing >= limit && queuedBefore >= queue;
        const p = b.execute(
          () =>
            new Promise<void>((resolve) => {
              started = true;
              running++;
              if (running > limit) violations.push(`${running} running with limit ${limit}`);
              if (model.waiting.some((w) => w.id === id)) {
                // Started from the queue: it must be the one the declared order picks.
                const expected = model.next(clock.now());
                if (expected !== id) violations.push(`started ${id}, the ${order} order says ${expected}`);
              }
              clock.setTimeout(() => {
                running--;
                resolve();
              }, duration);
            }),
        );
        if (!started) {
          if (fullBefore) {
            calls.push(
              p.then(
                () => violations.push(`${id} ran although the bulkhead was full`),
                (e) => {
                  if (!isBulkheadFullError(e)) violations.push(`${id} failed with ${e}`);
                },
              ),
            );
            return;
          }
          model.waiting.push({ id, at: clock.now() });
        }
        calls.push(p);
      }, t);
    });
    await clock.advanceAsync(t + 40 * arrivals.length + 100);
    await Promise.all(calls);
    expect(violations).toEqual([]);
    expect(model.waiting).toEqual([]);
    expect(b.executing).toBe(0);
    expect(b.queued).toBe(0);
  },
);

test.prop([
  fc.integer({ min: 1, max: 3 }),
  fc.integer({ min: 1, max: 8 }),
  fc.constantFrom<QueueOrder>('fifo', 'lifo', 'adaptive-lifo'),
  fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }),
  fc.array(arrival(true), { minLength: 1, maxLength: 40 }),
])(
  'aborted or timed-out waiters never run and never block others',
  async (limit, queue, order, queueTimeout, arrivals) => {
    const clock = new FakeClock(0);
    const b = bulkhead({
      limit,
      queue,
      order,
      clock,
      ...(queueTimeout === undefined ? {} : { queueTimeout }),
    });
    const violations: string[] = [];
    const calls: Promise<unknown>[] = [];
    /** After every event: a waiter may only exist while every slot is taken (work-conserving). */
    const checkNoIdleSlot = () => {
      if (b.queued > 0 && b.executing < limit) {
        violations.push(`t=${clock.now()}: ${b.queued} waiting with ${b.executing}/${limit} slots busy`);
      }
    };
    let t = 0;
    arrivals.forEach(({ gap, duration, abortAfter }, id) => {
      t += gap;
      clock.setTimeout(() => {
        const arrivedAt = clock.now();
        const ac = abortAfter === undefined ? undefined : new AbortController();
        if (ac) {
          clock.setTimeout(() => {
            ac.abort('caller');
            checkNoIdleSlot();
          }, abortAfter!);
        }
        let startedAt: number | undefined;
        const p = b.execute(
          () =>
            new Promise<void>((resolve) => {
              startedAt = clock.now();
              if (ac?.signal.aborted) violations.push(`${id} ran after its signal aborted`);
              if (queueTimeout !== undefined && startedAt - arrivedAt > queueTimeout) {
                violations.push(
                  `${id} started ${startedAt - arrivedAt}ms after arriving, past its queueTimeout`,
                );
              }
              clock.setTimeout(() => {
                resolve();
                queueMicrotask(checkNoIdleSlot);
              }, duration);
            }),
          ac?.signal,
        );
        checkNoIdleSlot();
        calls.push(
          p.then(
            () => {},
            (e) => {
              const now = clock.now();
              if (startedAt !== undefined) violations.push(`${id} ran and was rejected with ${e}`);
              if (hasCode(e, 'E_ABORTED')) {
                if (now !== arrivedAt + abortAfter!)
                  violations.push(`${id} left ${now - arrivedAt}ms after arriving, not at its abort`);
              } else if (isBulkheadFullError(e) && e.reason === 'queue-timeout') {
                if (now !== arrivedAt + queueTimeout!)
                  violations.push(`${id} left at ${now}, not at its queue deadline`);
              } else if (!(isBulkheadFullError(e) && e.reason === 'full')) {
                violations.push(`${id} failed with ${e}`);
              }
              checkNoIdleSlot();
            },
          ),
        );
      }, t);
    });
    await clock.advanceAsync(t + 40 * arrivals.length + 200);
    await Promise.all(calls);
    expect(violations).toEqual([]);
    expect(b.executing).toBe(0);
    expect(b.queued).toBe(0);
    expect(clock.pending).toBe(0);
  },
);
