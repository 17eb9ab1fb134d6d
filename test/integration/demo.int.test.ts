/**
 * The flash-sale demo with DATABASE_URL and REDIS_URL set: product reads and sales on the real
 * PostgreSQL (a table of its own, dropped afterwards), the cache's L2 and the email queue on the
 * real Redis (keys under a random namespace, deleted afterwards). Fails when a server is missing.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { summarize } from '../../examples/flash-sale/report.js';
import { runScenario } from '../../examples/flash-sale/scenario.js';
import { quickSurge } from '../../examples/flash-sale/surge.js';
import { type Cleanup, connectRedis } from './cache-helpers.js';

const DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = 'redis://127.0.0.1:6379';

describe('flash-sale demo on PostgreSQL and Redis', () => {
  it('runs the protected store on them and leaves nothing behind', async () => {
    const cleanups: Cleanup[] = [];
    const redis = await connectRedis(cleanups);
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    cleanups.push(() => client.end());
    // Only this run's own table and keys: other runs may share these servers at the same moment.
    const tableExists = async (table: string) =>
      (await client.query('SELECT 1 FROM pg_tables WHERE tablename = $1', [table])).rowCount === 1;
    const keys = async (namespace: string) => {
      const found: string[] = [];
      for await (const batch of redis.scanStream({ match: `*${namespace}*`, count: 1000 })) {
        found.push(...(batch as string[]));
      }
      return found;
    };
    try {
      let names: { table: string; namespace: string } | undefined;
      let during: Promise<{ table: boolean; keys: string[] }> | undefined;
      let after: string[] = [];
      const run = await runScenario(
        'protected',
        quickSurge,
        { databaseUrl: DATABASE_URL, redisUrl: REDIS_URL },
        {
          onListening: (_url, store, db) => {
            names = { table: db.table!, namespace: store.namespace! };
            const { table, namespace } = names;
            during = new Promise((resolve) => setTimeout(resolve, quickSurge.surge.from + 1_000)).then(
              async () => ({ table: await tableExists(table), keys: await keys(namespace) }),
            );
          },
          // The queues' keys (counters, retention) are there once jobs have run.
          beforeClose: async (store) => {
            after = await keys(store.namespace!);
          },
        },
      );
      const seen = await during!;
      const s = summarize(run);

      expect(run.db.kind).toBe('postgresql');
      expect(names!.table).toMatch(/^flash_sale_[a-z0-9]+$/);
      expect(seen.table).toBe(true);
      // Cache entries and the email queue's keys lived in Redis.
      expect(seen.keys.some((k) => k.includes(':v:product:'))).toBe(true);
      expect(after.some((k) => k.includes(':emails-'))).toBe(true);
      // The same properties as on embedded defaults.
      expect(s.dbReads).toBeGreaterThan(0);
      expect(s.dbReads * 10).toBeLessThan(s.requests);
      expect(s.shed).toBeGreaterThan(0);
      expect(run.details.breakerOpened).toBeGreaterThanOrEqual(1);
      expect(s.ordersPaid).toBeGreaterThan(0);
      expect(run.emails.sent).toBe(s.ordersPaid);
      expect(run.payments.charged).toBe(s.ordersPaid);
      // Nothing left behind.
      expect(await tableExists(names!.table)).toBe(false);
      expect(await keys(names!.namespace)).toEqual([]);
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup();
    }
  }, 40_000);
});
