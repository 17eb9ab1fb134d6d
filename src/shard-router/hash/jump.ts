import { InvalidOptionError } from '../../core/errors.js';
import { hashHigh, hashKeyInto, hashLow, type ShardKey } from './xxh64.js';

/*
 * Jump consistent hash (Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm",
 * 2014), exactly as the paper's C++ listing, with its 64-bit linear congruential step written in
 * 32-bit words:
 *
 *   int32_t JumpConsistentHash(uint64_t key, int32_t num_buckets) {
 *     int64_t b = -1, j = 0;
 *     while (j < num_buckets) {
 *       b = j;
 *       key = key * 2862933555777619845ULL + 1;
 *       j = (b + 1) * (double(1LL << 31) / double((key >> 33) + 1));
 *     }
 *     return b;
 *   }
 *
 * Going from n to n + 1 buckets moves exactly the keys that land in the new bucket, about 1/(n+1)
 * of them, and never moves a key between two old buckets.
 */

// 2862933555777619845 = 0x27BB2EE6_87ABC785
const MH = 0x27bb2ee6;
const ML = 0x87abc785 | 0;
const TWO31 = 2147483648;

/** @internal Jump hash of the uint64 (h, l) (int32 words) into `buckets`. */
export function jumpWords(h: number, l: number, buckets: number): number {
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    // key = key * M + 1 (mod 2^64)
    const a0 = l & 0xffff;
    const a1 = l >>> 16;
    const t = a1 * 0xc785 + ((a0 * 0xc785) >>> 16);
    const w = a0 * 0x87ab + (t & 0xffff);
    const hi = a1 * 0x87ab + (t >>> 16) + (w >>> 16) + Math.imul(h, ML) + Math.imul(l, MH);
    const lo = Math.imul(l, ML);
    // + 1: a carry into the high word only when the low word was all ones
    l = (lo + 1) | 0;
    h = (hi + (lo === -1 ? 1 : 0)) | 0;
    j = Math.floor((b + 1) * (TWO31 / ((h >>> 1) + 1)));
  }
  return b;
}

/**
 * Jump consistent hash of `key` into `buckets` buckets (Lamping and Veach 2014): the bucket in
 * `[0, buckets)`. Growing from n to n + 1 buckets moves only the keys that land in the new bucket,
 * about 1/(n+1) of them; it needs no memory and no list of nodes, but buckets can only be added or
 * removed at the end. Use it to place keys on numbered shards that grow.
 *
 * Integer keys (a safe-integer number or a bigint in [-2^63, 2^64)) are the algorithm's 64-bit key
 * as they are (read mod 2^64), so `jumpHash(42, 10)` equals the paper's `JumpConsistentHash(42, 10)`
 * and Guava's `Hashing.consistentHash(42L, 10)`; strings and bytes are first hashed with
 * {@link xxh64}.
 *
 * @example
 * jumpHash('user:42', 16); // 2
 * jumpHash(42, 10);        // 1, as JumpConsistentHash(42, 10)
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for `buckets` outside [1, 2^31 - 1] or a bad key.
 */
export function jumpHash(key: ShardKey, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 2 ** 31 - 1) {
    throw new InvalidOptionError('buckets', buckets, 'an integer between 1 and 2147483647');
  }
  if (typeof key === 'number') {
    if (!Number.isSafeInteger(key)) hashKeyInto(key, 0, 0); // throws the key error
    return jumpWords(Math.floor(key / 4294967296) | 0, key | 0, buckets);
  }
  if (typeof key === 'bigint') {
    hashKeyInto(key, 0, 0); // validates the range
    return jumpWords(Number(BigInt.asIntN(32, key >> 32n)), Number(BigInt.asIntN(32, key)), buckets);
  }
  hashKeyInto(key, 0, 0);
  return jumpWords(hashHigh(), hashLow(), buckets);
}
