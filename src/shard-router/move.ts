import { throwIfAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { channel, publish } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import { InvalidOptionError } from '../core/errors.js';
import { stopwatch } from '../core/hr-time.js';
import { duration, integer, knownKeys, optionsObject } from '../core/validate.js';
import { type MovePhase, ShardMapConflictError, ShardMoveError } from './errors.js';
import { fenceSchemaSql, type SqlClient } from './fence.js';
import type { ShardRouter } from './router.js';
import type { ShardMap } from './shard-map.js';
import type { ShardMapStore } from './stores/store.js';

/*
 * The online move of one logical shard L from node A to node B, map version v -> v + 1
 * (docs/shard-router.md, "Moving a logical shard", tells it step by step):
 *
 *   lock      a session advisory lock on A for L: one move of a shard at a time
 *   prepare   fence tables on both nodes; B's fence row for L: 'incoming' (B refuses L's writes);
 *             the copier prepares (the built-in one installs its change-capture triggers on A and
 *             clears any rows of L left on B)
 *   capture   A's fence row: 'owned' -> 'copying' (an UPDATE: it waits for the transactions in
 *             flight; every later one records its changes to L's rows)
 *   copy      the copier copies L's rows A -> B while writes go on
 *   catch-up  the copier applies the recorded changes, round after round, until a round is small
 *   freeze    A's fence row FOR UPDATE: waits for L's transactions in flight, holds new ones
 *   final     the copier applies the last changes: nothing can change L on A any more
 *   switch    A's row: 'moved' (commit: the freeze ends; held transactions fail with
 *             E_STALE_SHARD_MAP); B's row: 'owned'; the map v + 1 is stored (compare-and-set,
 *             pushed to every router) and applied here; routers retry the refused writes on B
 *   cleanup   the copier removes L's rows from A and the change log
 *
 * A failure before the switch undoes the move: A's row back to 'owned', B's back to what it was
 * (removed, or 'moved' if L once left B), the copier cleans B. Once A's row says 'moved' the move only goes forward: a failure there leaves a move
 * that `moveShard` with the same arguments finishes.
 */

/** The phase a copier is called for. */
export type CopyPhase = 'copy' | 'catch-up' | 'final';

/** What a copier is called with. */
export interface CopyContext<N> {
  /** `'copy'`: the bulk copy, writes flowing; `'catch-up'`: apply changes since, writes flowing; `'final'`: the shard is frozen, apply every remaining change. */
  readonly phase: CopyPhase;
  readonly logical: number;
  /** Source node name. */
  readonly from: string;
  /** Target node name. */
  readonly to: string;
  readonly fromNode: N;
  readonly toNode: N;
  /** The map version the move creates. */
  readonly mapVersion: number;
  /** The router's fence/change-log prefix (the built-in copier's change log is `<prefix>_changes`). */
  readonly fencePrefix: string;
  /** The router doing the move (for `logicalShards`, its hasher, `withClient`). */
  readonly router: ShardRouter<N>;
  /** How long DDL and locks the copier takes may wait (the move's `freezeTimeout`), in ms. */
  readonly lockTimeout: number;
  /** Opens a SQL connection on `from` or `to` (release it when done). */
  connect(node: 'from' | 'to'): Promise<SqlClient>;
  readonly signal: AbortSignal | undefined;
}

/**
 * Copies a logical shard's data for a move. A bare function is called in every phase and must
 * be idempotent (an idempotent full copy is correct, if slow: the `'final'` call runs with the
 * shard frozen). For catch-up rounds it returns how many changes it applied (the move freezes
 * when a round applies at most `catchUpThreshold`).
 */
export type CopyFunction<N> = (context: CopyContext<N>) => Promise<unknown>;

/** A copier with setup and cleanup, like the built-in {@link pgTableCopier}. */
export interface ShardCopier<N> {
  /** Before the source starts recording changes. */
  prepare?(context: Omit<CopyContext<N>, 'phase'>): Promise<void>;
  /** See {@link CopyFunction}. */
  copy: CopyFunction<N>;
  /**
   * After the switch (`moved: true`: drop the source's copy) or after a failed move (`moved:
   * false`: drop what reached the target). Failures here do not undo a switched move; they go
   * to the result's `cleanupError`.
   */
  cleanup?(context: Omit<CopyContext<N>, 'phase'>, outcome: { moved: boolean }): Promise<void>;
}

/** Options of {@link ShardRouter.moveShard}. */
export interface MoveOptions<N> {
  /** Copies the data: a {@link ShardCopier} (such as `pgTableCopier(...)`) or a bare function. */
  copy: ShardCopier<N> | CopyFunction<N>;
  /** How long taking the write freeze may wait for the shard's transactions in flight. @default '5s' */
  freezeTimeout?: Duration;
  /** Catch-up rounds at most before freezing anyway. @default 10 */
  catchUpRounds?: number;
  /** Freeze once a catch-up round applied at most this many changes. @default 100 */
  catchUpThreshold?: number;
  /** Aborting before the switch undoes the move and rejects with `E_SHARD_MOVE_FAILED` (cause `E_ABORTED`). */
  signal?: AbortSignal;
}

/** What a finished move reports. */
export interface MoveResult {
  readonly logical: number;
  readonly from: string;
  readonly to: string;
  /** The map version the move created. */
  readonly mapVersion: number;
  /** How long writes of the shard were held (freeze to switch), in ms. */
  readonly freezeMs: number;
  /** Catch-up rounds run before the freeze. */
  readonly catchUpRounds: number;
  /** Changes applied in the final, frozen round (when the copier counts them). */
  readonly finalChanges: number | undefined;
  /** The whole move, in ms. */
  readonly durationMs: number;
  /** True when an interrupted move was finished (it was already switched at the fences). */
  readonly resumed: boolean;
  /** A cleanup failure after the switch (the move itself succeeded). */
  readonly cleanupError: unknown;
}

/** @internal What the router hands the move. */
export interface MoveHost<N> {
  readonly router: ShardRouter<N>;
  readonly store: ShardMapStore | undefined;
  readonly prefix: string;
  readonly clock: Clock;
  readonly name: string;
}

const KEYS = ['copy', 'freezeTimeout', 'catchUpRounds', 'catchUpThreshold', 'signal'] as const;
/** Attempts at storing the switched map when other changes keep landing first. */
const CAS_ATTEMPTS = 20;

const moveChannel = channel('shard-router', 'move');

/** @internal See {@link ShardRouter.moveShard}. */
export async function moveShard<N>(
  host: MoveHost<N>,
  logical: number,
  to: string,
  options: MoveOptions<N>,
): Promise<MoveResult> {
  const { router, prefix } = host;
  const opts = optionsObject(options);
  knownKeys(opts, KEYS);
  const copier = toCopier<N>(opts.copy);
  const freezeTimeout = duration(opts.freezeTimeout, 'freezeTimeout', 5_000, 1);
  const maxRounds = integer(opts.catchUpRounds, 'catchUpRounds', 0, 1_000, 10);
  const threshold = integer(opts.catchUpThreshold, 'catchUpThreshold', 0, Number.MAX_SAFE_INTEGER, 100);
  const signal = opts.signal;
  integer(logical, 'logical', 0, router.logicalShards - 1);
  router.node(to);
  throwIfAborted(signal);

  const watch = stopwatch(host.clock);
  const started = watch();
  // Start from the newest map there is.
  if (host.store !== undefined) await router.refresh(signal);
  const map = router.map;
  const from = map.nodeOf(logical);
  if (from === to)
    throw new InvalidOptionError(
      'to',
      to,
      `another node than "${from}", which holds logical shard ${logical}`,
    );
  const version = map.version + 1;
  const trace = (phase: MovePhase | 'done', extra?: object) =>
    publish(moveChannel, () => ({
      router: host.name,
      logical,
      from,
      to,
      mapVersion: version,
      phase,
      ...extra,
    }));

  const base: Omit<CopyContext<N>, 'phase'> = {
    logical,
    from,
    to,
    fromNode: router.node(from),
    toNode: router.node(to),
    mapVersion: version,
    fencePrefix: prefix,
    router,
    lockTimeout: freezeTimeout,
    connect: (which) => router.openClient(which === 'from' ? from : to, signal),
    signal,
  };

  // One connection on the source for the whole move: it holds the move lock, then the freeze.
  const control = await router.openClient(from, signal);
  let controlBroken: Error | undefined;
  let phase: MovePhase = 'prepare';
  let switched = false;
  let copierPrepared = false;
  let finalSource: LentClient | undefined;
  let finalTarget: LentClient | undefined;
  /** The target's fence row before the move made it 'incoming' (a 'moved' row if L left it once). */
  let targetBefore: StoredFence | undefined;
  // The lock comes first, outside the undo below: a move refused here (another one holds it)
  // has done nothing and must undo nothing, least of all the state of the move that runs.
  let locked: boolean;
  try {
    const answer = await control.query(`SELECT pg_try_advisory_lock(hashtext($1)) AS ok`, [
      `${prefix}:move:${logical}`,
    ]);
    locked = answer.rows[0]?.ok === true;
  } catch (error) {
    control.release(error instanceof Error ? error : new Error(String(error)));
    throw new ShardMoveError(logical, from, to, 'prepare', 'could not take the move lock', error);
  }
  if (!locked) {
    control.release();
    throw new ShardMoveError(logical, from, to, 'prepare', 'another move of this logical shard is running');
  }
  try {
    try {
      await control.query(`BEGIN; ${fenceSchemaSql(prefix)}; COMMIT`);
      await router.withClient(to, signal, (c) => c.query(`BEGIN; ${fenceSchemaSql(prefix)}; COMMIT`));

      // An interrupted move that already switched at the fences only needs its map stored.
      const sourceRow = await fenceRow(control, prefix, logical);
      if (sourceRow?.state === 'moved' && sourceRow.peer === to) {
        const targetRow = await router.withClient(to, signal, (c) => fenceRow(c, prefix, logical));
        if (targetRow !== undefined && (targetRow.state === 'owned' || targetRow.state === 'incoming')) {
          phase = 'switch';
          switched = true;
          const next = await switchTarget(host, logical, to, sourceRow.mapVersion, signal);
          phase = 'cleanup';
          const cleanupError = await cleanUp(control, prefix, base, copier);
          trace('done', { resumed: true });
          return {
            logical,
            from,
            to,
            mapVersion: next.version,
            freezeMs: 0,
            catchUpRounds: 0,
            finalChanges: undefined,
            durationMs: watch() - started,
            resumed: true,
            cleanupError,
          };
        }
      }

      // prepare
      trace('prepare');
      await router.withClient(to, signal, async (c) => {
        const row = await fenceRow(c, prefix, logical);
        if (row !== undefined && (row.state === 'owned' || row.state === 'copying')) {
          throw new ShardMoveError(
            logical,
            from,
            to,
            'prepare',
            `node "${to}" already owns logical shard ${logical}`,
          );
        }
        targetBefore = row;
        await c.query(
          `INSERT INTO ${prefix}_fence (logical, state, map_version, peer) VALUES ($1, 'incoming', $2, $3)
           ON CONFLICT (logical) DO UPDATE SET state = 'incoming', map_version = $2, peer = $3, updated_at = now()`,
          [logical, version, from],
        );
      });
      await control.query(`DELETE FROM ${prefix}_changes WHERE logical = $1`, [logical]);
      copierPrepared = true;
      if (copier.prepare !== undefined) await copier.prepare(base);
      throwIfAborted(signal);

      // capture: every transaction entering L from now on records its changes.
      await control.query(`BEGIN; SET LOCAL lock_timeout = ${Math.ceil(freezeTimeout)}`);
      const captured = await control.query(
        `UPDATE ${prefix}_fence SET state = 'copying', peer = $2, updated_at = now()
         WHERE logical = $1 AND state IN ('owned', 'copying') RETURNING map_version`,
        [logical, to],
      );
      await control.query('COMMIT');
      if (captured.rowCount !== 1) {
        throw new ShardMoveError(
          logical,
          from,
          to,
          'prepare',
          `node "${from}" does not own logical shard ${logical} by its fence`,
        );
      }

      // copy, then catch up while writes go on
      phase = 'copy';
      trace('copy');
      await copier.copy({ ...base, phase: 'copy' });
      phase = 'catch-up';
      let rounds = 0;
      while (rounds < maxRounds) {
        throwIfAborted(signal);
        rounds++;
        trace('catch-up', { round: rounds });
        const applied = await copier.copy({ ...base, phase: 'catch-up' });
        if (typeof applied !== 'number' || applied <= threshold) break;
      }

      // freeze: wait for L's transactions in flight, hold new ones
      phase = 'freeze';
      throwIfAborted(signal);
      trace('freeze');
      // The final copy's connections are taken now, before the freeze: every writer the freeze
      // holds keeps a connection of its pool while it waits, so with a small pool a connection
      // asked for after the freeze would queue behind them until their lock_timeout, a deadlock
      // only a timeout breaks.
      finalSource = lend(await base.connect('from'));
      finalTarget = lend(await base.connect('to'));
      await control.query(`BEGIN; SET LOCAL lock_timeout = ${Math.ceil(freezeTimeout)}`);
      const frozenAt = watch();
      const frozen = await control.query(`SELECT state FROM ${prefix}_fence WHERE logical = $1 FOR UPDATE`, [
        logical,
      ]);
      if (frozen.rows[0]?.state !== 'copying') {
        throw new ShardMoveError(
          logical,
          from,
          to,
          'freeze',
          `the fence of logical shard ${logical} changed during the move`,
        );
      }

      // final catch-up: nothing changes L on the source any more
      phase = 'final';
      trace('final');
      const lent = { from: finalSource, to: finalTarget };
      const finalChanges = await copier.copy({
        ...base,
        phase: 'final',
        connect: (which) => Promise.resolve(lent[which]),
      });
      finalSource.giveBack();
      finalTarget.giveBack();
      finalSource = finalTarget = undefined;

      // switch: the source refuses L from its commit on; the held transactions retry on the target
      phase = 'switch';
      await control.query(
        `UPDATE ${prefix}_fence SET state = 'moved', map_version = $2, peer = $3, updated_at = now() WHERE logical = $1`,
        [logical, version, to],
      );
      await control.query('COMMIT');
      switched = true;
      const freezeMs = watch() - frozenAt;
      const next = await switchTarget(host, logical, to, version, undefined);
      trace('switch', { freezeMs });

      phase = 'cleanup';
      const cleanupError = await cleanUp(control, prefix, base, copier);
      trace('done', { freezeMs, catchUpRounds: rounds });
      return {
        logical,
        from,
        to,
        mapVersion: next.version,
        freezeMs,
        catchUpRounds: rounds,
        finalChanges: typeof finalChanges === 'number' ? finalChanges : undefined,
        durationMs: watch() - started,
        resumed: false,
        cleanupError,
      };
    } finally {
      await control
        .query(`SELECT pg_advisory_unlock(hashtext($1))`, [`${prefix}:move:${logical}`])
        .catch(() => {});
    }
  } catch (error) {
    if (switched) {
      // Past the point of no return: the source refuses L. Finish with moveShard(...) again.
      controlBroken = error instanceof Error ? error : new Error(String(error));
      throw error instanceof ShardMoveError || error instanceof ShardMapConflictError
        ? error
        : new ShardMoveError(
            logical,
            from,
            to,
            phase,
            'the move was switched at the fences but not finished: run moveShard again to finish it',
            error,
          );
    }
    trace(phase, { failed: true });
    const undoError = await undo(host, control, base, copier, copierPrepared, targetBefore).catch(
      (e: unknown) => e,
    );
    if (undoError !== undefined) controlBroken = new Error('undo failed');
    if (error instanceof ShardMoveError) throw error;
    throw new ShardMoveError(
      logical,
      from,
      to,
      phase,
      error instanceof Error ? error.message : String(error),
      error,
    );
  } finally {
    finalSource?.giveBack(new Error('the move failed'));
    finalTarget?.giveBack(new Error('the move failed'));
    control.release(controlBroken);
  }
}

/** A connection lent to the copier for the final round: the move gives it back, not the copier. */
interface LentClient extends SqlClient {
  /** Releases the connection; destroyed when the copier reported a failure on it, or `failure` is given. */
  giveBack(failure?: Error): void;
}

function lend(client: SqlClient): LentClient {
  let failed: Error | boolean | undefined;
  let given = false;
  return {
    query: (text, values) => client.query(text, values),
    // The copier releases what `connect` gave it; the connection stays open until the move is done.
    release(error) {
      if (error) failed = error;
    },
    giveBack(failure) {
      if (given) return;
      given = true;
      client.release(failure ?? failed);
    },
  };
}

/** B owns L; the map says so (compare-and-set, merged with changes that landed meanwhile). */
async function switchTarget<N>(
  host: MoveHost<N>,
  logical: number,
  to: string,
  version: number | undefined,
  signal: AbortSignal | undefined,
): Promise<ShardMap> {
  const { router, prefix, store } = host;
  await router.withClient(to, signal, (c) =>
    c.query(
      `UPDATE ${prefix}_fence SET state = 'owned', map_version = coalesce($2, map_version), peer = NULL, updated_at = now()
       WHERE logical = $1`,
      [logical, version ?? null],
    ),
  );
  for (let attempt = 0; ; attempt++) {
    if (store !== undefined) await router.refresh(signal);
    const current = router.map;
    if (current.nodeOf(logical) === to) return current;
    const next = current.withMove(logical, to);
    if (store === undefined) {
      router.applyLocal(next);
      return next;
    }
    if (await store.compareAndSet(current.version, next.toJSON(), signal)) {
      router.applyLocal(next);
      return next;
    }
    if (attempt >= CAS_ATTEMPTS) throw new ShardMapConflictError(current.version, undefined);
  }
}

/**
 * After the switch: the copier drops the source's copy, and the change log of the shard goes. A
 * failure is returned (the move itself succeeded), not thrown.
 */
async function cleanUp<N>(
  control: SqlClient,
  prefix: string,
  base: Omit<CopyContext<N>, 'phase'>,
  copier: ShardCopier<N>,
): Promise<unknown> {
  let failure: unknown;
  if (copier.cleanup !== undefined) {
    failure = await copier.cleanup(base, { moved: true }).then(
      () => undefined,
      (error: unknown) => error,
    );
  }
  await control.query(`DELETE FROM ${prefix}_changes WHERE logical = $1`, [base.logical]).catch(() => {});
  return failure;
}

/** Undoes a move that had not switched: the source owns L again, the target forgets it. */
async function undo<N>(
  host: MoveHost<N>,
  control: SqlClient,
  base: Omit<CopyContext<N>, 'phase'>,
  copier: ShardCopier<N>,
  copierPrepared: boolean,
  targetBefore: StoredFence | undefined,
): Promise<void> {
  const { router, prefix } = host;
  const { logical, from, to } = base;
  await control.query('ROLLBACK').catch(() => {});
  await control.query(
    `UPDATE ${prefix}_fence SET state = 'owned', peer = NULL, updated_at = now() WHERE logical = $1 AND state = 'copying'`,
    [logical],
  );
  // The target's row goes back to what it was. A 'moved' row (L left this node once) must stay:
  // without it, installFences with an older map would make the target an owner again.
  await router.withClient(to, undefined, (c) =>
    targetBefore === undefined
      ? c.query(`DELETE FROM ${prefix}_fence WHERE logical = $1 AND state = 'incoming' AND peer = $2`, [
          logical,
          from,
        ])
      : c.query(
          `UPDATE ${prefix}_fence SET state = $3, map_version = $4, peer = $5, updated_at = now()
           WHERE logical = $1 AND state = 'incoming' AND peer = $2`,
          [logical, from, targetBefore.state, targetBefore.mapVersion, targetBefore.peer],
        ),
  );
  if (copierPrepared && copier.cleanup !== undefined) await copier.cleanup(base, { moved: false });
  await control.query(`DELETE FROM ${prefix}_changes WHERE logical = $1`, [logical]);
}

interface StoredFence {
  readonly state: string;
  readonly mapVersion: number;
  readonly peer: string | null;
}

async function fenceRow(
  client: SqlClient,
  prefix: string,
  logical: number,
): Promise<StoredFence | undefined> {
  const result = await client.query(
    `SELECT state, map_version, peer FROM ${prefix}_fence WHERE logical = $1`,
    [logical],
  );
  const row = result.rows[0] as { state: string; map_version: string; peer: string | null } | undefined;
  return row === undefined
    ? undefined
    : { state: row.state, mapVersion: Number(row.map_version), peer: row.peer };
}

function toCopier<N>(copy: unknown): ShardCopier<N> {
  if (typeof copy === 'function') return { copy: copy as CopyFunction<N> };
  if (typeof copy === 'object' && copy !== null && typeof (copy as ShardCopier<N>).copy === 'function') {
    return copy as ShardCopier<N>;
  }
  throw new InvalidOptionError(
    'copy',
    copy,
    'a copy function or a ShardCopier ({ prepare?, copy, cleanup? })',
  );
}
