import { fc, test } from '@fast-check/vitest';
import { handleAll } from 'cockatiel';
import { expect } from 'vitest';
import { isInvalidOptionError } from '../core/errors.js';
import { adaptiveThrottle } from './adaptive-throttle.js';
import { budgetedRetry } from './budgeted-retry.js';
import { hedge } from './hedge.js';
import { retryBudget } from './retry-budget.js';
import { timeout } from './timeout.js';

const keys = [
  'ratio',
  'minPerSecond',
  'ttl',
  'clock',
  'strategy',
  'abortOnReturn',
  'delay',
  'maxHedges',
  'budget',
  'k',
  'window',
  'buckets',
  'isRejection',
  'random',
  'name',
  'maxAttempts',
  'backoff',
  'unref',
  'percentile',
];
const value = fc.oneof(
  fc.anything(),
  fc.double(),
  fc.integer(),
  fc.constantFrom('10s', '1m', '-1s', 'aggressive', 'cooperative', '', 0, 1, 0.5, -1, 1e9, Number.NaN, null),
  fc.record(
    { percentile: fc.oneof(fc.double(), fc.anything()), min: fc.anything(), initial: fc.anything() },
    { requiredKeys: [] },
  ),
);
const options = fc.oneof(fc.anything(), fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 5 }));

const factories: [string, (o: unknown, extra: unknown) => unknown][] = [
  ['timeout', (o, d) => timeout(d as never, o as never)],
  ['retryBudget', (o) => retryBudget(o as never)],
  ['budgetedRetry', (o) => budgetedRetry(handleAll, o as never)],
  ['hedge', (o) => hedge(o as never)],
  ['adaptiveThrottle', (o) => adaptiveThrottle(o as never)],
];

for (const [name, make] of factories) {
  test.prop([options, value])(`${name}: fuzzed options only produce E_INVALID_OPTION`, (o, extra) => {
    try {
      make(o, extra);
    } catch (error) {
      expect(isInvalidOptionError(error), String(error)).toBe(true);
      expect((error as Error).message).toContain((error as { option: string }).option);
    }
  });
}
