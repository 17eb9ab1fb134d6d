import { join } from 'node:path';
import ts from 'typescript';

/** A code block of a doc page, written out as a module of its own. */
export interface DocExample {
  doc: string;
  /** The line of the block's opening fence. */
  line: number;
  file: string;
}

/**
 * Type-checks doc examples as a user's strict NodeNext project would, and returns one
 * `doc:line: message` per problem found in them (none in the source they import).
 */
export function typeCheckExamples(
  root: string,
  examples: readonly DocExample[],
  extra: ts.CompilerOptions = {},
): string[] {
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
      ...extra,
    },
  );
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file && examples.some((e) => e.file === d.file!.fileName))
    .map((d) => {
      const ex = examples.find((e) => e.file === d.file!.fileName)!;
      const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
      return `${ex.doc}:${ex.line + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
}
