// Shared by the hash tests (not exported from the package): key streams and the chi-square bound.

/** A small deterministic PRNG (mulberry32), so a failing seed reproduces the same keys. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What keys look like in the tests: the shapes real keys take. */
export type KeyShape = 'sequential-int' | 'sequential-string' | 'random-string' | 'random-bytes' | 'bigint';

export const KEY_SHAPES: readonly KeyShape[] = [
  'sequential-int',
  'sequential-string',
  'random-string',
  'random-bytes',
  'bigint',
];

/** `count` distinct keys of `shape`, from `seed`. */
export function keys(
  shape: KeyShape,
  count: number,
  seed: number,
): (string | number | bigint | Uint8Array)[] {
  const rand = prng(seed);
  const start = Math.floor(rand() * 1e12);
  const out: (string | number | bigint | Uint8Array)[] = new Array(count);
  for (let i = 0; i < count; i++) {
    switch (shape) {
      case 'sequential-int':
        out[i] = start + i;
        break;
      case 'sequential-string':
        out[i] = `user:${start + i}`;
        break;
      case 'random-string':
        out[i] = `${i.toString(36)}-${Math.floor(rand() * 2 ** 52).toString(36)}`;
        break;
      case 'random-bytes': {
        const b = new Uint8Array(4 + (i % 40));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
        b[0] = i & 0xff;
        b[1] = (i >>> 8) & 0xff;
        b[2] = (i >>> 16) & 0xff;
        b[3] = (i >>> 24) & 0xff;
        out[i] = b;
        break;
      }
      case 'bigint':
        out[i] = (BigInt(start) << 20n) + BigInt(i) * 4097n;
        break;
    }
  }
  return out;
}

/** Pearson's chi-square statistic of `counts` against equal expected counts. */
export function chiSquare(counts: ArrayLike<number>, expected?: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  let stat = 0;
  for (let i = 0; i < counts.length; i++) {
    const e = expected === undefined ? total / counts.length : expected[i]!;
    const d = counts[i]! - e;
    stat += (d * d) / e;
  }
  return stat;
}

/**
 * The chi-square value exceeded with probability about 1e-6 at `df` degrees of freedom
 * (Wilson-Hilferty). That small a false-alarm rate, because every property run is one more test:
 * a test that fails one run in a thousand by chance would fail CI regularly.
 */
export function chiSquareBound(df: number): number {
  const z = 4.753; // upper 1e-6 quantile of the standard normal
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}
