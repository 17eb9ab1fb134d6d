import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import ts from 'typescript';
import { describe, expect, it, vi } from 'vitest';

/*
 * Every ```ts block of docs/adapters/*.md is compiled against the source, as a user would write
 * it, and then run: a block is a complete program that starts its app, makes its requests (with
 * inject() or over a port of its own) and closes what it opened. `buttress/express`,
 * `buttress/fastify` and `buttress/nest` resolve to src/adapters/<name>, every other
 * `buttress/<module>` to src/<module>. A block that opens with a `// fragment` line is an excerpt:
 * it is neither compiled nor run. Blocks that use Redis need it (as CI has it), like the
 * integration tests: nothing skips.
 */
const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'docs/adapters');
const out = join(root, '.tmp/adapter-docs');
const ADAPTERS = new Set(['express', 'fastify', 'nest']);

interface Example {
  doc: string;
  line: number;
  file: string;
  /** Per `console.log(...)` line, in order: the value its trailing `// comment` says it prints, if it says one exactly. */
  expected: (string | undefined)[];
}

/** `console.log(x); // 304` says it prints `304`; comments with `...` or a range (`4 to 6`) are prose. */
function expectedOutputs(code: string): (string | undefined)[] {
  return code
    .split('\n')
    .filter((l) => /^\s*console\.log\(/.test(l))
    .map((l) => {
      const c = /\);\s*\/\/ (.*)$/.exec(l)?.[1]?.trim();
      return c === undefined || c.includes('...') || / to | and /.test(c) ? undefined : c;
    });
}

function collect(): Example[] {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  // vitest's transform (oxc) reads the nearest tsconfig that includes a file: without this one the
  // Nest examples' decorators would not be compiled as the legacy decorators Nest users write.
  writeFileSync(
    join(out, 'tsconfig.json'),
    JSON.stringify({ extends: '../../tsconfig.json', include: ['.'] }),
  );
  const examples: Example[] = [];
  for (const name of readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort()) {
    const text = readFileSync(join(dir, name), 'utf8');
    const re = /^```ts\n([\s\S]*?)^```$/gm;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const code = m[1]!;
      if (/^\/\/ fragment/.test(code)) continue;
      const line = text.slice(0, m.index).split('\n').length;
      const file = join(out, `${name.replace(/\.md$/, '')}_${line}.ts`);
      const rewritten = code
        .replace(/from 'buttress'/g, `from '${root}src/index.js'`)
        .replace(/from 'buttress\/([a-z-]+)'/g, (_, mod: string) =>
          ADAPTERS.has(mod)
            ? `from '${root}src/adapters/${mod}/index.js'`
            : `from '${root}src/${mod}/index.js'`,
        );
      writeFileSync(file, `${rewritten}\nexport {};\n`);
      examples.push({ doc: `docs/adapters/${name}`, line, file, expected: expectedOutputs(code) });
    }
  }
  return examples;
}

describe('code examples in docs/adapters', () => {
  const examples = collect();

  it('exist for each adapter page', () => {
    const pages = new Set(examples.map((e) => e.doc));
    for (const page of readdirSync(dir).filter((f) => f.endsWith('.md'))) {
      expect(pages, `${page} has no runnable example`).toContain(`docs/adapters/${page}`);
    }
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
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
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

  for (const example of examples) {
    it(`run: ${example.doc}:${example.line}`, async () => {
      const log = vi.spyOn(console, 'log').mockImplementation(() => {});
      try {
        await import(pathToFileURL(example.file).href);
        const printed = log.mock.calls.map((args) => format(...args));
        expect(printed).toHaveLength(example.expected.length);
        example.expected.forEach((want, i) => {
          if (want !== undefined) expect(printed[i], `console.log #${i + 1}`).toBe(want);
        });
      } finally {
        log.mockRestore();
      }
    }, 15_000);
  }
});
