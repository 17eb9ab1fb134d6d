/**
 * A tiny benchmark harness for hot paths that cost tens of nanoseconds.
 *
 * Why not one call per mitata iteration: an awaited call of ~70 ns is the same order as a
 * harness's own per-iteration cost, so each contender instead runs its operation `n` times in
 * its own loop (its own function, so its call sites stay monomorphic) and one sample is that
 * loop's time divided by `n`. Contenders of one case are interleaved within each round, in a
 * rotating order, and the report takes medians across rounds: drift on a noisy 2-core machine
 * hits every contender alike, and a stray GC or scheduler hiccup lands in one sample only.
 */

/** One way of doing the measured operation. */
export interface Contender {
  readonly name: string;
  /**
   * Runs the operation `n` times. Write the loop out in each contender (do not share a generic
   * loop taking a callback): a shared call site would see every contender and go megamorphic.
   */
  run(n: number): Promise<unknown> | unknown;
}

/** One line of the results table: `ratio = ours / anchor` (lower is better for ours). */
export interface BenchRow {
  /** Bench module, e.g. `breaker`. */
  bench: string;
  /** What is measured, e.g. `closed: overhead over bare await`. */
  case: string;
  ours: string;
  ours_ns: number;
  anchor: string;
  anchor_ns: number;
  ratio: number;
  /** The ratio we aim to stay at or under, when there is one. */
  goal?: number;
}

/** Median ns per operation of every contender of one case, as printed and saved. */
export interface CaseTimings {
  bench: string;
  case: string;
  rounds: number;
  /** Operations per sample, by contender. */
  ops: Record<string, number>;
  /** Median ns per operation, by contender. */
  median_ns: Record<string, number>;
  /** Interquartile range of the samples, by contender: how noisy the median is. */
  iqr_ns: Record<string, number>;
}

/** What the runner hands to each bench module. */
export interface BenchContext {
  readonly quick: boolean;
  /** Rounds per case: each contender is sampled once per round. */
  readonly rounds: number;
  /** Target duration of one sample (one contender's loop), in ms. */
  readonly sampleMs: number;
  /** Warm-up per contender before sampling, in ms. */
  readonly warmupMs: number;
  /** Whether the case named `name` of this bench was selected on the command line. */
  selected(name: string): boolean;
  /** Records a case's timings for the report (`measure` does this). */
  record(timings: CaseTimings): void;
}

/** A bench module's default export. */
export interface Bench {
  readonly name: string;
  run(context: BenchContext): Promise<BenchRow[]>;
}

/** Per-round ns/op of each contender of one case. */
export class Measurement {
  constructor(
    readonly samples: ReadonlyMap<string, readonly number[]>,
    readonly ops: ReadonlyMap<string, number>,
  ) {}

  /** Median ns per operation of `name`. */
  median(name: string): number {
    return quantile(this.#of(name), 0.5);
  }

  /**
   * Median, across rounds, of `name`'s time minus `baseline`'s time in the same round: the cost
   * `name` adds on top of `baseline`. Pairing by round cancels drift between rounds.
   */
  overhead(name: string, baseline: string): number {
    const a = this.#of(name);
    const b = this.#of(baseline);
    return quantile(
      a.map((x, i) => x - b[i]!),
      0.5,
    );
  }

  /** Interquartile range of `name`'s samples. */
  iqr(name: string): number {
    const s = this.#of(name);
    return quantile(s, 0.75) - quantile(s, 0.25);
  }

  #of(name: string): readonly number[] {
    const s = this.samples.get(name);
    if (s === undefined) throw new Error(`no contender named "${name}"`);
    return s;
  }
}

/**
 * Warms each contender up, sizes its loop so one sample lasts about `sampleMs`, then samples
 * every contender once per round, rotating the order each round.
 */
export async function measure(
  context: BenchContext,
  bench: string,
  caseName: string,
  contenders: readonly Contender[],
): Promise<Measurement> {
  const ops = new Map<string, number>();
  for (const c of contenders) ops.set(c.name, await calibrate(c, context.warmupMs, context.sampleMs));

  const samples = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  for (let round = 0; round < context.rounds; round++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(round + k) % contenders.length]!;
      const n = ops.get(c.name)!;
      const start = performance.now();
      await c.run(n);
      samples.get(c.name)!.push(((performance.now() - start) * 1e6) / n);
    }
  }

  const m = new Measurement(samples, ops);
  const names = contenders.map((c) => c.name);
  context.record({
    bench,
    case: caseName,
    rounds: context.rounds,
    ops: Object.fromEntries(ops),
    median_ns: Object.fromEntries(names.map((n) => [n, round1(m.median(n))])),
    iqr_ns: Object.fromEntries(names.map((n) => [n, round1(m.iqr(n))])),
  });
  return m;
}

/**
 * Runs `c` for about `warmupMs` (so the JIT settles), then returns the n for a sample of about
 * `sampleMs`, sized on the fastest warm-up loop: a GC pause in the last one must not shrink it.
 */
async function calibrate(c: Contender, warmupMs: number, sampleMs: number): Promise<number> {
  let n = 1000;
  let best = Number.POSITIVE_INFINITY;
  const until = performance.now() + warmupMs;
  do {
    const start = performance.now();
    await c.run(n);
    const ms = performance.now() - start;
    if (ms < 1) n *= 4;
    else best = Math.min(best, (ms * 1e6) / n);
  } while (performance.now() < until || best === Number.POSITIVE_INFINITY);
  return Math.max(1000, Math.min(10_000_000, Math.round((sampleMs * 1e6) / best)));
}

/** A row comparing ours with an anchor; the ratio is computed here so every row agrees. */
export function row(
  bench: string,
  caseName: string,
  ours: [name: string, ns: number],
  anchor: [name: string, ns: number],
  goal?: number,
): BenchRow {
  const r: BenchRow = {
    bench,
    case: caseName,
    ours: ours[0],
    ours_ns: round1(ours[1]),
    anchor: anchor[0],
    anchor_ns: round1(anchor[1]),
    ratio: Math.round((ours[1] / anchor[1]) * 1000) / 1000,
  };
  if (goal !== undefined) r.goal = goal;
  return r;
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Formats rows as an aligned text table; `align` has one `l` or `r` per column (default: first left, rest right). */
export function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align?: string,
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const left = (i: number) => (align === undefined ? i === 0 : align[i] === 'l');
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
