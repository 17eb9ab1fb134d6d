import { type Clock, systemClock } from '../../core/clock.js';
import { InvalidOptionError } from '../../core/errors.js';

/** Validates the `clock` option. */
export function validClock(clock: unknown): Clock {
  if (clock === undefined) return systemClock;
  const c = clock as Clock;
  if (
    typeof c !== 'object' ||
    c === null ||
    typeof c.now !== 'function' ||
    typeof c.setTimeout !== 'function' ||
    typeof c.clearTimeout !== 'function'
  ) {
    throw new InvalidOptionError('clock', clock, 'a Clock ({ now, setTimeout, clearTimeout })');
  }
  return c;
}
