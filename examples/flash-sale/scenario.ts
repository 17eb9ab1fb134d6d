/**
 * One run: a fresh world (database, payment provider, mailer), one of the two stores listening
 * on loopback, the surge, then what every side counted.
 */
import type { AddressInfo } from 'node:net';
import { protectedStore } from './protected.js';
import type { Store, StoreCounters, StoreServices } from './store.js';
import { type SurgeProfile, type SurgeResult, surge } from './surge.js';
import { unprotectedStore } from './unprotected.js';
import {
  catalogue,
  type Database,
  Mailer,
  PaymentService,
  PostgresDatabase,
  SimulatedDatabase,
} from './world.js';

export type Variant = 'unprotected' | 'protected';

export interface Environment {
  /** The real PostgreSQL instead of the simulated database. */
  databaseUrl?: string | undefined;
  /** The real Redis: cache L2 and the email queue's backend. */
  redisUrl?: string | undefined;
}

export interface RunResult {
  variant: Variant;
  profile: SurgeProfile;
  load: SurgeResult;
  counters: StoreCounters;
  db: { kind: Database['kind']; reads: number; writes: number };
  payments: { calls: number; failures: number; callsWhileDown: number; charged: number; downMs: number };
  emails: { sent: number; calls: number };
  /** Facts about the protection (protected run only). */
  details: Record<string, number>;
  /** Time the store took after the surge to send what it still had queued, ms. */
  settleMs: number;
}

/** The longest the demo waits after a surge for queued emails, ms. */
const SETTLE_MS = 10_000;

export async function runScenario(
  variant: Variant,
  profile: SurgeProfile,
  env: Environment = {},
  hooks: {
    onListening?: (url: string, store: Store, db: Database) => void;
    /** After the surge and the store's settling, before anything is closed. */
    beforeClose?: (store: Store, db: Database) => Promise<void>;
  } = {},
): Promise<RunResult> {
  const products = catalogue(profile.products);
  const db: Database =
    env.databaseUrl === undefined
      ? new SimulatedDatabase(products)
      : await PostgresDatabase.open(env.databaseUrl, products);
  let redis: StoreServices['redis'];
  let store: Store | undefined;
  try {
    if (env.redisUrl !== undefined && variant === 'protected') {
      const { Redis } = await import('ioredis');
      redis = new Redis(env.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
    }
    const mailer = new Mailer();
    const payments = new PaymentService({ brownout: profile.brownout });
    const services: StoreServices = { db, payments, mailer, ...(redis === undefined ? {} : { redis }) };
    store = variant === 'protected' ? protectedStore(services) : unprotectedStore(services);
    await store.app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(store.app.server.address() as AddressInfo).port}`;
    hooks.onListening?.(url, store, db);
    // The provider's brownout is scheduled from the surge's start.
    payments.begin();
    const load = await surge(url, profile);
    const settleStart = performance.now();
    await store.settle(SETTLE_MS);
    const settleMs = performance.now() - settleStart;
    await hooks.beforeClose?.(store, db);
    return {
      variant,
      profile,
      load,
      counters: { ...store.counters },
      db: { kind: db.kind, reads: db.reads, writes: db.writes },
      payments: {
        calls: payments.calls,
        failures: payments.failures,
        callsWhileDown: payments.callsWhileDown,
        charged: payments.charged.size,
        downMs: payments.downMs,
      },
      emails: { sent: mailer.delivered.size, calls: mailer.calls },
      details: store.details(),
      settleMs,
    };
  } finally {
    await store?.close();
    await db.close();
    redis?.disconnect();
  }
}
