import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgShardMapStore, redisShardMapStore } from '../../src/shard-router/index.js';
import { shardMapStoreConformance } from '../../src/testing/index.js';
import { adminQuery, PRIMARY, uniqueName } from './pool-helpers.js';

// The built-in shard map stores against the shared PostgreSQL and Redis: every table and key
// carries a random suffix and is removed afterwards; nothing skips when a server is missing.

const table = uniqueName('sr_store');
const pool = new pg.Pool({
  ...PRIMARY,
  database: 'shard_0',
  max: 6,
  application_name: uniqueName('sr_store'),
});
pool.on('error', () => {});
const namespace = uniqueName('srs');
const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });

beforeAll(async () => {
  await redis.connect();
});

afterAll(async () => {
  await pool.end();
  await adminQuery({ ...PRIMARY, database: 'shard_0' }, `DROP TABLE IF EXISTS ${table}`);
  redis.disconnect();
});

shardMapStoreConformance('postgres', (name) => pgShardMapStore(pool, { table, name }), {
  describe,
  it,
  expect,
});

shardMapStoreConformance(
  'redis',
  (name) => redisShardMapStore(redis, { namespace, name }),
  { describe, it, expect },
  {
    cleanup: async (name) => {
      await redis.del(`{${namespace}:shard-map:${name}}:map`);
    },
  },
);
