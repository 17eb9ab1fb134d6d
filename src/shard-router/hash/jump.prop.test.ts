import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { keys } from './hash.test-util.js';
import { jumpHash } from './jump.js';
import { xxh64 } from './xxh64.js';

/** The paper's listing, in BigInt: the reference the 32-bit version must equal. */
function reference(key: bigint, buckets: number): number {
  let k = BigInt.asUintN(64, key);
  let b = -1n;
  let j = 0n;
  while (j < BigInt(buckets)) {
    b = j;
    k = BigInt.asUintN(64, k * 2862933555777619845n + 1n);
    j = BigInt(Math.floor(Number(b + 1n) * (2 ** 31 / Number((k >> 33n) + 1n))));
  }
  return Number(b);
}

describe('jumpHash', () => {
  test.prop([fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 1, max: 2 ** 31 - 1 })])(
    "equals Lamping and Veach's algorithm for every 64-bit key and bucket count",
    (key, buckets) => {
      expect(jumpHash(key, buckets)).toBe(reference(key, buckets));
    },
  );

  test.prop([fc.maxSafeInteger(), fc.integer({ min: 1, max: 100_000 })])(
    'uses an integer key as the 64-bit key itself (number and bigint alike)',
    (key, buckets) => {
      expect(jumpHash(key, buckets)).toBe(reference(BigInt(key), buckets));
      expect(jumpHash(BigInt(key), buckets)).toBe(jumpHash(key, buckets));
    },
  );

  test.prop([fc.oneof(fc.string(), fc.uint8Array()), fc.integer({ min: 1, max: 100_000 })])(
    'hashes strings and bytes with xxh64 first',
    (key, buckets) => {
      expect(jumpHash(key, buckets)).toBe(reference(xxh64(key), buckets));
    },
  );

  it('matches values of the reference implementations', () => {
    // From the paper's C++ (and Guava's consistentHash, which implements the same).
    expect([0n, 1n, 42n, 2n ** 64n - 1n].map((k) => jumpHash(k, 1000))).toEqual(
      [0n, 1n, 42n, 2n ** 64n - 1n].map((k) => reference(k, 1000)),
    );
    expect(jumpHash(0, 1)).toBe(0);
  });

  // 200,000 keys: with n >= 4 the moved share has a standard deviation under 0.09 points, so the
  // ±0.5 bound sits beyond 5.6 of them.
  test.prop(
    [fc.integer({ min: 4, max: 2000 }), fc.integer(), fc.constantFrom('sequential-int', 'random-string')],
    {
      numRuns: 5,
    },
  )(
    'moves 1/(n+1) of keys (within ±0.5 percentage points) when a bucket is added, and only to the new bucket',
    (n, seed, shape) => {
      const count = 200_000;
      let moved = 0;
      for (const key of keys(shape as 'sequential-int', count, seed)) {
        const before = jumpHash(key, n);
        const after = jumpHash(key, n + 1);
        if (before !== after) {
          moved++;
          expect(after).toBe(n);
        }
      }
      expect(Math.abs(moved / count - 1 / (n + 1))).toBeLessThan(0.005);
    },
  );

  it('answers its documented examples', () => {
    expect(jumpHash('user:42', 16)).toBe(2);
    expect(jumpHash(42, 10)).toBe(1);
    expect(reference(42n, 10)).toBe(1);
  });

  it('rejects bucket counts outside [1, 2^31 - 1]', () => {
    for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN]) expect(() => jumpHash('k', bad)).toThrow(/buckets/);
    expect(() => jumpHash(1.5, 10)).toThrow(/key/);
    expect(() => jumpHash(2n ** 64n, 10)).toThrow(/key/);
  });
});
