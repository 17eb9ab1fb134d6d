import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { chiSquare, chiSquareBound, KEY_SHAPES, keys } from './hash/hash.test-util.js';
import { jumpHash } from './hash/jump.js';
import { xxh64 } from './hash/xxh64.js';
import { defaultHasher, logicalShardOf, type ShardHasher, xxh64Hasher } from './hasher.js';

const SHARD_COUNTS = [4, 16, 64, 256, 1024, 4096, 7, 1000, 3000] as const;

/** Counts per logical shard of `count` keys of `shape` under `hasher`. */
function spread(
  hasher: ShardHasher,
  n: number,
  shape: (typeof KEY_SHAPES)[number],
  seed: number,
): Int32Array {
  const counts = new Int32Array(n);
  // At least 32 keys per shard, so every expected count is large enough for the chi-square test.
  for (const key of keys(shape, Math.max(20_000, n * 32), seed)) counts[hasher.logical(key, n)]!++;
  return counts;
}

describe('xxh64 hasher: uniformity', () => {
  test.prop(
    [
      fc.constantFrom(...SHARD_COUNTS),
      fc.constantFrom(...KEY_SHAPES),
      fc.integer(),
      fc.constantFrom('modulo', 'jump'),
    ],
    { numRuns: 30 },
  )(
    'spreads keys uniformly over 4 to 4096 logical shards (chi-square, p = 1e-6)',
    (n, shape, seed, placement) => {
      const counts = spread(xxh64Hasher({ placement: placement as 'modulo' | 'jump' }), n, shape, seed);
      expect(chiSquare(counts)).toBeLessThan(chiSquareBound(n - 1));
    },
  );

  it('spreads sequential keys uniformly at every listed shard count, both placements', () => {
    for (const n of SHARD_COUNTS) {
      for (const placement of ['modulo', 'jump'] as const) {
        const counts = spread(xxh64Hasher({ placement }), n, 'sequential-string', n);
        expect(chiSquare(counts), `${n} shards, ${placement}`).toBeLessThan(chiSquareBound(n - 1));
      }
    }
  });

  it('the chi-square test catches a biased placement (the test can fail)', () => {
    // Keys hashed well but folded onto n - 1 shards: the last shard never gets a key.
    const biased: ShardHasher = { name: 'biased', logical: (key, n) => defaultHasher.logical(key, n - 1) };
    const counts = spread(biased, 64, 'random-string', 1);
    expect(chiSquare(counts)).toBeGreaterThan(chiSquareBound(63));
    // A hot shard: 2% of the keys piled onto shard 0, the rest spread evenly.
    const hot: ShardHasher = {
      name: 'hot',
      logical: (key, n) => {
        const s = defaultHasher.logical(key, n * 50);
        return s < n ? 0 : s % n;
      },
    };
    expect(chiSquare(spread(hot, 64, 'random-string', 2))).toBeGreaterThan(chiSquareBound(63));
  });
});

describe('xxh64 hasher: placement', () => {
  test.prop([
    fc.oneof(fc.string(), fc.maxSafeInteger(), fc.uint8Array()),
    fc.integer({ min: 1, max: 65_536 }),
  ])('the logical shard is hash mod logicalShards, in [0, logicalShards)', (key, n) => {
    const logical = defaultHasher.logical(key, n);
    expect(logical).toBe(Number(xxh64(key) % BigInt(n)));
    expect(logicalShardOf(key, n)).toBe(logical);
  });

  test.prop([fc.string(), fc.integer({ min: 1, max: 65_536 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })])(
    "'jump' placement is the jump hash of the seeded 64-bit hash",
    (key, n, seed) => {
      expect(xxh64Hasher({ seed, placement: 'jump' }).logical(key, n)).toBe(jumpHash(xxh64(key, seed), n));
    },
  );

  test.prop([fc.string(), fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 4096 })])(
    'one hasher serves several shard counts (its cached 2^32 mod n follows n)',
    (key, a, b) => {
      const h = xxh64Hasher({ seed: 3 });
      expect(h.logical(key, a)).toBe(Number(xxh64(key, 3) % BigInt(a)));
      expect(h.logical(key, b)).toBe(Number(xxh64(key, 3) % BigInt(b)));
      expect(h.logical(key, a)).toBe(Number(xxh64(key, 3) % BigInt(a)));
    },
  );

  it('names itself after its settings', () => {
    expect(defaultHasher.name).toBe('xxh64/mod');
    expect(xxh64Hasher({ seed: 7, placement: 'jump' }).name).toBe('xxh64(seed=7)/jump');
    expect(Object.isFrozen(defaultHasher)).toBe(true);
  });

  it('rejects bad options and shard counts with E_INVALID_OPTION', () => {
    expect(() => xxh64Hasher({ placement: 'ring' as never })).toThrow(/placement/);
    expect(() => xxh64Hasher({ seed: -1 })).toThrow(/seed/);
    expect(() => xxh64Hasher({ sede: 1 } as never)).toThrow(/sede/);
    for (const n of [0, -1, 1.5, 2 ** 21 + 1, Number.NaN]) {
      expect(() => logicalShardOf('k', n)).toThrow(/logicalShards/);
    }
  });
});
