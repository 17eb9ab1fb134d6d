import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createQueue, isQueueEvictionPolicyError, redisBackend } from '../../src/queue/index.js';

// Tests that restart or reconfigure Redis run on redis-server processes of their own, on free
// ports: the shared Redis on 6379 serves every other suite in parallel and is never touched.

interface Server {
  port: number;
  dir: string;
  process: ChildProcess;
}

const servers: Server[] = [];
const connections: Redis[] = [];

afterAll(async () => {
  for (const c of connections) c.disconnect();
  for (const s of servers) {
    s.process.kill('SIGKILL');
    rmSync(s.dir, { recursive: true, force: true });
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeout = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Starts redis-server (installed on the CI machines) on `port`, keeping data in `dir`. */
async function startRedis(port: number, dir: string, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...extra],
    { stdio: 'ignore' },
  );
  const probe = new Redis({ port, lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => {});
  await until(
    async () => {
      try {
        await probe.connect();
        await probe.ping();
        return true;
      } catch {
        probe.disconnect();
        return false;
      }
    },
    `redis-server on port ${port}`,
    10_000,
  );
  probe.disconnect();
  return child;
}

async function ownServer(extra: string[] = []): Promise<Server> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'buttress-queue-redis-'));
  const server = { port, dir, process: await startRedis(port, dir, extra) };
  servers.push(server);
  return server;
}

function connect(port: number): Redis {
  const redis = new Redis({ port, host: '127.0.0.1', retryStrategy: () => 50 });
  redis.on('error', () => {});
  connections.push(redis);
  return redis;
}

describe('queue on a Redis that restarts', () => {
  it('jobs resume after a Redis crash and restart: none lost, each acknowledged once', async () => {
    // Durable Redis (AOF, fsync on every write): what a queue that must survive a restart needs.
    const server = await ownServer(['--appendonly', 'yes', '--appendfsync', 'always']);
    const redis = connect(server.port);
    const queue = createQueue<number>('restart', { backend: redisBackend(redis, { timeout: 1000 }) });
    const total = 3000;
    await queue.addBulk(Array.from({ length: total }, (_, i) => ({ payload: i })));
    const done = new Set<number>();
    let errors = 0;
    queue.onError(() => errors++);
    queue.process(
      async (job) => {
        await sleep(2);
        done.add(job.payload);
      },
      { concurrency: 20, lockDuration: 2000, pollInterval: 500 },
    );
    await until(() => done.size >= 800, 'a third of the jobs');
    server.process.kill('SIGKILL');
    // Down for longer than the backend's 1 s deadline: calls fail (E_QUEUE_UNAVAILABLE) and the
    // worker retries with backoff, holding its finished jobs' acknowledgements.
    await sleep(2000);
    const before = done.size;
    server.process = await startRedis(server.port, server.dir, [
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
    ]);
    await until(() => done.size === total, 'every job after the restart', 30_000);
    expect(before).toBeLessThan(total);
    expect(errors).toBeGreaterThan(0);
    let stats = await queue.stats();
    for (let i = 0; i < 100 && (stats.active > 0 || stats.completed < total); i++) {
      await sleep(50);
      stats = await queue.stats();
    }
    expect(stats).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: total });
    await queue.close();
  }, 60_000);

  it("maxmemory-policy other than noeviction: 'warn' warns once, 'refuse' refuses", async () => {
    const server = await ownServer(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
    const redis = connect(server.port);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const warned = createQueue('warned', { backend: redisBackend(redis) });
      await warned.add('x');
      await warned.add('y');
      await sleep(20);
      const ours = warnings.filter((w) => (w as { code?: string }).code === 'BUTTRESS_QUEUE_EVICTION_POLICY');
      expect(ours.length).toBe(1);
      expect(ours[0]!.message).toMatch(/allkeys-lru/);
      await warned.close();

      const refused = createQueue('refused', { backend: redisBackend(redis, { maxmemoryPolicy: 'refuse' }) });
      const error = await refused.add('x').catch((e: unknown) => e);
      expect(isQueueEvictionPolicyError(error)).toBe(true);
      expect((error as { policy: string }).policy).toBe('allkeys-lru');
      const worker = refused.process(() => {});
      expect(isQueueEvictionPolicyError(await worker.ready().catch((e: unknown) => e))).toBe(true);
      expect(await redis.exists('{buttress:refused}:jobs')).toBe(0);
      await refused.close();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
