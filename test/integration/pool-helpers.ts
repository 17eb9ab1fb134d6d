import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

// Shared by the pool integration tests. Nothing here skips: a missing server or missing
// PostgreSQL binaries fail the test (CI brings the services up with scripts/services.sh --replica).

const run = promisify(execFile);

/** The shared primary and its streaming replica (scripts/services.sh --replica). */
export const PRIMARY = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' } as const;
export const REPLICA = { host: '127.0.0.1', port: 5433, user: 'postgres', database: 'test' } as const;

/** A fresh name per test, so tests running in parallel never share a table or an application_name. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Runs one statement on its own connection (for setup, assertions and admin work). */
export async function adminQuery<R extends pg.QueryResultRow = any>(
  config: pg.ClientConfig,
  text: string,
  values?: unknown[],
): Promise<R[]> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Connections a server holds for `application_name` (checked on the server, not by the pool's word). */
export async function serverConnections(config: pg.ClientConfig, applicationName: string): Promise<number> {
  const rows = await adminQuery<{ n: string }>(
    config,
    'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
    [applicationName],
  );
  return Number(rows[0]!.n);
}

/** Polls `condition` until it holds; fails with `what` after `timeout` ms. Returns the ms waited. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeout = 15_000,
): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await condition()) return performance.now() - start;
    if (performance.now() - start > timeout)
      throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Throwaway PostgreSQL instances, for the tests that stop, restart or pause a server: the shared
// 5432/5433 are used by every other suite in parallel and must never be touched.

/** The newest PostgreSQL binaries directory, e.g. /usr/lib/postgresql/15/bin. */
function binDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(a) - Number(b))
    : [];
  const newest = versions.at(-1);
  if (newest === undefined)
    throw new Error(`no PostgreSQL binaries under ${base}/*/bin (install postgresql)`);
  return join(base, newest, 'bin');
}

/** Runs a PostgreSQL binary as the postgres OS user (initdb refuses root). */
async function asPostgres(bin: string, args: string[]): Promise<string> {
  const user = userInfo().username;
  const [cmd, argv] = user === 'postgres' ? [bin, args] : ['runuser', ['-u', 'postgres', '--', bin, ...args]];
  try {
    const { stdout } = await run(cmd, argv, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${bin.split('/').at(-1)} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/** A primary and a streaming replica of it, on free ports, in a temporary directory. */
export interface ThrowawayPair {
  readonly primary: pg.ClientConfig & { port: number };
  readonly replica: pg.ClientConfig & { port: number };
  readonly dir: string;
  /** `pg_ctl stop -m fast` on the replica (connections terminated, new ones refused). */
  stopReplica(): Promise<void>;
  startReplica(): Promise<void>;
  /** `pg_ctl restart -m fast` on the primary. */
  restartPrimary(): Promise<void>;
  /** Waits until the replica streams from the primary again. */
  replicaStreaming(timeout?: number): Promise<void>;
  /** Stops both and removes the directory. */
  destroy: () => Promise<void>;
}

const SERVER_SETTINGS = [
  "listen_addresses = '127.0.0.1'",
  'max_connections = 60',
  'shared_buffers = 16MB',
  'fsync = off',
  'full_page_writes = off',
  'wal_level = replica',
  'max_wal_senders = 5',
  'wal_keep_size = 256MB',
  'hot_standby = on',
  'logging_collector = off',
];

/**
 * initdb a primary, pg_basebackup a replica of it, start both (about 3 to 6 s on this machine).
 * Needs the PostgreSQL server binaries and, when run as root, the postgres OS user.
 */
export async function startThrowawayPair(): Promise<ThrowawayPair> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'buttress-pg-'));
  if (userInfo().uid === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const primaryDir = join(dir, 'primary');
  const replicaDir = join(dir, 'replica');
  const pgCtl = join(bin, 'pg_ctl');
  const startOptions = (port: number) => `-p ${port} -c unix_socket_directories=${dir}`;
  const start = (data: string, port: number, log: string) =>
    asPostgres(pgCtl, [
      '-D',
      data,
      '-l',
      join(dir, log),
      '-w',
      '-t',
      '60',
      '-o',
      startOptions(port),
      'start',
    ]);

  await asPostgres(join(bin, 'initdb'), [
    '-D',
    primaryDir,
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
    '--no-sync',
  ]);
  await asPostgres('/bin/sh', [
    '-c',
    `printf '%s\\n' ${SERVER_SETTINGS.map((s) => `"${s}"`).join(' ')} >> ${primaryDir}/postgresql.conf`,
  ]);
  await start(primaryDir, primaryPort, 'primary.log');
  await asPostgres(join(bin, 'createdb'), [
    '-h',
    '127.0.0.1',
    '-p',
    String(primaryPort),
    '-U',
    'postgres',
    'test',
  ]);
  await asPostgres(join(bin, 'pg_basebackup'), [
    '-h',
    '127.0.0.1',
    '-p',
    String(primaryPort),
    '-U',
    'postgres',
    '-D',
    replicaDir,
    '-R',
    '-X',
    'stream',
    '-c',
    'fast',
  ]);
  await start(replicaDir, replicaPort, 'replica.log');

  const primary = { host: '127.0.0.1', port: primaryPort, user: 'postgres', database: 'test' };
  const replica = { host: '127.0.0.1', port: replicaPort, user: 'postgres', database: 'test' };
  const pair: { -readonly [K in keyof ThrowawayPair]: ThrowawayPair[K] } = {
    primary,
    replica,
    dir,
    stopReplica: async () => {
      await asPostgres(pgCtl, ['-D', replicaDir, '-m', 'fast', '-w', 'stop']);
    },
    startReplica: async () => {
      await start(replicaDir, replicaPort, 'replica.log');
    },
    restartPrimary: async () => {
      await asPostgres(pgCtl, [
        '-D',
        primaryDir,
        '-m',
        'fast',
        '-w',
        '-t',
        '60',
        '-l',
        join(dir, 'primary.log'),
        '-o',
        startOptions(primaryPort),
        'restart',
      ]);
    },
    replicaStreaming: async (timeout = 20_000) => {
      await waitFor(
        async () => {
          try {
            const rows = await adminQuery<{ status: string }>(
              replica,
              'SELECT status FROM pg_stat_wal_receiver',
            );
            return rows[0]?.status === 'streaming';
          } catch {
            return false;
          }
        },
        'the throwaway replica to stream',
        timeout,
      );
    },
    destroy: async () => {
      for (const data of [replicaDir, primaryDir]) {
        if (existsSync(join(data, 'postmaster.pid'))) {
          await asPostgres(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // If the test process dies before afterAll (a killed run), the servers must not outlive it.
  const orphanGuard = () => {
    for (const data of [replicaDir, primaryDir]) {
      if (!existsSync(join(data, 'postmaster.pid'))) continue;
      const args = ['-D', data, '-m', 'immediate', '-w', 'stop'];
      try {
        if (userInfo().username === 'postgres') execFileSync(pgCtl, args, { stdio: 'ignore' });
        else execFileSync('runuser', ['-u', 'postgres', '--', pgCtl, ...args], { stdio: 'ignore' });
      } catch {
        // best effort
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', orphanGuard);
  const destroy = pair.destroy;
  pair.destroy = async () => {
    process.removeListener('exit', orphanGuard);
    await destroy();
  };
  try {
    await pair.replicaStreaming();
  } catch (error) {
    await pair.destroy();
    throw error;
  }
  return pair;
}
