import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { floors } from '../benchmarks/floors.js';
import type { BenchRow } from '../benchmarks/harness.js';
import {
  judge,
  merge,
  README_END,
  README_START,
  type Results,
  renderChart,
  renderReadmeSection,
  replaceCases,
  rowKey,
  spliceReadme,
  withinFloor,
} from '../benchmarks/report.js';

const root = new URL('..', import.meta.url).pathname;

function benchRow(
  bench: string,
  caseName: string,
  ratio: number,
  ours = 'buttress',
  anchor = 'anchor',
): BenchRow {
  return { bench, case: caseName, ours, ours_ns: ratio * 100, anchor, anchor_ns: 100, ratio };
}

function results(rows: BenchRow[], date = '2026-01-01T00:00:00.000Z'): Results {
  return {
    date,
    mode: 'full',
    filters: [],
    node: 'v20.0.0',
    platform: 'linux x64',
    cores: 2,
    cpu: 'test cpu',
    rounds: 41,
    sampleMs: 8,
    rows: judge(rows, [], date).rows,
    timings: rows.map((r) => ({
      bench: r.bench,
      case: r.case,
      rounds: 41,
      ops: {},
      median_ns: {},
      iqr_ns: {},
    })),
  };
}

describe('benchmarks/floors.ts', () => {
  it('gives every floor one bound and a basis, and no row two floors', () => {
    const keys = new Set<string>();
    for (const f of floors) {
      expect((f.max === undefined) !== (f.min === undefined), `${f.bench} / ${f.case}`).toBe(true);
      expect(f.basis.length).toBeGreaterThan(10);
      expect(keys.has(rowKey(f)), `${f.bench} / ${f.case} twice`).toBe(false);
      keys.add(rowKey(f));
    }
    expect(floors.length).toBeGreaterThan(10);
  });

  it('names bench modules that exist (case names are checked by every unfiltered run)', () => {
    for (const f of floors)
      expect(existsSync(join(root, `benchmarks/${f.bench}.bench.ts`)), f.bench).toBe(true);
  });
});

describe('judge', () => {
  const floorTable = [
    { bench: 'b', case: 'c', ours: 'buttress', anchor: 'anchor', max: 0.5, basis: 'test floor, at most' },
    {
      bench: 'b',
      case: 'share',
      ours: 'buttress',
      anchor: 'anchor',
      min: 0.4,
      basis: 'test floor, at least',
    },
  ];

  it('passes a row within its floor and fails one past it', () => {
    const v = judge([benchRow('b', 'c', 0.49), benchRow('b', 'share', 0.39)], floorTable, 'now');
    expect(v.rows.map((r) => r.pass)).toEqual([true, false]);
    expect(v.crossed.map((r) => r.case)).toEqual(['share']);
    expect(v.unmatched).toEqual([]);
  });

  it('leaves rows without a floor ungated', () => {
    const v = judge([benchRow('b', 'other', 100)], floorTable, 'now');
    expect(v.rows[0]!.pass).toBeUndefined();
    expect(v.crossed).toEqual([]);
    expect(v.unmatched.map((f) => f.case).sort()).toEqual(['c', 'share']);
  });

  it('fails a row whose ratio is not a number', () => {
    expect(withinFloor(Number.NaN, { max: 1 })).toBe(false);
    expect(withinFloor(Number.POSITIVE_INFINITY, { min: 0 })).toBe(false);
  });

  it('reports a duplicated floor or one without a bound', () => {
    const v = judge(
      [benchRow('b', 'c', 0.1)],
      [
        ...floorTable,
        floorTable[0]!,
        { bench: 'b', case: 'x', ours: 'o', anchor: 'a', basis: 'no bound at all' },
      ],
      'now',
    );
    expect(v.ambiguous).toHaveLength(2);
  });

  test.prop([fc.double({ min: 0, max: 100, noNaN: true }), fc.double({ min: 0.001, max: 50, noNaN: true })])(
    'a row passes exactly when its ratio is at most the floor',
    (ratio, max) => {
      const v = judge([benchRow('b', 'c', ratio)], [{ ...floorTable[0]!, max }], 'now');
      expect(v.rows[0]!.pass).toBe(ratio <= max);
      expect(v.crossed.length === 0).toBe(ratio <= max);
    },
  );
});

describe('merge', () => {
  it('keeps the cases a filtered run did not measure, and replaces those it did', () => {
    const old = results([benchRow('a', 'x', 0.1), benchRow('a', 'y', 0.2), benchRow('b', 'z', 0.3)], 'old');
    const next = results([benchRow('a', 'y', 0.9)], 'new');
    const m = merge(old, next);
    expect(m.rows.map((r) => [r.bench, r.case, r.ratio, r.measuredAt])).toEqual([
      ['a', 'x', 0.1, 'old'],
      ['a', 'y', 0.9, 'new'],
      ['b', 'z', 0.3, 'old'],
    ]);
    expect(m.timings.map((t) => t.case)).toEqual(['x', 'y', 'z']);
    expect(m.date).toBe('new');
  });

  test.prop([
    fc.uniqueArray(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.constantFrom('x', 'y', 'z')), {
      selector: ([b, c]) => `${b}/${c}`,
    }),
    fc.uniqueArray(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.constantFrom('x', 'y', 'z')), {
      selector: ([b, c]) => `${b}/${c}`,
    }),
  ])('a merge holds every case of either run once, the newer run winning', (before, after) => {
    const old = results(
      before.map(([b, c]) => benchRow(b, c, 1)),
      'old',
    );
    const next = results(
      after.map(([b, c]) => benchRow(b, c, 2)),
      'new',
    );
    const m = merge(old, next);
    const cases = m.rows.map((r) => `${r.bench}/${r.case}`);
    expect(new Set(cases).size).toBe(cases.length);
    expect(new Set(cases)).toEqual(new Set([...before, ...after].map(([b, c]) => `${b}/${c}`)));
    for (const r of m.rows) {
      const measuredNow = after.some(([b, c]) => b === r.bench && c === r.case);
      expect(r.ratio).toBe(measuredNow ? 2 : 1);
    }
  });
});

describe('replaceCases', () => {
  it('puts a re-measured case where it stood and leaves the others alone', () => {
    const list = [
      benchRow('a', 'x', 1),
      benchRow('a', 'y', 1),
      benchRow('a', 'y', 1, 'buttress', 'b'),
      benchRow('b', 'z', 1),
    ];
    const fresh = [benchRow('a', 'y', 2), benchRow('a', 'y', 2, 'buttress', 'b')];
    expect(replaceCases(list, fresh).map((r) => [r.case, r.anchor, r.ratio])).toEqual([
      ['x', 'anchor', 1],
      ['y', 'anchor', 2],
      ['y', 'b', 2],
      ['z', 'anchor', 1],
    ]);
  });

  test.prop([
    fc.array(fc.tuple(fc.constantFrom('a', 'b'), fc.constantFrom('x', 'y', 'z')), { maxLength: 12 }),
    fc.array(fc.tuple(fc.constantFrom('a', 'b'), fc.constantFrom('x', 'y', 'z')), { maxLength: 6 }),
  ])('a case found in both comes out as fresh measured it, every other case as it was', (before, again) => {
    const list = before.map(([b, c]) => benchRow(b, c, 1));
    const fresh = again.map(([b, c]) => benchRow(b, c, 2));
    const out = replaceCases(list, fresh);
    const key = (r: BenchRow) => `${r.bench}/${r.case}`;
    const freshKeys = new Set(fresh.map(key));
    for (const k of new Set(list.map(key))) {
      const got = out.filter((r) => key(r) === k);
      if (freshKeys.has(k)) expect(got).toEqual(fresh.filter((r) => key(r) === k));
      else expect(got).toEqual(list.filter((r) => key(r) === k));
    }
    // Nothing appears that was not measured before (a re-measurement only replaces).
    expect(out.every((r) => list.some((l) => key(l) === key(r)))).toBe(true);
  });
});

describe('the chart and the README section', () => {
  const rows = judge(
    [benchRow('b', 'c', 0.25), benchRow('b', 'c', 3, 'buttress', 'other'), benchRow('b', 'share', 0.2)],
    [
      { bench: 'b', case: 'c', ours: 'buttress', anchor: 'anchor', max: 0.5, basis: 'test floor, at most' },
      { bench: 'b', case: 'share', ours: 'buttress', anchor: 'anchor', min: 0.4, basis: 'test floor <&>' },
    ],
    'now',
  ).rows;
  const r = { ...results([]), rows };

  it('draws one bar per row, marks floors and crossings, and escapes text', () => {
    const svg = renderChart(r);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<rect [^>]*height="12"/g)).toHaveLength(3);
    expect(svg).toContain('CROSSED');
    expect(svg).toContain('floor ≤ 0.5');
    expect(svg).toContain('#d62728'); // the crossed row
    expect(svg).not.toMatch(/<title>[^<]*&(?!amp;|lt;|gt;|quot;)/);
  });

  it('replaces only its own part of the README', () => {
    const section = renderReadmeSection(r, [
      { bench: 'b', case: 'c', ours: 'buttress', anchor: 'anchor', max: 0.5, basis: 'a | pipe' },
    ]);
    expect(section).toContain('| b | c | buttress vs anchor | ≤ 0.5 | 0.25 | a \\| pipe |');
    const readme = `# Title\n\nintro\n\n${README_START}\nold\n${README_END}\n\n## After\n`;
    const spliced = spliceReadme(readme, section);
    expect(spliced.startsWith('# Title\n\nintro\n\n')).toBe(true);
    expect(spliced.endsWith('\n\n## After\n')).toBe(true);
    expect(spliced).not.toContain('\nold\n');
    expect(spliceReadme(spliced, section)).toBe(spliced);
    expect(spliceReadme('# No markers\n', section)).toBe(`# No markers\n\n${section}\n`);
  });

  it('benchmarks/README.md carries the generated section once', () => {
    const readme = readFileSync(join(root, 'benchmarks/README.md'), 'utf8');
    expect(readme.split(README_START)).toHaveLength(2);
    expect(readme.split(README_END)).toHaveLength(2);
    expect(readme).toContain('](results.svg)');
  });
});
