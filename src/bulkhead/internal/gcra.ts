import type { GcraParams, RateLimitDecision } from '../rate-limit-store.js';

/**
 * A key's theoretical arrival time (TAT) as exact integers: `ms + units / scale` milliseconds.
 * Splitting it keeps every product within 2^53 whatever the epoch: only the distance between the
 * TAT and now, at most `burst × interval` units, is ever multiplied. A key never seen is
 * `{ ms: 0, units: 0 }`, a TAT long past.
 */
export interface Tat {
  ms: number;
  units: number;
}

/**
 * GCRA, virtual-scheduling form, at integer-millisecond `now`. With `tolerance = burst ×
 * interval` and `ahead = max(0, TAT − now)` (in units of 1/scale ms), a call of `cost` is admitted
 * when `ahead + cost × interval <= tolerance`, and the TAT becomes `now + ahead + cost ×
 * interval`. A rejected call changes nothing.
 *
 * This admits exactly what a token bucket of `burst` tokens refilled continuously at `rate / per`
 * admits (it holds `(tolerance − ahead) / interval` tokens), which is what the property test
 * checks. The Lua script `scripts/gcra-take-1.lua` is this function, line for line.
 *
 * Updates `tat` in place when the call is admitted with a cost.
 */
export function gcraTake(tat: Tat, now: number, cost: number, params: GcraParams): RateLimitDecision {
  const { interval, scale, burst } = params;
  const tolerance = burst * interval;
  // Capped at the tolerance in case the key was written under other parameters.
  const ahead = tat.ms >= now ? Math.min(tolerance, (tat.ms - now) * scale + tat.units) : 0;
  const next = ahead + cost * interval;
  if (next > tolerance) {
    return {
      allowed: false,
      retryAfter: Math.ceil((next - tolerance) / scale),
      remaining: Math.floor((tolerance - ahead) / interval),
      resetAfter: Math.ceil(ahead / scale),
    };
  }
  if (cost > 0) {
    tat.ms = now + Math.floor(next / scale);
    tat.units = next % scale;
  }
  return {
    allowed: true,
    retryAfter: 0,
    remaining: Math.floor((tolerance - next) / interval),
    resetAfter: Math.ceil(next / scale),
  };
}
