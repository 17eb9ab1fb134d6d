/**
 * `Retry-After` in whole seconds from an estimate in milliseconds, spread by `jitter` so that the
 * clients turned away in one burst do not all come back in the same second (the herd that shed
 * load would otherwise bring back). The result is in `[ceil(ms / 1000), ceil(ms / 1000 × (1 +
 * jitter))]` (a sub-second estimate spread as one second), and at least 1: `Retry-After: 0` would invite an immediate retry.
 *
 * @param ms the limiter's or breaker's estimate; not finite (an isolated circuit) or negative
 *   means unknown, and gives `undefined`: no header.
 * @param jitter the fraction added at most, in `[0, 1]`.
 * @param random a source in `[0, 1)`; injected by tests.
 */
export function retryAfterSeconds(
  ms: number,
  jitter: number,
  random: () => number = Math.random,
): number | undefined {
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  const base = Math.max(1, Math.ceil(ms / 1000));
  if (jitter === 0) return base;
  // Spread from at least one second, so that sub-second estimates are spread too.
  const top = Math.ceil((Math.max(ms, 1000) / 1000) * (1 + jitter));
  return base + Math.floor(random() * (top - base + 1));
}
