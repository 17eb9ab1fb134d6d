import { InvalidOptionError } from '../../core/errors.js';
import { optionsObject } from '../../core/validate.js';
import { hashHigh, hashKeyInto, hashLaneInto, hashLow, type ShardKey } from './xxh64.js';

/*
 * Rendezvous (highest random weight) hashing, Thaler and Ravishankar 1996: every node scores the
 * key and the highest score wins, so adding a node moves only the keys the new node now wins
 * (about 1/(n+1) of them), removing one moves only its own keys, and the runners-up are a stable
 * list of fallbacks: the top k are where k replicas of the key go.
 *
 * Scores, exactly (so other languages can place keys the same way):
 *   k      = XXH64(key bytes, seed 0)                       (the shard router's key hash)
 *   s_i    = XXH64(le64(k), seed = XXH64(utf8(node_i), 0))  (an 8-byte input: k little-endian)
 *   u_i    = ((s_i >> 11) + 0.5) / 2^53                     (the top 53 bits, in (0, 1))
 *   score  = u_i without weights; -w_i / ln(u_i) with them  (Schindelhauer and Schomaker's
 *                                                           logarithmic method: node i wins a
 *                                                           share w_i / sum(w) of the keys)
 * Ties (of probability about 2^-53) go to the node listed first.
 */

/** Options of {@link rendezvous} and {@link createRendezvous}. */
export interface RendezvousOptions {
  /**
   * Relative capacity of each node: by name, or in the order of `nodes`. A node of weight 2 wins
   * twice the keys of a node of weight 1. Every weight is a finite number above 0.
   * @default every node 1
   */
  weights?: Readonly<Record<string, number>> | readonly number[];
}

/** A set of nodes prepared for rendezvous lookups: their seeds are hashed once, not per key. */
export class Rendezvous {
  /** The nodes, in the order given. */
  readonly nodes: readonly string[];
  readonly #seedH: Int32Array;
  readonly #seedL: Int32Array;
  readonly #weights: Float64Array | undefined;
  readonly #scores: Float64Array;

  constructor(nodes: readonly string[], options?: RendezvousOptions) {
    if (!Array.isArray(nodes) || nodes.length === 0) {
      throw new InvalidOptionError('nodes', nodes, 'a non-empty array of node names');
    }
    const seen = new Set<string>();
    for (const name of nodes) {
      if (typeof name !== 'string' || name.length === 0 || seen.has(name)) {
        throw new InvalidOptionError('nodes', nodes, 'distinct non-empty node names');
      }
      seen.add(name);
    }
    this.nodes = Object.freeze([...nodes]);
    const n = nodes.length;
    this.#seedH = new Int32Array(n);
    this.#seedL = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      hashKeyInto(nodes[i]!, 0, 0);
      this.#seedH[i] = hashHigh();
      this.#seedL[i] = hashLow();
    }
    this.#weights = weightsOf(this.nodes, optionsObject(options, 'options').weights);
    this.#scores = new Float64Array(n);
  }

  /** The node that wins `key`. */
  get(key: ShardKey): string {
    hashKeyInto(key, 0, 0);
    return this.nodes[this.#best(hashHigh(), hashLow())]!;
  }

  /**
   * The `k` nodes with the highest scores for `key`, best first: where k replicas of the key go.
   * Adding or removing a node changes each key's list by at most that node.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for `k` outside [1, nodes.length].
   */
  top(key: ShardKey, k: number): string[] {
    const n = this.nodes.length;
    if (!Number.isInteger(k) || k < 1 || k > n) {
      throw new InvalidOptionError('k', k, `an integer between 1 and ${n} (the number of nodes)`);
    }
    hashKeyInto(key, 0, 0);
    const kh = hashHigh();
    const kl = hashLow();
    const scores = this.#scores;
    for (let i = 0; i < n; i++) scores[i] = this.#score(i, kh, kl);
    const order = Array.from({ length: n }, (_, i) => i);
    // Highest score first; equal scores keep the order of `nodes` (sort is stable).
    order.sort((a, b) => scores[b]! - scores[a]!);
    return order.slice(0, k).map((i) => this.nodes[i]!);
  }

  #best(kh: number, kl: number): number {
    let best = 0;
    let bestScore = -1;
    for (let i = 0; i < this.nodes.length; i++) {
      const s = this.#score(i, kh, kl);
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    return best;
  }

  #score(i: number, kh: number, kl: number): number {
    hashLaneInto(kh, kl, this.#seedH[i]!, this.#seedL[i]!);
    // The top 53 bits of the score hash, as an integer below 2^53.
    const top = (hashHigh() >>> 0) * 2097152 + (hashLow() >>> 11);
    const w = this.#weights;
    if (w === undefined) return top;
    return -w[i]! / Math.log((top + 0.5) / 9007199254740992);
  }
}

function weightsOf(
  nodes: readonly string[],
  weights: RendezvousOptions['weights'],
): Float64Array | undefined {
  if (weights === undefined) return undefined;
  const out = new Float64Array(nodes.length);
  if (Array.isArray(weights)) {
    if (weights.length !== nodes.length) {
      throw new InvalidOptionError('weights', weights, `${nodes.length} weights, one per node`);
    }
    weights.forEach((w, i) => {
      out[i] = positive(w, `weights[${i}]`);
    });
    return out;
  }
  if (typeof weights !== 'object' || weights === null) {
    throw new InvalidOptionError('weights', weights, 'an object of weights by node name, or an array');
  }
  const byName = weights as Readonly<Record<string, number>>;
  for (const name of Object.keys(byName)) {
    if (!nodes.includes(name)) throw new InvalidOptionError(`weights.${name}`, byName[name], 'a listed node');
  }
  nodes.forEach((name, i) => {
    out[i] = byName[name] === undefined ? 1 : positive(byName[name], `weights.${name}`);
  });
  return out;
}

function positive(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidOptionError(option, value, 'a finite number above 0');
  }
  return value;
}

/**
 * Prepares `nodes` for rendezvous lookups (see {@link rendezvous}): node seeds are hashed once,
 * so a lookup costs one key hash plus one 8-byte hash per node.
 *
 * @example
 * const placement = createRendezvous(['a', 'b', 'c'], { weights: { c: 2 } });
 * placement.get('user:42');      // 'a', 'b' or 'c' (c twice as often)
 * placement.top('user:42', 2);   // the two replicas of the key, primary first
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for no nodes, duplicate names or a bad weight.
 */
export function createRendezvous(nodes: readonly string[], options?: RendezvousOptions): Rendezvous {
  return new Rendezvous(nodes, options);
}

/**
 * Rendezvous (highest random weight) hashing: the node of `nodes` that wins `key`, or with `k`
 * the `k` best, best first (replica placement). Adding a node moves only the keys it wins (about
 * 1/(n+1) unweighted); removing one moves only its keys. Costs O(nodes) per lookup: for many
 * lookups over one set of nodes, build a {@link createRendezvous} once.
 *
 * @example
 * rendezvous(['cache-a', 'cache-b', 'cache-c'], 'session:9f2');        // 'cache-c'
 * rendezvous(['cache-a', 'cache-b', 'cache-c'], 'session:9f2', { k: 2 }); // ['cache-c', 'cache-a']
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for no nodes, duplicate names, a bad weight or `k`.
 */
export function rendezvous(nodes: readonly string[], key: ShardKey, options?: RendezvousOptions): string;
export function rendezvous(
  nodes: readonly string[],
  key: ShardKey,
  options: RendezvousOptions & { k: number },
): string[];
export function rendezvous(
  nodes: readonly string[],
  key: ShardKey,
  options?: RendezvousOptions & { k?: number },
): string | string[] {
  const opts = optionsObject(options);
  const r = new Rendezvous(nodes, opts.weights === undefined ? undefined : { weights: opts.weights });
  return opts.k === undefined ? r.get(key) : r.top(key, opts.k);
}
