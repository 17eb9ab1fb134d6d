import { fc, test } from '@fast-check/vitest';
import { beforeAll, describe, expect, it } from 'vitest';
import xxhashWasm from 'xxhash-wasm';
import { hasCode } from '../../core/errors.js';
import { hashHigh, hashKeyInto, hashLow, MAX_MODULUS, mod64, xxh64 } from './xxh64.js';

// The reference: xxhash-wasm, the C implementation compiled to WebAssembly.
let reference: (bytes: Uint8Array, seed: bigint) => bigint;
beforeAll(async () => {
  const h = await xxhashWasm();
  reference = (bytes, seed) => h.h64Raw(bytes, seed);
});

const seed = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

function int64Bytes(value: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, value));
  return b;
}

describe('xxh64', () => {
  it('matches the published test values', () => {
    expect(xxh64('')).toBe(0xef46db3751d8e999n);
    expect(xxh64('abc')).toBe(0x44bc2cf5ad770999n);
  });

  it('answers its documented example', () => {
    expect(xxh64('user:42')).toBe(0xdc1fea7da8d2d1c2n);
    expect(xxh64(42)).toBe(xxh64(42n));
  });

  test.prop([fc.uint8Array({ maxLength: 300 }), seed])(
    'equals the reference XXH64 for any bytes and seed (every length path: stripes, lanes, words, bytes)',
    (bytes, s) => {
      expect(xxh64(bytes, s)).toBe(reference(bytes, s));
      expect(xxh64(Buffer.from(bytes), s)).toBe(reference(bytes, s));
    },
  );

  test.prop([fc.string({ unit: 'binary', maxLength: 120 }), seed])(
    'hashes a string as its UTF-8 bytes, lone surrogates as U+FFFD (as Buffer.from does)',
    (s, sd) => {
      expect(xxh64(s, sd)).toBe(reference(Buffer.from(s, 'utf8'), sd));
    },
  );

  const ascii = fc.string({
    unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)),
    maxLength: 31,
  });
  test.prop([
    ascii,
    fc.nat(),
    fc.constantFrom('\u0080', '\u00e9', '\u00ff', '\u0100', '\u20ac', '\ud83d\ude00', '\ud800', '\uffff'),
  ])(
    'hashes a short string with one non-ASCII unit anywhere as its UTF-8 bytes (the ASCII path hands it over)',
    (s, at, unit) => {
      const key = s.slice(0, at % (s.length + 1)) + unit + s.slice(at % (s.length + 1));
      expect(xxh64(key)).toBe(reference(Buffer.from(key, 'utf8'), 0n));
    },
  );

  test.prop([ascii, seed])('hashes a short ASCII string as its bytes (the direct path)', (s, sd) => {
    expect(xxh64(s, sd)).toBe(reference(Buffer.from(s, 'latin1'), sd));
  });

  test.prop([fc.string({ maxLength: 4000 })])('hashes long strings as their UTF-8 bytes too', (s) => {
    expect(xxh64(s)).toBe(reference(Buffer.from(s, 'utf8'), 0n));
  });

  test.prop([fc.maxSafeInteger(), seed])(
    'hashes a safe integer as its int64 little-endian bytes, and its bigint the same',
    (n, s) => {
      expect(xxh64(n, s)).toBe(reference(int64Bytes(BigInt(n)), s));
      expect(xxh64(BigInt(n), s)).toBe(xxh64(n, s));
    },
  );

  test.prop([fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n })])(
    'hashes a bigint in [-2^63, 2^64) as its 8 bytes mod 2^64',
    (n) => {
      expect(xxh64(n)).toBe(reference(int64Bytes(n), 0n));
    },
  );

  it('treats -0 as 0 and a negative integer as its two’s complement', () => {
    expect(xxh64(-0)).toBe(xxh64(0));
    expect(xxh64(-1)).toBe(xxh64(2n ** 64n - 1n));
  });

  test.prop([
    fc.oneof(
      fc.double({ noInteger: true }),
      fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 53)),
      fc.bigInt({ min: 2n ** 64n, max: 2n ** 80n }),
      fc.bigInt({ min: -(2n ** 80n), max: -(2n ** 63n) - 1n }),
      fc.constantFrom(null, undefined, true, {}, [], Symbol('k')),
    ),
  ])('rejects any other key with E_INVALID_OPTION naming the key', (key) => {
    try {
      xxh64(key as never);
      expect.unreachable();
    } catch (error) {
      expect(hasCode(error, 'E_INVALID_OPTION')).toBe(true);
      expect((error as { option: string }).option).toBe('key');
    }
  });

  it('rejects a bad seed', () => {
    for (const bad of [-1, 1.5, 2n ** 64n, -1n, '1']) {
      expect(() => xxh64('k', bad as never)).toThrow(/seed/);
    }
  });
});

describe('mod64', () => {
  test.prop([fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 1, max: MAX_MODULUS })])(
    'equals the uint64 modulo for every modulus up to 2^21',
    (h, n) => {
      const high = Number(BigInt.asIntN(32, h >> 32n));
      const low = Number(BigInt.asIntN(32, h));
      expect(mod64(high, low, n, 4294967296 % n)).toBe(Number(h % BigInt(n)));
    },
  );

  it('reads the registers the hash left', () => {
    hashKeyInto('abc', 0, 0);
    const h = (BigInt(hashHigh() >>> 0) << 32n) | BigInt(hashLow() >>> 0);
    expect(h).toBe(0x44bc2cf5ad770999n);
  });
});
