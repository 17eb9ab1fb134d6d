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
    const tables = async () =>
      Number(
        (await client.query("SELECT count(*) AS n FROM pg_tables WHERE tablename LIKE 'flash\\_sale\\_%'"))
          .rows[0].n,
      );
    const keys = async () => {
      const found: string[] = [];
      for await (const batch of redis.scanStream({ match: '*flash-sale-*', count: 1000 })) {
        found.push(...(batch as string[]));
      }
      return found;
    };
    try {
      const tablesBefore = await tables();
      const keysBefore = (await keys()).length;
      let during: { tables: number; keys: string[] } | undefined;
      let probe: Promise<void> | undefined;
      const run = await runScenario(
        'protected',
        quickSurge,
        { databaseUrl: DATABASE_URL, redisUrl: REDIS_URL },
        {
          onListening: () => {
            probe = new Promise<void>((resolve) => setTimeout(resolve, quickSurge.surge.from + 1_000)).then(
              async () => {
                during = { tables: await tables(), keys: await keys() };
              },
            );
          },
        },
      );
      await probe;
      const s = summarize(run);

      expect(run.db.kind).toBe('postgresql');
      expect(during!.tables).toBe(tablesBefore + 1);
      // Cache entries and the email queue's keys lived in Redis during the run.
      expect(during!.keys.some((k) => k.includes(':v:product:'))).toBe(true);
      expect(during!.keys.some((k) => k.includes(':emails-'))).toBe(true);
      // The same properties as on embedded defaults.
      expect(s.dbReads).toBeGreaterThan(0);
      expect(s.dbReads * 10).toBeLessThan(s.requests);
      expect(s.shed).toBeGreaterThan(0);
      expect(run.details.breakerOpened).toBeGreaterThanOrEqual(1);
      expect(s.ordersPaid).toBeGreaterThan(0);
      expect(run.emails.sent).toBe(s.ordersPaid);
      // Nothing left behind.
      expect(await tables()).toBe(tablesBefore);
      expect((await keys()).length).toBe(keysBefore);
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup();
    }
  }, 40_000);
});
