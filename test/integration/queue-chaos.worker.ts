// A worker process for queue-chaos.int.test.ts (run with tsx, not collected by vitest). It runs
// the queue's jobs with an idempotent side effect in PostgreSQL and records each start, with
// this process's pid, in its own file through unbuffered writes, which survive SIGKILL.
//
// env: CHAOS_QUEUE, CHAOS_PREFIX, CHAOS_TABLE, CHAOS_STARTS (file path), REDIS_PORT
import { closeSync, openSync, writeSync } from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createQueue, redisBackend } from '../../src/queue/index.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

const table = env('CHAOS_TABLE');
if (!/^[a-z0-9_]+$/.test(table)) throw new Error('bad table name');
const starts = openSync(env('CHAOS_STARTS'), 'a');
const redis = new Redis({ port: Number(env('REDIS_PORT')), host: '127.0.0.1' });
redis.on('error', () => {});
const db = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', max: 8 });
const queue = createQueue<number>(env('CHAOS_QUEUE'), {
  backend: redisBackend(redis, { prefix: env('CHAOS_PREFIX') }),
});

const worker = queue.process(
  async (job) => {
    writeSync(starts, `${job.id} ${process.pid} ${job.attempt} ${job.stalls}\n`);
    // Slow enough that a kill always finds jobs in flight.
    await new Promise((resolve) => setTimeout(resolve, 30));
    await db.query(`INSERT INTO ${table} (job_id) VALUES ($1) ON CONFLICT DO NOTHING`, [job.id]);
  },
  { concurrency: 10, lockDuration: 1500, maxStalls: 10 },
);
await worker.ready();
process.stdout.write('ready\n');

process.on('SIGTERM', async () => {
  await queue.close({ timeout: 2000 });
  await db.end();
  closeSync(starts);
  redis.disconnect();
  process.exit(0);
});
