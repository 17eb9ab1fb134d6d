import { encodeUtf8, utf8Bytes } from './utf8.js';

/*
 * MD5 (RFC 1321) of a string's UTF-8 bytes, for the ketama ring, which places keys by the first
 * four bytes of MD5. Written out in JavaScript because `crypto.createHash('md5')` allocates a Hash
 * object, a digest Buffer and crosses into C++ on every lookup, which costs more than the whole
 * digest of a short key here. The digest lands in `D` as four int32 words (A, B, C, D state words,
 * i.e. digest bytes 0-3, 4-7, 8-11, 12-15 read little-endian).
 */

/** @internal The last digest: four little-endian words. */
export const D = new Int32Array(4);

// K[i] = floor(abs(sin(i + 1)) * 2^32), the RFC's table.
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0;
const S = new Uint8Array([
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
  14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15,
  21, 6, 10, 15, 21,
]);
const M = new Int32Array(16);

/** @internal MD5 of the UTF-8 bytes of `s`, into {@link D}. */
export function md5String(s: string): void {
  // Room for the padding: 0x80, zeros up to 56 mod 64, then the 8-byte bit length.
  const n = encodeUtf8(s, 72);
  const bytes = utf8Bytes();
  let end = n + 1;
  bytes[n] = 0x80;
  while (end % 64 !== 56) bytes[end++] = 0;
  const bits = n * 8;
  bytes[end++] = bits & 0xff;
  bytes[end++] = (bits >>> 8) & 0xff;
  bytes[end++] = (bits >>> 16) & 0xff;
  bytes[end++] = (bits >>> 24) & 0xff;
  const high = Math.floor(bits / 4294967296);
  bytes[end++] = high & 0xff;
  bytes[end++] = (high >>> 8) & 0xff;
  bytes[end++] = (high >>> 16) & 0xff;
  bytes[end++] = (high >>> 24) & 0xff;

  let a0 = 0x67452301;
  let b0 = 0xefcdab89 | 0;
  let c0 = 0x98badcfe | 0;
  let d0 = 0x10325476;
  for (let off = 0; off < end; off += 64) {
    for (let w = 0; w < 16; w++) {
      const p = off + w * 4;
      M[w] = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24);
    }
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f: number;
      let g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const x = (a + f + K[i]! + M[g]!) | 0;
      const r = S[i]!;
      a = d;
      d = c;
      c = b;
      b = (b + ((x << r) | (x >>> (32 - r)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  D[0] = a0;
  D[1] = b0;
  D[2] = c0;
  D[3] = d0;
}
