/**
 * Runs every `benchmarks/*.bench.ts`, prints each case's timings and a table of
 * `ratio = ours / anchor`, and writes `benchmarks/results.json`.
 *
 *   npm run bench                      full run (about 10 s per bench module)
 *   npm run bench -- --quick           a few rounds, for CI (a few seconds)
 *   npm run bench -- registry open     only cases whose "<bench> <case>" contains a filter
 *   npm run bench -- --rounds 61       more rounds
 *
 * Exits non-zero only when a bench throws (its sanity checks included); a missed goal is
 * reported, not fatal: a shared CI runner is too noisy to gate on.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Bench, type BenchContext, type BenchRow, type CaseTimings, table } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const roundsArg = args.indexOf('--rounds');
const filters: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--rounds') i++;
  else if (a !== '--quick') filters.push(a.toLowerCase());
}
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 7 : 41;
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds expects a positive integer, got ${args[roundsArg + 1]}`);
  process.exit(2);
}
const sampleMs = quick ? 2 : 8;
const warmupMs = quick ? 30 : 150;

const fmt = (ns: number) => (ns >= 100 ? ns.toFixed(0) : ns.toFixed(1));

const timings: CaseTimings[] = [];
const rows: BenchRow[] = [];
const started = performance.now();
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .sort();

console.log(
  `buttress benchmarks: ${quick ? 'quick' : 'full'}, ${rounds} rounds, ${sampleMs} ms samples, ` +
    `node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown cpu'})`,
);

for (const file of files) {
  const bench = ((await import(pathToFileURL(join(here, file)).href)) as { default: Bench }).default;
  const context: BenchContext = {
    quick,
    rounds,
    sampleMs,
    warmupMs,
    selected: (name) =>
      filters.length === 0 || filters.some((f) => `${bench.name} ${name}`.toLowerCase().includes(f)),
    record(t) {
      timings.push(t);
      const names = Object.keys(t.median_ns);
      console.log(`\n${t.bench} / ${t.case}  (median ns per call, interquartile range, calls per sample)`);
      console.log(
        table(
          ['contender', 'ns', 'iqr', 'calls/sample'],
          names.map((n) => [n, fmt(t.median_ns[n]!), fmt(t.iqr_ns[n]!), String(t.ops[n])]),
        ),
      );
    },
  };
  rows.push(...(await bench.run(context)));
}

if (rows.length === 0) {
  console.log(`\nno case matched ${filters.map((f) => `"${f}"`).join(', ')}; results.json left as it was`);
  process.exit(0);
}

console.log('\nratio = ours / anchor (lower is better for ours; overheads are above a bare await)\n');
console.log(
  table(
    ['bench', 'case', 'ours', 'ns', 'anchor', 'ns', 'ratio', 'goal'],
    rows.map((r) => [
      r.bench,
      r.case,
      r.ours,
      fmt(r.ours_ns),
      r.anchor,
      fmt(r.anchor_ns),
      r.ratio.toFixed(2),
      r.goal === undefined ? '' : `<= ${r.goal} ${r.ratio <= r.goal ? 'met' : 'MISSED'}`,
    ]),
    'lllrlrrl',
  ),
);

const out = join(here, 'results.json');
writeFileSync(
  out,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      mode: quick ? 'quick' : 'full',
      filters,
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cores: availableParallelism(),
      cpu: cpus()[0]?.model.trim(),
      rounds,
      sampleMs,
      rows,
      timings,
    },
    null,
    2,
  )}\n`,
);
console.log(`\nwrote ${out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
