import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { declaredChannels } from '../src/otel/otel.test-util.js';

/*
 * docs/observability.md is the contract of the diagnostics channels, and docs/otel.md of the
 * instruments buttress/otel creates: both are checked against the source, so a channel or an
 * instrument added without its documentation (or documented and gone) fails here.
 */
const root = new URL('..', import.meta.url).pathname;
const catalogue = readFileSync(join(root, 'docs/observability.md'), 'utf8');
const otelDoc = readFileSync(join(root, 'docs/otel.md'), 'utf8');

function documented(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of catalogue.matchAll(
    /^\| `(buttress:[a-z0-9-]+:[a-z0-9-]+)` \| (event|traced|lifecycle) \|/gm,
  )) {
    rows.set(m[1]!, m[2]!);
  }
  return rows;
}

describe('docs/observability.md', () => {
  const rows = documented();
  const { plain, traced, lifecycle } = declaredChannels();
  const declared = new Map<string, string>([
    ...plain.map((n) => [n, 'event'] as [string, string]),
    ...traced.map((n) => [n, 'traced'] as [string, string]),
    ...lifecycle.map((n) => [n, 'lifecycle'] as [string, string]),
  ]);

  it('finds the channels in the source and in the table', () => {
    expect(declared.size).toBeGreaterThan(30);
    expect(rows.size).toBeGreaterThan(30);
  });

  it.each([...declared])('lists %s as a channel of kind %s', (name, kind) => {
    expect(rows.get(name)).toBe(kind);
  });

  it('lists no channel the source does not declare', () => {
    expect([...rows.keys()].filter((name) => !declared.has(name))).toEqual([]);
  });
});

describe('docs/otel.md', () => {
  const dir = join(root, 'src/otel/modules');
  const instruments = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.includes('.test'))) {
    const text = readFileSync(join(dir, file), 'utf8');
    for (const m of text.matchAll(
      /create(?:Observable)?(?:Counter|Gauge|Histogram|UpDownCounter)\(\s*'([a-z0-9_.]+)'/g,
    )) {
      instruments.add(m[1]!);
    }
  }
  const listed = new Set([...otelDoc.matchAll(/^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \|/gm)].map((m) => m[1]!));

  it('finds the instruments', () => {
    expect(instruments.size).toBeGreaterThan(40);
  });

  it.each([...instruments])('lists the instrument %s', (name) => {
    expect(listed.has(name)).toBe(true);
  });

  it('lists no instrument the bridge does not create', () => {
    expect([...listed].filter((name) => !instruments.has(name))).toEqual([]);
  });
});
