import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasCode } from '../../core/errors.js';
import { decodeEntry, Entry, encodeEntry } from './envelope.js';
import { dropProtoKeys, jsonSerializer, richSerializer, type Serializer } from './serializer.js';

const roundTrip = (value: unknown) => richSerializer.deserialize(richSerializer.serialize(value) as string);

describe('richSerializer', () => {
  it('keeps Date, BigInt, Map, Set, RegExp, undefined fields and special numbers', () => {
    const value = {
      at: new Date(1_700_000_000_123),
      invalid: new Date(Number.NaN),
      big: -12345678901234567890n,
      map: new Map<unknown, unknown>([
        [1, 'one'],
        [{ k: 1 }, new Set([1n])],
      ]),
      set: new Set(['a', undefined]),
      re: /a+b/gi,
      missing: undefined,
      list: [undefined, null, 1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0],
      nested: { deeper: { when: new Date(0) } },
    };
    const back = roundTrip(value) as typeof value;
    expect(back).toEqual(value);
    expect(Object.hasOwn(back, 'missing')).toBe(true);
    expect(Object.is(back.list[6], -0)).toBe(true);
    expect(back.at).toBeInstanceOf(Date);
    expect(back.invalid.getTime()).toBeNaN();
  });

  it('keeps typed arrays, DataView, ArrayBuffer and Buffer with their exact bytes', () => {
    const value = {
      u8: new Uint8Array([1, 2, 255]),
      i16: new Int16Array([-1, 32767]),
      f64: new Float64Array([Math.PI, -0]),
      big: new BigInt64Array([-1n, 2n ** 62n]),
      // A view into a larger buffer: only its own bytes travel.
      slice: new Uint32Array(new Uint32Array([1, 2, 3, 4]).buffer, 4, 2),
      view: new DataView(new Uint8Array([9, 8, 7]).buffer),
      raw: new Uint8Array([5, 6]).buffer,
      buf: Buffer.from('héllo'),
    };
    const back = roundTrip(value) as typeof value;
    expect(back.u8).toEqual(value.u8);
    expect(back.i16).toEqual(value.i16);
    expect(back.f64).toEqual(value.f64);
    expect(back.big).toEqual(value.big);
    expect([...back.slice]).toEqual([2, 3]);
    expect(back.slice).toBeInstanceOf(Uint32Array);
    expect(new Uint8Array(back.view.buffer)).toEqual(new Uint8Array([9, 8, 7]));
    expect(new Uint8Array(back.raw)).toEqual(new Uint8Array([5, 6]));
    expect(Buffer.isBuffer(back.buf)).toBe(true);
    expect(back.buf.toString()).toBe('héllo');
  });

  it('escapes objects that have their own "$" key, so data never reads as a tag', () => {
    const value = { $: 'D', v: 5, inner: { $: 'u' } };
    expect(roundTrip(value)).toEqual(value);
  });

  it('uses toJSON like JSON does, and drops function and symbol fields', () => {
    const value = { money: { toJSON: () => '12.50' }, fn: () => 1, sym: Symbol('x'), kept: 1 };
    expect(roundTrip(value)).toEqual({ money: '12.50', kept: 1 });
  });

  it('throws on what it cannot represent: a function, a circular value', () => {
    expect(() => richSerializer.serialize(() => 1)).toThrow(TypeError);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(() => richSerializer.serialize(circular)).toThrow(/circular/);
  });

  it('never yields a __proto__ key, whether written by us or crafted', () => {
    const crafted =
      '{"a":{"__proto__":{"polluted":true}},"__proto__":{"x":1},"list":[{"__proto__":{"y":2}}]}';
    const back = richSerializer.deserialize(crafted) as Record<string, any>;
    expect(Object.hasOwn(back, '__proto__')).toBe(false);
    expect(Object.hasOwn(back.a, '__proto__')).toBe(false);
    expect(Object.hasOwn(back.list[0], '__proto__')).toBe(false);
    const merged = Object.assign({}, back.a);
    expect((merged as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    const own = JSON.parse('{"__proto__":{"polluted":true},"ok":1}');
    expect(Object.keys(roundTrip(own) as object)).toEqual(['ok']);
    // Inside an escaped object too.
    const escaped = richSerializer.deserialize('{"$":"O","v":{"$":1,"__proto__":{"p":1}}}') as object;
    expect(Object.keys(escaped)).toEqual(['$']);
  });

  it('rejects tags it does not know and malformed tagged values', () => {
    for (const text of [
      '{"$":"Z"}',
      '{"$":"b","v":"12x"}',
      '{"$":"T","k":"Nope","v":""}',
      '{"$":"M","v":5}',
    ]) {
      expect(() => richSerializer.deserialize(text)).toThrow(/corrupt payload/);
    }
  });

  it('round-trips any JSON-like value with undefined, Dates, BigInts, Maps and Sets (property)', () => {
    const leaf = fc.oneof(
      fc.string(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.bigInt(),
      fc.date(),
    );
    const tree = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        leaf,
        fc.array(tie('node'), { maxLength: 4 }),
        fc.dictionary(fc.string(), tie('node'), { maxKeys: 4 }),
        fc.array(tie('node'), { maxLength: 3 }).map((items) => new Set(items)),
        fc.array(fc.tuple(fc.string(), tie('node')), { maxLength: 3 }).map((pairs) => new Map(pairs)),
      ),
    }));
    fc.assert(
      fc.property(tree.node, (value) => {
        const clean = dropProtoKeys(structuredClone(value));
        expect(roundTrip(clean)).toEqual(clean);
      }),
      { numRuns: 300 },
    );
  });
});

describe('jsonSerializer', () => {
  it('is plain JSON, minus __proto__ keys', () => {
    expect(jsonSerializer.deserialize(jsonSerializer.serialize({ a: [1, 'x'] }) as string)).toEqual({
      a: [1, 'x'],
    });
    const back = jsonSerializer.deserialize('{"__proto__":{"p":1},"b":{"__proto__":2}}') as object;
    expect(Object.keys(back)).toEqual(['b']);
    expect(Object.keys((back as { b: object }).b)).toEqual([]);
  });
});

describe('envelopes', () => {
  const entry = new Entry({ a: 1 }, 1000, 2000, 3000, 12, ['t1', 't2']);

  it('round-trip with their timing and tags', () => {
    const back = decodeEntry('k', encodeEntry(entry, richSerializer) as string, richSerializer);
    expect(back).toMatchObject({
      value: { a: 1 },
      createdAt: 1000,
      expiresAt: 2000,
      staleUntil: 3000,
      delta: 12,
    });
    expect(back.tags).toEqual(['t1', 't2']);
  });

  it('read corrupt or foreign payloads as E_CACHE_CORRUPT, never as values', () => {
    const foreign = [
      'not json',
      '42',
      'null',
      '[1,2]',
      '{"v":1}',
      '{"f":2,"v":1,"c":1,"e":2,"g":3}',
      '{"f":1,"v":1,"c":"x","e":2,"g":3}',
      '{"f":1,"v":1,"c":1,"e":2,"g":3,"t":[1]}',
      '{"f":1,"c":1,"e":2,"g":3}',
    ];
    for (const payload of foreign) {
      let caught: unknown;
      try {
        decodeEntry('k', payload, richSerializer);
      } catch (error) {
        caught = error;
      }
      expect(hasCode(caught, 'E_CACHE_CORRUPT'), payload).toBe(true);
    }
  });

  it('strip __proto__ keys from what a custom serializer returns, unless it says it is safe', () => {
    const unsafe: Serializer = {
      name: 'raw',
      serialize: JSON.stringify,
      deserialize: (d) => JSON.parse(String(d)),
    };
    const payload = '{"f":1,"v":{"__proto__":{"x":1},"ok":true},"c":1,"e":2,"g":3}';
    const back = decodeEntry('k', payload, unsafe);
    expect(Object.keys(back.value as object)).toEqual(['ok']);
  });
});
