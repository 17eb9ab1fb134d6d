import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instrument } from '../../src/otel/index.js';
import { Telemetry } from '../../src/otel/otel.test-util.js';
import { dropFenceSchemaSql } from '../../src/shard-router/fence.js';
import {
  createIdGenerator,
  createShardRouter,
  evenShardMap,
  type MoveResult,
  pgShardMapStore,
  pgTableCopier,
  type ShardCopier,
  type ShardMapStore,
  type ShardRouter,
  shardRouterSql,
} from '../../src/shard-router/index.js';
import { adminQuery, PRIMARY, sleep, uniqueName, waitFor } from './pool-helpers.js';

// The online move of a logical shard, under writes from two router instances (two "servers":
// their own pools, one shared map store in PostgreSQL), on the shared shard databases. Real
// clock: the timing of the move against real servers is what is tested. Every table, schema and
// function carries a random suffix and is dropped afterwards.

const DATABASES = ['shard_0', 'shard_1', 'shard_2', 'shard_3'] as const;
type Db = (typeof DATABASES)[number];
const app = uniqueName('sr_move');
const users = uniqueName('sr_mu');
const orders = uniqueName('sr_mo');
const audit = uniqueName('sr_ma');
const mapTable = uniqueName('sr_mm');
const prefix = uniqueName('btm');
const fnSchema = uniqueName('sr_mf');
const LOGICAL = 64;
const SEED_USERS = 2000;
const ids = createIdGenerator();

const pools: pg.Pool[] = [];
function nodesOf(): Record<Db, pg.Pool> {
  return Object.fromEntries(
    DATABASES.map((db) => {
      const p = new pg.Pool({ ...PRIMARY, database: db, application_name: app, max: 4 });
      p.on('error', () => {});
      pools.push(p);
      return [db, p];
    }),
  ) as Record<Db, pg.Pool>;
}
const admin = (db: Db, text: string, values?: unknown[]) =>
  adminQuery({ ...PRIMARY, database: db }, text, values);

beforeAll(async () => {
  for (const db of DATABASES) {
    await admin(
      db,
      `CREATE TABLE ${users} (user_id text PRIMARY KEY, name text NOT NULL, n integer NOT NULL, token text NOT NULL);
       CREATE TABLE ${orders} (id bigint PRIMARY KEY, user_id text NOT NULL, amount integer NOT NULL, token text NOT NULL);
       -- Test instrumentation: every row version written on this node, by token, in the writer's transaction.
       CREATE TABLE ${audit} (tbl text NOT NULL, token text NOT NULL);
       CREATE FUNCTION ${audit}_f() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO ${audit} VALUES (TG_TABLE_NAME, NEW.token); RETURN NULL; END $$;
       CREATE TRIGGER ${audit}_u AFTER INSERT OR UPDATE ON ${users} FOR EACH ROW EXECUTE FUNCTION ${audit}_f();
       CREATE TRIGGER ${audit}_o AFTER INSERT OR UPDATE ON ${orders} FOR EACH ROW EXECUTE FUNCTION ${audit}_f();
       CREATE SCHEMA ${fnSchema};`,
    );
    await admin(db, shardRouterSql({ schema: fnSchema }));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(pools.splice(0).map((p) => p.end().catch(() => {})));
  for (const db of DATABASES) {
    await admin(
      db,
      `DROP TABLE IF EXISTS ${users}; DROP TABLE IF EXISTS ${orders}; DROP TABLE IF EXISTS ${audit};
       DROP FUNCTION IF EXISTS ${audit}_f(); DROP SCHEMA IF EXISTS ${fnSchema} CASCADE; ${dropFenceSchemaSql(prefix)}`,
    );
  }
  await admin('shard_0', `DROP TABLE IF EXISTS ${mapTable}`);
}, 60_000);

function copier(): ShardCopier<pg.Pool> {
  return pgTableCopier({
    tables: [
      { table: users, keyColumn: 'user_id' },
      { table: orders, idColumn: 'id' },
    ],
    sqlSchema: fnSchema,
    batchSize: 200,
  });
}

interface UserState {
  n: number;
  token: string;
}

/** What the writers committed, as the routers reported it. */
class Ledger {
  readonly users = new Map<string, UserState>();
  readonly orders = new Map<string, string>(); // id -> user
  /** token -> the node the router said the write committed on, and whether it began after the switch. */
  readonly writes = new Map<string, { node: string; afterSwitch: boolean; logical: number }>();
  readonly failures: unknown[] = [];
}

let tokenSeq = 0;
const token = () => `t${++tokenSeq}`;

/** One writer loop: owns `keys` (nobody else writes them), writes until `stop()` says so. */
async function writer(
  router: ShardRouter<pg.Pool>,
  name: string,
  keys: string[],
  ledger: Ledger,
  focus: number,
  switched: () => boolean,
  stop: () => boolean,
): Promise<void> {
  let created = 0;
  for (let i = 0; !stop(); i++) {
    const pick = i % 10;
    const afterSwitch = switched();
    const t = token();
    try {
      if (pick < 6 && keys.length > 0) {
        const key = keys[i % keys.length]!;
        const node = await router.transaction(key, async (client, { node }) => {
          await client.query(`UPDATE ${users} SET n = n + 1, token = $2 WHERE user_id = $1`, [key, t]);
          return node;
        });
        const state = ledger.users.get(key)!;
        state.n++;
        state.token = t;
        ledger.writes.set(t, { node, afterSwitch, logical: router.shardFor(key).logical });
      } else if (pick < 9) {
        // A new user, on the shard being moved when possible.
        let key = `${name}:new:${created++}`;
        for (let tries = 0; router.shardFor(key).logical !== focus && tries < 200; tries++)
          key = `${name}:new:${created++}`;
        const node = await router.transaction(key, async (client, { node }) => {
          await client.query(`INSERT INTO ${users} (user_id, name, n, token) VALUES ($1, $1, 0, $2)`, [
            key,
            t,
          ]);
          return node;
        });
        ledger.users.set(key, { n: 0, token: t });
        keys.push(key);
        ledger.writes.set(t, { node, afterSwitch, logical: router.shardFor(key).logical });
      } else if (keys.length > 0) {
        // An order co-located with its user: its ID carries the user's logical shard.
        const key = keys[(i * 7) % keys.length]!;
        const logical = router.shardFor(key).logical;
        const id = await ids.next(logical);
        const node = await router.transaction(router.shardForId(id), async (client, { node }) => {
          await client.query(`INSERT INTO ${orders} (id, user_id, amount, token) VALUES ($1, $2, $3, $4)`, [
            id.toString(),
            key,
            i,
            t,
          ]);
          return node;
        });
        ledger.orders.set(id.toString(), key);
        ledger.writes.set(t, { node, afterSwitch, logical });
      }
    } catch (error) {
      ledger.failures.push(error);
      return;
    }
  }
}

describe('moving a logical shard under writes from two routers', () => {
  let r1: ShardRouter<pg.Pool>;
  let r2: ShardRouter<pg.Pool>;
  const stores: ShardMapStore[] = [];
  const ledger = new Ledger();

  beforeAll(async () => {
    const control1 = new pg.Pool({ ...PRIMARY, database: 'shard_0', application_name: app, max: 2 });
    const control2 = new pg.Pool({ ...PRIMARY, database: 'shard_0', application_name: app, max: 2 });
    pools.push(control1, control2);
    const map = evenShardMap(LOGICAL, [...DATABASES]);
    const common = { logicalShards: LOGICAL, fencePrefix: prefix, pollInterval: '1s' as const };
    stores.push(
      pgShardMapStore(control1, { table: mapTable }),
      pgShardMapStore(control2, { table: mapTable }),
    );
    r1 = createShardRouter({ ...common, nodes: nodesOf(), map, store: stores[0] });
    r2 = createShardRouter({ ...common, nodes: nodesOf(), store: stores[1] });
    await r1.publishMap(map);
    await r2.ready();
    await r1.installFences();
    const keys = Array.from({ length: SEED_USERS }, (_, i) => `seed:${i}`);
    let k = 0;
    const seedOne = async (key: string) => {
      const t = token();
      const id = await ids.next(r1.shardFor(key).logical);
      await r1.transaction(key, async (client) => {
        await client.query(`INSERT INTO ${users} (user_id, name, n, token) VALUES ($1, $1, 0, $2)`, [key, t]);
        await client.query(`INSERT INTO ${orders} (id, user_id, amount, token) VALUES ($1, $2, 1, $3)`, [
          id.toString(),
          key,
          t,
        ]);
      });
      ledger.users.set(key, { n: 0, token: t });
      ledger.orders.set(id.toString(), key);
    };
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (k < keys.length) await seedOne(keys[k++]!);
      }),
    );
  }, 120_000);

  afterAll(async () => {
    await r1?.close();
    await r2?.close();
    // The stores hold a LISTEN connection each: give it back before the pools end.
    for (const store of stores) await store.close();
  });

  it('loses no row, duplicates none, writes nothing to the old node after the switch, and every read after it finds every row', async () => {
    // The shard to move: the busiest of shard_1's, to shard_2.
    const counts = new Map<number, number>();
    for (const key of ledger.users.keys()) {
      const l = r1.shardFor(key).logical;
      counts.set(l, (counts.get(l) ?? 0) + 1);
    }
    const focus = r1.map
      .shardsOf('shard_1')
      .reduce((best, l) => ((counts.get(l) ?? 0) > (counts.get(best) ?? 0) ? l : best));
    const from = 'shard_1';
    const to = 'shard_2';

    // Six writer loops, three per router, each owning some of the focus shard's users and some others.
    const owned: string[][] = Array.from({ length: 6 }, () => []);
    let j = 0;
    for (const key of ledger.users.keys()) {
      if (r1.shardFor(key).logical === focus || j % 9 === 0) owned[j % 6]!.push(key);
      j++;
    }
    let switchedAt = false;
    let stopping = false;
    const loops = owned.map((keys, i) =>
      writer(
        i % 2 === 0 ? r1 : r2,
        `w${i}`,
        keys,
        ledger,
        focus,
        () => switchedAt,
        () => stopping,
      ),
    );

    // The move as OpenTelemetry sees it, through buttress/otel.
    const telemetry = new Telemetry();
    const otel = instrument({
      meterProvider: telemetry.meterProvider,
      tracerProvider: false,
      modules: ['shard-router'],
    });
    await sleep(300);
    const result: MoveResult = await r1.moveShard(focus, to, { copy: copier(), catchUpThreshold: 20 });
    switchedAt = true;
    await sleep(500);
    stopping = true;
    await Promise.all(loops);
    console.log(
      `move of logical shard ${focus} (${counts.get(focus)} seeded users): ${result.durationMs.toFixed(0)} ms, ` +
        `write freeze ${result.freezeMs.toFixed(1)} ms, ${result.catchUpRounds} catch-up rounds, ` +
        `${result.finalChanges} changes in the final round; ${ledger.writes.size} writes, stale rejections ` +
        `${r1.stats().staleRejections} + ${r2.stats().staleRejections}`,
    );

    expect(ledger.failures).toEqual([]);
    expect(result).toMatchObject({
      logical: focus,
      from,
      to,
      mapVersion: 2,
      resumed: false,
      cleanupError: undefined,
    });
    await waitFor(() => r2.mapVersion === 2, 'the second router to get the new map');
    expect(r1.locate(focus).node).toBe(to);
    expect(r2.locate(focus).node).toBe(to);
    // Writes did run into the switch: some were refused by the old node and retried on the new one.
    expect(r1.stats().staleRejections + r2.stats().staleRejections).toBeGreaterThan(0);

    // Nothing begun after the switch committed on the old node, by the routers' account...
    const focusWrites = [...ledger.writes.values()].filter((w) => w.logical === focus);
    expect(focusWrites.filter((w) => w.afterSwitch).length).toBeGreaterThan(0);
    expect(focusWrites.filter((w) => w.afterSwitch && w.node !== to)).toEqual([]);
    // ... and by the old node's own: every row version it ever stored was a write the routers
    // reported as committed there (a refused or retried write left no trace).
    const auditRows = await admin(from, `SELECT token FROM ${audit}`);
    for (const { token: t } of auditRows as { token: string }[]) {
      const w = ledger.writes.get(t);
      if (w === undefined) continue; // the seeding's writes
      expect(w.node).toBe(from);
    }

    // Every user and order exactly once, on the node the map gives its shard, with its last write.
    const seenUsers = new Map<string, Db>();
    const seenOrders = new Map<string, Db>();
    for (const db of DATABASES) {
      for (const row of (await admin(db, `SELECT user_id, n, token FROM ${users}`)) as {
        user_id: string;
        n: number;
        token: string;
      }[]) {
        expect(
          seenUsers.has(row.user_id),
          `user ${row.user_id} on ${seenUsers.get(row.user_id)} and ${db}`,
        ).toBe(false);
        seenUsers.set(row.user_id, db);
        expect(r1.shardFor(row.user_id).node).toBe(db);
        expect({ n: row.n, token: row.token }).toEqual(ledger.users.get(row.user_id));
      }
      for (const row of (await admin(db, `SELECT id::text AS id, user_id FROM ${orders}`)) as {
        id: string;
        user_id: string;
      }[]) {
        expect(seenOrders.has(row.id)).toBe(false);
        seenOrders.set(row.id, db);
        expect(r1.shardForId(row.id).node).toBe(db);
        expect(row.user_id).toBe(ledger.orders.get(row.id));
      }
    }
    expect(seenUsers.size).toBe(ledger.users.size);
    expect(seenOrders.size).toBe(ledger.orders.size);
    expect(
      (
        await admin(from, `SELECT count(*)::int AS n FROM ${users} WHERE user_id = ANY ($1)`, [
          [...ledger.users.keys()].filter((k) => r1.shardFor(k).logical === focus),
        ])
      )[0].n,
    ).toBe(0);

    // The fences say where the shard is.
    expect(await admin(from, `SELECT state, peer FROM ${prefix}_fence WHERE logical = $1`, [focus])).toEqual([
      { state: 'moved', peer: to },
    ]);
    expect(await admin(to, `SELECT state FROM ${prefix}_fence WHERE logical = $1`, [focus])).toEqual([
      { state: 'owned' },
    ]);

    // Every read after the switch finds every row, through either router, fenced or not.
    const focusKeys = [...ledger.users.keys()].filter((k) => r1.shardFor(k).logical === focus);
    for (const [i, key] of focusKeys.entries()) {
      const router = i % 2 === 0 ? r1 : r2;
      const plain = await router.run(
        key,
        async (p) => (await p.query(`SELECT token FROM ${users} WHERE user_id = $1`, [key])).rows,
      );
      expect(plain).toEqual([{ token: ledger.users.get(key)!.token }]);
      const fenced = await router.transaction(
        key,
        async (client) => (await client.query(`SELECT token FROM ${users} WHERE user_id = $1`, [key])).rows,
        { readOnly: true },
      );
      expect(fenced).toEqual(plain);
    }
    const total = await r2.all(async (p, { logicals }) => {
      const { rows } = await p.query(
        `SELECT count(*)::int AS n FROM ${users} WHERE ${fnSchema}.buttress_logical_shard(user_id, ${LOGICAL}) = ANY ($1)`,
        [logicals],
      );
      return rows[0].n as number;
    });
    expect(total.results.reduce((s, r) => s + r.value, 0)).toBe(ledger.users.size);

    const phase = (name: string) =>
      telemetry.value('buttress.shard_router.move.phases', { 'buttress.shard_router.phase': name });
    for (const name of ['prepare', 'copy', 'freeze', 'final', 'switch', 'done'])
      expect(await phase(name)).toBe(1);
    expect(await phase('catch-up')).toBe(result.catchUpRounds);
    expect(await telemetry.value('buttress.shard_router.move.freeze.duration')).toBe(1);
    otel.close();
    await telemetry.shutdown();
  }, 120_000);

  it('the write freeze holds only the shard being moved: its writes wait, the same node serves other shards', async () => {
    const from = 'shard_0';
    const [focus, other] = r1.map.shardsOf(from);
    const keyOf = (logical: number) =>
      [...ledger.users.keys()].find((k) => r1.shardFor(k).logical === logical)!;
    const focusKey = keyOf(focus!);
    const otherKey = keyOf(other!);
    const inner = copier();
    let frozen!: () => void;
    const isFrozen = new Promise<void>((resolve) => {
      frozen = resolve;
    });
    let thaw!: () => void;
    const thawed = new Promise<void>((resolve) => {
      thaw = resolve;
    });
    const holding: ShardCopier<pg.Pool> = {
      prepare: (c) => inner.prepare!(c),
      cleanup: (c, o) => inner.cleanup!(c, o),
      copy: async (c) => {
        if (c.phase === 'final') {
          frozen();
          await thawed;
        }
        return inner.copy(c);
      },
    };
    const bump = (router: ShardRouter<pg.Pool>, key: string) =>
      router.transaction(key, async (client, { node }) => {
        await client.query(`UPDATE ${users} SET n = n + 1 WHERE user_id = $1`, [key]);
        return node;
      });
    const move = r1.moveShard(focus!, 'shard_2', { copy: holding });
    await isFrozen;
    let focusDone = false;
    const focusWrite = bump(r2, focusKey).then((node) => {
      focusDone = true;
      return node;
    });
    // Another logical shard on the same node commits while the frozen one waits.
    expect(await bump(r2, otherKey)).toBe(from);
    await sleep(100);
    expect(focusDone).toBe(false);
    thaw();
    const result = await move;
    expect(await focusWrite).toBe('shard_2');
    ledger.users.get(focusKey)!.n++;
    ledger.users.get(otherKey)!.n++;
    expect(result.to).toBe('shard_2');
    const rows = await admin('shard_2', `SELECT n FROM ${users} WHERE user_id = $1`, [focusKey]);
    expect(rows[0].n).toBe(ledger.users.get(focusKey)!.n);
  }, 60_000);

  it('a second move of a shard that is moving is refused, and leaves the running move alone', async () => {
    const from = 'shard_1';
    const to = 'shard_3';
    const focus = r1.map.shardsOf(from)[0]!;
    const countOn = async (db: Db) =>
      (
        await admin(
          db,
          `SELECT count(*)::int AS n FROM ${users} WHERE ${fnSchema}.buttress_logical_shard(user_id, ${LOGICAL}) = $1`,
          [focus],
        )
      )[0].n as number;
    const rows = await countOn(from);
    expect(rows).toBeGreaterThan(0);
    const inner = copier();
    let copying!: () => void;
    const isCopying = new Promise<void>((resolve) => {
      copying = resolve;
    });
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => {
      resume = resolve;
    });
    const holding: ShardCopier<pg.Pool> = {
      prepare: (c) => inner.prepare!(c),
      cleanup: (c, o) => inner.cleanup!(c, o),
      copy: async (c) => {
        if (c.phase === 'copy') {
          copying();
          await resumed;
        }
        return inner.copy(c);
      },
    };
    const move = r1.moveShard(focus, to, { copy: holding });
    await isCopying;
    const fencesBefore = await admin(from, `SELECT state, peer FROM ${prefix}_fence WHERE logical = $1`, [
      focus,
    ]);
    const refused = await r2.moveShard(focus, 'shard_0', { copy: copier() }).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'E_SHARD_MOVE_FAILED',
      message: expect.stringMatching(/another move/),
    });
    // The refusal undid nothing of the running move.
    expect(await admin(from, `SELECT state, peer FROM ${prefix}_fence WHERE logical = $1`, [focus])).toEqual(
      fencesBefore,
    );
    resume();
    const result = await move;
    expect(result).toMatchObject({ logical: focus, from, to });
    expect(await countOn(to)).toBe(rows);
    expect(await countOn('shard_0')).toBe(0);
    await waitFor(() => r2.mapVersion === result.mapVersion, 'r2 to see the new map');
    expect(r2.map.nodeOf(focus)).toBe(to);
  }, 60_000);

  it("a freeze finishes while the moving router's own pool is full of writers it holds", async () => {
    // Every writer the freeze holds keeps a connection of its pool while it waits. The final
    // copy's connections are taken before the freeze, so a full pool cannot starve the move
    // (which would deadlock until the writers' lock_timeout).
    const from = 'shard_3';
    const focus = r1.map.shardsOf(from)[0]!;
    const keys = [...ledger.users.keys()].filter((k) => r1.shardFor(k).logical === focus).slice(0, 6);
    expect(keys.length).toBe(6);
    const inner = copier();
    let frozen!: () => void;
    const isFrozen = new Promise<void>((resolve) => {
      frozen = resolve;
    });
    let thaw!: () => void;
    const thawed = new Promise<void>((resolve) => {
      thaw = resolve;
    });
    const holding: ShardCopier<pg.Pool> = {
      prepare: (c) => inner.prepare!(c),
      cleanup: (c, o) => inner.cleanup!(c, o),
      copy: async (c) => {
        if (c.phase === 'final') {
          frozen();
          await thawed;
        }
        return inner.copy(c);
      },
    };
    const lockWaiters = async () =>
      Number(
        (
          await admin(
            from,
            `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
            [app],
          )
        )[0].n,
      );
    const move = r1.moveShard(focus, 'shard_0', { copy: holding, freezeTimeout: '20s' });
    await isFrozen;
    // Six writes through the moving router: its pool of 4 on the source has 2 left (the move holds
    // its control and final-copy connections), so two writers wait on the fence, four in the pool.
    const writes = keys.map((key) =>
      r1.transaction(key, async (client, { node }) => {
        await client.query(`UPDATE ${users} SET n = n + 1 WHERE user_id = $1`, [key]);
        return node;
      }),
    );
    await waitFor(async () => (await lockWaiters()) >= 2, 'two writers to wait on the frozen fence');
    thaw();
    const result = await move;
    expect(result.freezeMs).toBeLessThan(10_000);
    expect(await Promise.all(writes)).toEqual(keys.map(() => 'shard_0'));
    for (const key of keys) ledger.users.get(key)!.n++;
    const rows = await admin('shard_0', `SELECT user_id, n FROM ${users} WHERE user_id = ANY($1)`, [keys]);
    expect(new Map(rows.map((r) => [r.user_id, r.n]))).toEqual(
      new Map(keys.map((k) => [k, ledger.users.get(k)!.n])),
    );
  }, 60_000);

  it('a move that died before its switch is started over by moveShard', async () => {
    // What a process dying mid-copy leaves behind: the source copying (and recording), the target incoming.
    const focus = r1.map.shardsOf('shard_1')[0]!;
    await admin(
      'shard_1',
      `UPDATE ${prefix}_fence SET state = 'copying', peer = 'shard_0' WHERE logical = $1`,
      [focus],
    );
    await admin(
      'shard_0',
      `INSERT INTO ${prefix}_fence (logical, state, map_version, peer) VALUES ($1, 'incoming', 0, 'shard_1')
       ON CONFLICT (logical) DO UPDATE SET state = 'incoming'`,
      [focus],
    );
    const result = await r2.moveShard(focus, 'shard_0', { copy: copier() });
    expect(result).toMatchObject({ resumed: false, to: 'shard_0' });
    const focusKeys = [...ledger.users.keys()].filter((k) => r1.shardFor(k).logical === focus);
    const rows = (await admin('shard_0', `SELECT user_id, n FROM ${users} WHERE user_id = ANY ($1)`, [
      focusKeys,
    ])) as {
      user_id: string;
      n: number;
    }[];
    expect(rows.length).toBe(focusKeys.length);
    for (const row of rows) expect(row.n).toBe(ledger.users.get(row.user_id)!.n);
  }, 60_000);

  it('a move switched at the fences whose map could not be stored is finished by moveShard, and held writes land', async () => {
    const inner = stores[0]!;
    let failNext = true;
    const flaky: ShardMapStore = {
      name: 'flaky',
      load: (signal) => inner.load(signal),
      compareAndSet: (expected, next, signal) => {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error('store unreachable'));
        }
        return inner.compareAndSet(expected, next, signal);
      },
      watch: (listener) => inner.watch(listener),
      close: () => Promise.resolve(),
    };
    await r1.refresh();
    const r3 = createShardRouter({
      logicalShards: LOGICAL,
      fencePrefix: prefix,
      nodes: nodesOf(),
      map: r1.map,
      store: flaky,
      pollInterval: false,
    });
    const focus = r1.map.shardsOf('shard_2')[0]!;
    const key = [...ledger.users.keys()].find((k) => r1.shardFor(k).logical === focus)!;
    const version = r1.mapVersion;
    const error = await r3.moveShard(focus, 'shard_3', { copy: copier() }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_SHARD_MOVE_FAILED', phase: 'switch' });
    expect(r1.mapVersion).toBe(version);
    // The old node refuses the shard; r1 (still on the old map) holds its write, waiting for a map.
    let wrote: string | undefined;
    const pending = r1
      .transaction(key, async (client, { node }) => {
        await client.query(`UPDATE ${users} SET n = n + 1 WHERE user_id = $1`, [key]);
        return node;
      })
      .then((node) => {
        wrote = node;
      });
    await sleep(200);
    expect(wrote).toBeUndefined();
    const result = await r3.moveShard(focus, 'shard_3', { copy: copier() });
    expect(result).toMatchObject({ resumed: true, mapVersion: version + 1 });
    await pending;
    expect(wrote).toBe('shard_3');
    ledger.users.get(key)!.n++;
    const rows = await admin('shard_3', `SELECT n FROM ${users} WHERE user_id = $1`, [key]);
    expect(rows[0].n).toBe(ledger.users.get(key)!.n);
    await r3.close();
  }, 60_000);

  it('a move that fails before its switch is undone: the source keeps the shard and its writes, the target nothing', async () => {
    const focus = r1.map.shardsOf('shard_3')[0]!;
    const inner = copier();
    const failing: ShardCopier<pg.Pool> = {
      prepare: (c) => inner.prepare!(c),
      cleanup: (c, o) => inner.cleanup!(c, o),
      copy: async (c) => {
        if (c.phase === 'final') throw new Error('disk full on the target');
        return inner.copy(c);
      },
    };
    const version = r1.mapVersion;
    // The target's fence row as it was (none, or 'moved' if the shard left it in an earlier test).
    const targetFence = () =>
      admin('shard_0', `SELECT state, peer, map_version FROM ${prefix}_fence WHERE logical = $1`, [focus]);
    const before = await targetFence();
    const error = await r1.moveShard(focus, 'shard_0', { copy: failing }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_SHARD_MOVE_FAILED', phase: 'final', logical: focus });
    expect(r1.mapVersion).toBe(version);
    expect(await admin('shard_3', `SELECT state FROM ${prefix}_fence WHERE logical = $1`, [focus])).toEqual([
      { state: 'owned' },
    ]);
    expect(await targetFence()).toEqual(before);
    const focusKeys = [...ledger.users.keys()].filter((k) => r1.shardFor(k).logical === focus);
    expect(focusKeys.length).toBeGreaterThan(0);
    const onTarget = await admin(
      'shard_0',
      `SELECT count(*)::int AS n FROM ${users} WHERE user_id = ANY ($1)`,
      [focusKeys],
    );
    expect(onTarget[0].n).toBe(0);
    // Writes go on on the source.
    const key = focusKeys[0]!;
    const node = await r2.transaction(key, async (client, { node }) => {
      await client.query(`UPDATE ${users} SET n = n + 1 WHERE user_id = $1`, [key]);
      return node;
    });
    expect(node).toBe('shard_3');
    ledger.users.get(key)!.n++;
  }, 60_000);

  it("a failed move back to a node the shard once left keeps that node's 'moved' fence, so older maps cannot make it an owner again", async () => {
    const home = 'shard_2';
    const away = 'shard_0';
    const initial = r1.map;
    const focus = initial.shardsOf(home).at(-1)!;
    const fence = (db: Db) =>
      admin(db, `SELECT state, peer FROM ${prefix}_fence WHERE logical = $1`, [focus]);
    await r1.moveShard(focus, away, { copy: copier() });
    expect(await fence(home)).toEqual([{ state: 'moved', peer: away }]);

    const inner = copier();
    const failing: ShardCopier<pg.Pool> = {
      prepare: (c) => inner.prepare!(c),
      cleanup: (c, o) => inner.cleanup!(c, o),
      copy: async (c) => {
        if (c.phase === 'final') throw new Error('disk full on the target');
        return inner.copy(c);
      },
    };
    const error = await r1.moveShard(focus, home, { copy: failing }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_SHARD_MOVE_FAILED', phase: 'final' });
    expect(await fence(away)).toEqual([{ state: 'owned', peer: null }]);
    expect(await fence(home)).toEqual([{ state: 'moved', peer: away }]);

    // A router that still holds the map from before the first move installs fences: it reads the
    // stored map first, and the home node stays fenced off.
    const late = createShardRouter({
      logicalShards: LOGICAL,
      fencePrefix: prefix,
      nodes: nodesOf(),
      map: initial,
      store: stores[1],
      pollInterval: false,
    });
    try {
      await late.installFences();
      expect(late.map.nodeOf(focus)).toBe(away);
      expect(await fence(home)).toEqual([{ state: 'moved', peer: away }]);
      const key = [...ledger.users.keys()].find((k) => r1.shardFor(k).logical === focus)!;
      const node = await late.transaction(key, async (client, { node }) => {
        await client.query(`UPDATE ${users} SET n = n + 1 WHERE user_id = $1`, [key]);
        return node;
      });
      expect(node).toBe(away);
      ledger.users.get(key)!.n++;
    } finally {
      await late.close();
    }
  }, 60_000);

  it('a move whose freeze cannot be taken in time (a long transaction holds the shard) is undone', async () => {
    const focus = r1.map.shardsOf('shard_3')[1]!;
    const key = [...ledger.users.keys()].find((k) => r1.shardFor(k).logical === focus)!;
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const long = r2.transaction(key, async (client) => {
      await client.query(`UPDATE ${users} SET n = n + 1 WHERE user_id = $1`, [key]);
      entered();
      await held;
    });
    await inside;
    const error = await r1
      .moveShard(focus, 'shard_0', { copy: copier(), freezeTimeout: '300ms' })
      .catch((e: unknown) => e);
    release();
    await long;
    ledger.users.get(key)!.n++;
    expect(error).toMatchObject({ code: 'E_SHARD_MOVE_FAILED', logical: focus });
    expect(r1.locate(focus).node).toBe('shard_3');
    expect(await admin('shard_3', `SELECT state FROM ${prefix}_fence WHERE logical = $1`, [focus])).toEqual([
      { state: 'owned' },
    ]);
    const rows = await admin('shard_3', `SELECT n FROM ${users} WHERE user_id = $1`, [key]);
    expect(rows[0].n).toBe(ledger.users.get(key)!.n);
  }, 60_000);
});
