import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { FakeClock } from '../testing/fake-clock.js';
import { TimerWheel } from './timer-wheel.js';

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

/** Operations on a wheel: schedule an entry, cancel one, or let time pass. */
const op = fc.oneof(
  fc.record({
    kind: fc.constant('schedule' as const),
    ms: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.double({ min: 0, max: 5000, noNaN: true })),
  }),
  fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('advance' as const),
    ms: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.double({ min: 0, max: 700, noNaN: true })),
  }),
);
const tick = fc.constantFrom(1, 2, 5, 0.5);
const slots = fc.constantFrom(32, 64, 4096);

test.prop([fc.array(op, { maxLength: 200 }), tick, slots, fc.integer({ min: 0, max: 1e12 })])(
  'fires every entry no earlier than its deadline and at most one tick late',
  (ops, tickMs, size, start) => {
    const clock = new FakeClock(start);
    const wheel = new TimerWheel({ clock, tick: tickMs, slots: size });
    const entries: { deadline: number; firedAt?: number; handle: ReturnType<TimerWheel['schedule']> }[] = [];
    for (const o of ops) {
      if (o.kind === 'schedule') {
        const e = { deadline: clock.now() + o.ms } as (typeof entries)[number];
        e.handle = wheel.schedule(o.ms, () => {
          expect(e.firedAt).toBeUndefined();
          e.firedAt = clock.now();
        });
        entries.push(e);
      } else if (o.kind === 'advance') clock.advance(o.ms);
    }
    clock.advance(10_000);
    for (const e of entries) {
      expect(e.firedAt).toBeDefined();
      // A hair of floating-point slack: deadlines are rounded through tick arithmetic.
      expect(e.firedAt!).toBeGreaterThanOrEqual(e.deadline - 1e-6);
      expect(e.firedAt!).toBeLessThanOrEqual(e.deadline + tickMs + 1e-6);
    }
    expect(wheel.size).toBe(0);
  },
);

test.prop([fc.array(op, { maxLength: 200 }), tick, slots])(
  'a cancelled entry never fires',
  (ops, tickMs, size) => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock, tick: tickMs, slots: size });
    const live: { handle: ReturnType<TimerWheel['schedule']>; cancelled: boolean; fired: boolean }[] = [];
    for (const o of ops) {
      if (o.kind === 'schedule') {
        const e = { cancelled: false, fired: false } as (typeof live)[number];
        e.handle = wheel.schedule(o.ms, () => {
          expect(e.cancelled).toBe(false);
          e.fired = true;
        });
        live.push(e);
      } else if (o.kind === 'cancel' && live.length > 0) {
        const e = live[o.pick % live.length]!;
        const wasPending = !e.fired && !e.cancelled;
        expect(wheel.cancel(e.handle)).toBe(wasPending);
        if (wasPending) e.cancelled = true;
      } else if (o.kind === 'advance') clock.advance(o.ms);
    }
    clock.advance(10_000);
    for (const e of live) expect(e.fired).toBe(!e.cancelled);
  },
);

test.prop([fc.array(op, { maxLength: 120 }), slots])(
  'no underlying timer is pending when the wheel is empty',
  async (ops, size) => {
    const clock = new FakeClock(0);
    const wheel = new TimerWheel({ clock, slots: size });
    const handles: ReturnType<TimerWheel['schedule']>[] = [];
    for (const o of ops) {
      if (o.kind === 'schedule') handles.push(wheel.schedule(o.ms, () => {}));
      else if (o.kind === 'cancel' && handles.length > 0) wheel.cancel(handles[o.pick % handles.length]!);
      else if (o.kind === 'advance') clock.advance(o.ms);
      await nextTick();
      // At most one underlying timer, and none once the wheel is empty.
      expect(clock.pending).toBe(wheel.size === 0 ? 0 : 1);
    }
    for (const h of handles) wheel.cancel(h);
    await nextTick();
    expect(clock.pending).toBe(0);
  },
);
