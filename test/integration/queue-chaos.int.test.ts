import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createQueue, redisBackend, redisQueueKeys } from '../../src/queue/index.js';
import { type Cleanup, connectRedis, REDIS } from './cache-helpers.js';

// Chaos with real processes: three worker processes (queue-chaos.worker.ts under tsx) on the
// shared Redis, one of them killed with SIGKILL twice during the run. At-least-once means: every
// job completes, none is lost, a job runs twice only when a killed process held its lease, and the
// handler's idempotent side effect (a row per job in PostgreSQL) counts exactly one per job.

const root = new URL('../..', import.meta.url).pathname;
// `node --import tsx`, not node_modules/.bin/tsx: the wrapper runs the script in a child process
// of its own, which a SIGKILL of the wrapper would leave running.
const tsxLoader = join(root, 'node_modules/tsx/dist/loader.mjs');
const script = join(root, 'test/integration/queue-chaos.worker.ts');
const TOTAL = 10_000;

const cleanups: Cleanup[] = [];
const children = new Set<ChildProcess>();
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const c of cleanups.reverse()) await c();
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(
  condition: () => Promise<boolean> | boolean,
  what: string,
  timeout: number,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await sleep(50);
  }
}

describe('queue chaos: worker processes killed with SIGKILL', () => {
  it(`${TOTAL} jobs, 3 worker processes, one killed twice: every job completes exactly once in PostgreSQL`, async () => {
    const run = randomBytes(4).toString('hex');
    const name = `chaos-${run}`;
    const prefix = 'qchaos';
    const table = `queue_chaos_${run}`;
    const dir = mkdtempSync(join(tmpdir(), 'buttress-chaos-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

    const db = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', max: 2 });
    cleanups.push(() => db.end());
    await db.query(`CREATE TABLE ${table} (job_id text PRIMARY KEY)`);
    cleanups.push(() => db.query(`DROP TABLE IF EXISTS ${table}`));

    const redis = await connectRedis(cleanups);
    cleanups.push(() => redis.del(...redisQueueKeys(name, prefix)));
    const queue = createQueue<number>(name, { backend: redisBackend(redis, { prefix }) });
    cleanups.push(() => queue.close());
    const added = await queue.addBulk(
      Array.from({ length: TOTAL }, (_, i) => ({ payload: i, options: { jobId: `job-${i}` } })),
    );
    expect(added.every((a) => !a.duplicate)).toBe(true);

    let spawned = 0;
    const killed = new Set<number>();
    const start = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, ['--import', `file://${tsxLoader}`, script], {
        cwd: root,
        env: {
          ...process.env,
          CHAOS_QUEUE: name,
          CHAOS_PREFIX: prefix,
          CHAOS_TABLE: table,
          CHAOS_STARTS: join(dir, `starts-${spawned++}.log`),
          REDIS_PORT: String(REDIS.port),
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.add(child);
      child.on('exit', () => children.delete(child));
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          if (d.toString().includes('ready')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`worker exited early with ${code}`)));
      });
      return child;
    };
    const rows = async () => Number((await db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    const startsOf = (pid: number) =>
      readdirSync(dir)
        .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
        .filter((l) => l.split(' ')[1] === String(pid)).length;
    const kill = async (child: ChildProcess) => {
      killed.add(child.pid!);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    };

    const workers = await Promise.all([start(), start(), start()]);
    await until(async () => (await rows()) >= 2000, '2000 rows', 60_000);
    await kill(workers[0]!);
    workers[0] = await start();
    await until(
      async () => startsOf(workers[0]!.pid!) >= 100 && (await rows()) >= 4000,
      'the respawned worker',
      60_000,
    );
    await kill(workers[0]!);
    workers[0] = await start();

    await until(async () => (await rows()) === TOTAL, `${TOTAL} rows`, 90_000);
    let stats = await queue.stats();
    await until(
      async () => {
        stats = await queue.stats();
        return stats.completed === TOTAL && stats.active === 0;
      },
      'every acknowledgement',
      30_000,
    );
    expect(stats).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: TOTAL });
    expect(await rows()).toBe(TOTAL);

    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(
      workers.map(
        (w) => new Promise((resolve) => (w.exitCode !== null ? resolve(null) : w.once('exit', resolve))),
      ),
    );

    // Every start, by job: a second run must be explained by a killed process's lease.
    const byJob = new Map<string, { pid: number; stalls: number }[]>();
    for (const f of readdirSync(dir)) {
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        if (line === '') continue;
        const [id, pid, , stalls] = line.split(' ');
        let list = byJob.get(id!);
        if (list === undefined) byJob.set(id!, (list = []));
        list.push({ pid: Number(pid), stalls: Number(stalls) });
      }
    }
    expect(byJob.size).toBe(TOTAL);
    // No job fails here, so runs of a job differ by their stall count, which gives their order.
    for (const list of byJob.values()) list.sort((a, b) => a.stalls - b.stalls);
    const repeated = [...byJob].filter(([, s]) => s.length > 1);
    const unexplained = repeated.filter(([, s]) => !s.slice(0, -1).every((x) => killed.has(x.pid)));
    expect(unexplained).toEqual([]);
    // The kills hit jobs in flight (concurrency 10 each), and those were re-run after a stall.
    expect(repeated.length).toBeGreaterThan(0);
    expect(repeated.length).toBeLessThanOrEqual(2 * 10);
    expect(repeated.every(([, s]) => s[s.length - 1]!.stalls >= 1)).toBe(true);
    expect(stats.stalled).toBeGreaterThanOrEqual(repeated.length);
  }, 180_000);
});
