/**
 * Runs every `benchmarks/*.bench.ts`, each in a process of its own (one per area: ours and the
 * anchors measured side by side in it, and no area's garbage or JIT state leaking into the next),
 * prints each case's timings and a table of `ratio = ours / anchor`, judges every row against its
 * floor (benchmarks/floors.ts), and writes the report.
 *
 *   npm run bench                      full run: benchmarks/results.json, results.svg and the
 *                                      generated part of benchmarks/README.md
 *   npm run bench -- --quick           a few rounds, for CI (.ci/run): the same files under .tmp/bench/
 *   npm run bench -- registry open     only cases whose "<bench> <case>" contains a filter; their
 *                                      rows replace those cases in the report, the rest stay
 *   npm run bench -- --rounds 61       more rounds
 *   npm run bench -- --out DIR         write the report to DIR instead
 *   npm run bench -- --retries N       re-measure a crossing row's case up to N times (default 2)
 *   npm run bench -- --area-timeout S  kill an area's process still running after S seconds (default
 *                                      300 quick, 1200 full): it counts as a failed area
 *   npm run bench -- --render          run nothing: judge results.json again (after floors.ts
 *                                      changed) and rewrite results.svg and the README report
 *
 * Exits non-zero when a bench throws (its sanity checks included; the other areas still run),
 * when a row crosses its floor in its first measurement and in every re-measurement of its case
 * (a regression crosses each time; a burst of load from another process rarely does twice),
 * and, in an unfiltered run, when a floor matches no row (a renamed case must take its floor
 * along). A missed goal is printed; only the floors gate.
 */
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { floors } from './floors.js';
import { type Bench, type BenchContext, type BenchRow, type CaseTimings, table } from './harness.js';
import {
  caseKey,
  judge,
  merge,
  type Results,
  renderChart,
  renderReadmeSection,
  replaceCases,
  spliceReadme,
  withinFloor,
} from './report.js';

const here = dirname(fileURLToPath(import.meta.url));

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const roundsArg = args.indexOf('--rounds');
const outArg = args.indexOf('--out');
const filters: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--rounds' || a === '--out' || a === '--area' || a === '--retries' || a === '--area-timeout') i++;
  else if (a !== '--quick' && a !== '--render') filters.push(a.toLowerCase());
}
/** The arguments that are not filters, passed on to each area's process. */
const flagArgs = args.filter(
  (a, i) =>
    !filters.includes(a.toLowerCase()) ||
    ['--rounds', '--out', '--retries', '--area-timeout'].includes(args[i - 1] ?? ''),
);
const retriesArg = args.indexOf('--retries');
const retries = retriesArg >= 0 ? Number(args[retriesArg + 1]) : 2;
if (!Number.isInteger(retries) || retries < 0) {
  console.error(`--retries expects a whole number, got ${args[retriesArg + 1]}`);
  process.exit(2);
}
// Quick runs are for CI's gate: too few rounds to stand as the committed report.
const outDir =
  outArg >= 0 ? resolve(args[outArg + 1] ?? '.') : quick ? join(here, '..', '.tmp', 'bench') : here;
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 7 : 41;
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds expects a positive integer, got ${args[roundsArg + 1]}`);
  process.exit(2);
}
const sampleMs = quick ? 2 : 8;
/** Longest an area's process may run (`--area-timeout SECONDS`): 5 minutes quick, 20 full. */
const areaTimeoutArg = args.indexOf('--area-timeout');
const areaTimeoutMs = (areaTimeoutArg >= 0 ? Number(args[areaTimeoutArg + 1]) : quick ? 300 : 1200) * 1000;
if (!(areaTimeoutMs > 0)) {
  console.error(`--area-timeout expects a number of seconds, got ${args[areaTimeoutArg + 1]}`);
  process.exit(2);
}
const warmupMs = quick ? 30 : 150;

const fmt = (ns: number) => (ns >= 100 ? ns.toFixed(0) : ns.toFixed(1));
const jsonFile = join(outDir, 'results.json');

if (args.includes('--render')) {
  const saved = JSON.parse(readFileSync(jsonFile, 'utf8')) as Results;
  const verdict = judge(saved.rows, floors, saved.date);
  const report = { ...saved, rows: verdict.rows };
  writeReport(report);
  // A saved report may lack cases (an old one, a partial one): say so, but only rows gate here.
  for (const f of verdict.unmatched)
    console.warn(`floors.ts: ${f.bench} / ${f.case} (${f.ours} vs ${f.anchor}) has no row in ${jsonFile}`);
  process.exit(gate(verdict, false) ? 0 : 1);
}

const timings: CaseTimings[] = [];
const rows: BenchRow[] = [];
const started = performance.now();
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .sort();

/** What an area's process sends back. */
interface AreaResult {
  rows: BenchRow[];
  timings: CaseTimings[];
}

/** Areas whose process failed: the run is then partial, like a filtered one. */
const failed: string[] = [];

const areaArg = args.indexOf('--area');
if (areaArg >= 0) {
  // An area's own process (forked below): run one bench module, send its rows to the parent.
  const file = args[areaArg + 1]!;
  const result = await runArea(file);
  process.send!(result, () => process.exit(0));
} else {
  console.log(
    `buttress benchmarks: ${quick ? 'quick' : 'full'}, ${rounds} rounds, ${sampleMs} ms samples, ` +
      `node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown cpu'}), one process per area`,
  );
  /** Which file measured which bench, for re-measuring a case. */
  const fileOf = new Map<string, string>();
  for (const file of files) {
    try {
      const result = await forkArea(file, filters);
      for (const r of result.rows) fileOf.set(r.bench, file);
      rows.push(...result.rows);
      timings.push(...result.timings);
    } catch (error) {
      failed.push(`${file}: ${(error as Error).message}`);
    }
  }
  await remeasureCrossings(fileOf);
  if (failed.length > 0) {
    console.error(`\n${failed.length} area(s) failed:\n${failed.map((f) => `  - ${f}`).join('\n')}`);
    process.exitCode = 1;
  }
  await report();
}

/**
 * Measures again, up to `retries` times, the cases of rows that crossed their floor, and keeps the
 * latest measurement of each: a row fails the run only if it crossed every time.
 */
async function remeasureCrossings(fileOf: ReadonlyMap<string, string>): Promise<void> {
  for (let attempt = 1; attempt <= retries; attempt++) {
    const crossed = judge(rows, floors, '').crossed;
    if (crossed.length === 0) return;
    const cases = new Map<string, { bench: string; case: string }>();
    for (const r of crossed) cases.set(caseKey(r), { bench: r.bench, case: r.case });
    console.log(
      `\nfloors: ${crossed.length} row(s) crossed (${[...cases.values()].map((c) => `${c.bench} / ${c.case}`).join('; ')}): measuring again, attempt ${attempt} of ${retries}, to tell a regression from noise`,
    );
    for (const [bench, file] of fileOf) {
      const mine = [...cases.values()].filter((c) => c.bench === bench);
      if (mine.length === 0) continue;
      let result: AreaResult;
      try {
        result = await forkArea(
          file,
          mine.map((c) => `${c.bench} ${c.case}`.toLowerCase()),
        );
      } catch (error) {
        failed.push(`${file} (measuring again): ${(error as Error).message}`);
        continue;
      }
      // Replace only the cases that came back (one the filter could not select keeps its rows),
      // each where it stood.
      rows.splice(0, rows.length, ...replaceCases(rows, result.rows));
      timings.splice(0, timings.length, ...replaceCases(timings, result.timings));
    }
  }
}

/** Runs `file` in a child process with the same flags (tsx's loader included) and `filterList`. */
function forkArea(file: string, filterList: readonly string[]): Promise<AreaResult> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [...flagArgs, ...filterList, '--area', file], {
      execArgv: process.execArgv,
      stdio: 'inherit',
    });
    let result: AreaResult | undefined;
    // A hung area (a server that never answers, a promise that never settles) must not hang the
    // run, and CI with it: past its time it is killed and reported as a failed area.
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, areaTimeoutMs);
    child.on('message', (m) => {
      result = m as AreaResult;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(watchdog);
      if (result !== undefined && code === 0) resolvePromise(result);
      else if (timedOut) reject(new Error(`still running after ${areaTimeoutMs / 1000} s: killed`));
      else reject(new Error(`exited with ${signal ?? `code ${code}`}`));
    });
  });
}

async function runArea(file: string): Promise<AreaResult> {
  const bench = ((await import(pathToFileURL(join(here, file)).href)) as { default: Bench }).default;
  const recorded: CaseTimings[] = [];
  const context: BenchContext = {
    quick,
    rounds,
    sampleMs,
    warmupMs,
    selected: (name) =>
      filters.length === 0 || filters.some((f) => `${bench.name} ${name}`.toLowerCase().includes(f)),
    record(t) {
      recorded.push(t);
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
  return { rows: await bench.run(context), timings: recorded };
}

async function report(): Promise<void> {
  if (rows.length === 0) {
    console.log(`\nno case matched ${filters.map((f) => `"${f}"`).join(', ')}; results.json left as it was`);
    return;
  }

  const measuredAt = new Date().toISOString();
  const verdict = judge(rows, floors, measuredAt);
  const mark = (r: (typeof verdict.rows)[number]): string => {
    if (r.floor === undefined) return '';
    const bound = r.floor.max !== undefined ? `<= ${r.floor.max}` : `>= ${r.floor.min}`;
    return `${bound} ${r.pass ? 'ok' : 'CROSSED'}`;
  };

  console.log('\nratio = ours / anchor (lower is better for ours; overheads are above a bare await)\n');
  console.log(
    table(
      ['bench', 'case', 'ours', 'ns', 'anchor', 'ns', 'ratio', 'goal', 'floor'],
      verdict.rows.map((r) => [
        r.bench,
        r.case,
        r.ours,
        fmt(r.ours_ns),
        r.anchor,
        fmt(r.anchor_ns),
        r.ratio.toFixed(2),
        r.goal === undefined
          ? ''
          : `<= ${r.goal} ${withinFloor(r.ratio, { max: r.goal }) ? 'met' : 'MISSED'}`,
        mark(r),
      ]),
      'lllrlrrll',
    ),
  );

  const results: Results = {
    date: measuredAt,
    mode: quick ? 'quick' : 'full',
    filters,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cores: availableParallelism(),
    cpu: cpus()[0]?.model.trim(),
    rounds,
    sampleMs,
    rows: verdict.rows,
    timings,
  };
  // A filtered run, or one where an area failed, keeps the other cases of the last report.
  const partial = filters.length > 0 || failed.length > 0;
  let previous: Results | undefined;
  if (partial && existsSync(jsonFile)) {
    try {
      previous = JSON.parse(readFileSync(jsonFile, 'utf8')) as Results;
      // A report written before rows carried their floor and date: judge its rows again.
      previous.rows = judge(previous.rows, floors, previous.date).rows;
    } catch {
      previous = undefined;
    }
  }
  writeReport(merge(previous, results));
  console.log(`in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (!gate(verdict, !partial)) process.exitCode = 1;
}

/** Writes results.json, results.svg and, in benchmarks/, the README's generated section. */
function writeReport(report: Results): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, 'results.svg'), renderChart(report));
  const readme = join(outDir, 'README.md');
  if (outDir === here) {
    writeFileSync(readme, spliceReadme(readFileSync(readme, 'utf8'), renderReadmeSection(report, floors)));
  }
  const shown = relative(process.cwd(), jsonFile) || jsonFile;
  console.log(`\nwrote ${shown} and results.svg${outDir === here ? ', and the report in README.md' : ''}`);
}

/** Prints the floors' verdict; false when a row crossed its floor or the table is wrong. */
function gate(verdict: ReturnType<typeof judge>, complete: boolean): boolean {
  const problems: string[] = [];
  for (const r of verdict.crossed) {
    const bound = r.floor!.max !== undefined ? `floor <= ${r.floor!.max}` : `floor >= ${r.floor!.min}`;
    problems.push(`${r.bench} / ${r.case}: ${r.ours} vs ${r.anchor} = ${r.ratio} (${bound})`);
  }
  for (const f of verdict.ambiguous) {
    problems.push(
      `floors.ts: the floor of ${f.bench} / ${f.case} (${f.ours} vs ${f.anchor}) is duplicated or has no bound`,
    );
  }
  if (complete) {
    for (const f of verdict.unmatched) {
      problems.push(
        `floors.ts: no row is ${f.bench} / ${f.case}: ${f.ours} vs ${f.anchor} (renamed? move its floor along)`,
      );
    }
  }
  const gated = verdict.rows.filter((r) => r.floor !== undefined).length;
  if (problems.length === 0) {
    console.log(`floors: all ${gated} gated rows within their floor`);
    return true;
  }
  console.error(
    `\nfloors: ${problems.length} problem(s), ${gated} rows gated:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
  );
  return false;
}
