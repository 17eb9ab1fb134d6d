import { ButtressError } from '../core/errors.js';

/** What a node's fence row said about a logical shard when it refused a transaction. */
export type FenceState = 'owned' | 'copying' | 'incoming' | 'moved' | 'missing';

/**
 * A fenced transaction (`router.transaction()`) reached a node that does not own its logical
 * shard: the shard has moved away (`state: 'moved'`), is being moved in and not yet switched
 * (`'incoming'`), or the node has no fence row for it (`'missing'`). Code `E_STALE_SHARD_MAP`.
 *
 * The router handles it itself: it rolls the transaction back, reloads the map and runs the
 * transaction again on the node the new map names. Callers see it only when that does not settle
 * within the router's `staleRetryTimeout`.
 */
export class StaleShardMapError extends ButtressError {
  /** The logical shard of the transaction. */
  readonly logical: number;
  /** The node it was routed to. */
  readonly node: string;
  /** The map version it was routed with. */
  readonly mapVersion: number;
  /** What the node's fence says about the shard. */
  readonly state: FenceState;
  /** The map version recorded in the node's fence row (the version that moved the shard away, for `'moved'`). */
  readonly fenceVersion: number | undefined;

  constructor(logical: number, node: string, mapVersion: number, state: FenceState, fenceVersion?: number) {
    super(
      'E_STALE_SHARD_MAP',
      `Logical shard ${logical} is ${state === 'missing' ? 'not fenced' : state} on node "${node}" ` +
        `(routed with map version ${mapVersion}${fenceVersion === undefined ? '' : `, fence at version ${fenceVersion}`})`,
      { noStack: true },
    );
    this.logical = logical;
    this.node = node;
    this.mapVersion = mapVersion;
    this.state = state;
    this.fenceVersion = fenceVersion;
  }
}

/** A compare-and-set of the shard map found another version than expected. Code `E_SHARD_MAP_CONFLICT`. */
export class ShardMapConflictError extends ButtressError {
  /** The version the writer based its change on. */
  readonly expected: number;
  /** The version the store holds (undefined when it holds none). */
  readonly actual: number | undefined;

  constructor(expected: number, actual: number | undefined) {
    super(
      'E_SHARD_MAP_CONFLICT',
      `The shard map changed: expected version ${expected}, the store holds ${actual === undefined ? 'none' : actual}`,
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/** The router has no usable map. Code `E_SHARD_MAP_UNAVAILABLE`. */
export class ShardMapUnavailableError extends ButtressError {
  constructor(message: string, cause?: unknown) {
    super('E_SHARD_MAP_UNAVAILABLE', message, { cause });
  }
}

/** Where a move was when it stopped. */
export type MovePhase = 'prepare' | 'copy' | 'catch-up' | 'freeze' | 'final' | 'switch' | 'cleanup';

/**
 * An online move stopped before its switch: the map is unchanged, the source node still owns the
 * logical shard and accepts its writes again, and what was copied to the target was removed (as
 * far as the copier's cleanup could). Code `E_SHARD_MOVE_FAILED`; `cause` holds the failure.
 */
export class ShardMoveError extends ButtressError {
  readonly logical: number;
  readonly from: string;
  readonly to: string;
  /** The phase that failed. */
  readonly phase: MovePhase;

  constructor(logical: number, from: string, to: string, phase: MovePhase, message: string, cause?: unknown) {
    super(
      'E_SHARD_MOVE_FAILED',
      `Moving logical shard ${logical} from "${from}" to "${to}" failed in ${phase}: ${message}`,
      {
        cause,
      },
    );
    this.logical = logical;
    this.from = from;
    this.to = to;
    this.phase = phase;
  }
}

/** One target of a scatter-gather: a node, or a logical shard on its node. */
export interface ScatterTarget {
  /** The node's name. */
  readonly node: string;
  /** The logical shard, when scattering by logical shard (`by: 'logical'`). */
  readonly logical: number | undefined;
}

/** A target that answered. */
export interface ScatterSuccess<T> extends ScatterTarget {
  readonly value: T;
}

/** A target that failed (or was not reached before the deadline, or was aborted). */
export interface ScatterFailure extends ScatterTarget {
  readonly error: unknown;
}

/**
 * `all()` with `partial: 'fail'` saw a target fail. Code `E_SCATTER_FAILED`. `failures` holds the
 * first failure and those that came before the other calls were aborted; `results` what had
 * answered by then. `cause` is the first failure's error.
 */
export class ScatterError<T = unknown> extends ButtressError {
  readonly results: readonly ScatterSuccess<T>[];
  readonly failures: readonly ScatterFailure[];

  constructor(results: readonly ScatterSuccess<T>[], failures: readonly ScatterFailure[]) {
    const first = failures[0];
    super(
      'E_SCATTER_FAILED',
      `Scatter-gather failed on ${failures.length} target(s), first ${describeTarget(first)}: ${
        first?.error instanceof Error ? first.error.message : String(first?.error)
      }`,
      { cause: first?.error },
    );
    this.results = results;
    this.failures = failures;
  }
}

/**
 * The ID generator's clock went back by more than `maxClockBackwards`, or had not caught up again
 * by then. Code `E_CLOCK_BACKWARDS`. Nothing was minted: minting now could repeat an ID.
 */
export class ClockBackwardsError extends ButtressError {
  /** The last millisecond an ID was minted in (ms since the Unix epoch). */
  readonly lastMs: number;
  /** What the clock said (ms since the Unix epoch). */
  readonly nowMs: number;

  constructor(lastMs: number, nowMs: number) {
    super(
      'E_CLOCK_BACKWARDS',
      `The clock went back by ${lastMs - nowMs}ms (last ID at ${lastMs}, now ${nowMs})`,
    );
    this.lastMs = lastMs;
    this.nowMs = nowMs;
  }
}

function describeTarget(t: ScatterTarget | undefined): string {
  if (t === undefined) return '(none)';
  return t.logical === undefined ? `node "${t.node}"` : `logical shard ${t.logical} on node "${t.node}"`;
}

/** True for {@link StaleShardMapError}. */
export const isStaleShardMapError = (e: unknown): e is StaleShardMapError => e instanceof StaleShardMapError;
/** True for {@link ShardMapConflictError}. */
export const isShardMapConflictError = (e: unknown): e is ShardMapConflictError =>
  e instanceof ShardMapConflictError;
/** True for {@link ShardMapUnavailableError}. */
export const isShardMapUnavailableError = (e: unknown): e is ShardMapUnavailableError =>
  e instanceof ShardMapUnavailableError;
/** True for {@link ShardMoveError}. */
export const isShardMoveError = (e: unknown): e is ShardMoveError => e instanceof ShardMoveError;
/** True for {@link ScatterError}. */
export const isScatterError = (e: unknown): e is ScatterError => e instanceof ScatterError;
/** True for {@link ClockBackwardsError}. */
export const isClockBackwardsError = (e: unknown): e is ClockBackwardsError =>
  e instanceof ClockBackwardsError;
