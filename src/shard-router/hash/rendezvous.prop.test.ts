import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { chiSquare, chiSquareBound, keys } from './hash.test-util.js';
import { createRendezvous, rendezvous } from './rendezvous.js';
import { xxh64 } from './xxh64.js';

const names = (n: number, salt = 'node') => Array.from({ length: n }, (_, i) => `${salt}-${i}`);

/** The documented score, in BigInt and doubles: what another language would compute. */
function referenceScore(node: string, key: string, weight?: number): number {
  const k = xxh64(key);
  const lane = Buffer.alloc(8);
  lane.writeBigUInt64LE(k);
  const s = xxh64(lane, xxh64(node));
  const top = Number(s >> 11n);
  return weight === undefined ? top : -weight / Math.log((top + 0.5) / 2 ** 53);
}

describe('rendezvous', () => {
  test.prop([fc.uniqueArray(fc.string({ minLength: 1 }), { minLength: 1, maxLength: 12 }), fc.string()])(
    'picks the node with the highest documented score',
    (nodes, key) => {
      const scores = nodes.map((n) => referenceScore(n, key));
      expect(rendezvous(nodes, key)).toBe(nodes[scores.indexOf(Math.max(...scores))]);
    },
  );

  test.prop([
    fc.uniqueArray(fc.string({ minLength: 1 }), { minLength: 1, maxLength: 12 }).chain((nodes) =>
      fc.tuple(
        fc.constant(nodes),
        fc.array(fc.double({ min: 0.01, max: 100, noNaN: true }), {
          minLength: nodes.length,
          maxLength: nodes.length,
        }),
      ),
    ),
    fc.string(),
  ])('with weights, picks the highest -w / ln(u)', ([nodes, weights], key) => {
    const scores = nodes.map((n, i) => referenceScore(n, key, weights[i]));
    expect(rendezvous(nodes, key, { weights })).toBe(nodes[scores.indexOf(Math.max(...scores))]);
  });

  // 200,000 keys and n >= 4: the moved share's standard deviation is under 0.09 points.
  test.prop(
    [fc.integer({ min: 4, max: 24 }), fc.integer(), fc.constantFrom('sequential-string', 'random-bytes')],
    {
      numRuns: 5,
    },
  )(
    'moves 1/(n+1) of keys (within ±0.5 percentage points) when a node is added, and only to the new node',
    (n, seed, shape) => {
      const before = createRendezvous(names(n));
      const after = createRendezvous([...names(n), 'added']);
      const count = 200_000;
      let moved = 0;
      for (const key of keys(shape as 'random-bytes', count, seed)) {
        const b = before.get(key);
        const a = after.get(key);
        if (a !== b) {
          moved++;
          if (a !== 'added') expect.fail(`${String(key)} moved from ${b} to ${a}`);
        }
      }
      expect(Math.abs(moved / count - 1 / (n + 1))).toBeLessThan(0.005);
    },
  );

  test.prop([fc.integer({ min: 2, max: 16 }), fc.integer({ min: 0, max: 15 }), fc.integer()], {
    numRuns: 20,
  })('removing a node moves only the keys it held', (n, removedAt, seed) => {
    const all = names(n);
    const removed = all[removedAt % n]!;
    const before = createRendezvous(all);
    const after = createRendezvous(all.filter((x) => x !== removed));
    for (const key of keys('random-string', 2000, seed)) {
      const b = before.get(key);
      if (b !== removed) expect(after.get(key)).toBe(b);
    }
  });

  test.prop([fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 2, maxLength: 8 }), fc.integer()], {
    numRuns: 10,
  })('gives each node a share of keys proportional to its weight (chi-square, p = 1e-6)', (weights, seed) => {
    const nodes = names(weights.length);
    const r = createRendezvous(nodes, { weights });
    const counts = new Float64Array(nodes.length);
    const count = 40_000;
    for (const key of keys('sequential-int', count, seed)) counts[nodes.indexOf(r.get(key))]!++;
    const total = weights.reduce((a, b) => a + b, 0);
    const expected = weights.map((w) => (count * w) / total);
    expect(chiSquare(counts, expected)).toBeLessThan(chiSquareBound(nodes.length - 1));
  });

  test.prop([fc.integer({ min: 2, max: 12 }), fc.string(), fc.integer({ min: 1, max: 12 })])(
    'top-k lists k distinct nodes, best first: its head is the winner, and with a node added it changes by at most that node',
    (n, key, kk) => {
      const k = Math.min(kk, n);
      const r = createRendezvous(names(n));
      const top = r.top(key, k);
      expect(new Set(top).size).toBe(k);
      expect(top[0]).toBe(r.get(key));
      expect(r.top(key, n).slice(0, k)).toEqual(top);
      const grown = createRendezvous([...names(n), 'added'])
        .top(key, k)
        .filter((x) => x !== 'added');
      expect(grown).toEqual(top.slice(0, grown.length));
      expect(rendezvous(names(n), key, { k })).toEqual(top);
    },
  );

  it('answers its documented examples', () => {
    const nodes = ['cache-a', 'cache-b', 'cache-c'];
    expect(rendezvous(nodes, 'session:9f2')).toBe('cache-c');
    expect(rendezvous(nodes, 'session:9f2', { k: 2 })).toEqual(['cache-c', 'cache-a']);
  });

  it('rejects bad input with E_INVALID_OPTION', () => {
    expect(() => rendezvous([], 'k')).toThrow(/nodes/);
    expect(() => rendezvous(['a', 'a'], 'k')).toThrow(/distinct/);
    expect(() => rendezvous(['a', 'b'], 'k', { weights: [1] })).toThrow(/weights/);
    expect(() => rendezvous(['a', 'b'], 'k', { weights: { a: 0 } })).toThrow(/weights\.a/);
    expect(() => rendezvous(['a', 'b'], 'k', { weights: { c: 1 } })).toThrow(/weights\.c/);
    expect(() => rendezvous(['a', 'b'], 'k', { k: 3 })).toThrow(/\bk\b/);
    expect(() => createRendezvous(['a']).get(1.5)).toThrow(/key/);
  });
});
