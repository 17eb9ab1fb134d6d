import { fc, test } from '@fast-check/vitest';
import type { BatchObservableResult, Observable } from '@opentelemetry/api';
import { describe, expect } from 'vitest';
import { Observations, Tracked } from './tracked.js';

/*
 * Totals read from objects that come and go: whatever the order of creations, increments,
 * closes and collections, a counter summed over the objects of one series never goes down, and
 * each collection reports exactly what every object ever counted up to its last reading.
 */

class Counted {
  total = 0;
}

type Op =
  | { kind: 'create'; series: number }
  | { kind: 'inc'; index: number; by: number }
  | { kind: 'close'; index: number }
  | { kind: 'collect' };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('create' as const), series: fc.integer({ min: 0, max: 1 }) }),
  fc.record({ kind: fc.constant('inc' as const), index: fc.nat(20), by: fc.integer({ min: 1, max: 100 }) }),
  fc.record({ kind: fc.constant('close' as const), index: fc.nat(20) }),
  fc.constant({ kind: 'collect' as const }),
);

describe('Tracked totals', () => {
  test.prop([fc.array(op, { maxLength: 80 })])(
    'a total summed over objects that come and go never decreases, and equals everything counted',
    (ops) => {
      const tracked = new Tracked<Counted>();
      const instrument = {} as Observable;
      const o = new Observations();
      const objects: { object: Counted; series: number; open: boolean }[] = [];
      const reported = [0, 0];
      const collect = () => {
        for (const [ref, object] of tracked.live()) {
          const series = objects.find((x) => x.object === object)!.series;
          o.total(tracked, ref, instrument, { series }, object.total);
        }
        const seen = [0, 0];
        const result = {
          observe: (_: Observable, value: number, attributes: { series: number }) => {
            seen[attributes.series] = value;
          },
        } as unknown as BatchObservableResult;
        o.flush(result, tracked as Tracked<object>);
        for (const series of [0, 1]) {
          // Every object's count, closed ones included (a closed object counts no more).
          const expected = objects
            .filter((x) => x.series === series)
            .reduce((sum, x) => sum + x.object.total, 0);
          const wasSeen = objects.some((x) => x.series === series);
          if (!wasSeen) continue;
          expect(seen[series]).toBe(expected);
          expect(seen[series]).toBeGreaterThanOrEqual(reported[series]!);
          reported[series] = seen[series]!;
        }
      };
      for (const step of ops) {
        if (step.kind === 'create') {
          const object = new Counted();
          objects.push({ object, series: step.series, open: true });
          tracked.add(object);
        } else if (step.kind === 'inc') {
          const target = objects[step.index];
          if (target?.open) target.object.total += step.by;
        } else if (step.kind === 'close') {
          const target = objects[step.index];
          if (target?.open) {
            target.open = false;
            tracked.delete(target.object);
          }
        } else {
          collect();
        }
      }
      collect();
      collect();
    },
  );
});
