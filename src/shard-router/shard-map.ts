import { InvalidOptionError } from '../core/errors.js';
import { integer } from '../core/validate.js';

/**
 * A set of logical shards: single shard numbers and inclusive `[from, to]` ranges, in any order.
 *
 * @example
 * const set: ShardSet = [[0, 1023], 2048, [3000, 3071]];
 */
export type ShardSet = readonly (number | readonly [from: number, to: number])[];

/**
 * The serialisable form of a {@link ShardMap}: what map stores keep and what routers exchange.
 *
 * @example
 * const spec: ShardMapSpec = {
 *   version: 7,
 *   logicalShards: 4096,
 *   assignments: { 'pg-a': [[0, 2047]], 'pg-b': [[2048, 4095]] },
 * };
 */
export interface ShardMapSpec {
  /** A positive integer; every change of the map makes a new, higher version. */
  readonly version: number;
  /** How many logical shards there are: fixed for the life of the data. */
  readonly logicalShards: number;
  /**
   * Which node owns which logical shards. Every logical shard belongs to exactly one node; a node
   * may own none (an empty set), e.g. a new node before shards are moved onto it.
   */
  readonly assignments: Readonly<Record<string, ShardSet>>;
}

/** Most logical shards a map can have: owners are kept in a Uint16Array of node indexes. */
export const MAX_LOGICAL_SHARDS = 65_536;
/** Most nodes a map can name (node indexes are 16-bit). */
export const MAX_NODES = 65_535;

/**
 * A versioned assignment of logical shards to named physical nodes. Immutable: a change (a moved
 * shard) makes a new map with the next version ({@link ShardMap.withMove}).
 *
 * Lookup is an index into a typed array, so routing a logical shard costs one memory read.
 */
export class ShardMap {
  /** The map's version. */
  readonly version: number;
  /** Number of logical shards. */
  readonly logicalShards: number;
  /** Node names, in the order of the spec's `assignments`. */
  readonly nodes: readonly string[];
  /** @internal Owner of each logical shard, as an index into {@link ShardMap.nodes}. */
  readonly owners: Uint16Array;

  private constructor(version: number, logicalShards: number, nodes: readonly string[], owners: Uint16Array) {
    this.version = version;
    this.logicalShards = logicalShards;
    this.nodes = Object.freeze(nodes.slice());
    this.owners = owners;
    Object.freeze(this);
  }

  /**
   * Validates `spec` and builds the map.
   * @param option name used in error messages. @default 'map'
   * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the offending field: a version that is
   *   not a positive safe integer, a shard number out of range, a shard owned twice or by nobody.
   */
  static from(spec: ShardMapSpec | ShardMap, option = 'map'): ShardMap {
    if (spec instanceof ShardMap) return spec;
    if (typeof spec !== 'object' || spec === null) throw new InvalidOptionError(option, spec, 'a shard map');
    const version = integer(spec.version, `${option}.version`, 1, Number.MAX_SAFE_INTEGER);
    const logicalShards = integer(spec.logicalShards, `${option}.logicalShards`, 1, MAX_LOGICAL_SHARDS);
    const assignments = spec.assignments;
    if (typeof assignments !== 'object' || assignments === null || Array.isArray(assignments)) {
      throw new InvalidOptionError(
        `${option}.assignments`,
        assignments,
        'an object of node name -> shard set',
      );
    }
    const nodes = Object.keys(assignments);
    if (nodes.length === 0 || nodes.length > MAX_NODES) {
      throw new InvalidOptionError(`${option}.assignments`, assignments, `between 1 and ${MAX_NODES} nodes`);
    }
    const UNSET = 0xffff;
    const owners = new Uint16Array(logicalShards).fill(UNSET);
    nodes.forEach((node, index) => {
      if (node.length === 0)
        throw new InvalidOptionError(`${option}.assignments`, node, 'non-empty node names');
      const set = assignments[node];
      const path = `${option}.assignments.${node}`;
      if (!Array.isArray(set))
        throw new InvalidOptionError(path, set, 'an array of shard numbers and [from, to] ranges');
      set.forEach((item: unknown, i: number) => {
        let from: number;
        let to: number;
        if (Array.isArray(item)) {
          if (item.length !== 2) throw new InvalidOptionError(`${path}[${i}]`, item, 'a [from, to] range');
          from = integer(item[0], `${path}[${i}][0]`, 0, logicalShards - 1);
          to = integer(item[1], `${path}[${i}][1]`, from, logicalShards - 1);
        } else {
          from = to = integer(item, `${path}[${i}]`, 0, logicalShards - 1);
        }
        for (let s = from; s <= to; s++) {
          if (owners[s] !== UNSET) {
            throw new InvalidOptionError(
              `${path}[${i}]`,
              item,
              `shards owned by one node only (logical shard ${s} is also on "${nodes[owners[s]!]}")`,
            );
          }
          owners[s] = index;
        }
      });
    });
    const orphan = owners.indexOf(UNSET);
    if (orphan !== -1) {
      throw new InvalidOptionError(
        `${option}.assignments`,
        assignments,
        `every logical shard in [0, ${logicalShards - 1}] assigned (logical shard ${orphan} has no node)`,
      );
    }
    return new ShardMap(version, logicalShards, nodes, owners);
  }

  /** The node that owns `logical`. */
  nodeOf(logical: number): string {
    const owner = this.owners[logical];
    if (owner === undefined || !Number.isInteger(logical)) {
      throw new InvalidOptionError('logical', logical, `a logical shard in [0, ${this.logicalShards - 1}]`);
    }
    return this.nodes[owner]!;
  }

  /** The logical shards `node` owns, ascending (empty for a node the map does not name). */
  shardsOf(node: string): number[] {
    const index = this.nodes.indexOf(node);
    const out: number[] = [];
    if (index === -1) return out;
    const owners = this.owners;
    for (let s = 0; s < owners.length; s++) if (owners[s] === index) out.push(s);
    return out;
  }

  /**
   * A new map, one version up, where `logical` belongs to `node` (a node this map does not name
   * yet is added).
   */
  withMove(logical: number, node: string): ShardMap {
    this.nodeOf(logical);
    if (typeof node !== 'string' || node.length === 0)
      throw new InvalidOptionError('node', node, 'a node name');
    let index = this.nodes.indexOf(node);
    const nodes = index === -1 ? [...this.nodes, node] : this.nodes;
    if (index === -1) index = nodes.length - 1;
    const owners = this.owners.slice();
    owners[logical] = index;
    return new ShardMap(this.version + 1, this.logicalShards, nodes, owners);
  }

  /** The serialisable form, with each node's shards written as compact ranges. */
  toJSON(): ShardMapSpec {
    const sets: (number | [number, number])[][] = this.nodes.map(() => []);
    const owners = this.owners;
    let start = 0;
    for (let s = 1; s <= owners.length; s++) {
      if (s === owners.length || owners[s] !== owners[start]) {
        sets[owners[start]!]!.push(s - 1 === start ? start : [start, s - 1]);
        start = s;
      }
    }
    const assignments: Record<string, ShardSet> = {};
    this.nodes.forEach((node, i) => {
      assignments[node] = sets[i]!;
    });
    return { version: this.version, logicalShards: this.logicalShards, assignments };
  }

  /** True when `other` assigns every logical shard to the same node (versions aside). */
  sameAssignments(other: ShardMap): boolean {
    if (other.logicalShards !== this.logicalShards) return false;
    for (let s = 0; s < this.owners.length; s++) {
      if (this.nodes[this.owners[s]!] !== other.nodes[other.owners[s]!]) return false;
    }
    return true;
  }
}

/**
 * Builds a {@link ShardMap} from its spec, validating it.
 *
 * @example
 * const map = shardMap({ version: 1, logicalShards: 1024, assignments: { a: [[0, 511]], b: [[512, 1023]] } });
 * map.nodeOf(600); // 'b'
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for an invalid spec (see {@link ShardMap.from}).
 */
export function shardMap(spec: ShardMapSpec): ShardMap {
  return ShardMap.from(spec);
}

/**
 * A map spreading `logicalShards` over `nodes` in contiguous, near-equal ranges (the first
 * `logicalShards % nodes.length` nodes get one more).
 *
 * @example
 * evenShardMap(4096, ['shard_0', 'shard_1', 'shard_2', 'shard_3']);
 * // version 1: shard_0 owns [0, 1023], shard_1 [1024, 2047], ...
 * @param version @default 1
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for no nodes, a repeated node, or more nodes than shards.
 */
export function evenShardMap(logicalShards: number, nodes: readonly string[], version = 1): ShardMap {
  integer(logicalShards, 'logicalShards', 1, MAX_LOGICAL_SHARDS);
  if (!Array.isArray(nodes) || nodes.length === 0 || nodes.length > logicalShards) {
    throw new InvalidOptionError('nodes', nodes, `between 1 and ${logicalShards} node names`);
  }
  if (new Set(nodes).size !== nodes.length)
    throw new InvalidOptionError('nodes', nodes, 'distinct node names');
  const assignments: Record<string, ShardSet> = {};
  const base = Math.floor(logicalShards / nodes.length);
  const extra = logicalShards % nodes.length;
  let next = 0;
  nodes.forEach((node, i) => {
    const size = base + (i < extra ? 1 : 0);
    assignments[node] = [[next, next + size - 1]];
    next += size;
  });
  return ShardMap.from({ version, logicalShards, assignments }, 'map');
}
