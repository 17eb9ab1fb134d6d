import { InvalidOptionError } from '../../core/errors.js';
import { integer, knownKeys, oneOf, optionsObject } from '../../core/validate.js';
import { D, md5String } from './md5.js';

/*
 * A ketama consistent-hash ring (libketama, and the `hashring` npm package, which follows it),
 * built point for point the same way, so a client placing keys with it picks the same Redis or
 * memcached server as those clients do for the same servers:
 *
 * - each server gets floor(weight / totalWeight * vnodes * serverCount) hashes (40 vnodes by
 *   default: 40 per server when weights are equal), or exactly its own `vnodes` when it has one;
 * - hash i of a server is MD5(`${server}-${i}`), and each of its first `replicas` 4-byte groups
 *   (4: ketama, 160 points per server; 3: Python's hash_ring) read little-endian is a point;
 * - points are sorted (stable: equal points keep the order in which servers were listed);
 * - a key goes to the first point at or after the first four bytes of MD5(key), little-endian,
 *   wrapping to the first point.
 *
 * `server` is the name as given ('10.0.0.1:11211'); with `defaultPort`, a server on that port is
 * hashed by its host alone, as libketama clients configured with a default port do.
 */

/** One server's settings in a {@link createKetamaRing} object. */
export interface KetamaServer {
  /** Relative share of the ring. @default 1 */
  weight?: number;
  /** This server's own number of hashes, instead of its weighted share. */
  vnodes?: number;
}

/** Options of {@link createKetamaRing}. */
export interface KetamaRingOptions {
  /** Hashes per server (before weights). @default 40 */
  vnodes?: number;
  /** `'ketama'`: 4 points per hash (libketama, hashring's default); `'hash_ring'`: 3. @default 'ketama' */
  compatibility?: 'ketama' | 'hash_ring';
  /** A server on this port is hashed by its host alone (hashring's `'default port'`). */
  defaultPort?: number;
}

/** The servers of a ring: names, or names mapped to a weight or to {@link KetamaServer} settings. */
export type KetamaServers = readonly string[] | Readonly<Record<string, number | KetamaServer>>;

/** See {@link createKetamaRing}. */
export class KetamaRing {
  /** The servers, in the order given. */
  readonly servers: readonly string[];
  /** Points on the ring, ascending (uint32). */
  readonly #points: Uint32Array;
  /** Index in `servers` of each point's server. */
  readonly #owners: Uint16Array;

  constructor(servers: KetamaServers, options?: KetamaRingOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['vnodes', 'compatibility', 'defaultPort']);
    const vnodes = integer(opts.vnodes, 'vnodes', 1, 100_000, 40);
    const replicas =
      oneOf(opts.compatibility, 'compatibility', ['ketama', 'hash_ring'], 'ketama') === 'ketama' ? 4 : 3;
    const defaultPort =
      opts.defaultPort === undefined ? undefined : integer(opts.defaultPort, 'defaultPort', 0, 65535);
    const list = serverList(servers);
    if (list.length > 65535) throw new InvalidOptionError('servers', list.length, 'at most 65535 servers');
    this.servers = Object.freeze(list.map((s) => s.name));

    const total = list.reduce((sum, s) => sum + s.weight, 0);
    const values: number[] = [];
    const owners: number[] = [];
    list.forEach((server, index) => {
      const own = server.vnodes !== undefined && server.vnodes !== 0 ? server.vnodes : vnodes;
      const count = own !== vnodes ? own : Math.floor((server.weight / total) * vnodes * list.length);
      const base =
        defaultPort !== undefined && portOf(server.name) === defaultPort ? hostOf(server.name) : server.name;
      for (let i = 0; i < count; i++) {
        md5String(`${base}-${i}`);
        for (let j = 0; j < replicas; j++) {
          values.push(D[j]! >>> 0);
          owners.push(index);
        }
      }
    });
    const order = Array.from(values.keys()).sort((a, b) => values[a]! - values[b]! || a - b);
    this.#points = Uint32Array.from(order, (i) => values[i]!);
    this.#owners = Uint16Array.from(order, (i) => owners[i]!);
  }

  /** Number of points on the ring. */
  get size(): number {
    return this.#points.length;
  }

  /**
   * The server `key` goes to.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` when the ring has no points.
   */
  get(key: string): string {
    return this.servers[this.#owners[this.#find(key)]!]!;
  }

  /**
   * `size` distinct servers for `key`, walking the ring clockwise from its point (hashring's
   * `range`): the first is {@link KetamaRing.get}'s answer, the rest are fallbacks in ring order.
   */
  range(key: string, size: number = this.servers.length): string[] {
    const wanted = integer(size, 'size', 1, this.servers.length);
    const start = this.#find(key);
    const found: string[] = [];
    const n = this.#points.length;
    for (let k = 0; k < n && found.length < wanted; k++) {
      const server = this.servers[this.#owners[(start + k) % n]!]!;
      if (!found.includes(server)) found.push(server);
    }
    return found;
  }

  /** Index of the first point at or after the key's hash, wrapping to 0. */
  #find(key: string): number {
    const points = this.#points;
    const n = points.length;
    if (n === 0)
      throw new InvalidOptionError('servers', this.servers, 'servers whose weights give the ring points');
    if (typeof key !== 'string') throw new InvalidOptionError('key', key, 'a string');
    md5String(key);
    const h = D[0]! >>> 0;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === n ? 0 : lo;
  }
}

interface ParsedServer {
  name: string;
  weight: number;
  vnodes: number | undefined;
}

function serverList(servers: KetamaServers): ParsedServer[] {
  if (Array.isArray(servers)) {
    return servers.map((name, i) => ({
      name: serverName(name, `servers[${i}]`),
      weight: 1,
      vnodes: undefined,
    }));
  }
  if (typeof servers !== 'object' || servers === null) {
    throw new InvalidOptionError('servers', servers, 'an array of server names or an object of servers');
  }
  return Object.entries(servers as Record<string, number | KetamaServer>).map(([name, value]) => {
    serverName(name, 'servers');
    if (typeof value === 'number')
      return { name, weight: weightOf(value, `servers.${name}`), vnodes: undefined };
    if (typeof value !== 'object' || value === null) {
      throw new InvalidOptionError(`servers.${name}`, value, 'a weight or { weight, vnodes }');
    }
    knownKeys(value, ['weight', 'vnodes'], `servers.${name}`);
    return {
      name,
      weight: value.weight === undefined ? 1 : weightOf(value.weight, `servers.${name}.weight`),
      vnodes:
        value.vnodes === undefined ? undefined : integer(value.vnodes, `servers.${name}.vnodes`, 0, 100_000),
    };
  });
}

function serverName(name: unknown, option: string): string {
  if (typeof name !== 'string' || name.length === 0)
    throw new InvalidOptionError(option, name, 'a non-empty server name');
  return name;
}

function weightOf(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidOptionError(option, value, 'a finite weight above 0');
  }
  return value;
}

function portOf(name: string): number {
  return Number(name.split(':')[1]);
}

function hostOf(name: string): string {
  return name.split(':')[0]!;
}

/**
 * A ketama consistent-hash ring, point for point the same as libketama's and the `hashring`
 * package's for the same servers and weights: a client sharding Redis or memcached with it places
 * every key on the same server as those clients do. Adding a server moves about 1/(n+1) of the keys;
 * load is uneven by a few percent (160 points per server), which is why the shard router itself
 * does not use a ring.
 *
 * @example
 * const ring = createKetamaRing(['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211']);
 * ring.get('session:9f2');      // '10.0.0.3:11211', as hashring and libketama answer
 * ring.range('session:9f2', 2); // the server and its fallback
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for bad servers, weights or options.
 */
export function createKetamaRing(servers: KetamaServers, options?: KetamaRingOptions): KetamaRing {
  return new KetamaRing(servers, options);
}
