import type { Serializer } from '../cache/index.js';

/*
 * Conformance suites for what a user can plug into buttress/cache. Today that is the serializer
 * (`createCache({ serializer })`): the L1 and L2 stores are built in, so there is no store suite
 * yet. The suites are written against a minimal `{ describe, it, expect }`, so they run under
 * vitest, jest, or mocha with any jest-style `expect`, and buttress/testing imports no test
 * framework. They use one assertion, `expect(x).toBe(y)`: each check computes what is wrong, as
 * a sentence with the path to the offending value, and asserts that it is `undefined`.
 */

/**
 * The part of a test framework a conformance suite uses: vitest's and jest's `describe`, `it`
 * and `expect` fit as they are.
 *
 * @example
 * import { describe, expect, it } from 'vitest';
 * serializerConformance({ describe, it, expect }, mySerializer);
 */
export interface ConformanceApi {
  /** Groups tests; `fn` registers them synchronously. */
  describe(name: string, fn: () => void): void;
  /** Registers one test. */
  it(name: string, fn: () => void | Promise<void>): void;
  /** A jest-style assertion; only `toBe` (`Object.is` equality) is used. */
  expect(actual: unknown): { toBe(expected: unknown): void };
}

/**
 * A kind of value beyond plain JSON that a serializer may keep exactly:
 *
 * - `undefined`: `undefined` as an object field (the key stays) or an array item
 * - `specialNumbers`: `NaN`, `Infinity`, `-Infinity`, `-0`
 * - `bigint`: `BigInt` values
 * - `date`: `Date` (invalid dates included), as a `Date`
 * - `map`, `set`: `Map` and `Set`, any keys, in order
 * - `regexp`: `RegExp`, source and flags
 * - `typedArrays`: every typed array (views at an offset included), `DataView` and `Buffer`,
 *   each as its own class with its exact bytes
 * - `arrayBuffer`: `ArrayBuffer`
 */
export type SerializerFeature =
  | 'undefined'
  | 'specialNumbers'
  | 'bigint'
  | 'date'
  | 'map'
  | 'set'
  | 'regexp'
  | 'typedArrays'
  | 'arrayBuffer';

/** Every {@link SerializerFeature}: what buttress's `richSerializer` keeps. */
export const ALL_SERIALIZER_FEATURES: readonly SerializerFeature[] = Object.freeze([
  'undefined',
  'specialNumbers',
  'bigint',
  'date',
  'map',
  'set',
  'regexp',
  'typedArrays',
  'arrayBuffer',
]);

/** Options of {@link serializerConformance}. */
export interface SerializerConformanceOptions {
  /**
   * The kinds of value, beyond plain JSON, that the serializer claims to keep exactly. Plain JSON
   * values (null, booleans, finite numbers, strings, arrays, plain objects) are always checked.
   * `[]` for a plain JSON serializer.
   * @default ALL_SERIALIZER_FEATURES
   */
  keeps?: readonly SerializerFeature[];
  /**
   * Payloads in the serializer's own format that try to pollute a prototype (`__proto__` and
   * `constructor.prototype` keys, at the top, nested, inside tagged values). Decoding each must
   * throw, or return a value that changed no prototype (and, for a serializer declaring `safe`,
   * that has no own `__proto__` key anywhere).
   * @default for a text serializer, a list of JSON texts (plain, and in the tagged shapes of
   * buttress's rich format and of superjson); for a binary one, none: pass your format's own. The
   * hostile values are also run through `serialize` then `deserialize` whatever the format.
   */
  hostilePayloads?: readonly (string | Uint8Array)[];
}

/** JSON texts that try to pollute a prototype, in plain JSON and in tagged formats built on it. */
export const HOSTILE_JSON_PAYLOADS: readonly string[] = Object.freeze([
  '{"__proto__":{"polluted":"yes"}}',
  '{"a":{"b":{"__proto__":{"polluted":"yes"}}}}',
  '[{"__proto__":{"polluted":"yes"}}]',
  '{"__proto__":{"__proto__":{"polluted":"yes"}}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  // buttress's rich format: escaped object, Map value, Set item, Map key.
  '{"$":"O","v":{"__proto__":{"polluted":"yes"}}}',
  '{"$":"M","v":[["k",{"__proto__":{"polluted":"yes"}}]]}',
  '{"$":"S","v":[{"__proto__":{"polluted":"yes"}}]}',
  '{"$":"M","v":[["__proto__",{"polluted":"yes"}]]}',
  // superjson's shape: a value, and metadata naming paths into it.
  '{"json":{"__proto__":{"polluted":"yes"}},"meta":{"values":{"a":["map"]}}}',
  '{"json":{"a":{}},"meta":{"referentialEqualities":{"a":["__proto__.polluted","constructor.prototype.polluted"]}}}',
]);

/** Values that carry their own `__proto__` / `constructor` keys (JSON.parse creates own keys). */
function hostileValues(): unknown[] {
  return [
    JSON.parse('{"__proto__":{"polluted":"yes"}}'),
    JSON.parse('{"a":[{"__proto__":{"polluted":"yes"}}]}'),
    JSON.parse('{"constructor":{"prototype":{"polluted":"yes"}}}'),
  ];
}

/** A named value, built afresh on each call so a test can compare against an untouched copy. */
interface Sample {
  readonly name: string;
  readonly make: () => unknown;
}

/** Plain JSON values: every serializer must round-trip these exactly. */
const JSON_SAMPLES: readonly Sample[] = [
  { name: 'null', make: () => null },
  { name: 'booleans', make: () => [true, false] },
  {
    name: 'numbers',
    make: () => [0, 1, -1.5, 1e21, 5e-324, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER],
  },
  {
    name: 'strings',
    make: () => [
      '',
      'plain',
      'héllo ✓ 𝄞 中文',
      'quotes " \\ and\nnew\tlines',
      '\u0000\u001f',
      '$',
      '__proto__',
    ],
  },
  { name: 'empty object and array', make: () => ({ o: {}, a: [] }) },
  {
    name: 'a nested object with null fields',
    make: () => ({
      id: 42,
      user: { name: 'Ada', email: null, roles: ['admin', 'dev'] },
      rows: [[1, 2], [null]],
    }),
  },
  {
    name: 'deep nesting (100 levels)',
    make: () => {
      let v: unknown = { leaf: true };
      for (let i = 0; i < 100; i++) v = i % 2 === 0 ? { next: v } : [v];
      return v;
    },
  },
  {
    name: 'objects whose keys look like another format’s tags',
    make: () => ({
      $: 'D',
      v: 1,
      inner: { $: 'u' },
      list: [{ $: 'M', v: [] }],
      __type: 'Date',
      json: { meta: 1 },
      meta: { values: { json: ['map'] } },
    }),
  },
  {
    name: 'the envelope the cache writes',
    make: () => ({
      f: 1,
      v: { id: 7, name: 'x' },
      c: 1_700_000_000_000,
      e: 1_700_000_060_000,
      g: 1_700_000_060_000,
      d: 12,
      t: ['a', 'b'],
    }),
  },
];

/** Values of one feature each, made of plain JSON otherwise. */
const FEATURE_SAMPLES: Record<SerializerFeature, Sample> = {
  undefined: {
    name: 'undefined fields and array items',
    make: () => ({ missing: undefined, kept: 1, list: [undefined, 1, undefined], inner: { u: undefined } }),
  },
  specialNumbers: {
    name: 'NaN, ±Infinity and -0',
    make: () => [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, { z: -0 }],
  },
  bigint: {
    name: 'BigInt',
    make: () => ({ zero: 0n, negative: -123n, huge: 2n ** 70n + 1n, list: [1n, -(2n ** 64n)] }),
  },
  date: {
    name: 'Date (an invalid one too)',
    make: () => ({ epoch: new Date(0), at: new Date(1_700_000_000_123), invalid: new Date(Number.NaN) }),
  },
  map: {
    name: 'Map with string, number and object keys, nested',
    make: () =>
      new Map<unknown, unknown>([
        ['a', 1],
        [2, { two: true }],
        [{ k: 1 }, 'object key'],
        ['nested', new Map([['x', null]])],
      ]),
  },
  set: {
    name: 'Set of mixed items, nested',
    make: () => ({ s: new Set<unknown>([1, 'a', { x: 1 }, null]), empty: new Set(), nested: [new Set([2])] }),
  },
  regexp: {
    name: 'RegExp with flags',
    make: () => [/a+b/gi, /^[\w$]+\/\d{2}$/mu],
  },
  typedArrays: {
    name: 'typed arrays, a view at an offset, DataView and Buffer',
    make: () => ({
      u8: new Uint8Array([0, 1, 255]),
      i16: new Int16Array([-1, 32_767]),
      f64: new Float64Array([Math.PI, -0, Number.NaN]),
      big: new BigInt64Array([-1n, 2n ** 62n]),
      slice: new Uint32Array(new Uint32Array([1, 2, 3, 4]).buffer, 4, 2),
      view: new DataView(new Uint8Array([9, 8, 7]).buffer),
      buffer: Buffer.from('héllo'),
      empty: new Uint8Array(0),
    }),
  },
  arrayBuffer: {
    name: 'ArrayBuffer',
    make: () => ({ raw: new Uint8Array([5, 6, 7]).buffer, empty: new ArrayBuffer(0) }),
  },
};

/** Every kept feature at once, nested inside one another where both are kept. */
function mixedSample(keeps: ReadonlySet<SerializerFeature>): Sample {
  return {
    name: 'every kept kind, nested together',
    make: () => {
      const record: Record<string, unknown> = { id: 1, tags: ['x'], nothing: null };
      for (const feature of keeps) record[feature] = FEATURE_SAMPLES[feature].make();
      let value: unknown = { record, list: [record, { again: record }] };
      if (keeps.has('map')) value = new Map<unknown, unknown>([['value', value]]);
      if (keeps.has('set')) value = { items: new Set([value]) };
      return value;
    },
  };
}

/**
 * Registers a test suite checking that `serializer` can back a buttress cache: it round-trips
 * plain JSON and each kind of value it claims to keep (`options.keeps`) exactly, returns what its
 * `binary` flag says, leaves its input alone, returns a fresh value on every decode, throws on a
 * truncated payload (the cache reads that as a miss), and decoding never changes a prototype
 * (nor, for a serializer declaring `safe: true`, yields an own `__proto__` key).
 *
 * @example
 * import { describe, expect, it } from 'vitest';
 * import { jsonSerializer, richSerializer } from 'buttress/cache';
 * import { serializerConformance } from 'buttress/testing';
 *
 * serializerConformance({ describe, it, expect }, richSerializer);
 * serializerConformance({ describe, it, expect }, jsonSerializer, { keeps: [] });
 * serializerConformance({ describe, it, expect }, msgpackSerializer, { keeps: ['date', 'undefined'], hostilePayloads: [...] });
 */
export function serializerConformance(
  api: ConformanceApi,
  serializer: Serializer,
  options: SerializerConformanceOptions = {},
): void {
  const { describe, it, expect } = api;
  const keeps = new Set(options.keeps ?? ALL_SERIALIZER_FEATURES);
  const binary = serializer.binary === true;
  const hostile = options.hostilePayloads ?? (binary ? [] : HOSTILE_JSON_PAYLOADS);

  /** What the cache does: serialize, then hand the reply to deserialize (a Buffer when binary). */
  const roundTrip = (value: unknown): unknown =>
    serializer.deserialize(transport(serializer.serialize(value)));
  const transport = (data: string | Uint8Array): string | Buffer =>
    typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);

  describe(`serializer conformance: ${serializer.name}`, () => {
    it('has a name', () => {
      expect(typeof serializer.name === 'string' && serializer.name.length > 0).toBe(true);
    });

    it(`serialize returns ${binary ? 'bytes (binary: true)' : 'a string (binary is not set)'}`, () => {
      const out = serializer.serialize({ a: 1 });
      expect(binary ? out instanceof Uint8Array : typeof out === 'string').toBe(true);
    });

    for (const sample of JSON_SAMPLES) {
      it(`round-trips ${sample.name}`, () => {
        expect(difference(roundTrip(sample.make()), sample.make())).toBe(undefined);
      });
    }

    for (const feature of ALL_SERIALIZER_FEATURES) {
      if (!keeps.has(feature)) continue;
      const sample = FEATURE_SAMPLES[feature];
      it(`round-trips ${sample.name} (keeps '${feature}')`, () => {
        expect(difference(roundTrip(sample.make()), sample.make())).toBe(undefined);
      });
    }

    if (keeps.size > 0) {
      const mixed = mixedSample(keeps);
      it(`round-trips ${mixed.name}`, () => {
        expect(difference(roundTrip(mixed.make()), mixed.make())).toBe(undefined);
      });
    }

    it('leaves the value it serializes untouched', () => {
      const samples = [...JSON_SAMPLES, ...[...keeps].map((f) => FEATURE_SAMPLES[f])];
      for (const sample of samples) {
        const value = sample.make();
        serializer.serialize(value);
        const changed = difference(value, sample.make());
        expect(changed === undefined ? undefined : `${sample.name}: ${changed}`).toBe(undefined);
      }
    });

    it('returns a fresh value on every decode (callers may mutate what they get)', () => {
      const payload = transport(serializer.serialize({ list: [1], inner: { a: 1 } }));
      const a = serializer.deserialize(payload) as { list: number[]; inner: { a: number } };
      const b = serializer.deserialize(payload) as { list: number[]; inner: { a: number } };
      a.list.push(2);
      a.inner.a = 2;
      expect(difference(b, { list: [1], inner: { a: 1 } })).toBe(undefined);
    });

    it('throws on a truncated payload', () => {
      const full = serializer.serialize({ id: 1, name: 'a product name', tags: ['a', 'b'], n: [1, 2, 3] });
      const cut =
        typeof full === 'string' ? full.slice(0, full.length >> 1) : full.subarray(0, full.length >> 1);
      let threw = false;
      try {
        serializer.deserialize(transport(cut));
      } catch {
        threw = true;
      }
      expect(threw).toBe(true);
    });

    describe('prototype pollution', () => {
      const check = (decode: () => unknown): string | undefined => {
        try {
          let decoded: unknown;
          try {
            decoded = decode();
          } catch {
            return undefined; // refusing the payload is fine: the cache reads it as a miss
          }
          return pollution(decoded, serializer.safe === true);
        } finally {
          // Undo a pollution, whatever happened, so one failure does not cascade into other tests.
          for (const proto of [Object.prototype, Array.prototype, Map.prototype, Set.prototype]) {
            if (Object.hasOwn(proto, 'polluted')) delete (proto as { polluted?: unknown }).polluted;
          }
        }
      };

      hostileValues().forEach((value, i) => {
        it(`serialize then deserialize of a value carrying __proto__ keys changes no prototype (#${i + 1})`, () => {
          expect(
            check(() => {
              let data: string | Uint8Array;
              try {
                data = serializer.serialize(value);
              } catch {
                return undefined; // refusing to write it is fine too
              }
              return serializer.deserialize(transport(data));
            }),
          ).toBe(undefined);
        });
      });

      hostile.forEach((payload, i) => {
        const label = typeof payload === 'string' ? payload : `${payload.byteLength} bytes`;
        it(`a hostile payload is refused or decodes harmlessly (#${i + 1}: ${label})`, () => {
          expect(check(() => serializer.deserialize(transport(payload)))).toBe(undefined);
        });
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// Checks

const hasOwn = Object.prototype.hasOwnProperty;

/** What is wrong after decoding a hostile payload, or undefined. */
function pollution(decoded: unknown, safe: boolean): string | undefined {
  for (const proto of [Object.prototype, Array.prototype, Map.prototype, Set.prototype]) {
    if (hasOwn.call(proto, 'polluted')) return `a built-in prototype got a "polluted" property`;
  }
  if (({} as { polluted?: unknown }).polluted !== undefined) return 'every object now inherits "polluted"';
  return walkPrototypes(decoded, '$', safe, 0);
}

/** Every decoded object must have a standard prototype; a `safe` serializer's, no own `__proto__`. */
function walkPrototypes(node: unknown, path: string, safe: boolean, depth: number): string | undefined {
  if (node === null || typeof node !== 'object' || depth > 200) return undefined;
  const next = depth + 1;
  if (Array.isArray(node)) {
    if (Object.getPrototypeOf(node) !== Array.prototype)
      return `${path} is an array with a foreign prototype`;
    for (let i = 0; i < node.length; i++) {
      const found = walkPrototypes(node[i], `${path}[${i}]`, safe, next);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (node instanceof Map) {
    for (const [k, v] of node) {
      const found =
        walkPrototypes(k, `${path}.<key>`, safe, next) ??
        walkPrototypes(v, `${path}.get(${String(k)})`, safe, next);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (node instanceof Set) {
    for (const v of node) {
      const found = walkPrototypes(v, `${path}.<item>`, safe, next);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (
    node instanceof Date ||
    node instanceof RegExp ||
    ArrayBuffer.isView(node) ||
    node instanceof ArrayBuffer
  ) {
    return undefined;
  }
  const proto = Object.getPrototypeOf(node);
  if (proto !== Object.prototype && proto !== null) {
    return `${path} has a foreign prototype (${describeValue(proto)}): the payload set it`;
  }
  if (safe && hasOwn.call(node, '__proto__')) {
    return `${path} has an own "__proto__" key, though the serializer declares itself safe`;
  }
  for (const key of Object.keys(node)) {
    const found = walkPrototypes((node as Record<string, unknown>)[key], `${path}.${key}`, safe, next);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The first way `actual` differs from `expected`, as a sentence naming the path, or undefined when
 * they are the same: same types and classes, `Object.is` on primitives (NaN equals NaN, -0 is not
 * 0), same own keys (a key holding `undefined` counts), Map and Set entries in order, exact bytes.
 */
function difference(actual: unknown, expected: unknown, path = '$'): string | undefined {
  if (typeof expected !== 'object' || expected === null) {
    return Object.is(actual, expected)
      ? undefined
      : `at ${path}: expected ${describeValue(expected)}, got ${describeValue(actual)}`;
  }
  if (typeof actual !== 'object' || actual === null) {
    return `at ${path}: expected ${describeValue(expected)}, got ${describeValue(actual)}`;
  }
  const want = Object.getPrototypeOf(expected);
  if (Object.getPrototypeOf(actual) !== want) {
    return `at ${path}: expected ${describeValue(expected)}, got ${describeValue(actual)}`;
  }
  if (expected instanceof Date) {
    const a = (actual as Date).getTime();
    const e = expected.getTime();
    return Object.is(a, e) ? undefined : `at ${path}: expected the time ${e}, got ${a}`;
  }
  if (expected instanceof RegExp) {
    const a = actual as RegExp;
    return a.source === expected.source && a.flags === expected.flags
      ? undefined
      : `at ${path}: expected ${String(expected)}, got ${String(a)}`;
  }
  if (ArrayBuffer.isView(expected) || expected instanceof ArrayBuffer) {
    const bytes = (v: ArrayBufferView | ArrayBuffer) =>
      ArrayBuffer.isView(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.from(v);
    const a = bytes(actual as ArrayBufferView | ArrayBuffer);
    const e = bytes(expected);
    return a.equals(e)
      ? undefined
      : `at ${path}: expected the bytes ${e.toString('hex')}, got ${a.toString('hex')}`;
  }
  if (expected instanceof Map || expected instanceof Set) {
    const a = [...(actual as Map<unknown, unknown> | Set<unknown>).entries()];
    const e = [...expected.entries()];
    if (a.length !== e.length) return `at ${path}: expected ${e.length} entries, got ${a.length}`;
    for (let i = 0; i < e.length; i++) {
      const found =
        difference(a[i]![0], e[i]![0], `${path}.<entry ${i} key>`) ??
        difference(a[i]![1], e[i]![1], `${path}.<entry ${i} value>`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (Array.isArray(expected)) {
    const a = actual as unknown[];
    if (a.length !== expected.length) return `at ${path}: expected ${expected.length} items, got ${a.length}`;
    for (let i = 0; i < expected.length; i++) {
      const found = difference(a[i], expected[i], `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  const aKeys = Object.keys(actual);
  const eKeys = Object.keys(expected);
  for (const key of eKeys) {
    if (!hasOwn.call(actual, key)) return `at ${path}: the key "${key}" is missing`;
  }
  for (const key of aKeys) {
    if (!hasOwn.call(expected, key)) return `at ${path}: unexpected key "${key}"`;
  }
  for (const key of eKeys) {
    const found = difference(
      (actual as Record<string, unknown>)[key],
      (expected as Record<string, unknown>)[key],
      `${path}.${key}`,
    );
    if (found !== undefined) return found;
  }
  return undefined;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
    case 'bigint':
      return `${value}n`;
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'object': {
      const ctor = (value as { constructor?: { name?: unknown } }).constructor;
      const name = typeof ctor?.name === 'string' ? ctor.name : 'object';
      return Object.getPrototypeOf(value) === null ? 'an object with a null prototype' : `a ${name}`;
    }
    default:
      return `a ${typeof value} (${String(value)})`;
  }
}
