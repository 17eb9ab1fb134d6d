import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisBackend, redisQueueKeys } from '../../src/queue/index.js';
import { queueBackendConformance } from '../../src/testing/queue-conformance.js';
import { type Cleanup, connectCluster, connectRedis } from './cache-helpers.js';

// The queue backend conformance suite on the shared Redis (6379) and on the Redis Cluster
// (7000-7002, `bash scripts/services.sh --cluster`). Connections fail the run when a server is
// down: nothing here skips. Every test uses fresh queue names and deletes their keys after.

const PREFIX = 'qconf';

function suite(label: string, connect: (cleanups: Cleanup[]) => Promise<Redis | Cluster>) {
  const cleanups: Cleanup[] = [];
  let redis: Redis | Cluster;
  beforeAll(async () => {
    redis = await connect(cleanups);
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  queueBackendConformance(
    label,
    () => redisBackend(redis, { prefix: PREFIX }),
    { describe, it, expect },
    {
      async cleanup(names) {
        // Every key of a queue shares one hash tag: one DEL per queue, on one slot.
        for (const name of names) await redis.del(...redisQueueKeys(name, PREFIX));
      },
    },
  );
}

describe('redis', () => suite('redis', (c) => connectRedis(c)));
describe('redis cluster', () => suite('redis cluster', (c) => connectCluster(c)));
