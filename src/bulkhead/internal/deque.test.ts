import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { Deque, type DequeEntry } from './deque.js';

interface Item extends DequeEntry {
  id: number;
}
const item = (id: number): Item => ({ id, dequeIndex: -1 });
const ids = (d: Deque<Item>) => d.toArray().map((i) => i.id);

describe('Deque', () => {
  it('takes from either end and grows past its initial capacity', () => {
    const d = new Deque<Item>(2);
    for (let i = 0; i < 100; i++) d.push(item(i));
    expect(d.size).toBe(100);
    expect(d.shift()?.id).toBe(0);
    expect(d.pop()?.id).toBe(99);
    expect(d.peekFirst()?.id).toBe(1);
    expect(d.peekLast()?.id).toBe(98);
    expect(d.size).toBe(98);
  });

  it('removes from the middle, skipping the tombstone from either end', () => {
    const d = new Deque<Item>();
    const items = [0, 1, 2, 3, 4].map(item);
    for (const i of items) d.push(i);
    expect(d.remove(items[2]!)).toBe(true);
    expect(d.remove(items[2]!)).toBe(false);
    expect(ids(d)).toEqual([0, 1, 3, 4]);
    expect(d.shift()?.id).toBe(0);
    expect(d.shift()?.id).toBe(1);
    expect(d.shift()?.id).toBe(3);
    expect(d.pop()?.id).toBe(4);
    expect(d.shift()).toBeUndefined();
    expect(d.span).toBe(0);
  });

  it('trims tombstones at the ends at once, and compacts when they dominate', () => {
    const d = new Deque<Item>();
    const items = Array.from({ length: 1000 }, (_, i) => item(i));
    for (const i of items) d.push(i);
    // Remove every other entry from the middle: the span must stay within 2x the live size (+ slack).
    for (let i = 1; i < 999; i += 2) d.remove(items[i]!);
    expect(d.size).toBe(501);
    expect(d.span).toBeLessThanOrEqual(2 * d.size + 32);
    expect(ids(d).slice(0, 4)).toEqual([0, 2, 4, 6]);
    // Removed entries are unknown to it; survivors still removable after compaction renumbered them.
    expect(d.remove(items[1]!)).toBe(false);
    expect(d.remove(items[500]!)).toBe(true);
    expect(d.remove(items[0]!)).toBe(true);
    expect(d.peekFirst()?.id).toBe(2);
  });

  it('an entry in another deque is not removed', () => {
    const a = new Deque<Item>();
    const b = new Deque<Item>();
    const x = item(1);
    a.push(x);
    b.push(item(2));
    expect(b.remove(x)).toBe(false);
    expect(a.remove(x)).toBe(true);
  });

  it('clear returns the live entries oldest first', () => {
    const d = new Deque<Item>();
    const items = [0, 1, 2, 3].map(item);
    for (const i of items) d.push(i);
    d.remove(items[1]!);
    expect(d.clear().map((i) => i.id)).toEqual([0, 2, 3]);
    expect(d.size).toBe(0);
    expect(items.every((i) => i.dequeIndex === -1)).toBe(true);
  });
});

type Op = { op: 'push' } | { op: 'shift' } | { op: 'pop' } | { op: 'remove'; pick: number };
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ op: 'push' } as Op) },
  fc.constant({ op: 'shift' } as Op),
  fc.constant({ op: 'pop' } as Op),
  { weight: 2, arbitrary: fc.nat(1000).map((pick) => ({ op: 'remove', pick }) as Op) },
);

test.prop([fc.array(op, { maxLength: 400 }), fc.integer({ min: 1, max: 64 })])(
  'a deque behaves as an array model under any sequence, and its span stays within 2x its size',
  (ops, capacity) => {
    const d = new Deque<Item>(capacity);
    const model: Item[] = [];
    let next = 0;
    for (const o of ops) {
      if (o.op === 'push') {
        const i = item(next++);
        d.push(i);
        model.push(i);
      } else if (o.op === 'shift') {
        expect(d.shift()).toBe(model.shift());
      } else if (o.op === 'pop') {
        expect(d.pop()).toBe(model.pop());
      } else if (model.length > 0) {
        const victim = model.splice(o.pick % model.length, 1)[0]!;
        expect(d.remove(victim)).toBe(true);
      }
      expect(d.size).toBe(model.length);
      expect(d.peekFirst()).toBe(model[0]);
      expect(d.peekLast()).toBe(model[model.length - 1]);
      expect(d.span).toBeLessThanOrEqual(Math.max(32, 2 * d.size) + 1);
    }
    expect(d.toArray()).toEqual(model);
  },
);
