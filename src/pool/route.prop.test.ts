import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../testing/index.js';
import { classifySql } from './classify.js';
import { createPgCluster, type PgCluster, type PgSession } from './index.js';
import { FakePoolClass, FakeServer } from './internal/fake-pg.test-util.js';
import { chooseReplica, NO_REPLICA, NOT_CAUGHT_UP, type RouteCandidate } from './internal/route.js';

/*
 * The routing decision against models: first the pure choice of a replica, then the whole cluster
 * (real pg-pool over fake nodes) against a model of what each session must be able to read.
 */

const candidate: fc.Arbitrary<RouteCandidate> = fc.record({
  routable: fc.boolean(),
  replayLsn: fc.option(fc.bigInt({ min: 0n, max: 50n }), { nil: undefined }),
  load: fc.integer({ min: 0, max: 4 }),
});

/** The specification, written the obvious way. */
function model(candidates: readonly RouteCandidate[], minLsn: bigint | undefined, cursor: number): number {
  const n = candidates.length;
  const order = Array.from({ length: n }, (_, k) => (cursor + k) % n);
  const eligible = order.filter((i) => {
    const c = candidates[i]!;
    return c.routable && (minLsn === undefined || (c.replayLsn !== undefined && c.replayLsn >= minLsn));
  });
  if (eligible.length === 0) return candidates.some((c) => c.routable) ? NOT_CAUGHT_UP : NO_REPLICA;
  const least = Math.min(...eligible.map((i) => candidates[i]!.load));
  return eligible.find((i) => candidates[i]!.load === least)!;
}

describe('chooseReplica', () => {
  it('agrees with the model: least loaded eligible replica, turns on ties, -1/-2 otherwise', () => {
    fc.assert(
      fc.property(
        fc.array(candidate, { maxLength: 6 }),
        fc.option(fc.bigInt({ min: 0n, max: 50n }), { nil: undefined }),
        fc.nat(1_000),
        (candidates, minLsn, cursor) => {
          expect(chooseReplica(candidates, minLsn, cursor)).toBe(model(candidates, minLsn, cursor));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('never picks a replica that is not routable or has not replayed the position', () => {
    fc.assert(
      fc.property(
        fc.array(candidate, { maxLength: 6 }),
        fc.bigInt({ min: 0n, max: 50n }),
        fc.nat(),
        (cs, lsn, cursor) => {
          const i = chooseReplica(cs, lsn, cursor);
          if (i >= 0) {
            expect(cs[i]!.routable).toBe(true);
            expect(cs[i]!.replayLsn! >= lsn).toBe(true);
          }
        },
      ),
    );
  });
});

/*
 * The cluster against a model of visibility. The primary keeps a key/value table whose history
 * is indexed by WAL position; a replica answers from the state at the position it has replayed.
 * Commands: a session writes, a session reads, a replica replays some more, a health round runs,
 * time passes. Invariants: a session reads its own last write or something newer, writes never
 * reach a replica, and reads without a session never wait for the primary while a replica is up.
 */

type Command =
  | { kind: 'write'; session: number }
  | { kind: 'read'; session: number }
  | { kind: 'replay'; replica: number; fraction: number }
  | { kind: 'health' }
  | { kind: 'tick'; ms: number }
  | { kind: 'token'; from: number; to: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), session: fc.nat(2) }),
  fc.record({ kind: fc.constant('read' as const), session: fc.nat(3) }),
  fc.record({
    kind: fc.constant('replay' as const),
    replica: fc.nat(1),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  fc.record({ kind: fc.constant('health' as const) }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 3_000 }) }),
  fc.record({ kind: fc.constant('token' as const), from: fc.nat(2), to: fc.nat(2) }),
);

const clusters: { cluster: PgCluster; clock: FakeClock }[] = [];
afterEach(async () => {
  for (const { cluster, clock } of clusters.splice(0)) {
    const ended = cluster.end({ timeout: 10 });
    await clock.advanceAsync(2_000);
    await ended;
  }
});

describe('cluster routing against a model', () => {
  {
    const mode = 'lsn';
    it("'lsn': a session always reads its own latest write, however far behind the replicas are; writes never reach a replica", async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 40 }), async (commands) => {
          const clock = new FakeClock();
          const primary = new FakeServer('primary', 'primary');
          const replicas = [new FakeServer('replica-0', 'replica'), new FakeServer('replica-1', 'replica')];
          for (const r of replicas) r.lsn = primary.lsn;
          /** (position after the write, value) for the one key. */
          const history: { lsn: bigint; value: number }[] = [{ lsn: primary.lsn, value: -1 }];
          const valueAt = (lsn: bigint) => history.filter((h) => h.lsn <= lsn).at(-1)!.value;
          primary.handler = (sql, values) => {
            if (sql.startsWith('UPDATE')) {
              primary.write(0x10n);
              history.push({ lsn: primary.lsn, value: values![0] as number });
              return [];
            }
            return [{ v: valueAt(primary.lsn), node: 'primary' }];
          };
          for (const r of replicas) {
            r.handler = (sql) => {
              if (!sql.startsWith('SELECT')) throw new Error(`a replica was sent: ${sql}`);
              return [{ v: valueAt(r.lsn), node: r.name }];
            };
          }
          const cluster = createPgCluster({
            Pool: FakePoolClass as never,
            primary: { server: primary } as never,
            replicas: replicas.map((server) => ({ server }) as never),
            readYourWrites: mode,
            maxReplicaLag: '10s',
            healthCheckInterval: '1s',
            stickyWindow: '2s',
            clock,
          });
          clusters.push({ cluster, clock });
          await cluster.checkHealth();
          const sessions: PgSession[] = [0, 1, 2].map(() => cluster.session());
          const lastWrite = new Map<number, number>();
          for (const c of commands) {
            switch (c.kind) {
              case 'write':
                // Values are unique, so a value read names the write it came from.
                await sessions[c.session]!.query('UPDATE kv SET v = $1', [history.length]);
                lastWrite.set(c.session, history.length - 1);
                break;
              case 'read': {
                if (c.session === 3) {
                  await cluster.query('SELECT v FROM kv');
                  break;
                }
                const { rows } = await sessions[c.session]!.query('SELECT v FROM kv');
                const mine = lastWrite.get(c.session);
                if (mine !== undefined) {
                  // The value read is this session's write or a later one.
                  const index = history.findIndex((h) => h.value === rows[0]!.v);
                  expect(index).toBeGreaterThanOrEqual(mine);
                }
                break;
              }
              case 'replay': {
                const r = replicas[c.replica]!;
                r.lsn += BigInt(Math.floor(Number(primary.lsn - r.lsn) * c.fraction));
                break;
              }
              case 'health':
                await cluster.checkHealth();
                break;
              case 'tick':
                await clock.advanceAsync(c.ms);
                break;
              case 'token': {
                const token = sessions[c.from]!.consistencyToken();
                sessions[c.to] = cluster.session(token);
                const from = lastWrite.get(c.from);
                if (from === undefined) lastWrite.delete(c.to);
                else lastWrite.set(c.to, from);
                break;
              }
            }
          }
          expect(cluster.stats().routing.writes).toBe(commands.filter((c) => c.kind === 'write').length);
        }),
        { numRuns: 150 },
      );
    });
  }
});

describe('classification drives routing', () => {
  it('whatever the text, the cluster sends it where classifySql says (auto route)', async () => {
    const clock = new FakeClock();
    const primary = new FakeServer('primary', 'primary');
    const replica = new FakeServer('replica-0', 'replica');
    replica.lsn = primary.lsn;
    primary.handler = () => [{ node: 'primary' }];
    replica.handler = () => [{ node: 'replica' }];
    const cluster = createPgCluster({
      Pool: FakePoolClass as never,
      primary: { server: primary } as never,
      replicas: [{ server: replica } as never],
      clock,
    });
    clusters.push({ cluster, clock });
    await cluster.checkHealth();
    const statements = fc.oneof(
      fc.constantFrom(
        'SELECT 1',
        'SELECT * FROM t FOR UPDATE',
        "SELECT nextval('s')",
        'WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x',
        'INSERT INTO t VALUES (1)',
        'VALUES (1), (2)',
        'TABLE t',
        'SHOW work_mem',
      ),
      fc.string({ maxLength: 40 }).map((s) => `SELECT ${s}`),
    );
    await fc.assert(
      fc.asyncProperty(statements, async (sql) => {
        const { rows } = await cluster.query(sql);
        expect(rows[0]!.node).toBe(classifySql(sql).kind === 'read' ? 'replica' : 'primary');
      }),
      { numRuns: 300 },
    );
  });
});
