// buttress/shard-router: key -> logical shard -> versioned shard map -> node; shard-aware IDs;
// scatter-gather; online moves of a logical shard with fenced writes.
export {
  ClockBackwardsError,
  type FenceState,
  isClockBackwardsError,
  isScatterError,
  isShardMapConflictError,
  isShardMapUnavailableError,
  isShardMoveError,
  isStaleShardMapError,
  type MovePhase,
  ScatterError,
  type ScatterFailure,
  type ScatterSuccess,
  type ScatterTarget,
  ShardMapConflictError,
  ShardMapUnavailableError,
  ShardMoveError,
  StaleShardMapError,
} from './errors.js';
export { defaultSqlConnect, type SqlClient, type SqlConnect } from './fence.js';
export { jumpHash } from './hash/jump.js';
export {
  createKetamaRing,
  KetamaRing,
  type KetamaRingOptions,
  type KetamaServer,
  type KetamaServers,
} from './hash/ketama.js';
export { createRendezvous, Rendezvous, type RendezvousOptions, rendezvous } from './hash/rendezvous.js';
export { type ShardKey, xxh64 } from './hash/xxh64.js';
export {
  defaultHasher,
  logicalShardOf,
  type ShardHasher,
  type Xxh64Hasher,
  type Xxh64HasherOptions,
  xxh64Hasher,
} from './hasher.js';
export {
  createIdGenerator,
  DEFAULT_ID_EPOCH,
  type DecodedId,
  decodeId,
  IdGenerator,
  type IdGeneratorOptions,
  type IdGeneratorSqlOptions,
  type IdLayout,
  type IdLayoutOptions,
  idGeneratorSql,
  idLayout,
  type NextIdOptions,
  shardOfId,
} from './ids.js';
export type { CopyContext, CopyFunction, CopyPhase, MoveOptions, MoveResult, ShardCopier } from './move.js';
export { type PgCopyTable, type PgTableCopierOptions, pgTableCopier } from './pg-copy.js';
export {
  createShardRouter,
  type MapChangeEvent,
  type RunContext,
  type RunOptions,
  type ShardIsolationLevel,
  type ShardLocation,
  ShardRouter,
  type ShardRouterOptions,
  type ShardRouterStats,
  type ShardTarget,
  type StaleEvent,
  type TransactionContext,
  type TransactionOptions,
} from './router.js';
export type { ScatterContext, ScatterOptions, ScatterResult } from './scatter.js';
export {
  evenShardMap,
  MAX_LOGICAL_SHARDS,
  ShardMap,
  type ShardMapSpec,
  type ShardSet,
  shardMap,
} from './shard-map.js';
export { type ShardRouterSqlOptions, shardRouterSql } from './sql.js';
export { MemoryShardMapStore, memoryShardMapStore } from './stores/memory.js';
export {
  PgShardMapStore,
  type PgShardMapStoreOptions,
  type PgStorePool,
  pgShardMapStore,
} from './stores/postgres.js';
export { RedisShardMapStore, type RedisShardMapStoreOptions, redisShardMapStore } from './stores/redis.js';
export type { ShardMapStore } from './stores/store.js';
