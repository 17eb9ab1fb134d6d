import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/*
 * Every ```ts block in README.md and docs/*.md is type-checked against the source, as a user
 * would write it: `buttress/<module>` imports resolve to src/<module>. A block that is a fragment
 * on purpose (it uses names it does not declare) opens with a `// fragment` line and is skipped;
 * everything else must compile.
 */
const root = new URL('..', import.meta.url).pathname;
const out = join(root, '.tmp/doc-examples');

interface Example {
  doc: string;
  line: number;
  file: string;
}

function collect(): Example[] {
  const docs = [
    'README.md',
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const examples: Example[] = [];
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
    const program = ts.createProgram(
      examples.map((e) => e.file),
      {
        strict: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts', 'lib.dom.d.ts'],
        types: ['node'],
        skipLibCheck: true,
        noEmit: true,
        typeRoots: [join(root, 'node_modules/@types')],
      },
    );
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && examples.some((e) => e.file === d.file!.fileName))
      .map((d) => {
        const ex = examples.find((e) => e.file === d.file!.fileName)!;
        const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
        return `${ex.doc}:${ex.line + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      });
    expect(problems).toEqual([]);
  }, 120_000);
});
