import { type Clock, systemClock } from './clock.js';
import { parseDuration } from './duration.js';
import { InvalidOptionError } from './errors.js';

/*
 * Option validation shared by every factory. Each helper returns the value (or its default) and
 * throws `E_INVALID_OPTION` naming the option and the value received. Validation runs once, at
 * construction, so it never costs anything on a hot path.
 */

/** Throws unless `value` is a plain object (or undefined, which becomes `{}`). */
export function optionsObject<T extends object>(value: T | undefined, option = 'options'): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(option, value, 'an options object');
  }
  return value;
}

/** An integer in `[min, max]`. */
export function integer(value: unknown, option: string, min: number, max: number, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(option, value, `an integer between ${min} and ${max}`);
  }
  return value;
}

/** A finite number in `[min, max]`. */
export function numberIn(
  value: unknown,
  option: string,
  min: number,
  max: number,
  fallback?: number,
): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new InvalidOptionError(option, value, `a number between ${min} and ${max}`);
  }
  return value;
}

/** A fraction in `(0, 1]` (rates and thresholds). */
export function fraction(value: unknown, option: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) {
    throw new InvalidOptionError(option, value, 'a number greater than 0 and at most 1');
  }
  return value;
}

/** A duration (ms or `'30s'`) in `[min, max]` milliseconds. */
export function duration(
  value: unknown,
  option: string,
  fallback?: number,
  min = 0,
  max = 2 ** 31 - 1,
): number {
  if (value === undefined && fallback !== undefined) return fallback;
  const ms = parseDuration(value, option);
  if (ms < min || ms > max)
    throw new InvalidOptionError(option, value, `a duration between ${min}ms and ${max}ms`);
  return ms;
}

/** A function, or the fallback when undefined. */
export function fn<F extends Function>(value: unknown, option: string, fallback?: F): F {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'function') throw new InvalidOptionError(option, value, 'a function');
  return value as F;
}

/** A boolean, or the fallback when undefined. */
export function bool(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionError(option, value, 'a boolean');
  return value;
}

/** One of the listed string values. */
export function oneOf<T extends string>(
  value: unknown,
  option: string,
  allowed: readonly T[],
  fallback?: T,
): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new InvalidOptionError(option, value, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  }
  return value as T;
}

/** A non-empty string. */
export function nonEmptyString(value: unknown, option: string, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0)
    throw new InvalidOptionError(option, value, 'a non-empty string');
  return value;
}

/** Throws for keys of `value` that are not in `known`: a typo in an option name must not pass silently. */
export function knownKeys(value: object, known: readonly string[], option = 'options'): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(
        `${option === 'options' ? '' : `${option}.`}${key}`,
        (value as any)[key],
        `no such option (known: ${known.join(', ')})`,
      );
    }
  }
}

/**
 * The `clock` option: a {@link Clock} with `now`, `setTimeout` and `clearTimeout`, or
 * `systemClock` when undefined.
 */
export function clockOption(value: unknown, option = 'clock'): Clock {
  if (value === undefined) return systemClock;
  const c = value as Clock;
  if (
    typeof c !== 'object' ||
    c === null ||
    typeof c.now !== 'function' ||
    typeof c.setTimeout !== 'function' ||
    typeof c.clearTimeout !== 'function'
  ) {
    throw new InvalidOptionError(option, value, 'a Clock ({ now, setTimeout, clearTimeout })');
  }
  return c;
}
