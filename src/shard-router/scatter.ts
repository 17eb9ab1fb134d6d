import type { Clock, Timer } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import { AbortedError, TimeoutError } from '../core/errors.js';
import { duration, integer, knownKeys, oneOf, optionsObject } from '../core/validate.js';
import { ScatterError, type ScatterFailure, type ScatterSuccess } from './errors.js';
import type { ShardMap } from './shard-map.js';

/** Options of {@link ShardRouter.all}. */
export interface ScatterOptions {
  /**
   * `'node'`: one call per node that holds at least one logical shard, with its shards in
   * `context.logicals`. `'logical'`: one call per logical shard, on the node holding it.
   * @default 'node'
   */
  by?: 'node' | 'logical';
  /** Calls in flight at once. @default Infinity */
  concurrency?: number;
  /**
   * Deadline of the whole scatter-gather. When it passes, the calls still running have their
   * signal aborted (with `E_TIMEOUT`), and they and the ones not started yet count as failed with
   * `E_TIMEOUT`. @default none
   */
  timeout?: Duration;
  /**
   * `'fail'`: the first failure aborts the other calls' signal and rejects with
   * `E_SCATTER_FAILED`. `'allow'`: every target's outcome is returned, failures included.
   * @default 'fail'
   */
  partial?: 'fail' | 'allow';
  /** Aborting rejects with `E_ABORTED` and aborts the calls' signal. */
  signal?: AbortSignal;
}

/** What `all()`'s function receives beside the node. */
export interface ScatterContext {
  /** The node's name. */
  readonly node: string;
  /** The logical shard, with `by: 'logical'`; undefined with `by: 'node'`. */
  readonly logical: number | undefined;
  /** The logical shards this call covers: the node's (by node), or `[logical]`. */
  readonly logicals: readonly number[];
  /** The version of the map the targets were taken from. */
  readonly mapVersion: number;
  /** Aborted when the scatter-gather times out, fails (`partial: 'fail'`) or is aborted. */
  readonly signal: AbortSignal;
}

/** The outcome of `all()`, in target order (nodes in map order, or logical shards ascending). */
export interface ScatterResult<T> {
  readonly mapVersion: number;
  readonly results: ScatterSuccess<T>[];
  readonly failures: ScatterFailure[];
}

const KEYS = ['by', 'concurrency', 'timeout', 'partial', 'signal'] as const;

interface Target {
  readonly node: string;
  readonly logical: number | undefined;
  readonly logicals: readonly number[];
}

type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** @internal Runs `fn` over the targets of `map`; see {@link ShardRouter.all}. */
export function scatter<N, T>(
  map: ShardMap,
  nodes: ReadonlyMap<string, N>,
  fn: (node: N, context: ScatterContext) => Promise<T> | T,
  options: ScatterOptions | undefined,
  clock: Clock,
): Promise<ScatterResult<T>> {
  let targets: Target[];
  let concurrency: number;
  let timeout: number | undefined;
  let partial: 'fail' | 'allow';
  let signal: AbortSignal | undefined;
  try {
    if (typeof fn !== 'function') throw new TypeError('all() needs a function (node, context) => value');
    const opts = optionsObject(options);
    knownKeys(opts, KEYS);
    const by = oneOf(opts.by, 'by', ['node', 'logical'], 'node');
    concurrency =
      opts.concurrency === undefined || opts.concurrency === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : integer(opts.concurrency, 'concurrency', 1, 1_000_000);
    timeout = opts.timeout === undefined ? undefined : duration(opts.timeout, 'timeout');
    partial = oneOf(opts.partial, 'partial', ['fail', 'allow'], 'fail');
    signal = opts.signal;
    if (signal?.aborted) throw new AbortedError(signal.reason);
    targets = by === 'node' ? nodeTargets(map) : logicalTargets(map);
  } catch (error) {
    return Promise.reject(error);
  }

  return new Promise<ScatterResult<T>>((resolve, reject) => {
    const controller = new AbortController();
    const outcomes = new Array<Outcome<T> | undefined>(targets.length);
    let next = 0;
    let running = 0;
    let settled = 0;
    let finished = false;
    let timer: Timer | undefined;

    const onCallerAbort = () => {
      const error = new AbortedError(signal!.reason);
      finish(() => reject(error), error);
    };

    const collect = (): ScatterResult<T> => {
      const results: ScatterSuccess<T>[] = [];
      const failures: ScatterFailure[] = [];
      targets.forEach((t, i) => {
        const o = outcomes[i];
        if (o === undefined) return;
        if (o.ok) results.push({ node: t.node, logical: t.logical, value: o.value });
        else failures.push({ node: t.node, logical: t.logical, error: o.error });
      });
      return { mapVersion: map.version, results, failures };
    };

    /** Ends the scatter once: stops the timer and listener, aborts what still runs, settles. */
    const finish = (settle: () => void, abortReason?: unknown) => {
      if (finished) return;
      finished = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
      if (abortReason !== undefined && running > 0) controller.abort(abortReason);
      settle();
    };

    const done = (i: number, outcome: Outcome<T>) => {
      running--;
      if (finished) return;
      outcomes[i] = outcome;
      settled++;
      if (!outcome.ok && partial === 'fail') {
        const { results, failures } = collect();
        const error = new ScatterError<T>(results, failures);
        finish(() => reject(error), new AbortedError(error));
        return;
      }
      if (settled === targets.length) {
        finish(() => resolve(collect()));
        return;
      }
      launch();
    };

    const start = (i: number) => {
      const t = targets[i]!;
      running++;
      const context: ScatterContext = {
        node: t.node,
        logical: t.logical,
        logicals: t.logicals,
        mapVersion: map.version,
        signal: controller.signal,
      };
      let pending: Promise<T> | T;
      try {
        pending = fn(nodes.get(t.node) as N, context);
      } catch (error) {
        done(i, { ok: false, error });
        return;
      }
      Promise.resolve(pending).then(
        (value) => done(i, { ok: true, value }),
        (error: unknown) => done(i, { ok: false, error }),
      );
    };

    const launch = () => {
      while (!finished && running < concurrency && next < targets.length) start(next++);
    };

    if (signal !== undefined) signal.addEventListener('abort', onCallerAbort, { once: true });
    if (timeout !== undefined) {
      timer = clock.setTimeout(() => {
        timer = undefined;
        const error = new TimeoutError(timeout!, 'Scatter-gather');
        // Whatever has not answered by the deadline counts as timed out.
        for (let i = 0; i < targets.length; i++)
          if (outcomes[i] === undefined) outcomes[i] = { ok: false, error };
        const result = collect();
        finish(
          partial === 'allow'
            ? () => resolve(result)
            : () => reject(new ScatterError<T>(result.results, result.failures)),
          error,
        );
      }, timeout);
    }
    if (targets.length === 0) {
      finish(() => resolve(collect()));
      return;
    }
    launch();
  });
}

function nodeTargets(map: ShardMap): Target[] {
  const perNode: number[][] = map.nodes.map(() => []);
  for (let s = 0; s < map.owners.length; s++) perNode[map.owners[s]!]!.push(s);
  const targets: Target[] = [];
  map.nodes.forEach((node, i) => {
    const logicals = perNode[i]!;
    if (logicals.length > 0) targets.push({ node, logical: undefined, logicals: Object.freeze(logicals) });
  });
  return targets;
}

function logicalTargets(map: ShardMap): Target[] {
  const targets = new Array<Target>(map.logicalShards);
  for (let s = 0; s < map.logicalShards; s++) {
    targets[s] = { node: map.nodes[map.owners[s]!]!, logical: s, logicals: Object.freeze([s]) };
  }
  return targets;
}
