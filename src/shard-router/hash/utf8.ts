/*
 * UTF-8 encoding of string keys into a scratch buffer, for the hashes that must see a key's bytes
 * (XXH64, MD5) without allocating per key. `TextEncoder.encodeInto` would allocate its result
 * object, and `Buffer.write` is a native call that costs more than this loop for the short keys
 * that are the common case. One hash runs at a time (JavaScript is single-threaded and the hashes
 * are synchronous), so one buffer serves them all.
 */

// Grown on demand, never shrunk: a string of n UTF-16 units takes at most 3n bytes.
let scratch = new Uint8Array(256);

/**
 * @internal Writes the UTF-8 bytes of `s` at the start of the scratch buffer ({@link utf8Bytes}),
 * leaving at least `spare` bytes after them; returns their count. A lone surrogate is encoded as
 * U+FFFD, as `TextEncoder` and `Buffer.from(s)` do.
 */
export function encodeUtf8(s: string, spare = 0): number {
  const n = s.length;
  if (scratch.length < n * 3 + spare) scratch = new Uint8Array(Math.max(n * 3 + spare, scratch.length * 2));
  const out = scratch;
  let j = 0;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[j++] = c;
    } else if (c < 0x800) {
      out[j++] = 0xc0 | (c >> 6);
      out[j++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          out[j++] = 0xf0 | (c >> 18);
          out[j++] = 0x80 | ((c >> 12) & 0x3f);
          out[j++] = 0x80 | ((c >> 6) & 0x3f);
          out[j++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd;
      }
      out[j++] = 0xe0 | (c >> 12);
      out[j++] = 0x80 | ((c >> 6) & 0x3f);
      out[j++] = 0x80 | (c & 0x3f);
    }
  }
  return j;
}

/** @internal The scratch buffer {@link encodeUtf8} wrote into (valid until the next call). */
export function utf8Bytes(): Uint8Array {
  return scratch;
}
