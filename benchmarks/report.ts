/**
 * The benchmark report: rows judged against their floors (benchmarks/floors.ts), results merged
 * across runs, the SVG chart of every ratio, and the generated part of benchmarks/README.md.
 * Pure functions over the runner's rows, so they can be tested without running a benchmark.
 */
import type { Floor as FloorSpec } from './floors.js';
import type { BenchRow, CaseTimings } from './harness.js';

/** A row of results.json: the runner's row, its floor if it has one, and when it was measured. */
export interface ReportRow extends BenchRow {
  /** The floor's bound, copied in so results.json says what the row was held to. */
  floor?: { max?: number; min?: number };
  /** False when the row crossed its floor. */
  pass?: boolean;
  /** When the row was measured (rows of cases a filtered run did not select keep theirs). */
  measuredAt: string;
}

/** The content of results.json. */
export interface Results {
  date: string;
  mode: 'full' | 'quick';
  filters: string[];
  node: string;
  platform: string;
  cores: number;
  cpu: string | undefined;
  rounds: number;
  sampleMs: number;
  rows: ReportRow[];
  timings: CaseTimings[];
}

/** What the floors say about a set of rows. */
export interface Verdict {
  /** Every row, each with its floor and verdict when it has a floor. */
  readonly rows: ReportRow[];
  /** The rows that crossed their floor. */
  readonly crossed: ReportRow[];
  /** Floors no row matched: only an error in an unfiltered run (filtered runs skip cases). */
  readonly unmatched: FloorSpec[];
  /** Floors that more than one row matched (a table mistake: the key must be unique). */
  readonly ambiguous: FloorSpec[];
}

/** The identity of a row: bench, case and both contenders. */
export function rowKey(r: { bench: string; case: string; ours: string; anchor: string }): string {
  return `${r.bench}\u0000${r.case}\u0000${r.ours}\u0000${r.anchor}`;
}

/** The identity of a case: rows of one case are measured (and replaced) together. */
export function caseKey(r: { bench: string; case: string }): string {
  return `${r.bench}\u0000${r.case}`;
}

/** True when `ratio` is within `floor`. */
export function withinFloor(ratio: number, floor: { max?: number; min?: number }): boolean {
  if (!Number.isFinite(ratio)) return false;
  if (floor.max !== undefined && ratio > floor.max) return false;
  if (floor.min !== undefined && ratio < floor.min) return false;
  return true;
}

/** Attaches each row's floor and verdict. */
export function judge(
  rows: readonly (BenchRow & { measuredAt?: string })[],
  floors: readonly FloorSpec[],
  measuredAt: string,
): Verdict {
  const byKey = new Map<string, FloorSpec>();
  const ambiguous: FloorSpec[] = [];
  for (const f of floors) {
    if (f.max === undefined && f.min === undefined) ambiguous.push(f);
    else if (byKey.has(rowKey(f))) ambiguous.push(f);
    else byKey.set(rowKey(f), f);
  }
  const seen = new Set<string>();
  const out: ReportRow[] = [];
  const crossed: ReportRow[] = [];
  for (const r of rows) {
    const key = rowKey(r);
    const floor = byKey.get(key);
    const row: ReportRow = { ...r, measuredAt: r.measuredAt ?? measuredAt };
    delete row.floor;
    delete row.pass;
    if (floor !== undefined) {
      if (seen.has(key)) ambiguous.push(floor);
      seen.add(key);
      row.floor = {};
      if (floor.max !== undefined) row.floor.max = floor.max;
      if (floor.min !== undefined) row.floor.min = floor.min;
      row.pass = withinFloor(r.ratio, floor);
      if (!row.pass) crossed.push(row);
    }
    out.push(row);
  }
  const unmatched = [...byKey.values()].filter((f) => !seen.has(rowKey(f)));
  return { rows: out, crossed, unmatched, ambiguous };
}

/**
 * The rows and timings of `next` over those of `previous`: the cases `next` measured replace
 * theirs, every other case of `previous` stays. So a filtered run (`npm run bench -- cache`)
 * updates the report without dropping the benches it did not run.
 */
export function merge(previous: Results | undefined, next: Results): Results {
  if (previous === undefined) return next;
  const measured = new Set(next.rows.map(caseKey));
  for (const t of next.timings) measured.add(caseKey(t));
  const keptRows = previous.rows.filter((r) => !measured.has(caseKey(r)));
  const keptTimings = previous.timings.filter((t) => !measured.has(caseKey(t)));
  const order = (a: { bench: string }, b: { bench: string }) => a.bench.localeCompare(b.bench);
  // Stable sort by bench keeps each bench's own order of cases and rows.
  return {
    ...next,
    rows: [...keptRows, ...next.rows].sort(order),
    timings: [...keptTimings, ...next.timings].sort(order),
  };
}

/** `list` with the cases `fresh` holds replaced by `fresh`'s items, in `list`'s order. */
export function replaceCases<T extends { bench: string; case: string }>(
  list: readonly T[],
  fresh: readonly T[],
): T[] {
  const byCase = new Map<string, T[]>();
  for (const item of fresh) {
    const key = caseKey(item);
    byCase.set(key, [...(byCase.get(key) ?? []), item]);
  }
  const out: T[] = [];
  for (const item of list) {
    const key = caseKey(item);
    const replacement = byCase.get(key);
    if (replacement === undefined) out.push(item);
    else if (replacement.length > 0) {
      out.push(...replacement);
      byCase.set(key, []);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The chart

const WIDTH = 1160;
const LABEL_W = 560;
const PLOT_X = LABEL_W + 10;
const PLOT_W = 360;
const ROW_H = 18;
const HEAD_H = 24;
const TOP = 58;
/** The ratio axis, log scale: 1000x cheaper to 20x dearer. */
const LOG_MIN = Math.log10(0.001);
const LOG_MAX = Math.log10(20);

function x(ratio: number): number {
  const l = Math.min(LOG_MAX, Math.max(LOG_MIN, Math.log10(Math.max(ratio, 1e-9))));
  return PLOT_X + ((l - LOG_MIN) / (LOG_MAX - LOG_MIN)) * PLOT_W;
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Shortens `text` to about `max` characters (the chart's label column is fixed). */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return String(r);
  return r >= 10 ? r.toFixed(1) : r >= 0.1 ? r.toFixed(2) : r.toFixed(3);
}

/**
 * An SVG chart of every row: one bar per row from parity (ratio 1) to its ratio on a log axis,
 * green when ours is cheaper than the anchor, orange when dearer, red when the row crossed its
 * floor; a black tick marks the floor. Rows are grouped by bench.
 */
export function renderChart(
  results: Pick<Results, 'rows' | 'date' | 'mode' | 'node' | 'cpu' | 'cores'>,
): string {
  const groups = new Map<string, ReportRow[]>();
  for (const r of results.rows) {
    let list = groups.get(r.bench);
    if (list === undefined) groups.set(r.bench, (list = []));
    list.push(r);
  }
  const height = TOP + groups.size * HEAD_H + results.rows.length * ROW_H + 40;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="11">`,
    '<title>buttress benchmarks: ratio = ours / anchor for every row, with its floor</title>',
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">buttress benchmarks: ratio = ours / anchor (log scale; left of 1 = ours cheaper)</text>`,
    `<text x="10" y="38" fill="#555">${esc(
      `${results.mode} run, ${results.date.slice(0, 10)}, node ${results.node}, ${results.cores} cores (${results.cpu ?? 'unknown cpu'}). Black tick: the row's floor (its ratio must stay left of it; right of it for a share); red: crossed.`,
    )}</text>`,
  );
  // Axis grid.
  const gridTop = TOP - 6;
  const gridBottom = height - 34;
  for (const tick of [0.001, 0.01, 0.1, 1, 10]) {
    const tx = x(tick).toFixed(1);
    out.push(
      `<line x1="${tx}" y1="${gridTop}" x2="${tx}" y2="${gridBottom}" stroke="${tick === 1 ? '#333' : '#ddd'}" stroke-width="${tick === 1 ? 1.2 : 1}"/>`,
      `<text x="${tx}" y="${gridBottom + 14}" text-anchor="middle" fill="#555">${tick === 1 ? '1 (parity)' : String(tick)}</text>`,
    );
  }
  let y = TOP;
  for (const [bench, rows] of groups) {
    out.push(`<text x="10" y="${y + 15}" font-size="12" font-weight="bold">${esc(bench)}</text>`);
    y += HEAD_H;
    for (const r of rows) {
      const label = clip(`${r.case}: ${r.ours} vs ${r.anchor}`, 98);
      const x1 = x(1);
      const x2 = x(r.ratio);
      const crossed = r.pass === false;
      const color = crossed
        ? '#d62728'
        : r.floor?.min !== undefined
          ? '#1f77b4'
          : r.ratio <= 1
            ? '#2ca02c'
            : '#ff7f0e';
      out.push(
        `<text x="10" y="${y + 12.5}" fill="#222">${esc(label)}</text>`,
        `<rect x="${Math.min(x1, x2).toFixed(1)}" y="${y + 3}" width="${Math.max(1, Math.abs(x2 - x1)).toFixed(1)}" height="${ROW_H - 6}" fill="${color}"><title>${esc(`${r.bench} / ${r.case}\n${r.ours} ${r.ours_ns} vs ${r.anchor} ${r.anchor_ns}: ratio ${r.ratio}`)}</title></rect>`,
      );
      const bound = r.floor?.max ?? r.floor?.min;
      if (bound !== undefined) {
        const fx = x(bound).toFixed(1);
        out.push(
          `<line x1="${fx}" y1="${y + 1}" x2="${fx}" y2="${y + ROW_H - 1}" stroke="#000" stroke-width="2"/>`,
        );
      }
      out.push(
        `<text x="${PLOT_X + PLOT_W + 10}" y="${y + 12.5}" fill="${crossed ? '#d62728' : '#222'}">${esc(
          `${fmtRatio(r.ratio)}${bound === undefined ? '' : ` (floor ${r.floor?.max !== undefined ? '≤' : '≥'} ${bound})`}${crossed ? ' CROSSED' : ''}`,
        )}</text>`,
      );
      y += ROW_H;
    }
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// README

export const README_START =
  '<!-- report:start: written by `npm run bench` (full runs); edit benchmarks/floors.ts, not this -->';
export const README_END = '<!-- report:end -->';

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The generated part of benchmarks/README.md: the chart and the floors table. */
export function renderReadmeSection(results: Results, floors: readonly FloorSpec[]): string {
  const byKey = new Map(results.rows.map((r) => [rowKey(r), r]));
  const lines = [
    README_START,
    '',
    `Last full run: ${results.date.slice(0, 16).replace('T', ' ')} UTC, ${results.mode}, ${results.rounds} rounds, node ${results.node}, ${results.platform}, ${results.cores} cores (${results.cpu ?? 'unknown cpu'}). Every row: [results.json](results.json).`,
    '',
    '![Every benchmark row: ratio = ours / anchor on a log scale, with its floor](results.svg)',
    '',
    '### Floors',
    '',
    'The run fails (CI included) when a row crosses its floor. Set from several runs on this machine; the table lives in [floors.ts](floors.ts).',
    '',
    '| bench | case | ours vs anchor | floor | last full run | basis |',
    '| --- | --- | --- | ---: | ---: | --- |',
  ];
  for (const f of floors) {
    const r = byKey.get(rowKey(f));
    const bound = f.max !== undefined ? `≤ ${f.max}` : `≥ ${f.min}`;
    const last =
      r === undefined ? 'not run' : `${fmtRatio(r.ratio)}${r.pass === false ? ' **crossed**' : ''}`;
    lines.push(
      `| ${cell(f.bench)} | ${cell(f.case)} | ${cell(f.ours)} vs ${cell(f.anchor)} | ${bound} | ${last} | ${cell(f.basis)} |`,
    );
  }
  lines.push('', README_END);
  return lines.join('\n');
}

/** `readme` with its generated section replaced (or appended when it has none). */
export function spliceReadme(readme: string, section: string): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start === -1 || end === -1 || end < start) return `${readme.trimEnd()}\n\n${section}\n`;
  return `${readme.slice(0, start)}${section}${readme.slice(end + README_END.length)}`;
}
