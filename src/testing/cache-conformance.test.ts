import { describe, expect, it } from 'vitest';
import { jsonSerializer, richSerializer, type Serializer } from '../cache/index.js';
import {
  type ConformanceApi,
  HOSTILE_JSON_PAYLOADS,
  type SerializerConformanceOptions,
  serializerConformance,
} from './cache-conformance.js';

// The built-in serializers, as a user would check their own.
serializerConformance({ describe, it, expect }, richSerializer);
serializerConformance({ describe, it, expect }, jsonSerializer, { keeps: [] });

/**
 * Runs the suite under a recording `{ describe, it, expect }` instead of vitest: returns the
 * names of the tests that failed, so the suite itself can be tested on broken serializers.
 */
async function failures(serializer: Serializer, options?: SerializerConformanceOptions): Promise<string[]> {
  const tests: { name: string; fn: () => void | Promise<void> }[] = [];
  const path: string[] = [];
  const api: ConformanceApi = {
    describe(name, fn) {
      path.push(name);
      try {
        fn();
      } finally {
        path.pop();
      }
    },
    it(name, fn) {
      tests.push({ name: [...path.slice(1), name].join(' > '), fn });
    },
    expect(actual) {
      return {
        toBe(expected) {
          if (!Object.is(actual, expected)) throw new Error(`${String(actual)} is not ${String(expected)}`);
        },
      };
    },
  };
  serializerConformance(api, serializer, options);
  expect(tests.length).toBeGreaterThan(10);
  const failed: string[] = [];
  for (const test of tests) {
    try {
      await test.fn();
    } catch {
      failed.push(test.name);
    }
  }
  return failed;
}

/** Plain JSON, as bytes: exercises the binary path (the cache hands deserialize a Buffer). */
const bytesSerializer: Serializer = {
  name: 'json-bytes',
  binary: true,
  serialize: (value) => Buffer.from(JSON.stringify(value)),
  deserialize: (data) => {
    if (!Buffer.isBuffer(data)) throw new TypeError('expected a Buffer');
    return JSON.parse(data.toString());
  },
};

/** Copies decoded fields by assignment, the classic way to let `__proto__` reach a prototype. */
function naiveMerge(target: Record<string, unknown>, source: unknown): unknown {
  if (source === null || typeof source !== 'object' || Array.isArray(source)) return source;
  for (const [key, value] of Object.entries(source)) {
    const current = target[key];
    target[key] =
      value !== null && typeof value === 'object' && !Array.isArray(value)
        ? naiveMerge((current ?? {}) as Record<string, unknown>, value)
        : value;
  }
  return target;
}

describe('serializerConformance itself', () => {
  it('passes a conforming binary serializer, given hostile payloads in its format', async () => {
    expect(
      await failures(bytesSerializer, {
        keeps: [],
        hostilePayloads: HOSTILE_JSON_PAYLOADS.map((text) => new Uint8Array(Buffer.from(text))),
      }),
    ).toEqual([]);
  });

  it('catches a deserializer that lets __proto__ reach a prototype', async () => {
    const naive: Serializer = {
      name: 'naive-merge',
      serialize: (value) => JSON.stringify(value),
      deserialize: (data) => naiveMerge({}, JSON.parse(String(data))),
    };
    const failed = await failures(naive, { keeps: [] });
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((name) => name.startsWith('prototype pollution > '))).toBe(true);
    expect(failed).toContain(
      'prototype pollution > a hostile payload is refused or decodes harmlessly (#1: {"__proto__":{"polluted":"yes"}})',
    );
    // The suite undid the pollution it provoked.
    expect(Object.hasOwn(Object.prototype, 'polluted')).toBe(false);
  });

  it('catches an own __proto__ key from a serializer that declares itself safe, not from one that does not', async () => {
    const parseOnly = {
      serialize: (value: unknown) => JSON.stringify(value),
      deserialize: (data: string | Buffer) => JSON.parse(String(data)),
    };
    const unsafe = await failures({ name: 'json-parse', ...parseOnly }, { keeps: [] });
    expect(unsafe).toEqual([]);
    const claimed = await failures(
      { name: 'json-parse-claims-safe', safe: true, ...parseOnly },
      { keeps: [] },
    );
    expect(claimed.length).toBeGreaterThan(0);
    expect(claimed.every((name) => name.startsWith('prototype pollution > '))).toBe(true);
  });

  it('catches each kind of value a serializer claims to keep but loses', async () => {
    const failed = await failures(jsonSerializer, { keeps: ['date', 'map', 'undefined'] });
    expect(failed).toEqual([
      "round-trips undefined fields and array items (keeps 'undefined')",
      "round-trips Date (an invalid one too) (keeps 'date')",
      "round-trips Map with string, number and object keys, nested (keeps 'map')",
      'round-trips every kept kind, nested together',
    ]);
  });

  it('catches shared decoded values, a lenient decoder and a wrong binary flag', async () => {
    const cache = new Map<string, unknown>();
    const sharing: Serializer = {
      name: 'sharing',
      serialize: (value) => JSON.stringify(value),
      deserialize: (data) => {
        const text = String(data);
        if (!cache.has(text)) cache.set(text, JSON.parse(text));
        return cache.get(text);
      },
    };
    expect(await failures(sharing, { keeps: [] })).toEqual([
      'returns a fresh value on every decode (callers may mutate what they get)',
    ]);

    const lenient: Serializer = {
      name: 'lenient',
      serialize: (value) => JSON.stringify(value),
      deserialize: (data) => {
        try {
          return JSON.parse(String(data));
        } catch {
          return null;
        }
      },
    };
    expect(await failures(lenient, { keeps: [] })).toEqual(['throws on a truncated payload']);

    const mislabelled: Serializer = { ...bytesSerializer, name: 'mislabelled', binary: false };
    expect(await failures(mislabelled, { keeps: [] })).toContain(
      'serialize returns a string (binary is not set)',
    );
  });

  it('catches a serializer that changes the value it writes', async () => {
    const mutating: Serializer = {
      name: 'mutating',
      serialize: (value) => {
        if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
          (value as Record<string, unknown>).written = true;
        }
        return JSON.stringify(value);
      },
      deserialize: (data) => {
        const v = JSON.parse(String(data));
        if (v !== null && typeof v === 'object') delete v.written;
        return v;
      },
    };
    expect(await failures(mutating, { keeps: [] })).toEqual(['leaves the value it serializes untouched']);
  });
});
