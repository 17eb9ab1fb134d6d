import { throwIfAborted } from '../core/abort.js';
import type { Clock, Timer } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, ClosedError, InvalidOptionError } from '../core/errors.js';
import { clockOption, duration, integer, knownKeys, optionsObject } from '../core/validate.js';
import { ClockBackwardsError } from './errors.js';

/**
 * Shard-aware 64-bit IDs in Instagram's layout (their 2012 "Sharding & IDs at Instagram"): from
 * the most significant bit down,
 *
 *   | time: ms since `epoch` (41 bits) | logical shard (13 bits) | worker (0 bits) | sequence (10 bits) |
 *
 * so IDs sort by creation time, carry the logical shard of the data they name (an ID routes to
 * its node without a lookup), and up to 2^sequenceBits of them are minted per millisecond per
 * generator. Bit widths are options; the time field takes the bits left of 64.
 */

/** The default epoch of IDs: 2024-01-01T00:00:00Z. Fixed forever: IDs decode against it. */
export const DEFAULT_ID_EPOCH = 1_704_067_200_000;

/** Bit layout of an ID. */
export interface IdLayoutOptions {
  /**
   * Start of the ID clock, in ms since the Unix epoch: the time field counts from here. Pick it
   * once (shortly before your first ID) and never change it.
   * @default DEFAULT_ID_EPOCH (2024-01-01T00:00:00Z)
   */
  epoch?: number | Date;
  /** Bits of logical shard. @default 13 (8192 logical shards) */
  shardBits?: number;
  /**
   * Bits of worker id, between the shard and the sequence: give each process minting IDs for the
   * same logical shards its own `workerId`, or two of them minting in the same millisecond can
   * mint the same ID. @default 0
   */
  workerBits?: number;
  /** Bits of the per-millisecond sequence. @default 10 (1024 IDs per ms per generator) */
  sequenceBits?: number;
}

/** A resolved, validated ID layout. */
export interface IdLayout {
  readonly epoch: number;
  readonly timeBits: number;
  readonly shardBits: number;
  readonly workerBits: number;
  readonly sequenceBits: number;
}

/** The fields of an ID, from {@link decodeId}. */
export interface DecodedId {
  /** When it was minted, in ms since the Unix epoch. */
  readonly timestamp: number;
  /** The logical shard it carries. */
  readonly shard: number;
  /** The worker that minted it (0 without `workerBits`). */
  readonly worker: number;
  /** Its sequence number within its millisecond. */
  readonly sequence: number;
}

/** Options of {@link createIdGenerator}. */
export interface IdGeneratorOptions extends IdLayoutOptions {
  /** This generator's worker id, in `[0, 2^workerBits)`. @default 0 */
  workerId?: number;
  /**
   * How far the clock may go back (NTP stepping it, a VM resuming) before minting fails with
   * `E_CLOCK_BACKWARDS`: within this, `next()` waits for the clock to catch up again.
   * @default '50ms'
   */
  maxClockBackwards?: Duration;
  /** Time source. @default systemClock */
  clock?: Clock;
}

/** Options of {@link IdGenerator.next}. */
export interface NextIdOptions {
  /** Aborting a call that waits (sequence exhausted, clock behind) rejects it with `E_ABORTED`. */
  signal?: AbortSignal;
}

const LAYOUT_KEYS = ['epoch', 'shardBits', 'workerBits', 'sequenceBits'] as const;
const GENERATOR_KEYS = [...LAYOUT_KEYS, 'workerId', 'maxClockBackwards', 'clock'] as const;
const MIN_TIME_BITS = 32;
const U64 = (1n << 64n) - 1n;

/**
 * Validates a layout and fills in the defaults (Instagram's 41/13/10).
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad epoch or bit width, or fewer than 32
 *   bits left for the time field.
 */
export function idLayout(options?: IdLayoutOptions | IdLayout, option = 'options'): IdLayout {
  const opts = optionsObject(options as IdLayoutOptions, option);
  const prefix = option === 'options' ? '' : `${option}.`;
  const rawEpoch = opts.epoch instanceof Date ? opts.epoch.getTime() : opts.epoch;
  const epoch = integer(rawEpoch, `${prefix}epoch`, 0, 8_640_000_000_000_000, DEFAULT_ID_EPOCH);
  const shardBits = integer(opts.shardBits, `${prefix}shardBits`, 0, 24, 13);
  const workerBits = integer(opts.workerBits, `${prefix}workerBits`, 0, 24, 0);
  const sequenceBits = integer(opts.sequenceBits, `${prefix}sequenceBits`, 1, 24, 10);
  const timeBits = 64 - shardBits - workerBits - sequenceBits;
  if (timeBits < MIN_TIME_BITS) {
    throw new InvalidOptionError(
      `${prefix}sequenceBits`,
      sequenceBits,
      `shardBits + workerBits + sequenceBits at most ${64 - MIN_TIME_BITS}, leaving the time field ${MIN_TIME_BITS} bits or more`,
    );
  }
  return Object.freeze({ epoch, timeBits, shardBits, workerBits, sequenceBits });
}

const DEFAULT_LAYOUT = idLayout();

/**
 * Reads an ID back into its fields. Takes the bigint, its decimal string, a safe-integer number,
 * or a negative bigint as PostgreSQL's signed `bigint` holds IDs of 2^63 and above.
 *
 * @example
 * const { shard, timestamp } = decodeId('1838796108262178817');
 * @param layout the layout it was minted with. @default Instagram's, from DEFAULT_ID_EPOCH
 * @throws {InvalidOptionError} `E_INVALID_OPTION` (option `id`) for anything that is not a 64-bit ID.
 */
export function decodeId(id: bigint | string | number, layout?: IdLayoutOptions | IdLayout): DecodedId {
  const l = layout === undefined ? DEFAULT_LAYOUT : idLayout(layout, 'layout');
  const value = toU64(id);
  const seqShift = BigInt(l.sequenceBits);
  const workerShift = BigInt(l.sequenceBits + l.workerBits);
  const shardShift = BigInt(l.sequenceBits + l.workerBits + l.shardBits);
  return {
    timestamp: Number(value >> shardShift) + l.epoch,
    shard: Number((value >> workerShift) & ((1n << BigInt(l.shardBits)) - 1n)),
    worker: Number((value >> seqShift) & ((1n << BigInt(l.workerBits)) - 1n)),
    sequence: Number(value & ((1n << seqShift) - 1n)),
  };
}

/** The logical shard an ID carries: what routing by ID reads, without decoding the rest. */
export function shardOfId(id: bigint | string | number, layout: IdLayout = DEFAULT_LAYOUT): number {
  const value = toU64(id);
  return Number(
    (value >> BigInt(layout.sequenceBits + layout.workerBits)) & ((1n << BigInt(layout.shardBits)) - 1n),
  );
}

/** An ID as an unsigned 64-bit bigint. */
function toU64(id: bigint | string | number): bigint {
  let value: bigint;
  if (typeof id === 'bigint') value = id;
  else if (typeof id === 'string' && /^-?\d{1,20}$/.test(id)) value = BigInt(id);
  else if (typeof id === 'number' && Number.isSafeInteger(id)) value = BigInt(id);
  else throw new InvalidOptionError('id', id, 'a 64-bit ID (bigint, decimal string or safe integer)');
  if (value < -(1n << 63n) || value > U64) {
    throw new InvalidOptionError('id', id, 'a 64-bit ID (in [-2^63, 2^64))');
  }
  return BigInt.asUintN(64, value);
}

/** A waiting call of {@link IdGenerator.next}. */
interface Waiter {
  readonly shard: number;
  readonly resolve: (id: bigint) => void;
  readonly reject: (error: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: (() => void) | undefined;
}

/**
 * Creates a generator of shard-aware 64-bit IDs (see {@link IdLayoutOptions} for the layout).
 *
 * - IDs of one generator for the same logical shard are strictly increasing; across shards they
 *   are ordered by millisecond (the shard field sits above the sequence).
 * - When the sequence of a millisecond runs out, `next()` waits for the next millisecond.
 * - When the clock goes back (NTP, a VM pause), `next()` waits for it to catch up if that is at
 *   most `maxClockBackwards` away, and otherwise fails with `E_CLOCK_BACKWARDS`: an ID minted in
 *   a millisecond already used could repeat one.
 * - Calls are served in order: a call made while an earlier one waits waits behind it.
 *
 * @example
 * import { createIdGenerator, createShardRouter } from 'buttress/shard-router';
 *
 * const ids = createIdGenerator({ epoch: Date.UTC(2024, 0, 1) });
 * declare const router: ReturnType<typeof createShardRouter>;
 * // A user's posts carry the user's logical shard, so a post ID routes to the user's node.
 * const postId = await ids.next(router.shardFor('user:42').logical);
 * router.shardForId(postId); // same location as shardFor('user:42')
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid layout, `workerId`,
 *   `maxClockBackwards` or `clock`.
 */
export function createIdGenerator(options?: IdGeneratorOptions): IdGenerator {
  return new IdGenerator(options);
}

/** See {@link createIdGenerator}. */
export class IdGenerator {
  /** The layout IDs are minted in. */
  readonly layout: IdLayout;
  readonly #clock: Clock;
  readonly #maxBackwards: number;
  readonly #worker: bigint;
  readonly #maxShard: number;
  readonly #maxSequence: number;
  readonly #maxElapsed: number;
  readonly #timeShift: bigint;
  readonly #shardShift: bigint;
  /** The millisecond (since the Unix epoch) of the last ID minted, and its sequence. */
  #lastMs = Number.NEGATIVE_INFINITY;
  #sequence = 0;
  readonly #waiters: Waiter[] = [];
  #timer: Timer | undefined;
  #closed = false;

  constructor(options?: IdGeneratorOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, GENERATOR_KEYS);
    const layoutOptions: IdLayoutOptions = {};
    for (const key of LAYOUT_KEYS)
      if (opts[key] !== undefined) (layoutOptions as Record<string, unknown>)[key] = opts[key];
    this.layout = idLayout(layoutOptions);
    const { shardBits, workerBits, sequenceBits, timeBits } = this.layout;
    this.#worker = BigInt(integer(opts.workerId, 'workerId', 0, 2 ** workerBits - 1, 0));
    this.#maxBackwards = duration(opts.maxClockBackwards, 'maxClockBackwards', 50);
    this.#clock = clockOption(opts.clock);
    this.#maxShard = 2 ** shardBits - 1;
    this.#maxSequence = 2 ** sequenceBits - 1;
    this.#maxElapsed = 2 ** timeBits - 1;
    this.#shardShift = BigInt(workerBits + sequenceBits);
    this.#timeShift = BigInt(shardBits + workerBits + sequenceBits);
    this.#worker <<= BigInt(sequenceBits);
  }

  /**
   * Mints the next ID for logical shard `shard`. Resolves at once unless this millisecond's
   * sequence is used up or the clock went back (see {@link createIdGenerator}).
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a shard outside `[0, 2^shardBits)`.
   * @throws {ClockBackwardsError} `E_CLOCK_BACKWARDS` when the clock is further behind than `maxClockBackwards`.
   * @throws {AbortedError} `E_ABORTED` when `signal` aborts while the call waits.
   * @throws {ClosedError} `E_CLOSED` after {@link IdGenerator.close}.
   */
  next(shard: number, options?: NextIdOptions): Promise<bigint> {
    try {
      if (this.#closed) throw new ClosedError('IdGenerator');
      if (!Number.isInteger(shard) || shard < 0 || shard > this.#maxShard) {
        throw new InvalidOptionError('shard', shard, `a logical shard in [0, ${this.#maxShard}]`);
      }
      const signal = options?.signal;
      throwIfAborted(signal);
      if (this.#waiters.length === 0) {
        const id = this.#tryMint(shard);
        if (id !== undefined) return Promise.resolve(id);
      }
      return new Promise<bigint>((resolve, reject) => {
        const onAbort =
          signal === undefined
            ? undefined
            : () => {
                const i = this.#waiters.indexOf(waiter);
                if (i !== -1) this.#waiters.splice(i, 1);
                reject(new AbortedError(signal.reason));
              };
        const waiter: Waiter = { shard, resolve, reject, signal, onAbort };
        if (onAbort !== undefined) signal!.addEventListener('abort', onAbort, { once: true });
        this.#waiters.push(waiter);
        this.#schedule();
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** {@link IdGenerator.next} as a decimal string (for JSON and JavaScript clients, where 64 bits do not fit a number). */
  async nextString(shard: number, options?: NextIdOptions): Promise<string> {
    return (await this.next(shard, options)).toString();
  }

  /** The fields of an ID minted with this generator's layout. */
  decode(id: bigint | string | number): DecodedId {
    return decodeId(id, this.layout);
  }

  /**
   * Stops the generator: waiting calls reject with `E_CLOSED`, later ones too, and no timer of
   * its own stays scheduled.
   */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters.splice(0)) this.#settle(w, undefined, new ClosedError('IdGenerator'));
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Mints an ID now if the clock allows: undefined when it must wait (sequence exhausted in this
   * millisecond, or the clock behind the last ID by at most the tolerance).
   * @throws {ClockBackwardsError} when the clock is behind by more than the tolerance.
   */
  #tryMint(shard: number): bigint | undefined {
    const now = Math.floor(this.#clock.now());
    if (now < this.#lastMs) {
      if (this.#lastMs - now > this.#maxBackwards) throw new ClockBackwardsError(this.#lastMs, now);
      return undefined;
    }
    if (now === this.#lastMs) {
      if (this.#sequence >= this.#maxSequence) return undefined;
      this.#sequence++;
    } else {
      this.#lastMs = now;
      this.#sequence = 0;
    }
    const elapsed = now - this.layout.epoch;
    if (elapsed < 0 || elapsed > this.#maxElapsed) {
      throw new InvalidOptionError(
        'epoch',
        this.layout.epoch,
        `an epoch at most ${this.#maxElapsed}ms (2^${this.layout.timeBits} - 1) before now and not after it`,
      );
    }
    return (
      (BigInt(elapsed) << this.#timeShift) |
      (BigInt(shard) << this.#shardShift) |
      this.#worker |
      BigInt(this.#sequence)
    );
  }

  /** Waits until the clock may have moved past the reason the first waiter waits for. */
  #schedule(): void {
    if (this.#timer !== undefined || this.#waiters.length === 0) return;
    const now = Math.floor(this.#clock.now());
    // Behind: wait out the gap; same millisecond with the sequence used up: the next one.
    const wait = now < this.#lastMs ? this.#lastMs - now : 1;
    this.#timer = this.#clock.setTimeout(this.#drain, wait);
  }

  readonly #drain = (): void => {
    this.#timer = undefined;
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0]!;
      let id: bigint | undefined;
      try {
        id = this.#tryMint(w.shard);
      } catch (error) {
        this.#waiters.shift();
        this.#settle(w, undefined, error);
        continue;
      }
      if (id === undefined) break;
      this.#waiters.shift();
      this.#settle(w, id, undefined);
    }
    this.#schedule();
  };

  #settle(w: Waiter, id: bigint | undefined, error: unknown): void {
    if (w.onAbort !== undefined) w.signal!.removeEventListener('abort', w.onAbort);
    if (error === undefined) w.resolve(id!);
    else w.reject(error);
  }
}

/** Options of {@link idGeneratorSql}. */
export interface IdGeneratorSqlOptions extends IdLayoutOptions {
  /** Name of the minting function (schema-qualified if you like). @default 'buttress_next_id' */
  functionName?: string;
  /** Name of the sequence it draws sequence numbers from. @default functionName + '_seq' */
  sequenceName?: string;
  /** The worker id the database mints as (keep it apart from your processes' ids). @default 0 */
  workerId?: number;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/**
 * The PL/pgSQL equivalent of {@link createIdGenerator}, as SQL text to run once per database:
 * a sequence and `functionName(shard integer) RETURNS bigint`, minting IDs of the same layout
 * from `clock_timestamp()`, plus `functionName_shard(id bigint) RETURNS integer` reading the
 * shard back. Use it as a column default:
 * `id bigint PRIMARY KEY DEFAULT buttress_next_id(42)`, or pass the shard of the row's key.
 *
 * As in Instagram's original, the sequence is a database sequence taken modulo
 * 2^sequenceBits: IDs are unique while one database mints fewer than that many per millisecond
 * for a shard. The database's IDs and a process's generator must not share a worker id.
 *
 * IDs at or above 2^63 (after 2^(timeBits - 1) ms, ~34.8 years with the default layout) come
 * back negative in PostgreSQL's signed `bigint`; {@link decodeId} reads them either way.
 *
 * @example
 * import { idGeneratorSql } from 'buttress/shard-router';
 * declare const pool: import('pg').Pool;
 * await pool.query(idGeneratorSql({ epoch: Date.UTC(2024, 0, 1) }));
 * const { rows } = await pool.query('SELECT buttress_next_id($1) AS id', [7]);
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad layout, name or worker id.
 */
export function idGeneratorSql(options?: IdGeneratorSqlOptions): string {
  const opts = optionsObject(options);
  knownKeys(opts, [...LAYOUT_KEYS, 'functionName', 'sequenceName', 'workerId']);
  const layoutOptions: IdLayoutOptions = {};
  for (const key of LAYOUT_KEYS)
    if (opts[key] !== undefined) (layoutOptions as Record<string, unknown>)[key] = opts[key];
  const l = idLayout(layoutOptions);
  const fn = opts.functionName ?? 'buttress_next_id';
  if (typeof fn !== 'string' || !IDENT.test(fn)) {
    throw new InvalidOptionError(
      'functionName',
      fn,
      'a lowercase SQL identifier, optionally schema-qualified',
    );
  }
  const seq = opts.sequenceName ?? `${fn}_seq`;
  if (typeof seq !== 'string' || !IDENT.test(seq)) {
    throw new InvalidOptionError(
      'sequenceName',
      seq,
      'a lowercase SQL identifier, optionally schema-qualified',
    );
  }
  const worker = integer(opts.workerId, 'workerId', 0, 2 ** l.workerBits - 1, 0);
  const shardShift = l.workerBits + l.sequenceBits;
  const timeShift = l.shardBits + shardShift;
  const maxShard = 2 ** l.shardBits - 1;
  const maxElapsed = (1n << BigInt(l.timeBits)) - 1n;
  const sequenceModulus = 2 ** l.sequenceBits;
  const workerPart = BigInt(worker) << BigInt(l.sequenceBits);
  // Shifting a bigint in PostgreSQL wraps silently past bit 63, as the unsigned layout wants.
  return `CREATE SEQUENCE IF NOT EXISTS ${seq};

CREATE OR REPLACE FUNCTION ${fn}(shard integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $fn$
DECLARE
  elapsed bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - ${l.epoch};
  seq bigint := nextval('${seq}') % ${sequenceModulus};
BEGIN
  IF shard IS NULL OR shard < 0 OR shard > ${maxShard} THEN
    RAISE EXCEPTION 'shard % is outside [0, ${maxShard}]', shard USING ERRCODE = '22003';
  END IF;
  IF elapsed < 0 OR elapsed > ${maxElapsed} THEN
    RAISE EXCEPTION 'the clock is outside the ID epoch''s range' USING ERRCODE = '22008';
  END IF;
  RETURN (elapsed << ${timeShift}) | (shard::bigint << ${shardShift}) | ${workerPart} | seq;
END
$fn$;

CREATE OR REPLACE FUNCTION ${fn}_shard(id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
  SELECT ((id >> ${shardShift}) & ${maxShard})::integer
$fn$;
`;
}
