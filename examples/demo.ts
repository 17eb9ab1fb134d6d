/**
 * What a circuit breaker does for callers of a flaky upstream, in about 13 seconds:
 *
 *   npm run demo
 *
 * Needs no services: the upstream is simulated in this process and follows a schedule
 * (healthy, failing, slow, recovered) in compressed real time. Twenty clients call it in a loop,
 * once without a breaker and once through `circuitBreaker(...)`, and the two runs are compared.
 */
import {
  type CircuitState,
  circuitBreaker,
  countWindow,
  isBrokenCircuitError,
} from '../src/breaker/index.js';

const CLIENTS = 20;
/** Pause between a client's calls. */
const THINK_MS = 20;
/** The upstream's schedule: each client call behaves as the phase it starts in. */
const PHASES = [
  { name: 'healthy', ms: 1500, fails: false, latency: [5, 15], says: 'answers in 5-15 ms' },
  { name: 'failing', ms: 1500, fails: true, latency: [300, 300], says: 'errors, after a 300 ms timeout' },
  {
    name: 'slow',
    ms: 1500,
    fails: false,
    latency: [400, 400],
    says: 'answers in 400 ms (callers can afford 200)',
  },
  { name: 'recovered', ms: 1500, fails: false, latency: [5, 15], says: 'answers in 5-15 ms' },
] as const;
type PhaseName = (typeof PHASES)[number]['name'];
const RUN_MS = PHASES.reduce((total, p) => total + p.ms, 0);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const seconds = (ms: number) => (ms / 1000).toFixed(2);

/** The phase at `elapsed` ms into a run. */
function phaseAt(elapsed: number): (typeof PHASES)[number] {
  let end = 0;
  for (const phase of PHASES) {
    end += phase.ms;
    if (elapsed < end) return phase;
  }
  return PHASES[PHASES.length - 1]!;
}

/** A seeded random source (mulberry32), so both runs see the same upstream. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The simulated upstream service. Counts the calls that reach it, by phase. */
class FlakyUpstream {
  readonly reached = new Map<PhaseName, number>(PHASES.map((p) => [p.name, 0]));
  readonly #start = performance.now();
  readonly #random = random(42);

  async call(): Promise<string> {
    const phase = phaseAt(performance.now() - this.#start);
    this.reached.set(phase.name, this.reached.get(phase.name)! + 1);
    const [min, max] = phase.latency;
    await sleep(min + (max - min) * this.#random());
    if (phase.fails) throw new Error(`upstream ${phase.name}`);
    return 'ok';
  }
}

interface CallRecord {
  phase: PhaseName;
  ms: number;
  outcome: 'ok' | 'upstream error' | 'fast-rejected';
}

interface RunResult {
  label: string;
  calls: CallRecord[];
  reached: Map<PhaseName, number>;
}

/** Runs CLIENTS clients for the whole schedule against a fresh upstream, each call made by `through(upstream)`. */
async function run(
  label: string,
  through: (upstream: FlakyUpstream) => () => Promise<string>,
): Promise<RunResult> {
  const upstream = new FlakyUpstream();
  const call = through(upstream);
  const calls: CallRecord[] = [];
  const start = performance.now();

  async function client(): Promise<void> {
    while (performance.now() - start < RUN_MS) {
      const began = performance.now();
      const phase = phaseAt(began - start).name;
      let outcome: CallRecord['outcome'] = 'ok';
      try {
        await call();
      } catch (error) {
        // A real caller would serve a fallback (a cached value, a default) here.
        outcome = isBrokenCircuitError(error) ? 'fast-rejected' : 'upstream error';
      }
      calls.push({ phase, ms: performance.now() - began, outcome });
      await sleep(THINK_MS);
    }
  }

  await Promise.all(Array.from({ length: CLIENTS }, client));
  return { label, calls, reached: upstream.reached };
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** Breaks `text` into lines of at most `width` characters. */
function wrap(text: string, width = 100): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return [...lines, line].join('\n');
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

// ---------------------------------------------------------------------------------------------

console.log(
  `buttress demo: ${CLIENTS} clients call a flaky upstream for ${RUN_MS / 1000} s, without and then with a circuit breaker.\n`,
);
let from = 0;
for (const phase of PHASES) {
  console.log(`  ${seconds(from)}-${seconds(from + phase.ms)} s  ${phase.name.padEnd(9)}  ${phase.says}`);
  from += phase.ms;
}

console.log('\nrun 1: calling the upstream directly...');
const without = await run('without breaker', (upstream) => () => upstream.call());

console.log('run 2: calling it through a circuit breaker:');
/** When the circuit closed again, in ms into the run. */
const closedAt: number[] = [];
console.log(
  '  circuitBreaker({ strategy: countWindow({ size: 20, minimumCalls: 10, failureRate: 0.5, slowCallRate: 0.5 }),\n' +
    "                   slowCallDuration: '200ms', halfOpenAfter: '250ms' })",
);
const withBreaker = await run('with breaker', (upstream) => {
  // Opens when half of the last 20 calls (at least 10) failed, or took 200 ms or more; after
  // 250 ms lets one trial call through, and closes again if it is fast and succeeds.
  const breaker = circuitBreaker({
    name: 'upstream',
    strategy: countWindow({ size: 20, minimumCalls: 10, failureRate: 0.5, slowCallRate: 0.5 }),
    slowCallDuration: '200ms',
    halfOpenAfter: '250ms',
  });
  const start = performance.now();
  let last: CircuitState = 'closed';
  breaker.onStateChange((state) => {
    const elapsed = performance.now() - start;
    console.log(`  ${seconds(elapsed)} s  ${last} -> ${state}  (${phaseAt(elapsed).name})`);
    if (state === 'closed') closedAt.push(elapsed);
    last = state;
  });
  return () => breaker.execute(() => upstream.call());
});

// ---------------------------------------------------------------------------------------------

const summary = (r: RunResult) => {
  const ms = r.calls.map((c) => c.ms).sort((a, b) => a - b);
  const count = (outcome: CallRecord['outcome']) => r.calls.filter((c) => c.outcome === outcome).length;
  const reached = [...r.reached.values()].reduce((a, b) => a + b, 0);
  return {
    calls: r.calls.length,
    ok: count('ok'),
    upstreamErrors: count('upstream error'),
    rejected: count('fast-rejected'),
    reached,
    p50: percentile(ms, 0.5),
    p95: percentile(ms, 0.95),
    p99: percentile(ms, 0.99),
  };
};
type Summary = ReturnType<typeof summary>;
const a: Summary = summary(without);
const b: Summary = summary(withBreaker);

console.log('\nall calls (latency is what the client waited for an answer, success or error)\n');
printTable(
  ['', 'calls', 'ok', 'upstream errors', 'fast-rejected', 'reached upstream', 'p50 ms', 'p95 ms', 'p99 ms'],
  (
    [
      [without.label, a],
      [withBreaker.label, b],
    ] as const
  ).map(([label, x]) => [
    label,
    String(x.calls),
    String(x.ok),
    String(x.upstreamErrors),
    String(x.rejected),
    String(x.reached),
    x.p50.toFixed(1),
    x.p95.toFixed(1),
    x.p99.toFixed(1),
  ]),
);

console.log('\ncalls that reached the upstream, and p95 latency, by phase\n');
const phaseP95 = (r: RunResult, phase: PhaseName) =>
  percentile(
    r.calls
      .filter((c) => c.phase === phase)
      .map((c) => c.ms)
      .sort((x, y) => x - y),
    0.95,
  );
printTable(
  ['', ...PHASES.flatMap((p) => [p.name, 'p95 ms'])],
  [without, withBreaker].map((r) => [
    r.label,
    ...PHASES.flatMap((p) => [String(r.reached.get(p.name)), phaseP95(r, p.name).toFixed(0)]),
  ]),
);

const reachedIn = (r: RunResult, phase: PhaseName) => r.reached.get(phase)!;
const okIn = (r: RunResult, phase: PhaseName) =>
  r.calls.filter((c) => c.phase === phase && c.outcome === 'ok').length;
const recoveredAt = PHASES[0].ms + PHASES[1].ms + PHASES[2].ms;
const closedAgain = closedAt.find((t) => t >= recoveredAt);
const closing =
  closedAgain === undefined
    ? 'which did not happen before the end'
    : `here ${(closedAgain - recoveredAt).toFixed(0)} ms after the upstream recovered`;
console.log(
  '\n' +
    wrap(
      `What this shows: without a breaker every client keeps calling the upstream while it fails, waiting ` +
        `out the 300 ms timeout each time: ${reachedIn(without, 'failing')} calls hit it during the failing spell ` +
        `and ${reachedIn(without, 'slow')} during the slow one, and the clients' tail latency is the upstream's ` +
        `(p95 ${a.p95.toFixed(0)} ms, p99 ${a.p99.toFixed(0)} ms). With the breaker, the first ten failures open ` +
        `the circuit; from then on callers get an immediate E_CIRCUIT_OPEN, which they can answer with a ` +
        `fallback, and only calls already in flight and the half-open trial calls reach the upstream: ` +
        `${reachedIn(withBreaker, 'failing')} during the failing spell and ${reachedIn(withBreaker, 'slow')} during ` +
        `the slow one, which leaves a struggling service room to recover, while the clients' p95/p99 drop to ` +
        `${b.p95.toFixed(0)}/${b.p99.toFixed(0)} ms. Slow calls count against the circuit too (slowCallDuration), ` +
        `so it stays open through the slow spell: ${okIn(without, 'slow') - okIn(withBreaker, 'slow')} slow ` +
        `successes became fast fallbacks. The price is paid at recovery: the circuit closes only once a trial ` +
        `call succeeds, ${closing} (in the recovered phase ${reachedIn(withBreaker, 'recovered')} calls reached ` +
        `the upstream, against ${reachedIn(without, 'recovered')} without the breaker).`,
    ),
);
