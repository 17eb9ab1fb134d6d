// buttress/pool: a PostgreSQL primary and its read replicas on pg-pool, with read-your-writes.
export { classifySql, type SqlClassification, type SqlKind } from './classify.js';
export {
  createPgCluster,
  type EjectReason,
  type IsolationLevel,
  type PgClientErrorEvent,
  PgCluster,
  type PgClusterOptions,
  type PgClusterStats,
  type PgConnectOptions,
  type PgEjectEvent,
  type PgNodeConfig,
  type PgNodeStats,
  type PgPoolConstructor,
  type PgQueryOptions,
  type PgReadmitEvent,
  type PgTransaction,
  type PgTransactionOptions,
  type ReadYourWrites,
  type Route,
} from './cluster.js';
export {
  isPgBouncerUnsupportedError,
  isPgConnectionError,
  isPgQueryError,
  isPoolFullError,
  isPoolTimeoutError,
  PgBouncerUnsupportedError,
  PgConnectionError,
  type PgErrorFields,
  PgQueryError,
  PoolFullError,
  PoolTimeoutError,
  type SessionFeature,
} from './errors.js';
export {
  type ConsistencyPosition,
  PgSession,
  type PgSessionQueryOptions,
  type PgSessionTransactionOptions,
} from './session.js';
