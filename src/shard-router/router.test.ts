import dc from 'node:diagnostics_channel';
import { fc, test as propTest } from '@fast-check/vitest';
import { describe, expect, it, vi } from 'vitest';
import { hasCode } from '../core/errors.js';
import { noopDisposable } from '../core/events.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { isScatterError, isStaleShardMapError } from './errors.js';
import type { SqlClient } from './fence.js';
import { defaultHasher, xxh64Hasher } from './hasher.js';
import { createShardRouter, type ShardRouter } from './router.js';
import { evenShardMap, ShardMap } from './shard-map.js';
import { memoryShardMapStore } from './stores/memory.js';
import type { ShardMapStore } from './stores/store.js';

const nodes = { a: { name: 'A' }, b: { name: 'B' }, c: { name: 'C' } };

describe('shardFor', () => {
  const router = createShardRouter({ logicalShards: 1024, nodes, map: evenShardMap(1024, ['a', 'b', 'c']) });

  propTest.prop([
    fc.oneof(
      fc.string(),
      fc.integer(),
      fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
      fc.uint8Array(),
    ),
  ])('places a key on the logical shard of the hasher and the node the map gives that shard', (key) => {
    const location = router.shardFor(key);
    expect(location.logical).toBe(defaultHasher.logical(key, 1024));
    expect(location.node).toBe(router.map.nodeOf(location.logical));
    expect(location.mapVersion).toBe(1);
  });

  it('returns one frozen location per logical shard: nothing is allocated per call', () => {
    const first = router.shardFor('user:1');
    expect(Object.isFrozen(first)).toBe(true);
    expect(router.shardFor('user:1')).toBe(first);
    expect(router.locate(first.logical)).toBe(first);
    // Integers hash as their int64: a number and the same bigint land together.
    expect(router.shardFor(42)).toBe(router.shardFor(42n));
  });

  it('rejects keys it cannot hash, with the key named', () => {
    expect(() => router.shardFor(1.5)).toThrow(/Invalid option "key"/);
    expect(() => router.shardFor({} as never)).toThrow(/Invalid option "key"/);
    expect(() => router.locate(1024)).toThrow(/logical/);
  });

  it('validates its options: the map must fit logicalShards and name known nodes', () => {
    expect(() => createShardRouter({ logicalShards: 0, nodes, map: evenShardMap(4, ['a']) })).toThrow(
      /logicalShards/,
    );
    expect(() => createShardRouter({ logicalShards: 8, nodes, map: evenShardMap(4, ['a']) })).toThrow(
      /logicalShards/,
    );
    expect(() => createShardRouter({ logicalShards: 4, nodes, map: evenShardMap(4, ['a', 'zz']) })).toThrow(
      /zz/,
    );
    expect(() => createShardRouter({ logicalShards: 4, nodes })).toThrow(/map/);
    expect(() =>
      createShardRouter({ logicalShards: 4, nodes, map: evenShardMap(4, ['a']), hash: {} as never }),
    ).toThrow(/hash/);
    expect(() => createShardRouter({ logicalShards: 9000, nodes, map: evenShardMap(9000, ['a']) })).toThrow(
      /shardBits/,
    );
    expect(() =>
      createShardRouter({ logicalShards: 4, nodes, map: evenShardMap(4, ['a']), typo: 1 } as never),
    ).toThrow(/typo/);
  });

  it('uses the hasher it is given', () => {
    const seeded = createShardRouter({
      logicalShards: 1024,
      nodes,
      map: evenShardMap(1024, ['a']),
      hash: xxh64Hasher({ seed: 9 }),
    });
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    expect(keys.some((k) => seeded.shardFor(k).logical !== router.shardFor(k).logical)).toBe(true);
    expect(seeded.stats().hasher).toBe('xxh64(seed=9)/mod');
  });
});

describe('run', () => {
  it("calls fn with the key's node and its routing context", async () => {
    const router = createShardRouter({ logicalShards: 64, nodes, map: evenShardMap(64, ['a', 'b']) });
    const location = router.shardFor('user:7');
    const seen = await router.run('user:7', (node, context) => ({ node, context }));
    expect(seen.node).toBe(nodes[location.node as 'a' | 'b']);
    expect(seen.context).toMatchObject({ logical: location.logical, node: location.node, mapVersion: 1 });
    expect(seen.context.signal.aborted).toBe(false);
    // A location from an older map is re-resolved against the current one.
    const stale = { ...location, node: 'c', mapVersion: 0 };
    expect((await router.run(stale, (_n, c) => c)).node).toBe(location.node);
    const controller = new AbortController();
    controller.abort();
    await expect(router.run('x', () => 1, { signal: controller.signal })).rejects.toSatisfy((e: unknown) =>
      hasCode(e, 'E_ABORTED'),
    );
  });
});

describe('all', () => {
  function router(logicalShards = 12, names = ['a', 'b', 'c']): ShardRouter<{ name: string }> {
    return createShardRouter({ logicalShards, nodes, map: evenShardMap(logicalShards, names) });
  }

  it("calls fn once per node with the node's logical shards, results in map order", async () => {
    const r = router();
    const { results, failures, mapVersion } = await r.all((node, { logicals, logical }) => ({
      name: node.name,
      logicals,
      logical,
    }));
    expect(failures).toEqual([]);
    expect(mapVersion).toBe(1);
    expect(results.map((x) => x.value)).toEqual([
      { name: 'A', logicals: [0, 1, 2, 3], logical: undefined },
      { name: 'B', logicals: [4, 5, 6, 7], logical: undefined },
      { name: 'C', logicals: [8, 9, 10, 11], logical: undefined },
    ]);
  });

  it("by: 'logical' calls fn once per logical shard, on its node", async () => {
    const { results } = await router().all((node, { logical }) => `${node.name}${logical}`, {
      by: 'logical',
    });
    expect(results.map((x) => x.value)).toEqual([
      'A0',
      'A1',
      'A2',
      'A3',
      'B4',
      'B5',
      'B6',
      'B7',
      'C8',
      'C9',
      'C10',
      'C11',
    ]);
    expect(results[5]).toMatchObject({ node: 'b', logical: 5 });
  });

  propTest.prop([fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 40 })])(
    'never has more than `concurrency` calls in flight, and finishes every target',
    async (concurrency, logicalShards) => {
      const r = router(logicalShards, ['a', 'b', 'c'].slice(0, Math.min(3, logicalShards)));
      let inFlight = 0;
      let peak = 0;
      const { results } = await r.all(
        async (_node, { logical }) => {
          inFlight++;
          peak = Math.max(peak, inFlight);
          await flushMicrotasks(logical! % 3);
          inFlight--;
          return logical;
        },
        { by: 'logical', concurrency },
      );
      expect(peak).toBeLessThanOrEqual(concurrency);
      expect(results.map((x) => x.value)).toEqual(Array.from({ length: logicalShards }, (_, i) => i));
    },
  );

  it("partial: 'allow' returns the others' results and names each failure", async () => {
    const { results, failures } = await router().all(
      (node) => {
        if (node.name === 'B') throw new Error('B is down');
        return node.name;
      },
      { partial: 'allow' },
    );
    expect(results.map((x) => x.value)).toEqual(['A', 'C']);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ node: 'b', logical: undefined });
    expect((failures[0]!.error as Error).message).toBe('B is down');
  });

  it("partial: 'fail' rejects with E_SCATTER_FAILED at the first failure and aborts the calls in flight", async () => {
    const signals: AbortSignal[] = [];
    const error = await router()
      .all((node, { signal }) => {
        signals.push(signal);
        if (node.name === 'B') return Promise.reject(new Error('boom'));
        return new Promise(() => {}); // never answers
      })
      .catch((e: unknown) => e);
    expect(isScatterError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'E_SCATTER_FAILED', results: [] });
    expect((error as { failures: unknown[] }).failures).toHaveLength(1);
    expect(signals.every((s) => s.aborted)).toBe(true);
  });

  it('timeout: what has not answered by the deadline fails with E_TIMEOUT, and its signal is aborted', async () => {
    const clock = new FakeClock();
    const r = createShardRouter({ logicalShards: 3, nodes, map: evenShardMap(3, ['a', 'b', 'c']), clock });
    let slowSignal: AbortSignal | undefined;
    const pending = r.all(
      (node, { signal }) => {
        if (node.name !== 'C') return node.name;
        slowSignal = signal;
        return new Promise<string>(() => {});
      },
      { timeout: '50ms', partial: 'allow' },
    );
    await flushMicrotasks();
    clock.advance(50);
    const { results, failures } = await pending;
    expect(results.map((x) => x.value)).toEqual(['A', 'B']);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ node: 'c' });
    expect(hasCode(failures[0]!.error, 'E_TIMEOUT')).toBe(true);
    expect(slowSignal?.aborted).toBe(true);
    expect(clock.pending).toBe(0);
  });

  it("the caller's signal aborts the scatter with E_ABORTED", async () => {
    const controller = new AbortController();
    const pending = router().all(() => new Promise(() => {}), { signal: controller.signal });
    controller.abort('bye');
    await expect(pending).rejects.toSatisfy((e: unknown) => hasCode(e, 'E_ABORTED'));
    await expect(router().all(() => 1, { concurrency: 0 })).rejects.toThrow(/concurrency/);
  });
});

describe('the map, from a store', () => {
  it('a router created with a store only routes once ready() loaded the map', async () => {
    const store = memoryShardMapStore(evenShardMap(16, ['a', 'b']).toJSON());
    const r = createShardRouter({ logicalShards: 16, nodes, store, pollInterval: false });
    expect(() => r.shardFor('k')).toThrow(/ready/);
    await r.ready();
    expect(r.shardFor('k').mapVersion).toBe(1);
    await r.close();
  });

  it('a map stored by one router is pushed to the others', async () => {
    const store = memoryShardMapStore(evenShardMap(16, ['a', 'b']).toJSON());
    const r1 = await createShardRouter({ logicalShards: 16, nodes, store, pollInterval: false }).ready();
    const r2 = await createShardRouter({ logicalShards: 16, nodes, store, pollInterval: false }).ready();
    const changes = vi.fn();
    r2.onMapChange(changes);
    await r1.publishMap(r1.map.withMove(3, 'c'));
    await flushMicrotasks();
    expect(r2.mapVersion).toBe(2);
    expect(r2.locate(3).node).toBe('c');
    expect(changes).toHaveBeenCalledWith(expect.objectContaining({ source: 'store' }));
    // A change based on an old version (2 is taken) is refused.
    await expect(r2.publishMap(evenShardMap(16, ['a', 'b'], 2))).rejects.toSatisfy((e: unknown) =>
      hasCode(e, 'E_SHARD_MAP_CONFLICT'),
    );
    await r1.close();
    await r2.close();
  });

  it('polls as a backstop when a push is lost', async () => {
    const clock = new FakeClock();
    const inner = memoryShardMapStore(evenShardMap(16, ['a', 'b']).toJSON());
    const deaf: ShardMapStore = {
      name: 'deaf',
      load: (s) => inner.load(s),
      compareAndSet: (e, n, s) => inner.compareAndSet(e, n, s),
      watch: () => noopDisposable,
      close: () => inner.close(),
    };
    const r = await createShardRouter({
      logicalShards: 16,
      nodes,
      store: deaf,
      pollInterval: '5s',
      clock,
    }).ready();
    await inner.compareAndSet(1, r.map.withMove(0, 'c').toJSON());
    await clock.advanceAsync(4_999);
    expect(r.mapVersion).toBe(1);
    await clock.advanceAsync(1);
    expect(r.mapVersion).toBe(2);
    await r.close();
    expect(clock.pending).toBe(0);
  });

  it('a stored map it cannot use is reported, and the current one kept', async () => {
    const store = memoryShardMapStore(evenShardMap(16, ['a']).toJSON());
    const r = await createShardRouter({ logicalShards: 16, nodes, store, pollInterval: false }).ready();
    const errors: unknown[] = [];
    r.onError((e) => errors.push(e));
    await store.compareAndSet(1, { version: 2, logicalShards: 16, assignments: { ghost: [[0, 15]] } });
    await flushMicrotasks();
    expect(r.mapVersion).toBe(1);
    expect(errors).toHaveLength(1);
    expect(hasCode(errors[0], 'E_SHARD_MAP_UNAVAILABLE')).toBe(true);
    expect(r.stats().storeErrors).toBe(1);
    await r.close();
  });
});

/**
 * A node speaking just enough SQL for fenced transactions: BEGIN + the fence check, COMMIT,
 * ROLLBACK and a recorded "write".
 */
class FenceNode {
  readonly fence = new Map<number, { state: string; version: number }>();
  readonly writes: string[] = [];
  connect = (): Promise<SqlClient> => {
    const node = this;
    let pending: string[] = [];
    return Promise.resolve({
      async query(text: string, values?: readonly unknown[]) {
        if (text.includes('_enter(')) {
          const logical = Number(/_enter\((\d+)\)/.exec(text)![1]);
          const row = node.fence.get(logical);
          return [
            { command: 'BEGIN', rows: [] },
            { command: 'SET', rows: [] },
            { command: 'SELECT', rows: [{ state: row?.state ?? null, map_version: row?.version ?? null }] },
          ];
        }
        if (text === 'COMMIT') {
          node.writes.push(...pending);
          pending = [];
        } else if (text === 'ROLLBACK') pending = [];
        else pending.push(String(values?.[0]));
        return { rows: [], rowCount: 0 };
      },
      release() {},
    });
  };
}

describe('transaction (fenced)', () => {
  function setup(clock = new FakeClock()) {
    const fa = new FenceNode();
    const fb = new FenceNode();
    const fenceNodes = { a: fa, b: fb };
    const v1 = ShardMap.from({ version: 1, logicalShards: 4, assignments: { a: [[0, 3]], b: [] } });
    const store = memoryShardMapStore(v1.toJSON());
    const make = () =>
      createShardRouter({
        logicalShards: 4,
        nodes: fenceNodes,
        store,
        map: v1,
        pollInterval: false,
        clock,
        connect: (node) => node.connect(),
        staleRetryTimeout: '1s',
      });
    for (let s = 0; s < 4; s++) fa.fence.set(s, { state: 'owned', version: 1 });
    return { fa, fb, store, v1, make, clock };
  }

  it('commits on the owner, with the fence checked first', async () => {
    const { fa, make } = setup();
    const r = make();
    const value = await r.transaction({ logical: 2, node: 'a', mapVersion: 1 }, async (client, context) => {
      await client.query('INSERT', ['row-1']);
      return context;
    });
    expect(value).toMatchObject({ logical: 2, node: 'a', attempt: 1 });
    expect(fa.writes).toEqual(['row-1']);
  });

  it('a transaction routed with an old map is refused by the old node and committed on the new one', async () => {
    const { fa, fb, store, v1, make } = setup();
    const r = make();
    // Another router moved logical shard 2 to b: the fences and the store say so, r does not know yet.
    fa.fence.set(2, { state: 'moved', version: 2 });
    fb.fence.set(2, { state: 'owned', version: 2 });
    await store.compareAndSet(1, v1.withMove(2, 'b').toJSON());
    const stale = vi.fn();
    r.onStale(stale);
    const runs: string[] = [];
    await r.transaction(r.locate(2), async (client, { node }) => {
      runs.push(node);
      await client.query('INSERT', ['row-2']);
    });
    expect(runs).toEqual(['b']); // fn never ran on the node that refused
    expect(fa.writes).toEqual([]);
    expect(fb.writes).toEqual(['row-2']);
    expect(stale).toHaveBeenCalledTimes(1);
    expect(isStaleShardMapError(stale.mock.calls[0]![0].error)).toBe(true);
    expect(r.stats()).toMatchObject({ mapVersion: 2, staleRejections: 1, transactions: 1 });
  });

  it('waits for the new map when the old node is fenced before the map is stored', async () => {
    const { fa, fb, store, v1, make, clock } = setup();
    const r = make();
    fa.fence.set(1, { state: 'moved', version: 2 });
    let done = false;
    const pending = r.transaction(1, async (client) => {
      await client.query('INSERT', ['late']);
    });
    void pending.then(() => {
      done = true;
    });
    await clock.advanceAsync(150);
    expect(done).toBe(false);
    // The move stores the map: the push wakes the waiting transaction.
    fb.fence.set(r.shardFor(1).logical, { state: 'owned', version: 2 });
    await store.compareAndSet(1, v1.withMove(r.shardFor(1).logical, 'b').toJSON());
    await clock.advanceAsync(1);
    await pending;
    expect(fb.writes).toEqual(['late']);
    expect(fa.writes).toEqual([]);
  });

  it('gives up with E_STALE_SHARD_MAP after staleRetryTimeout when no owner accepts', async () => {
    const { fa, make, clock } = setup();
    const r = make();
    const logical = r.shardFor('k').logical;
    fa.fence.delete(logical); // no fence row: the node does not know it owns the shard
    const pending = r.transaction('k', () => 'never').catch((e: unknown) => e);
    for (let i = 0; i < 20; i++) await clock.advanceAsync(100);
    const error = await pending;
    expect(isStaleShardMapError(error)).toBe(true);
    expect(error).toMatchObject({ state: 'missing', logical, node: 'a' });
    expect(fa.writes).toEqual([]);
  });

  it('rolls back when fn throws, and rethrows', async () => {
    const { fa, make } = setup();
    const r = make();
    await expect(
      r.transaction('k', async (client) => {
        await client.query('INSERT', ['doomed']);
        throw new Error('nope');
      }),
    ).rejects.toThrow('nope');
    expect(fa.writes).toEqual([]);
  });
});

describe('diagnostics channels', () => {
  it('publish map changes, stale refusals and scatters under buttress:shard-router:<op>, only to subscribers', async () => {
    const seen = { map: [] as unknown[], stale: [] as unknown[], all: [] as unknown[] };
    const subs = Object.keys(seen).map((op) => {
      const listener = (message: unknown) => seen[op as keyof typeof seen].push(message);
      dc.subscribe(`buttress:shard-router:${op}`, listener);
      return () => dc.unsubscribe(`buttress:shard-router:${op}`, listener);
    });
    try {
      const store = memoryShardMapStore(evenShardMap(8, ['a', 'b']).toJSON());
      const r = await createShardRouter({
        logicalShards: 8,
        nodes,
        store,
        pollInterval: false,
        name: 'diag',
      }).ready();
      await r.publishMap(r.map.withMove(0, 'b'));
      await r.all(() => 1);
      expect(seen.map).toEqual([
        { router: 'diag', previous: undefined, current: 1, source: 'store' },
        { router: 'diag', previous: 1, current: 2, source: 'local' },
      ]);
      expect(seen.all).toEqual([{ router: 'diag', mapVersion: 2, results: 2, failures: 0 }]);
      const fenced = new FenceNode();
      const f = createShardRouter({
        logicalShards: 4,
        nodes: { a: fenced },
        map: evenShardMap(4, ['a']),
        connect: (node) => node.connect(),
        staleRetryTimeout: 0,
      });
      await expect(f.transaction('k', () => 1)).rejects.toSatisfy(isStaleShardMapError);
      expect(seen.stale).toHaveLength(1);
      expect(seen.stale[0]).toMatchObject({ router: 'shard-router', attempt: 1 });
      await r.close();
    } finally {
      for (const off of subs) off();
    }
  });
});
