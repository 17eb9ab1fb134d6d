import { InvalidOptionError } from '../../core/errors.js';
import { encodeUtf8, utf8Bytes } from './utf8.js';

/*
 * XXH64 (Yann Collet's xxHash, 64-bit variant; spec: xxhash_spec.md in the xxHash repository)
 * written with 32-bit integer operations only. A key hashes on the shard router's hot path, so
 * nothing here allocates and nothing uses BigInt: a 64-bit value is a pair of 32-bit words (high,
 * low), products come from 16-bit limbs and Math.imul, and results land in the module's two-slot
 * register array `R` below, read by the caller right after the call. Hashing is synchronous and
 * JavaScript runs one call at a time, so `R` is never shared between two hashes in flight.
 *
 * Keys become bytes the way every other language can reproduce (docs/shard-router.md, "The hash"):
 *
 *   string      its UTF-8 bytes (a lone surrogate becomes U+FFFD, as TextEncoder and Buffer do)
 *   number      a safe integer: its 8 bytes little-endian, two's complement (as an int64)
 *   bigint      in [-2^63, 2^64): its 8 bytes little-endian (two's complement, i.e. mod 2^64)
 *   Uint8Array  its bytes as they are (a Buffer is one)
 *
 * so `42`, `42n` and the int64 42 hashed by Go or by SQL all agree, while `'42'` (the string)
 * hashes its two characters.
 */

/** A shard key: a string, a safe integer, a bigint in [-2^63, 2^64), or bytes. */
export type ShardKey = string | number | bigint | Uint8Array;

// The five XXH64 primes, as (high, low) words.
const P1H = 0x9e3779b1 | 0;
const P1L = 0x85ebca87 | 0;
const P2H = 0xc2b2ae3d | 0;
const P2L = 0x27d4eb4f | 0;
const P3H = 0x165667b1 | 0;
const P3L = 0x9e3779f9 | 0;
const P4H = 0x85ebca77 | 0;
const P4L = 0xc2b2ae63 | 0;
const P5H = 0x27d4eb2f | 0;
const P5L = 0x165667c5 | 0;

const TWO32 = 4294967296;

/*
 * Words are kept as int32 (the same 32 bits, read as signed), never as uint32: an int32 is a small
 * integer to V8, passed between functions and stored as it is, while a uint32 above 2^31 is a heap
 * number, and every call or store with one would allocate. Only additions (for their carry) and
 * `mod64` need the unsigned reading, and take it locally with `>>> 0`.
 *
 * A 64-bit product (ah,al) * (bh,bl) mod 2^64 is written out where it is needed as
 *   low  = Math.imul(al, bl)
 *   high = mulHi(al, bl) + Math.imul(ah, bl) + Math.imul(al, bh)
 * and the rest with local variables: measured on Node 20, helpers that passed 64-bit values
 * through shared registers cost twice as much as this, because not all of them were inlined.
 */

/** Result registers of the functions below: [high, low], as int32. */
const R = new Int32Array(2);

/**
 * The high word of the unsigned 32 x 32-bit product `a * b`, from 16-bit limbs (Hacker's Delight,
 * mulhu): every partial product and sum stays below 2^32, with shifts and no division.
 */
function mulHi(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const t = a1 * b0 + ((a0 * b0) >>> 16);
  const w = a0 * b1 + (t & 0xffff);
  return a1 * b1 + (t >>> 16) + (w >>> 16);
}

/** XXH64's round, rotl(acc + lane * P2, 31) * P1, into R. */
function round(acch: number, accl: number, laneh: number, lanel: number): void {
  // k = lane * P2
  let l = Math.imul(lanel, P2L);
  let h = (mulHi(lanel, P2L) + Math.imul(laneh, P2L) + Math.imul(lanel, P2H)) | 0;
  // k += acc
  const sum = (l >>> 0) + (accl >>> 0);
  l = sum | 0;
  h = (h + acch + (sum >= TWO32 ? 1 : 0)) | 0;
  // rotl 31
  const rh = (h << 31) | (l >>> 1);
  const rl = (l << 31) | (h >>> 1);
  // * P1
  R[1] = Math.imul(rl, P1L);
  R[0] = mulHi(rl, P1L) + Math.imul(rh, P1L) + Math.imul(rl, P1H);
}

/** acc = rotl(acc, r) * P1 + P4 (after an 8-byte lane) into R. */
function mixLane(h: number, l: number): void {
  const rh = (h << 27) | (l >>> 5);
  const rl = (l << 27) | (h >>> 5);
  const ml = Math.imul(rl, P1L);
  const mh = mulHi(rl, P1L) + Math.imul(rh, P1L) + Math.imul(rl, P1H);
  const sum = (ml >>> 0) + (P4L >>> 0);
  R[1] = sum | 0;
  R[0] = (mh + P4H + (sum >= TWO32 ? 1 : 0)) | 0;
}

/** XXH64's final mix of (h, l), into R. */
function avalanche(h: number, l: number): void {
  // h ^= h >> 33
  l ^= h >>> 1;
  // h *= P2
  let ml = Math.imul(l, P2L);
  let mh = (mulHi(l, P2L) + Math.imul(h, P2L) + Math.imul(l, P2H)) | 0;
  // h ^= h >> 29
  l = ml ^ ((ml >>> 29) | (mh << 3));
  h = mh ^ (mh >>> 29);
  // h *= P3
  ml = Math.imul(l, P3L);
  mh = (mulHi(l, P3L) + Math.imul(h, P3L) + Math.imul(l, P3H)) | 0;
  // h ^= h >> 32
  R[0] = mh;
  R[1] = ml ^ mh;
}

function u32(b: Uint8Array, i: number): number {
  return b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
}

/** (h,l) + (bh,bl) into R. */
function add(h: number, l: number, bh: number, bl: number): void {
  const sum = (l >>> 0) + (bl >>> 0);
  R[1] = sum | 0;
  R[0] = (h + bh + (sum >= TWO32 ? 1 : 0)) | 0;
}

/** rotl(h,l, r) for 0 < r < 32, into R. */
function rotl(h: number, l: number, r: number): void {
  R[0] = (h << r) | (l >>> (32 - r));
  R[1] = (l << r) | (h >>> (32 - r));
}

/** One accumulator folded into the hash after the stripes: h = (h ^ round(0, v)) * P1 + P4, into R. */
function merge(h: number, l: number, vh: number, vl: number): void {
  round(0, 0, vh, vl);
  const xh = h ^ R[0]!;
  const xl = l ^ R[1]!;
  const ml = Math.imul(xl, P1L);
  const mh = mulHi(xl, P1L) + Math.imul(xh, P1L) + Math.imul(xl, P1H);
  add(mh | 0, ml, P4H, P4L);
}

/** A 4-byte word of the tail: h ^= word * P1; h = rotl(h, 23) * P2 + P3, into R. */
function mixWord(h: number, l: number, w: number): void {
  const xh = h ^ (mulHi(w, P1L) + Math.imul(w, P1H));
  const xl = l ^ Math.imul(w, P1L);
  const rh = (xh << 23) | (xl >>> 9);
  const rl = (xl << 23) | (xh >>> 9);
  const ml = Math.imul(rl, P2L);
  const mh = mulHi(rl, P2L) + Math.imul(rh, P2L) + Math.imul(rl, P2H);
  add(mh | 0, ml, P3H, P3L);
}

/** A byte of the tail: h ^= byte * P5; h = rotl(h, 11) * P1, into R. */
function mixByte(h: number, l: number, b: number): void {
  const xh = h ^ (mulHi(b, P5L) + Math.imul(b, P5H));
  const xl = l ^ Math.imul(b, P5L);
  const rh = (xh << 11) | (xl >>> 21);
  const rl = (xl << 11) | (xh >>> 21);
  R[1] = Math.imul(rl, P1L);
  R[0] = mulHi(rl, P1L) + Math.imul(rh, P1L) + Math.imul(rl, P1H);
}

/** XXH64 of `bytes[0, length)` with the seed (seedH, seedL), into R. */
function xxh64Into(bytes: Uint8Array, length: number, seedH: number, seedL: number): void {
  let i = 0;
  let h: number;
  let l: number;
  if (length >= 32) {
    add(seedH, seedL, P1H, P1L);
    add(R[0]!, R[1]!, P2H, P2L);
    let v1h = R[0]!;
    let v1l = R[1]!;
    add(seedH, seedL, P2H, P2L);
    let v2h = R[0]!;
    let v2l = R[1]!;
    let v3h = seedH;
    let v3l = seedL;
    // seed - P1 = seed + (2^64 - P1)
    add(seedH, seedL, 0x61c8864e, 0x7a143579);
    let v4h = R[0]!;
    let v4l = R[1]!;
    const limit = length - 32;
    while (i <= limit) {
      round(v1h, v1l, u32(bytes, i + 4), u32(bytes, i));
      v1h = R[0]!;
      v1l = R[1]!;
      round(v2h, v2l, u32(bytes, i + 12), u32(bytes, i + 8));
      v2h = R[0]!;
      v2l = R[1]!;
      round(v3h, v3l, u32(bytes, i + 20), u32(bytes, i + 16));
      v3h = R[0]!;
      v3l = R[1]!;
      round(v4h, v4l, u32(bytes, i + 28), u32(bytes, i + 24));
      v4h = R[0]!;
      v4l = R[1]!;
      i += 32;
    }
    rotl(v1h, v1l, 1);
    h = R[0]!;
    l = R[1]!;
    rotl(v2h, v2l, 7);
    add(h, l, R[0]!, R[1]!);
    h = R[0]!;
    l = R[1]!;
    rotl(v3h, v3l, 12);
    add(h, l, R[0]!, R[1]!);
    h = R[0]!;
    l = R[1]!;
    rotl(v4h, v4l, 18);
    add(h, l, R[0]!, R[1]!);
    merge(R[0]!, R[1]!, v1h, v1l);
    merge(R[0]!, R[1]!, v2h, v2l);
    merge(R[0]!, R[1]!, v3h, v3l);
    merge(R[0]!, R[1]!, v4h, v4l);
    h = R[0]!;
    l = R[1]!;
  } else {
    add(seedH, seedL, P5H, P5L);
    h = R[0]!;
    l = R[1]!;
  }
  // h += length (a typed array is shorter than 2^32 bytes on the engines we run on)
  add(h, l, 0, length);
  h = R[0]!;
  l = R[1]!;
  while (i + 8 <= length) {
    round(0, 0, u32(bytes, i + 4), u32(bytes, i));
    mixLane(h ^ R[0]!, l ^ R[1]!);
    h = R[0]!;
    l = R[1]!;
    i += 8;
  }
  if (i + 4 <= length) {
    mixWord(h, l, u32(bytes, i));
    h = R[0]!;
    l = R[1]!;
    i += 4;
  }
  while (i < length) {
    mixByte(h, l, bytes[i]!);
    h = R[0]!;
    l = R[1]!;
    i++;
  }
  avalanche(h, l);
}

/**
 * Four UTF-16 units of `s` from `i` as the little-endian word of their bytes, or -1 when one of
 * them is not ASCII (a word of ASCII bytes never has bit 7 set, so -1 is never a real answer).
 */
function chars4(s: string, i: number): number {
  const a = s.charCodeAt(i);
  const b = s.charCodeAt(i + 1);
  const c = s.charCodeAt(i + 2);
  const d = s.charCodeAt(i + 3);
  if ((a | b | c | d) > 0x7f) return -1;
  return a | (b << 8) | (c << 16) | (d << 24);
}

/**
 * XXH64 of a short string read straight from its UTF-16 units, into R: for an ASCII string they are
 * its UTF-8 bytes, so the encoding pass through the scratch buffer is skipped. Returns false at the
 * first unit above 0x7f (R then holds nothing useful): the caller encodes the string and hashes its
 * bytes instead. Strings of 32 units or more, which XXH64 hashes in stripes, always take the
 * encoding path.
 */
function xxh64AsciiInto(s: string, seedH: number, seedL: number): boolean {
  const length = s.length;
  add(seedH, seedL, P5H, P5L);
  add(R[0]!, R[1]!, 0, length);
  let h = R[0]!;
  let l = R[1]!;
  let i = 0;
  while (i + 8 <= length) {
    const lo = chars4(s, i);
    const hi = chars4(s, i + 4);
    if (lo === -1 || hi === -1) return false;
    round(0, 0, hi, lo);
    mixLane(h ^ R[0]!, l ^ R[1]!);
    h = R[0]!;
    l = R[1]!;
    i += 8;
  }
  if (i + 4 <= length) {
    const w = chars4(s, i);
    if (w === -1) return false;
    mixWord(h, l, w);
    h = R[0]!;
    l = R[1]!;
    i += 4;
  }
  while (i < length) {
    const b = s.charCodeAt(i);
    if (b > 0x7f) return false;
    mixByte(h, l, b);
    h = R[0]!;
    l = R[1]!;
    i++;
  }
  avalanche(h, l);
  return true;
}

/** XXH64 of the 8 bytes of the int64 (laneH, laneL), little-endian, into R. */
function xxh64LaneInto(laneH: number, laneL: number, seedH: number, seedL: number): void {
  // h = seed + P5 + 8
  add(seedH, seedL, P5H, P5L);
  add(R[0]!, R[1]!, 0, 8);
  const h = R[0]!;
  const l = R[1]!;
  round(0, 0, laneH, laneL);
  mixLane(h ^ R[0]!, l ^ R[1]!);
  avalanche(R[0]!, R[1]!);
}

const BIGINT_MIN = -(2n ** 63n);
const BIGINT_MAX = 2n ** 64n - 1n;

/**
 * @internal Hashes `key` with XXH64 and the seed (seedH, seedL); the result is left in the
 * registers, read with {@link hashHigh} / {@link hashLow} before the next hash.
 * @throws {InvalidOptionError} `E_INVALID_OPTION` (option `key`) for any other kind of key.
 */
export function hashKeyInto(key: ShardKey, seedH: number, seedL: number): void {
  if (typeof key === 'string') {
    if (key.length < 32 && xxh64AsciiInto(key, seedH, seedL)) return;
    const length = encodeUtf8(key);
    xxh64Into(utf8Bytes(), length, seedH, seedL);
  } else if (typeof key === 'number') {
    if (!Number.isSafeInteger(key)) throw badKey(key);
    xxh64LaneInto(Math.floor(key / TWO32) | 0, key | 0, seedH, seedL);
  } else if (typeof key === 'bigint') {
    if (key < BIGINT_MIN || key > BIGINT_MAX) throw badKey(key);
    xxh64LaneInto(Number(BigInt.asIntN(32, key >> 32n)), Number(BigInt.asIntN(32, key)), seedH, seedL);
  } else if (key instanceof Uint8Array) {
    xxh64Into(key, key.length, seedH, seedL);
  } else {
    throw badKey(key);
  }
}

/** @internal High word of the last hash, as int32. */
export function hashHigh(): number {
  return R[0]!;
}

/** @internal Low word of the last hash, as int32. */
export function hashLow(): number {
  return R[1]!;
}

/** @internal XXH64 of the int64 (laneH, laneL) with the seed (seedH, seedL), left in the registers. */
export function hashLaneInto(laneH: number, laneL: number, seedH: number, seedL: number): void {
  xxh64LaneInto(laneH, laneL, seedH, seedL);
}

/** The largest modulus {@link mod64} takes. */
export const MAX_MODULUS = 2 ** 21;

/**
 * @internal `(h * 2^32 + l) mod n` for a uint64 given as (int32) words, `n` up to 2^21 and
 * `two32ModN` = 2^32 mod n (precomputed by the caller). No BigInt, no `%` on doubles (a libm call
 * in V8): since h * (2^32 mod n) ≡ h * 2^32 (mod n), x = h * (2^32 mod n) + l stays below 2^53, and
 * x mod n is x - floor(x / n) * n, exact.
 */
export function mod64(h: number, l: number, n: number, two32ModN: number): number {
  const x = (h >>> 0) * two32ModN + (l >>> 0);
  return x - Math.floor(x / n) * n;
}

function badKey(key: unknown): InvalidOptionError {
  return new InvalidOptionError(
    'key',
    key,
    'a string, a safe integer, a bigint in [-2^63, 2^64) or a Uint8Array',
  );
}

/** Splits a seed (a safe non-negative integer or a bigint in [0, 2^64)) into words, validating it. */
export function seedWords(seed: unknown, option = 'seed'): [high: number, low: number] {
  if (seed === undefined) return [0, 0];
  if (typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0) {
    return [Math.floor(seed / TWO32) | 0, seed | 0];
  }
  if (typeof seed === 'bigint' && seed >= 0n && seed <= BIGINT_MAX) {
    return [Number(BigInt.asIntN(32, seed >> 32n)), Number(BigInt.asIntN(32, seed))];
  }
  throw new InvalidOptionError(option, seed, 'a non-negative safe integer or a bigint below 2^64');
}

/**
 * The 64-bit hash of a shard key: XXH64 of the key's bytes (see docs/shard-router.md, "The hash",
 * for how each kind of key becomes bytes), as an unsigned bigint. This is what the shard router
 * places keys with; other languages and SQL (`shardRouterSql()`) reproduce it exactly.
 *
 * @example
 * xxh64('user:42');          // 0xdc1fea7da8d2d1c2n, XXH64(b"user:42", seed 0) in any language
 * xxh64(42) === xxh64(42n);  // true: integers hash as their int64 bytes
 * @param seed XXH64's seed. @default 0
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a key of another kind, a number that is not a
 *   safe integer, a bigint out of range, or a bad seed.
 */
export function xxh64(key: ShardKey, seed?: number | bigint): bigint {
  const [sh, sl] = seedWords(seed);
  hashKeyInto(key, sh, sl);
  return (BigInt(R[0]! >>> 0) << 32n) | BigInt(R[1]! >>> 0);
}
