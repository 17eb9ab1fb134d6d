import { createHash } from 'node:crypto';
import { fc, test } from '@fast-check/vitest';
import HashRing from 'hashring';
import { describe, expect, it } from 'vitest';
import { createKetamaRing } from './ketama.js';
import { D, md5String } from './md5.js';

const host = fc
  .tuple(
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(11211, 6379, 7000),
  )
  .map(([a, b, port]) => `10.0.${a}.${b}:${port}`);
const servers = fc.uniqueArray(host, { minLength: 1, maxLength: 24 });
/**
 * Where hashring places `key`: its own lookup, without its LRU cache in front. That cache is a
 * plain object, so a key named like an Object.prototype member ('toString', 'constructor') reads
 * the prototype's function and writes hashring's answer onto it, shared by every ring in the
 * process: `get('toString')` on one ring can return another ring's server. The placement itself is
 * `ring[find(hashValue(key))]`, which get() runs on a miss.
 */
function hashringPlace(ring: HashRing, key: string): string {
  const r = ring as unknown as {
    ring: { server: string }[];
    find(h: number): number;
    hashValue(k: string): number;
  };
  return r.ring[r.find(r.hashValue(key))]!.server;
}

const key = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef') }),
);

describe('md5', () => {
  test.prop([fc.string({ unit: 'binary', maxLength: 300 })])(
    'equals node:crypto MD5 of the UTF-8 bytes',
    (s) => {
      md5String(s);
      const bytes = Buffer.alloc(16);
      for (let i = 0; i < 4; i++) bytes.writeInt32LE(D[i]!, i * 4);
      expect(bytes.toString('hex')).toBe(createHash('md5').update(s, 'utf8').digest('hex'));
    },
  );
});

describe('ketama ring', () => {
  test.prop([servers, fc.array(key, { minLength: 1, maxLength: 50 })])(
    'places every key on the same server as hashring (ketama defaults)',
    (list, ks) => {
      const ours = createKetamaRing(list);
      const theirs = new HashRing(list);
      for (const k of ks) expect(ours.get(k)).toBe(hashringPlace(theirs, k));
      // 40 hashes of 4 points per server, as libketama counts them: floor(1/n * 40 * n) in doubles,
      // which is 39 for some n (1/7 * 40 * 7 = 39.99...), as it is in hashring and libketama.
      expect(ours.size).toBe(list.length * 4 * Math.floor((1 / list.length) * 40 * list.length));
    },
  );

  test.prop([
    fc.uniqueArray(host, { minLength: 1, maxLength: 12 }).chain((list) =>
      fc.tuple(
        fc.constant(list),
        fc.array(
          fc.record({
            weight: fc.integer({ min: 1, max: 9 }),
            vnodes: fc.option(fc.integer({ min: 1, max: 80 }), { nil: undefined }),
          }),
          {
            minLength: list.length,
            maxLength: list.length,
          },
        ),
      ),
    ),
    fc.constantFrom<'ketama' | 'hash_ring'>('ketama', 'hash_ring'),
    fc.integer({ min: 10, max: 60 }),
    fc.array(key, { minLength: 1, maxLength: 30 }),
  ])(
    'places like hashring with weights, per-server vnodes, vnode counts and hash_ring compatibility',
    ([list, settings], compatibility, vnodes, ks) => {
      const config = Object.fromEntries(list.map((s, i) => [s, settings[i]!]));
      const ours = createKetamaRing(config, { compatibility, vnodes });
      const theirs = new HashRing(
        Object.fromEntries(
          list.map((s, i) => [
            s,
            settings[i]!.vnodes === undefined ? { weight: settings[i]!.weight } : settings[i]!,
          ]),
        ) as never,
        'md5',
        { compatibility, 'vnode count': vnodes },
      );
      for (const k of ks) {
        expect(ours.get(k)).toBe(hashringPlace(theirs, k));
        expect(ours.range(k, Math.min(3, list.length))).toEqual(theirs.range(k, Math.min(3, list.length)));
      }
    },
  );

  test.prop([servers, fc.array(key, { minLength: 1, maxLength: 20 })])(
    "hashes servers on the default port by host alone, as hashring's 'default port' does",
    (list, ks) => {
      const ours = createKetamaRing(list, { defaultPort: 11211 });
      const theirs = new HashRing(list, 'md5', { 'default port': 11211 });
      for (const k of ks) expect(ours.get(k)).toBe(hashringPlace(theirs, k));
    },
  );

  it('weights a record of plain numbers like hashring', () => {
    const config = { 'a:1': 1, 'b:1': 3, 'c:1': 2 };
    const ours = createKetamaRing(config);
    const theirs = new HashRing(config as never);
    for (let i = 0; i < 500; i++) {
      expect(ours.get(`k${i}`)).toBe(hashringPlace(theirs, `k${i}`));
      expect(ours.get(`k${i}`)).toBe(theirs.get(`k${i}`));
    }
  });

  it('moves about 1/(n+1) of keys when a server is added, only to the new server', () => {
    const list = Array.from({ length: 9 }, (_, i) => `10.0.0.${i}:11211`);
    const before = createKetamaRing(list);
    const after = createKetamaRing([...list, '10.0.0.99:11211']);
    let moved = 0;
    for (let i = 0; i < 50_000; i++) {
      const b = before.get(`user:${i}`);
      const a = after.get(`user:${i}`);
      if (a !== b) {
        moved++;
        expect(a).toBe('10.0.0.99:11211');
      }
    }
    // A ring's share is uneven (160 points per server): a wide band around 1/10.
    expect(moved / 50_000).toBeGreaterThan(0.05);
    expect(moved / 50_000).toBeLessThan(0.15);
  });

  it('answers its documented example, as hashring does', () => {
    const servers = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'];
    expect(createKetamaRing(servers).get('session:9f2')).toBe('10.0.0.3:11211');
    expect(new HashRing(servers).get('session:9f2')).toBe('10.0.0.3:11211');
    expect(createKetamaRing(servers).range('session:9f2', 2)).toEqual(['10.0.0.3:11211', '10.0.0.1:11211']);
  });

  it('rejects bad servers and options with E_INVALID_OPTION', () => {
    expect(() => createKetamaRing([''])).toThrow(/servers\[0\]/);
    expect(() => createKetamaRing({ a: 0 })).toThrow(/servers\.a/);
    expect(() => createKetamaRing({ a: { weight: 1, vnode: 3 } as never })).toThrow(/vnode/);
    expect(() => createKetamaRing(['a'], { compatibility: 'x' as never })).toThrow(/compatibility/);
    expect(() => createKetamaRing([]).get('k')).toThrow(/servers/);
    expect(() => createKetamaRing(['a']).get(1 as never)).toThrow(/key/);
  });
});
