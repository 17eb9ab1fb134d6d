import type { PoolClient, PoolConfig } from 'pg';
import { InvalidOptionError } from '../../core/errors.js';
import { integer } from '../../core/validate.js';
import type { PgPool } from './pg.js';
import { redactConnectionString, sanitizeForMessage, secretsOf } from './redact.js';

/*
 * Node configs: a connection string, a pg `PoolConfig`, or a ready `pg.Pool`. Configs need the
 * user's `Pool` class: the package never imports pg itself (it is an optional peer), so it cannot
 * build a pool on its own. Errors about a config print it with every password masked.
 */

/** A constructor of pg pools: `pg.Pool`, or any class with its interface. */
export type PoolClass = new (config?: PoolConfig) => unknown;

/** A node, resolved from its option. */
export interface NodeSpec {
  readonly pool: PgPool;
  readonly owned: boolean;
  readonly address: string;
  readonly secrets: string[];
}

const URL_FORM = /^postgres(?:ql)?:\/\//i;

/** True for something shaped like a pg-pool instance. */
export function isPoolInstance(value: unknown): value is PgPool {
  const p = value as Partial<Record<string, unknown>> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.connect === 'function' &&
    typeof p.query === 'function' &&
    typeof p.end === 'function' &&
    typeof p.on === 'function'
  );
}

/**
 * Resolves one node option (`primary`, `replicas[0]`, ...) into a pool.
 * @throws {InvalidOptionError} `E_INVALID_OPTION`, with passwords masked in the message.
 */
export function resolveNode(
  value: unknown,
  option: string,
  Pool: PoolClass | undefined,
  connectTimeout: number,
): NodeSpec {
  if (isPoolInstance(value)) {
    const options = (value.options ?? {}) as PoolConfig;
    return { pool: value, owned: false, address: addressOf(options), secrets: secretsOf(options) };
  }
  let config: PoolConfig;
  if (typeof value === 'string') {
    config = { connectionString: value };
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    config = value as PoolConfig;
  } else {
    throw new InvalidOptionError(
      option,
      sanitizeForMessage(value),
      'a connection string, a pg PoolConfig object or a pg.Pool instance',
    );
  }
  validateConfig(config, option);
  if (typeof Pool !== 'function') {
    throw new InvalidOptionError(
      'Pool',
      Pool,
      `the pg Pool class (import pg from 'pg'; createPgCluster({ Pool: pg.Pool, ... })) since ${option} is a config, not a pg.Pool`,
    );
  }
  let pool: PgPool;
  try {
    pool = new Pool(config) as PgPool;
  } catch (error) {
    throw new InvalidOptionError(
      option,
      sanitizeForMessage(config),
      `a config the Pool class accepts (${safeMessage(error, config)})`,
    );
  }
  if (!isPoolInstance(pool)) {
    throw new InvalidOptionError(
      'Pool',
      Pool,
      'a class whose instances have connect(), query(), end() and on()',
    );
  }
  boundConnectTime(pool, config, connectTimeout);
  return { pool, owned: true, address: addressOf(config), secrets: secretsOf(config) };
}

function safeMessage(error: unknown, config: PoolConfig): string {
  const text = error instanceof Error ? error.message : String(error);
  let out = redactConnectionString(text);
  for (const s of secretsOf(config)) if (s.length > 0) out = out.split(s).join('***');
  return out;
}

function validateConfig(config: PoolConfig, option: string): void {
  const cs = config.connectionString;
  if (cs !== undefined) {
    if (typeof cs !== 'string' || cs.length === 0) {
      throw new InvalidOptionError(
        `${option}.connectionString`,
        sanitizeForMessage(cs),
        'a non-empty string',
      );
    }
    if (URL_FORM.test(cs) && !parsesAsUrl(cs)) {
      throw new InvalidOptionError(
        `${option}.connectionString`,
        redactConnectionString(cs),
        'a valid postgres:// URL',
      );
    }
  }
  if (config.host !== undefined && (typeof config.host !== 'string' || config.host.length === 0)) {
    throw new InvalidOptionError(`${option}.host`, sanitizeForMessage(config.host), 'a non-empty string');
  }
  if (config.port !== undefined) {
    const port = typeof config.port === 'string' ? Number(config.port) : config.port;
    integer(port, `${option}.port`, 1, 65_535);
  }
  for (const key of ['user', 'database'] as const) {
    const v = config[key];
    if (v !== undefined && typeof v !== 'string') {
      throw new InvalidOptionError(`${option}.${key}`, sanitizeForMessage(v), 'a string');
    }
  }
  const password = config.password;
  if (password !== undefined && typeof password !== 'string' && typeof password !== 'function') {
    throw new InvalidOptionError(`${option}.password`, '***', 'a string or a function returning one');
  }
  if (config.max !== undefined) integer(config.max, `${option}.max`, 1, 100_000);
}

/** The way pg-connection-string parses a URL (encoding spaces, tolerating an empty host). */
function parsesAsUrl(cs: string): boolean {
  let s = cs;
  if (/ |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(s)) s = encodeURI(s).replace(/%25(\d\d)/g, '%$1');
  try {
    new URL(s, 'postgres://base');
    return true;
  } catch {
    try {
      new URL(s.replace('@/', '@___DUMMY___/'), 'postgres://base');
      return true;
    } catch {
      return false;
    }
  }
}

/** `host:port/database` of a config, for names in messages and stats; never credentials. */
export function addressOf(config: PoolConfig): string {
  let host = config.host;
  let port: string | number | undefined = config.port;
  let database = config.database;
  const cs = config.connectionString;
  if (typeof cs === 'string' && URL_FORM.test(cs) && parsesAsUrl(cs)) {
    try {
      const url = new URL(cs.replace('@/', '@localhost/'));
      host ??= decodeURIComponent(url.hostname) || undefined;
      port ??= url.port || undefined;
      database ??= decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined;
    } catch {
      // the address is cosmetic
    }
  }
  return `${host ?? 'localhost'}:${port ?? 5432}/${database ?? config.user ?? ''}`;
}

/*
 * Bounding connection establishment. pg's `connectionTimeoutMillis` does two things: it bounds a
 * new connection's handshake (in the client, once per connection) and it arms a timer on every
 * checkout of an idle client (in pg-pool), which doubles the cost of a checkout. The gate already
 * bounds how long a caller waits, so only the first is wanted: the pools we build get a client
 * class that adds the timeout to each new connection, and no pool-level setting. Without it a
 * connect to a black-holed host would hold its slot until the kernel gives up (about two minutes
 * on Linux). A `connectionTimeoutMillis` of the user's own is left alone.
 */
function boundConnectTime(pool: PgPool, config: PoolConfig, timeout: number): void {
  if (config.connectionTimeoutMillis !== undefined || timeout <= 0) return;
  const Base = pool.Client;
  if (typeof Base !== 'function') return;
  class BoundedClient extends (Base as new (config: unknown) => PoolClient) {
    constructor(clientConfig: unknown) {
      super(withConnectTimeout(clientConfig, timeout));
    }
  }
  (pool as { Client: unknown }).Client = BoundedClient;
}

/** A faithful copy of a client config (hidden `password` included) with a connect timeout. */
function withConnectTimeout(config: unknown, timeout: number): unknown {
  if (typeof config !== 'object' || config === null) return { connectionTimeoutMillis: timeout };
  const copy = Object.create(
    Object.getPrototypeOf(config),
    Object.getOwnPropertyDescriptors(config),
  ) as Record<string, unknown>;
  copy.connectionTimeoutMillis = timeout;
  return copy;
}
