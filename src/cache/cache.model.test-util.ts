import fc from 'fast-check';
import { expect } from 'vitest';
import type { FakeClock } from '../testing/fake-clock.js';
import type { Cache } from './cache.js';

/*
 * A reference model of one cache: a Map of key -> { value, expiresAt, tags } under the same fake
 * clock, and fast-check commands that run each operation on both and compare. Shared by the
 * L1-only property test (src/cache/cache.prop.test.ts) and the L1+L2 one against a real Redis
 * (test/integration/cache-model.int.test.ts).
 */

interface ModelEntry {
  value: unknown;
  expiresAt: number;
  tags: readonly string[];
}

/** The reference: what a correct cache holds. */
export class CacheModel {
  readonly entries = new Map<string, ModelEntry>();
  constructor(readonly clock: FakeClock) {}

  fresh(key: string): ModelEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.clock.now() >= entry.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }
}

/** The system under test. */
export interface CacheReal {
  readonly cache: Cache;
  readonly clock: FakeClock;
  /** Resolves once what the last write told other instances has been delivered (no-op alone). */
  settle(): Promise<void>;
}

type Cmd = fc.AsyncCommand<CacheModel, CacheReal>;

const KEYS = ['a', 'b', 'c', 'd'] as const;
const TAGS = ['t1', 't2'] as const;
const keyArb = fc.constantFrom(...KEYS);
const valueArb = fc.oneof(
  fc.integer(),
  fc.constant(null),
  fc.string({ maxLength: 5 }),
  fc.record({ n: fc.integer(), at: fc.date({ noInvalidDate: true }) }),
);
const ttlArb = fc.integer({ min: 1, max: 5_000 });
const tagsArb = fc.subarray([...TAGS]);

class SetCmd implements Cmd {
  constructor(
    readonly key: string,
    readonly value: unknown,
    readonly ttl: number,
    readonly tags: string[],
  ) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    const result = await r.cache.set(this.key, this.value, { ttl: this.ttl, tags: this.tags });
    expect(result.degraded).toBe(false);
    m.entries.set(this.key, { value: this.value, expiresAt: m.clock.now() + this.ttl, tags: this.tags });
    await r.settle();
  }
  toString = () => `set(${this.key}, ${JSON.stringify(this.value)}, ttl ${this.ttl}, [${this.tags}])`;
}

class SetManyCmd implements Cmd {
  constructor(readonly items: { key: string; value: unknown; ttl: number }[]) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    await r.cache.setMany(this.items);
    for (const { key, value, ttl } of this.items) {
      m.entries.set(key, { value, expiresAt: m.clock.now() + ttl, tags: [] });
    }
    await r.settle();
  }
  toString = () => `setMany(${this.items.map((i) => i.key)})`;
}

class GetCmd implements Cmd {
  constructor(readonly key: string) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    expect(await r.cache.get(this.key), this.toString()).toEqual(m.fresh(this.key)?.value);
  }
  toString = () => `get(${this.key})`;
}

class GetManyCmd implements Cmd {
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    expect(await r.cache.getMany([...KEYS])).toEqual(KEYS.map((k) => m.fresh(k)?.value));
  }
  toString = () => 'getMany(all)';
}

class HasCmd implements Cmd {
  constructor(readonly key: string) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    expect(await r.cache.has(this.key)).toBe(m.fresh(this.key) !== undefined);
  }
  toString = () => `has(${this.key})`;
}

class GetOrSetCmd implements Cmd {
  constructor(
    readonly key: string,
    readonly value: unknown,
    readonly ttl: number,
    readonly tags: string[],
  ) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    let called = false;
    const got = await r.cache.getOrSet(
      this.key,
      () => {
        called = true;
        return this.value;
      },
      { ttl: this.ttl, tags: this.tags },
    );
    const fresh = m.fresh(this.key);
    if (fresh !== undefined) {
      expect(called, `${this} must not load over a fresh value`).toBe(false);
      expect(got).toEqual(fresh.value);
    } else {
      expect(called, `${this} must load on a miss`).toBe(true);
      expect(got).toEqual(this.value);
      if (this.value !== undefined) {
        m.entries.set(this.key, { value: this.value, expiresAt: m.clock.now() + this.ttl, tags: this.tags });
      }
    }
    await r.settle();
  }
  toString = () => `getOrSet(${this.key}, ${JSON.stringify(this.value)}, ttl ${this.ttl}, [${this.tags}])`;
}

class DeleteCmd implements Cmd {
  constructor(readonly key: string) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    expect((await r.cache.delete(this.key)).degraded).toBe(false);
    m.entries.delete(this.key);
    await r.settle();
  }
  toString = () => `delete(${this.key})`;
}

class DeleteByTagCmd implements Cmd {
  constructor(readonly tag: string) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    expect((await r.cache.deleteByTag(this.tag)).degraded).toBe(false);
    for (const [key, entry] of m.entries) if (entry.tags.includes(this.tag)) m.entries.delete(key);
    await r.settle();
  }
  toString = () => `deleteByTag(${this.tag})`;
}

class ClearCmd implements Cmd {
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    expect((await r.cache.clear()).degraded).toBe(false);
    m.entries.clear();
    await r.settle();
  }
  toString = () => 'clear()';
}

class AdvanceCmd implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: CacheModel, r: CacheReal): Promise<void> {
    await r.clock.advanceAsync(this.ms);
    // The model's clock is the same object: nothing else to do.
    void m;
  }
  toString = () => `advance(${this.ms})`;
}

/** The command arbitraries: reads and writes weigh more than clears. */
function commandArbs(options: { clear?: boolean }): fc.Arbitrary<Cmd>[] {
  const commands: fc.Arbitrary<Cmd>[] = [
    fc.tuple(keyArb, valueArb, ttlArb, tagsArb).map(([k, v, t, tags]) => new SetCmd(k, v, t, tags)),
    fc
      .uniqueArray(fc.record({ key: keyArb, value: valueArb, ttl: ttlArb }), {
        minLength: 1,
        maxLength: 3,
        selector: (i) => i.key,
      })
      .map((items) => new SetManyCmd(items)),
    keyArb.map((k) => new GetCmd(k)),
    keyArb.map((k) => new GetCmd(k)),
    fc.constant(new GetManyCmd()),
    keyArb.map((k) => new HasCmd(k)),
    fc
      .tuple(keyArb, fc.oneof(valueArb, fc.constant(undefined)), ttlArb, tagsArb)
      .map(([k, v, t, tags]) => new GetOrSetCmd(k, v, t, tags)),
    fc.tuple(keyArb, valueArb, ttlArb, tagsArb).map(([k, v, t, tags]) => new GetOrSetCmd(k, v, t, tags)),
    keyArb.map((k) => new DeleteCmd(k)),
    fc.constantFrom(...TAGS).map((t) => new DeleteByTagCmd(t)),
    fc.integer({ min: 0, max: 3_000 }).map((ms) => new AdvanceCmd(ms)),
  ];
  if (options.clear !== false) commands.push(fc.constant(new ClearCmd()));
  return commands;
}

/** Commands for one cache against one model. */
export function cacheCommands(options: { clear?: boolean } = {}): fc.Arbitrary<Iterable<Cmd>> {
  return fc.commands(commandArbs(options), { maxCommands: 40 });
}

/** Several caches (namespaces, or instances), each against its own model. */
export interface Pair<T> {
  readonly parts: readonly T[];
}

/** Runs a command on one of several (cache, model) pairs. */
class OnPart implements fc.AsyncCommand<Pair<CacheModel>, Pair<CacheReal>> {
  constructor(
    readonly part: number,
    readonly command: Cmd,
  ) {}
  check = () => true;
  run(m: Pair<CacheModel>, r: Pair<CacheReal>): Promise<void> {
    return this.command.run(m.parts[this.part]!, r.parts[this.part]!);
  }
  toString = () => `[${this.part}] ${this.command}`;
}

/** Commands interleaved over `parts` caches, each with its own model (say a root and a child namespace). */
export function partCommands(
  parts: number,
  options: { clear?: boolean } = {},
): fc.Arbitrary<Iterable<fc.AsyncCommand<Pair<CacheModel>, Pair<CacheReal>>>> {
  const arbs = commandArbs(options).map((arb) =>
    fc.tuple(fc.integer({ min: 0, max: parts - 1 }), arb).map(([part, command]) => new OnPart(part, command)),
  );
  return fc.commands(arbs, { maxCommands: 60 });
}
