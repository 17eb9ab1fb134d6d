import { fc, test as propTest } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { hasCode } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { isClockBackwardsError } from './errors.js';
import { createIdGenerator, DEFAULT_ID_EPOCH, decodeId, idGeneratorSql, idLayout } from './ids.js';
import { createShardRouter } from './router.js';
import { evenShardMap } from './shard-map.js';

const EPOCH = Date.UTC(2024, 0, 1);

describe('ID layout', () => {
  it("defaults to Instagram's 41 bits of time, 13 of shard, 10 of sequence, from 2024-01-01", () => {
    expect(idLayout()).toEqual({
      epoch: EPOCH,
      timeBits: 41,
      shardBits: 13,
      workerBits: 0,
      sequenceBits: 10,
    });
    expect(DEFAULT_ID_EPOCH).toBe(EPOCH);
  });

  it('rejects layouts that leave fewer than 32 bits of time, and bad epochs', () => {
    expect(() => idLayout({ shardBits: 20, sequenceBits: 13 })).toThrow(/time field/);
    expect(() => idLayout({ epoch: -1 })).toThrow(/epoch/);
    expect(() => createIdGenerator({ workerBits: 2, workerId: 4 })).toThrow(/workerId/);
    expect(() => createIdGenerator({ nope: 1 } as never)).toThrow(/nope/);
  });

  it('places the fields where the layout says, bit for bit', async () => {
    const clock = new FakeClock(EPOCH + 5);
    const ids = createIdGenerator({ clock, workerBits: 2, workerId: 3 });
    const id = await ids.next(7);
    expect(id).toBe((5n << 25n) | (7n << 12n) | (3n << 10n) | 0n);
    expect(decodeId(id, ids.layout)).toEqual({ timestamp: EPOCH + 5, shard: 7, worker: 3, sequence: 0 });
  });

  it('decodes the signed form PostgreSQL stores for IDs at or above 2^63, and decimal strings', () => {
    const id = (1n << 63n) | (42n << 10n) | 9n;
    const signed = BigInt.asIntN(64, id);
    expect(signed < 0n).toBe(true);
    expect(decodeId(signed)).toEqual(decodeId(id));
    expect(decodeId(id.toString())).toEqual(decodeId(id));
    expect(decodeId(signed).shard).toBe(42);
    expect(() => decodeId('12x')).toThrow(/64-bit ID/);
    expect(() => decodeId(1n << 64n)).toThrow(/64-bit ID/);
  });
});

describe('createIdGenerator', () => {
  propTest.prop([
    fc.array(fc.tuple(fc.integer({ min: 0, max: 8191 }), fc.integer({ min: 0, max: 3 })), {
      minLength: 1,
      maxLength: 200,
    }),
    fc.integer({ min: 0, max: 2 ** 40 }),
  ])(
    'round trip: decodeId gives back the shard, the time and a sequence below 2^sequenceBits',
    async (calls, offset) => {
      const clock = new FakeClock(EPOCH + offset);
      const ids = createIdGenerator({ clock });
      for (const [shard, advance] of calls) {
        clock.advance(advance);
        const id = await ids.next(shard);
        const d = decodeId(id);
        expect(d.shard).toBe(shard);
        expect(d.timestamp).toBe(clock.now());
        expect(d.sequence).toBeLessThan(1024);
        expect(ids.decode((await ids.nextString(shard)).toString()).shard).toBe(shard);
      }
    },
  );

  propTest.prop([
    fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 2, maxLength: 3000 }),
    fc.integer({ min: 0, max: 15 }),
  ])(
    'IDs from one generator for one shard are strictly increasing, across milliseconds and sequence exhaustion',
    async (advances, shard) => {
      const clock = new FakeClock(EPOCH + 1000);
      const ids = createIdGenerator({ clock, sequenceBits: 4 }); // 16 per ms: exhaustion is frequent
      let last = -1n;
      for (const step of advances) {
        clock.advance(step);
        const pending = ids.next(shard);
        // Exhausted sequences wait for the next millisecond on the clock.
        while (clock.pending > 0) await clock.advanceAsync(1);
        const id = await pending;
        expect(id > last).toBe(true);
        last = id;
      }
    },
  );

  it('waits for the next millisecond when the sequence of one is used up', async () => {
    const clock = new FakeClock(EPOCH + 10);
    const ids = createIdGenerator({ clock, sequenceBits: 2 });
    const got: bigint[] = [];
    for (let i = 0; i < 4; i++) got.push(await ids.next(1));
    let fifth: bigint | undefined;
    void ids.next(1).then((id) => {
      fifth = id;
    });
    await flushMicrotasks();
    expect(fifth).toBeUndefined();
    await clock.advanceAsync(1);
    expect(fifth).toBeDefined();
    expect(decodeId(fifth!, ids.layout)).toMatchObject({ timestamp: EPOCH + 11, sequence: 0 });
    expect(got.map((id) => decodeId(id, ids.layout).sequence)).toEqual([0, 1, 2, 3]);
  });

  it('serves calls in order: a call made while another waits does not overtake it', async () => {
    const clock = new FakeClock(EPOCH + 10);
    const ids = createIdGenerator({ clock, sequenceBits: 1 });
    await ids.next(0);
    await ids.next(0);
    const order: bigint[] = [];
    const a = ids.next(0).then((id) => order.push(id));
    const b = ids.next(0).then((id) => order.push(id));
    await clock.advanceAsync(1);
    await Promise.all([a, b]);
    expect(order[0]! < order[1]!).toBe(true);
  });

  it('waits out a clock that went back by at most maxClockBackwards', async () => {
    const clock = new FakeClock(EPOCH + 1000);
    const ids = createIdGenerator({ clock, maxClockBackwards: 20 });
    const first = await ids.next(3);
    clock.set(EPOCH + 990); // NTP stepped the clock back 10 ms
    let second: bigint | undefined;
    void ids.next(3).then((id) => {
      second = id;
    });
    await clock.advanceAsync(5);
    expect(second).toBeUndefined();
    await clock.advanceAsync(5);
    expect(second).toBeDefined();
    expect(second! > first).toBe(true);
  });

  it('fails with E_CLOCK_BACKWARDS beyond the tolerance, minting nothing', async () => {
    const clock = new FakeClock(EPOCH + 1000);
    const ids = createIdGenerator({ clock, maxClockBackwards: '20ms' });
    await ids.next(3);
    clock.set(EPOCH + 900);
    const error = await ids.next(3).catch((e: unknown) => e);
    expect(isClockBackwardsError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'E_CLOCK_BACKWARDS', lastMs: EPOCH + 1000, nowMs: EPOCH + 900 });
    // Once the clock is past the last ID again, minting resumes.
    clock.set(EPOCH + 1001);
    expect(decodeId(await ids.next(3)).timestamp).toBe(EPOCH + 1001);
  });

  it('rejects bad shards, aborts waiting calls, and rejects everything after close()', async () => {
    const clock = new FakeClock(EPOCH + 10);
    const ids = createIdGenerator({ clock, sequenceBits: 1 });
    await expect(ids.next(8192)).rejects.toThrow(/logical shard/);
    await expect(ids.next(-1)).rejects.toThrow(/logical shard/);
    await ids.next(0);
    await ids.next(0);
    const controller = new AbortController();
    const waiting = ids.next(0, { signal: controller.signal });
    controller.abort();
    await expect(waiting).rejects.toSatisfy((e: unknown) => hasCode(e, 'E_ABORTED'));
    const pending = ids.next(0);
    await ids.close();
    await expect(pending).rejects.toSatisfy((e: unknown) => hasCode(e, 'E_CLOSED'));
    await expect(ids.next(0)).rejects.toSatisfy((e: unknown) => hasCode(e, 'E_CLOSED'));
    expect(clock.pending).toBe(0);
  });

  propTest.prop([
    fc.array(fc.oneof(fc.string(), fc.integer(), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), {
      minLength: 1,
      maxLength: 50,
    }),
  ])(
    'the shard in an ID minted for a key equals shardFor of the key, and routes there without a lookup',
    async (keys) => {
      const clock = new FakeClock(EPOCH + 123_456);
      const router = createShardRouter({
        logicalShards: 4096,
        nodes: { a: 'A', b: 'B', c: 'C' },
        map: evenShardMap(4096, ['a', 'b', 'c']),
      });
      const ids = createIdGenerator({ clock });
      for (const key of keys) {
        const location = router.shardFor(key);
        const id = await ids.next(location.logical);
        expect(decodeId(id).shard).toBe(location.logical);
        expect(router.shardForId(id)).toBe(location);
        expect(router.shardForId(id.toString())).toBe(location);
      }
    },
  );
});

describe('idGeneratorSql', () => {
  it('writes the layout into the function (checked against PostgreSQL in the integration tests)', () => {
    const sql = idGeneratorSql({ epoch: EPOCH, functionName: 'app.next_id' });
    expect(sql).toContain('CREATE SEQUENCE IF NOT EXISTS app.next_id_seq');
    expect(sql).toContain(`- ${EPOCH}`);
    expect(sql).toContain('(elapsed << 23) | (shard::bigint << 10)');
    expect(sql).toContain('% 1024');
    expect(() => idGeneratorSql({ functionName: 'Robert"); DROP TABLE x; --' })).toThrow(/identifier/);
  });
});
