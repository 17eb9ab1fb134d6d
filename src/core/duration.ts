import { InvalidOptionError } from './errors.js';

/** A duration in milliseconds, or a string such as `'250ms'`, `'30s'`, `'5m'`, `'1h'`, `'1.5s'`. */
export type Duration = number | `${number}${DurationUnit}` | `${number}`;
type DurationUnit = 'ms' | 's' | 'm' | 'h' | 'd';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$/;

/**
 * Parses a duration into milliseconds.
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming `option` when the value is not a
 *   finite, non-negative number or a string in a known unit.
 * @example parseDuration('30s', 'timeout') // 30000
 */
export function parseDuration(value: unknown, option: string): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return value;
  } else if (typeof value === 'string') {
    const m = PATTERN.exec(value);
    if (m) return Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!;
  }
  throw new InvalidOptionError(
    option,
    value,
    "a non-negative duration in ms or a string like '250ms', '30s', '5m'",
  );
}
