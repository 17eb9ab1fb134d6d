import { InvalidOptionError } from '../core/errors.js';
import { knownKeys, oneOf, optionsObject } from '../core/validate.js';
import { jumpWords } from './hash/jump.js';
import {
  hashHigh,
  hashKeyInto,
  hashLow,
  MAX_MODULUS,
  mod64,
  type ShardKey,
  seedWords,
} from './hash/xxh64.js';

/**
 * How the shard router turns a key into a logical shard. The built-in one is {@link xxh64Hasher};
 * implement this to place keys some other way (a legacy hash you must stay compatible with).
 * `logical` runs on every routed call: it should be pure, deterministic across processes and
 * versions, and allocate nothing.
 */
export interface ShardHasher {
  /** Names the function, for `stats()` and error messages: `'xxh64/mod'`. */
  readonly name: string;
  /**
   * The logical shard of `key`, an integer in `[0, logicalShards)`.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a key it cannot hash.
   */
  logical(key: ShardKey, logicalShards: number): number;
}

/** Options of {@link xxh64Hasher}. */
export interface Xxh64HasherOptions {
  /** XXH64's seed. Changing it moves every key: pick it once, with the data. @default 0 */
  seed?: number | bigint;
  /**
   * From the 64-bit hash to a logical shard: `'modulo'` (hash mod logicalShards, what the SQL
   * functions compute by default) or `'jump'` (jump consistent hash of the hash: lets you raise
   * `logicalShards` later moving only about 1 - old/new of the keys).
   * @default 'modulo'
   */
  placement?: 'modulo' | 'jump';
}

/** The default hasher's settings, as {@link xxh64Hasher} resolved them. */
export interface Xxh64Hasher extends ShardHasher {
  readonly seed: bigint;
  readonly placement: 'modulo' | 'jump';
}

/**
 * The shard router's default hasher: the logical shard of a key is `XXH64(bytes(key), seed) mod
 * logicalShards` (or, with `placement: 'jump'`, the jump consistent hash of that 64-bit value).
 * How each kind of key becomes bytes is documented in docs/shard-router.md ("The hash"), and
 * `shardRouterSql()` computes the same in PostgreSQL.
 *
 * @example
 * const router = createShardRouter({ logicalShards: 4096, map, nodes, hash: xxh64Hasher({ seed: 7 }) });
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad seed or placement.
 */
export function xxh64Hasher(options?: Xxh64HasherOptions): Xxh64Hasher {
  const opts = optionsObject(options);
  knownKeys(opts, ['seed', 'placement']);
  const [sh, sl] = seedWords(opts.seed);
  const placement = oneOf(opts.placement, 'placement', ['modulo', 'jump'], 'modulo');
  const seed = (BigInt(sh >>> 0) << 32n) | BigInt(sl >>> 0);
  // 2^32 mod n for the last n seen: a router asks with one n, so this is computed once.
  let lastN = 0;
  let two32ModN = 0;
  const logical =
    placement === 'modulo'
      ? (key: ShardKey, n: number): number => {
          hashKeyInto(key, sh, sl);
          if (n !== lastN) {
            checkShards(n);
            lastN = n;
            two32ModN = 4294967296 % n;
          }
          return mod64(hashHigh(), hashLow(), n, two32ModN);
        }
      : (key: ShardKey, n: number): number => {
          hashKeyInto(key, sh, sl);
          if (n !== lastN) {
            checkShards(n);
            lastN = n;
          }
          return jumpWords(hashHigh(), hashLow(), n);
        };
  return Object.freeze({
    name: `xxh64${seed === 0n ? '' : `(seed=${seed})`}/${placement === 'modulo' ? 'mod' : 'jump'}`,
    seed,
    placement,
    logical,
  });
}

function checkShards(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_MODULUS) {
    throw new InvalidOptionError('logicalShards', n, `an integer between 1 and ${MAX_MODULUS}`);
  }
}

/** The hasher every router uses unless told otherwise: seed 0, modulo placement. */
export const defaultHasher: Xxh64Hasher = xxh64Hasher();

/**
 * The logical shard of `key` under the default hash: `XXH64(bytes(key)) mod logicalShards`, the
 * same as `router.shardFor(key).logical` for a router with the default hasher.
 *
 * @example logicalShardOf('user:42', 4096) // an integer in [0, 4096)
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad key or `logicalShards`.
 */
export function logicalShardOf(key: ShardKey, logicalShards: number): number {
  checkShards(logicalShards);
  return defaultHasher.logical(key, logicalShards);
}
