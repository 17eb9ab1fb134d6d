/** Clamps `value` to `[min, max]`. */
export function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}

/**
 * Netflix concurrency-limits' `Log10RootFunction`: `max(1, floor(log10(n)))` below 1000, and
 * `floor(sqrt(n))` from 1000 on (so alpha and beta keep growing with the limit, at about 3% and 6%
 * of it, instead of flattening at 9 and 18).
 */
export function log10Root(n: number): number {
  const i = Math.trunc(n);
  return i < 1000 ? Math.max(1, Math.trunc(Math.log10(i))) : Math.trunc(Math.sqrt(i));
}

/** Greatest common divisor of two non-negative integers. */
export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
