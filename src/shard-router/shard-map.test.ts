import { fc, test as propTest } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { evenShardMap, ShardMap, shardMap } from './shard-map.js';

/** A random assignment of `n` logical shards to up to 5 nodes. */
const assignment = fc
  .integer({ min: 1, max: 300 })
  .chain((n) =>
    fc.tuple(fc.constant(n), fc.array(fc.integer({ min: 0, max: 4 }), { minLength: n, maxLength: n })),
  );

describe('ShardMap', () => {
  propTest.prop([assignment, fc.integer({ min: 1, max: 1000 })])(
    'toJSON round trip: the compact ranges rebuild a map assigning every shard to the same node',
    ([n, owners], version) => {
      const sets: Record<string, number[]> = { n0: [], n1: [], n2: [], n3: [], n4: [] };
      owners.forEach((o, s) => {
        sets[`n${o}`]!.push(s);
      });
      const map = shardMap({ version, logicalShards: n, assignments: sets });
      const back = ShardMap.from(JSON.parse(JSON.stringify(map.toJSON())));
      expect(back.version).toBe(version);
      for (let s = 0; s < n; s++) expect(back.nodeOf(s)).toBe(`n${owners[s]}`);
      expect(back.sameAssignments(map)).toBe(true);
    },
  );

  propTest.prop([assignment, fc.nat()])(
    'withMove changes one shard and bumps the version by one',
    ([n, owners], pick) => {
      const sets: Record<string, number[]> = { n0: [], n1: [], n2: [], n3: [], n4: [] };
      owners.forEach((o, s) => {
        sets[`n${o}`]!.push(s);
      });
      const map = shardMap({ version: 3, logicalShards: n, assignments: sets });
      const s = pick % n;
      const moved = map.withMove(s, 'fresh');
      expect(moved.version).toBe(4);
      expect(moved.nodeOf(s)).toBe('fresh');
      for (let t = 0; t < n; t++) if (t !== s) expect(moved.nodeOf(t)).toBe(map.nodeOf(t));
      expect(map.nodeOf(s)).toBe(`n${owners[s]}`); // the old map is unchanged
    },
  );

  it('rejects a shard owned twice, a shard owned by nobody, and malformed sets, naming the field', () => {
    expect(() => shardMap({ version: 1, logicalShards: 4, assignments: { a: [[0, 2]], b: [2, 3] } })).toThrow(
      /map\.assignments\.b\[0\].*also on "a"/,
    );
    expect(() => shardMap({ version: 1, logicalShards: 4, assignments: { a: [[0, 2]] } })).toThrow(
      /logical shard 3 has no node/,
    );
    expect(() => shardMap({ version: 0, logicalShards: 4, assignments: { a: [[0, 3]] } })).toThrow(
      /map\.version/,
    );
    expect(() => shardMap({ version: 1, logicalShards: 4, assignments: { a: [[0, 4]] } })).toThrow(
      /map\.assignments\.a\[0\]\[1\]/,
    );
    expect(() => shardMap({ version: 1, logicalShards: 4, assignments: { a: [[3, 0]] } })).toThrow(
      /\[0\]\[1\]/,
    );
    expect(() => shardMap({ version: 1, logicalShards: 4, assignments: { a: 'all' as never } })).toThrow(
      /map\.assignments\.a/,
    );
  });

  it('evenShardMap spreads shards in contiguous near-equal ranges', () => {
    const map = evenShardMap(10, ['a', 'b', 'c']);
    expect(map.toJSON()).toEqual({
      version: 1,
      logicalShards: 10,
      assignments: { a: [[0, 3]], b: [[4, 6]], c: [[7, 9]] },
    });
    expect(map.shardsOf('b')).toEqual([4, 5, 6]);
    expect(map.shardsOf('nobody')).toEqual([]);
    expect(() => evenShardMap(2, ['a', 'b', 'c'])).toThrow(/nodes/);
    expect(() => evenShardMap(4, ['a', 'a'])).toThrow(/distinct/);
  });
});
