import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { isInvalidOptionError } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { adaptiveLimiter } from './adaptive-limiter.js';
import { aimd } from './algorithms/aimd.js';
import { gradient2 } from './algorithms/gradient2.js';
import { vegas } from './algorithms/vegas.js';
import { bulkhead } from './bulkhead.js';
import { rateLimiter } from './rate-limiter.js';
import { memoryStore } from './stores/memory-store.js';
import { redisStore } from './stores/redis-store.js';

const fakeRedis = { evalsha: () => Promise.resolve([1, 0, 0, 0]), eval: () => Promise.resolve([1, 0, 0, 0]) };

type Factory = (options: Record<string, unknown>) => unknown;

/** Each factory, options that are valid on their own, and one invalid value per option. */
const cases: [string, Factory, Record<string, unknown>, Record<string, unknown>, string?][] = [
  [
    'bulkhead',
    (o) => bulkhead(o as never),
    { limit: 2 },
    {
      limit: 0,
      queue: -1,
      queueTimeout: '-5s',
      order: 'random',
      codelTarget: 'soon',
      codelInterval: -1,
      name: '',
      clock: {},
      limt: 3,
    },
  ],
  [
    'adaptiveLimiter',
    (o) => adaptiveLimiter(o as never),
    {},
    {
      algorithm: 'cubic',
      initialLimit: 0,
      minLimit: 0,
      maxLimit: 0,
      queue: 1.5,
      queueTimeout: Number.NaN,
      order: 1,
      codelTarget: -1,
      codelInterval: 'later',
      partitions: 'live',
      timeout: -1,
      isDrop: 'yes',
      minRttThreshold: -1,
      window: 5,
      name: 5,
      clock: 1,
      initalLimit: 5,
    },
  ],
  [
    'adaptiveLimiter (window)',
    (o) => adaptiveLimiter({ window: o } as never),
    {},
    { minTime: -1, maxTime: 'x', minSamples: 0, size: 3 },
    'window.',
  ],
  [
    'adaptiveLimiter (aimd)',
    (o) => adaptiveLimiter({ algorithm: 'aimd', ...o } as never),
    {},
    { backoffRatio: 1 },
  ],
  [
    'adaptiveLimiter (vegas)',
    (o) => adaptiveLimiter({ algorithm: 'vegas', ...o } as never),
    {},
    {
      smoothing: 0,
      probeMultiplier: 0,
      alpha: -1,
      beta: 'x',
      threshold: {},
      increase: 1,
      decrease: 1,
      random: 1,
      rttTolerance: 2,
    },
  ],
  [
    'adaptiveLimiter (gradient2)',
    (o) => adaptiveLimiter({ algorithm: 'gradient2', ...o } as never),
    {},
    { smoothing: 2, rttTolerance: 0.5, longWindow: 0, queueSize: -1, backoffRatio: 0.5 },
  ],
  ['aimd', (o) => aimd(o as never), {}, { backoffRatio: 0.4, smoothing: 1 }],
  ['vegas', (o) => vegas(o as never), {}, { smoothing: -1, probeMultiplier: 1.5 }],
  ['gradient2', (o) => gradient2(o as never), {}, { rttTolerance: Number.POSITIVE_INFINITY, queueSize: 'x' }],
  [
    'rateLimiter',
    (o) => rateLimiter(o as never),
    { rate: 10 },
    {
      rate: 0,
      per: 0.5,
      burst: 0,
      store: {},
      key: 5,
      failOpen: 'no',
      timeout: 0,
      name: '',
      clock: null,
      limit: 3,
    },
  ],
  ['memoryStore', (o) => memoryStore(o as never), {}, { maxKeys: 0, max: 5 }],
  [
    'redisStore',
    (o) => redisStore(fakeRedis as never, o as never),
    {},
    { namespace: '', timeout: 0, time: 'local', clock: 5, prefix: 'x' },
  ],
];

describe('option validation', () => {
  for (const [name, make, valid, invalid, prefix = ''] of cases) {
    it(`${name}: accepts its valid baseline`, () => {
      expect(() => make(valid)).not.toThrow();
    });
    it.each(Object.entries(invalid))(
      `${name}: an invalid %s throws E_INVALID_OPTION naming it`,
      (key, value) => {
        let error: unknown;
        try {
          make({ ...valid, [key]: value });
        } catch (e) {
          error = e;
        }
        expect(isInvalidOptionError(error), String(error)).toBe(true);
        expect((error as { option: string }).option).toBe(prefix + key);
        expect((error as Error).message).toContain(`"${prefix}${key}"`);
      },
    );
  }

  it('nested options are named by their path', () => {
    expect(() => adaptiveLimiter({ partitions: { live: 2 } })).toThrow(/"partitions.live"/);
  });

  it('adaptiveLimiter requires minLimit <= initialLimit <= maxLimit', () => {
    expect(() => adaptiveLimiter({ minLimit: 10, maxLimit: 5 })).toThrow(/"maxLimit"/);
    expect(() => adaptiveLimiter({ minLimit: 10, initialLimit: 5 })).toThrow(/"initialLimit"/);
    expect(() => adaptiveLimiter({ maxLimit: 10, initialLimit: 11 })).toThrow(/"initialLimit"/);
    expect(adaptiveLimiter({ minLimit: 30 }).limit).toBe(30);
    expect(adaptiveLimiter({ maxLimit: 5 }).limit).toBe(5);
  });
});

const keys = [
  ...new Set(cases.flatMap(([, , valid, invalid]) => [...Object.keys(valid), ...Object.keys(invalid)])),
  'partitions',
  'window',
];
const value = fc.oneof(
  fc.anything(),
  fc.double(),
  fc.integer(),
  fc.constantFrom(
    '10s',
    '1m',
    '-1s',
    'fifo',
    'lifo',
    'adaptive-lifo',
    'aimd',
    'vegas',
    'gradient2',
    '',
    0,
    1,
    0.5,
  ),
  fc.constantFrom(-1, 1e9, Number.NaN, null, true, new FakeClock(0)),
  fc.dictionary(fc.string(), fc.oneof(fc.double(), fc.integer({ min: -2, max: 5 }))),
);
const options = fc.oneof(fc.anything(), fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 6 }));

for (const [name, make, valid] of cases) {
  test.prop([options, fc.boolean()])(
    `${name}: fuzzed options only produce E_INVALID_OPTION`,
    (o, withBaseline) => {
      try {
        make(
          withBaseline && typeof o === 'object' && o !== null && !Array.isArray(o)
            ? { ...valid, ...o }
            : (o as never),
        );
      } catch (error) {
        expect(isInvalidOptionError(error), String(error)).toBe(true);
        expect((error as Error).message).toContain((error as { option: string }).option);
      }
    },
  );
}
