import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type DocExample, typeCheckExamples } from './examples-helpers.js';

/*
 * Every ```ts block in README.md and docs/*.md is type-checked against the source, as a user
 * would write it: `buttress/<module>` imports resolve to src/<module>. A block that is a fragment
 * on purpose (it uses names it does not declare) opens with a `// fragment` line and is skipped;
 * everything else must compile.
 */
const root = new URL('..', import.meta.url).pathname;
const out = join(root, '.tmp/doc-examples');

function collect(): DocExample[] {
  const docs = [
    'README.md',
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const examples: DocExample[] = [];
  for (const doc of docs) {
    const text = readFileSync(join(root, doc), 'utf8');
    const re = /^```ts\n([\s\S]*?)^```$/gm;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const code = m[1]!;
      if (/^\/\/ fragment/.test(code)) continue;
      const line = text.slice(0, m.index).split('\n').length;
      const file = join(out, `${doc.replace(/[/.]/g, '_')}_${line}.ts`);
      const rewritten = code
        .replace(/from 'buttress'/g, `from '${root}src/index.js'`)
        .replace(/from 'buttress\/([a-z-]+)'/g, (_, mod: string) => `from '${root}src/${mod}/index.js'`);
      // Each block is a module of its own, so top-level await and repeated names are fine.
      writeFileSync(file, `${rewritten}\nexport {};\n`);
      examples.push({ doc, line, file });
    }
  }
  return examples;
}

describe('code examples in the docs', () => {
  const examples = collect();

  it('exist', () => {
    expect(examples.length).toBeGreaterThan(10);
  });

  it('type-check against the source', () => {
    const problems = typeCheckExamples(root, examples);
    expect(problems).toEqual([]);
  }, 120_000);
});
