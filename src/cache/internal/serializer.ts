/**
 * Turns what the cache stores in Redis into bytes and back. Only L2 serializes: L1 holds decoded
 * values, so an L1 hit never pays for it.
 *
 * Plug in another format by passing an object of this shape as the cache's `serializer`:
 *
 * @example
 * import superjson from 'superjson';
 * import { pack, unpack } from 'msgpackr';
 * const viaSuperjson: Serializer = { name: 'superjson', serialize: superjson.stringify, deserialize: superjson.parse };
 * const viaMsgpack: Serializer = { name: 'msgpack', binary: true, serialize: pack, deserialize: unpack };
 */
export interface Serializer {
  /** Shown in errors and stats. */
  readonly name: string;
  /**
   * True when `serialize` returns bytes (a `Uint8Array`/`Buffer`) and `deserialize` takes a
   * `Buffer`: Redis replies are then read as Buffers.
   * @default false
   */
  readonly binary?: boolean;
  /**
   * True when `deserialize` is known never to return an object with an own `__proto__` key;
   * buttress then skips its own check (a walk over the decoded value).
   * @default false
   */
  readonly safe?: boolean;
  /** Encodes a value. May throw for a value it cannot represent (the write then fails with `E_CACHE_SERIALIZE`). */
  serialize(value: unknown): string | Uint8Array;
  /** Decodes what `serialize` produced. May throw on corrupt input (read as a miss plus an error event). */
  deserialize(data: string | Buffer): unknown;
}

/*
 * The default format: JSON, with the values JSON loses written as small tagged objects
 * `{"$": <tag>, ...}`, as superjson and devalue do but in one pass each way:
 *
 *   undefined (as a field or array item)  {"$":"u"}
 *   NaN, ±Infinity, -0                    {"$":"n","v":"NaN"}
 *   BigInt                                {"$":"b","v":"123"}
 *   Date                                  {"$":"D","v":<ms>}        (an invalid date as NaN)
 *   Map, Set                              {"$":"M","v":[[k,v],...]}, {"$":"S","v":[...]}
 *   typed arrays, Buffer, DataView        {"$":"T","k":"Uint8Array","v":<base64>}
 *   ArrayBuffer                           {"$":"A","v":<base64>}
 *   RegExp                                {"$":"R","v":[source, flags]}
 *   an object having its own "$" key      {"$":"O","v":{...}}       (escaped, so it never reads as a tag)
 *
 * Objects with `toJSON` (other than Date) are encoded as what it returns, as JSON does; other
 * class instances become plain objects; functions and symbols throw. `__proto__` keys are dropped
 * both ways: a decoded value never carries one, so merging it into another object can never
 * change that object's prototype.
 */

const MAX_DEPTH = 1_000;

type TypedArrayName =
  | 'Int8Array'
  | 'Uint8Array'
  | 'Uint8ClampedArray'
  | 'Int16Array'
  | 'Uint16Array'
  | 'Int32Array'
  | 'Uint32Array'
  | 'Float32Array'
  | 'Float64Array'
  | 'BigInt64Array'
  | 'BigUint64Array';

const TYPED_ARRAYS: Record<
  TypedArrayName,
  { new (buffer: ArrayBuffer): ArrayBufferView; BYTES_PER_ELEMENT: number }
> = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
};

const hasOwn = Object.prototype.hasOwnProperty;
/** The key we drop; a constant so that deleting it reads as what it is, an own data property. */
const PROTO = '__proto__';

function bytesOf(view: ArrayBufferView): string {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).toString('base64');
}

function encode(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (Number.isFinite(value)) return value === 0 && 1 / value < 0 ? { $: 'n', v: '-0' } : value;
      return { $: 'n', v: String(value) };
    case 'bigint':
      return { $: 'b', v: value.toString() };
    case 'undefined':
      return { $: 'u' };
    case 'object':
      break;
    default:
      throw new TypeError(`cannot serialize a ${typeof value}`);
  }
  if (value === null) return null;
  if (depth > MAX_DEPTH) throw new TypeError('cannot serialize: nested too deeply (or circular)');
  const next = depth + 1;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = encode(value[i], next);
    return out;
  }
  if (value instanceof Date) return { $: 'D', v: encode(value.getTime(), next) };
  if (value instanceof Map) {
    const out: unknown[] = [];
    for (const [k, v] of value) out.push([encode(k, next), encode(v, next)]);
    return { $: 'M', v: out };
  }
  if (value instanceof Set) {
    const out: unknown[] = [];
    for (const v of value) out.push(encode(v, next));
    return { $: 'S', v: out };
  }
  if (ArrayBuffer.isView(value)) {
    const kind = Buffer.isBuffer(value)
      ? 'Buffer'
      : value instanceof DataView
        ? 'DataView'
        : (value.constructor as { name: string }).name;
    if (kind !== 'Buffer' && kind !== 'DataView' && !(kind in TYPED_ARRAYS)) {
      throw new TypeError(`cannot serialize a ${kind}`);
    }
    return { $: 'T', k: kind, v: bytesOf(value) };
  }
  if (value instanceof ArrayBuffer) return { $: 'A', v: Buffer.from(value).toString('base64') };
  if (value instanceof RegExp) return { $: 'R', v: [value.source, value.flags] };
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return encode(toJSON.call(value), next);
  const out: Record<string, unknown> = {};
  for (const key in value) {
    if (!hasOwn.call(value, key) || key === '__proto__') continue;
    const v = (value as Record<string, unknown>)[key];
    // As JSON: fields holding a function or symbol are left out rather than failing the write.
    if (typeof v === 'function' || typeof v === 'symbol') continue;
    out[key] = encode(v, next);
  }
  return hasOwn.call(value, '$') ? { $: 'O', v: out } : out;
}

function fail(what: string): never {
  throw new TypeError(`corrupt payload: ${what}`);
}

function revive(node: unknown, depth: number): unknown {
  if (node === null || typeof node !== 'object') return node;
  if (depth > MAX_DEPTH) fail('nested too deeply');
  const next = depth + 1;
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) node[i] = revive(node[i], next);
    return node;
  }
  const obj = node as Record<string, unknown>;
  if (hasOwn.call(obj, '$')) return reviveTagged(obj, next);
  return reviveFields(obj, next);
}

function reviveFields(obj: Record<string, unknown>, depth: number): Record<string, unknown> {
  for (const key in obj) {
    if (key === '__proto__') {
      delete obj[key];
      continue;
    }
    obj[key] = revive(obj[key], depth);
  }
  return obj;
}

function reviveTagged(obj: Record<string, unknown>, depth: number): unknown {
  const v = obj.v;
  switch (obj.$) {
    case 'u':
      return undefined;
    case 'n':
      if (v === 'NaN') return Number.NaN;
      if (v === 'Infinity') return Number.POSITIVE_INFINITY;
      if (v === '-Infinity') return Number.NEGATIVE_INFINITY;
      if (v === '-0') return -0;
      return fail('bad number');
    case 'b':
      if (typeof v !== 'string' || !/^-?\d+$/.test(v)) fail('bad bigint');
      return BigInt(v);
    case 'D': {
      const time = revive(v, depth);
      if (typeof time !== 'number') fail('bad date');
      return new Date(time);
    }
    case 'M': {
      if (!Array.isArray(v)) fail('bad map');
      const map = new Map<unknown, unknown>();
      for (const pair of v) {
        if (!Array.isArray(pair) || pair.length !== 2) fail('bad map entry');
        map.set(revive(pair[0], depth), revive(pair[1], depth));
      }
      return map;
    }
    case 'S': {
      if (!Array.isArray(v)) fail('bad set');
      const set = new Set<unknown>();
      for (const item of v) set.add(revive(item, depth));
      return set;
    }
    case 'T': {
      if (typeof v !== 'string') fail('bad typed array');
      const bytes = Buffer.from(v, 'base64');
      const kind = obj.k;
      if (kind === 'Buffer') return bytes;
      // A fresh, exactly sized, aligned buffer: a Buffer's own may be a slice of a shared pool.
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      if (kind === 'DataView') return new DataView(buffer);
      if (typeof kind !== 'string' || !hasOwn.call(TYPED_ARRAYS, kind)) return fail('bad typed array kind');
      const ctor = TYPED_ARRAYS[kind as TypedArrayName];
      if (buffer.byteLength % ctor.BYTES_PER_ELEMENT !== 0) fail('bad typed array length');
      return new ctor(buffer);
    }
    case 'A': {
      if (typeof v !== 'string') fail('bad array buffer');
      const bytes = Buffer.from(v, 'base64');
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    }
    case 'R':
      if (!Array.isArray(v) || typeof v[0] !== 'string' || typeof v[1] !== 'string') fail('bad regexp');
      return new RegExp(v[0], v[1]);
    case 'O':
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('bad escaped object');
      return reviveFields(v as Record<string, unknown>, depth);
    default:
      return fail(`unknown tag ${JSON.stringify(obj.$)}`);
  }
}

function toText(data: string | Buffer | Uint8Array): string {
  return typeof data === 'string'
    ? data
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString();
}

/**
 * The default serializer: JSON that keeps Date, BigInt, Map, Set, RegExp, typed arrays,
 * ArrayBuffer, Buffer, NaN/±Infinity/-0 and `undefined` fields. Decoding never yields a
 * `__proto__` key, and a payload it did not write throws (a cache read treats that as a miss).
 *
 * @example
 * const text = richSerializer.serialize({ at: new Date(0), ids: new Set([1n]) });
 * richSerializer.deserialize(text); // { at: Date(0), ids: Set { 1n } }
 */
export const richSerializer: Serializer = Object.freeze({
  name: 'rich',
  safe: true,
  serialize(value: unknown): string {
    return JSON.stringify(encode(value, 0));
  },
  deserialize(data: string | Buffer): unknown {
    const text = toText(data);
    const parsed: unknown = JSON.parse(text);
    // Most payloads hold neither a tag nor a __proto__ key: two native substring scans then spare
    // the walk over the decoded value.
    if (!text.includes('"$"') && !text.includes('"__proto__"')) return parsed;
    return revive(parsed, 0);
  },
});

/**
 * Plain JSON (`JSON.stringify` / `JSON.parse`): Dates come back as strings, Maps as `{}`, BigInt
 * throws. Choose it to share entries with non-JavaScript readers. `__proto__` keys are dropped.
 */
export const jsonSerializer: Serializer = Object.freeze({
  name: 'json',
  safe: true,
  serialize(value: unknown): string {
    return JSON.stringify(value);
  },
  deserialize(data: string | Buffer): unknown {
    const text = toText(data);
    const parsed: unknown = JSON.parse(text);
    return text.includes('"__proto__"') ? dropProtoKeys(parsed, 0) : parsed;
  },
});

/**
 * Removes own `__proto__` keys from a decoded value, in place, at any depth (objects, arrays,
 * Map values, Set items). Used on what a custom serializer returns unless it declares itself `safe`.
 */
export function dropProtoKeys(node: unknown, depth = 0): unknown {
  if (node === null || typeof node !== 'object' || depth > MAX_DEPTH) return node;
  const next = depth + 1;
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) dropProtoKeys(node[i], next);
  } else if (node instanceof Map) {
    for (const v of node.values()) dropProtoKeys(v, next);
  } else if (node instanceof Set) {
    for (const v of node) dropProtoKeys(v, next);
  } else if (!ArrayBuffer.isView(node) && !(node instanceof Date)) {
    if (hasOwn.call(node, '__proto__')) delete (node as Record<string, unknown>)[PROTO];
    for (const key of Object.keys(node)) dropProtoKeys((node as Record<string, unknown>)[key], next);
  }
  return node;
}
