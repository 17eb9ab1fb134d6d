import { randomBytes } from 'node:crypto';
import type { ShardMapSpec } from '../shard-router/shard-map.js';
import type { ShardMapStore } from '../shard-router/stores/store.js';
import type { ConformanceTestApi } from './queue-conformance.js';

/*
 * The contract every shard map store keeps (`buttress/shard-router`'s `ShardMapStore`), as tests
 * any runner can register: pass your framework's `describe`, `it` and `expect`. Each test opens
 * two stores on the same fresh map name, as two router instances in two processes would, and
 * closes them at the end. Real time, with generous bounds for a loaded CI machine.
 */

/** Options of {@link shardMapStoreConformance}. */
export interface ShardMapStoreConformanceOptions {
  /** Called after each test with the map name it used (drop its table rows or keys). */
  cleanup?(name: string): Promise<void> | void;
  /** How long a push may take to arrive, ms. @default 5000 */
  pushTimeout?: number;
  /** Per-test timeout passed to `it`, ms. @default 20000 */
  timeout?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function map(version: number, owner = 'a'): ShardMapSpec {
  return { version, logicalShards: 8, assignments: { [owner]: [[0, 7]], spare: [] } };
}

/**
 * Registers the conformance tests of a {@link ShardMapStore}. `open(name)` returns a store of map
 * `name`; the suite opens two per test, on the same name, and expects them to share the map.
 *
 * @example
 * import { describe, expect, it } from 'vitest';
 * import { shardMapStoreConformance } from 'buttress/testing';
 * import { redisShardMapStore } from 'buttress/shard-router';
 * shardMapStoreConformance('redis', (name) => redisShardMapStore(redis, { name }), { describe, it, expect });
 */
export function shardMapStoreConformance(
  label: string,
  open: (name: string) => ShardMapStore | Promise<ShardMapStore>,
  api: ConformanceTestApi,
  options: ShardMapStoreConformanceOptions = {},
): void {
  const { describe, it, expect } = api;
  const pushTimeout = options.pushTimeout ?? 5000;
  const timeout = options.timeout ?? 20_000;

  async function withStores(test: (a: ShardMapStore, b: ShardMapStore) => Promise<void>): Promise<void> {
    const name = `conf_${randomBytes(5).toString('hex')}`;
    const a = await open(name);
    const b = await open(name);
    try {
      await test(a, b);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await options.cleanup?.(name);
    }
  }

  describe(`ShardMapStore conformance: ${label}`, () => {
    it(
      'holds nothing at first, and stores a first map only with expected = undefined',
      () =>
        withStores(async (a, b) => {
          expect(await a.load()).toBe(undefined);
          expect(await a.compareAndSet(1, map(2))).toBe(false);
          expect(await a.compareAndSet(undefined, map(1))).toBe(true);
          expect(await b.compareAndSet(undefined, map(1, 'b'))).toBe(false);
          expect(await b.load()).toEqual(map(1));
        }),
      timeout,
    );

    it(
      'a compare-and-set with a stale expected version stores nothing',
      () =>
        withStores(async (a, b) => {
          expect(await a.compareAndSet(undefined, map(1))).toBe(true);
          expect(await a.compareAndSet(1, map(2, 'b'))).toBe(true);
          expect(await b.compareAndSet(1, map(3, 'spare'))).toBe(false);
          expect(await b.load()).toEqual(map(2, 'b'));
        }),
      timeout,
    );

    it(
      'of two writers based on the same version, exactly one wins',
      () =>
        withStores(async (a, b) => {
          await a.compareAndSet(undefined, map(1));
          const won = await Promise.all([a.compareAndSet(1, map(2, 'a')), b.compareAndSet(1, map(2, 'b'))]);
          expect(won.filter(Boolean).length).toBe(1);
          expect(await a.load()).toEqual(map(2, won[0] ? 'a' : 'b'));
        }),
      timeout,
    );

    it(
      "pushes a stored version to the other instance's watchers",
      () =>
        withStores(async (a, b) => {
          await a.compareAndSet(undefined, map(1));
          const seen: number[] = [];
          const watching = b.watch((version) => seen.push(version));
          // Give a store that subscribes asynchronously the time to do so; the version it may read
          // on subscribing (1) is fine too.
          await sleep(Math.min(500, pushTimeout / 4));
          expect(await a.compareAndSet(1, map(2, 'b'))).toBe(true);
          const deadline = Date.now() + pushTimeout;
          while (!seen.includes(2) && Date.now() < deadline) await sleep(10);
          expect(seen).toContain(2);
          watching.dispose();
        }),
      timeout,
    );

    it(
      'loads a copy: changing what load() returned changes nothing stored',
      () =>
        withStores(async (a) => {
          await a.compareAndSet(undefined, map(1));
          const loaded = (await a.load()) as { version: number };
          loaded.version = 99;
          expect((await a.load())?.version).toBe(1);
        }),
      timeout,
    );
  });
}
