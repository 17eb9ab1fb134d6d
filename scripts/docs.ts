/**
 * Builds the docs site into `site/` (git-ignored): TypeDoc's API reference of every public
 * subpath, with the guide pages of `docs/` and the benchmark report beside it, then checks every
 * relative link and `#anchor` of the built pages (scripts/check-links.mjs).
 *
 *   npm run docs                 build and check; exits non-zero on a TypeDoc warning or error
 *                                (an export referring to an unexported type, a broken {@link},
 *                                a Markdown link to a missing file) or on a broken link
 *   npm run docs -- --out DIR    build elsewhere
 *   npm run docs -- --preview    build even when TypeDoc warns (a page linking to one not yet
 *                                written), to look at; CI runs without it
 *
 * The API reference follows tsup.config.ts `entries`, the list of public subpaths the build
 * ships: a module added there (the shard router, an adapter) is documented without touching this
 * file, named `buttress/<subpath>`. Guide pages are every `docs/*.md`; the table below titles and
 * groups them in the sidebar. A page missing from it lands in "Guides", titled by its first
 * heading, and `docs/<subpath>.md` is taken as the guide of `buttress/<subpath>`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Application, Comment, Converter, type DocumentReflection, LogLevel, ReflectionKind } from 'typedoc';
import { entries } from '../tsup.config.js';
import { checkLinks } from './check-links.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outArg = args.indexOf('--out');
const out = outArg >= 0 ? resolve(args[outArg + 1] ?? 'site') : join(root, 'site');
const preview = args.includes('--preview');

/**
 * Sidebar title and group of each page, by file name (the order of the groups is `GROUP_ORDER`),
 * and, where it is not `docs/<subpath>.md`, the module whose API page links to it.
 */
const PAGES: Record<string, { title: string; group: string; module?: string }> = {
  cache: { title: 'Cache', group: 'Guides' },
  breaker: { title: 'Circuit breakers', group: 'Guides' },
  bulkhead: { title: 'Bulkheads and limiters', group: 'Guides' },
  retry: { title: 'Retry and timeouts', group: 'Guides' },
  pool: { title: 'PostgreSQL cluster', group: 'Guides' },
  queue: { title: 'Job queue', group: 'Guides' },
  otel: { title: 'OpenTelemetry', group: 'Observability' },
  observability: { title: 'Diagnostics channels', group: 'Observability' },
  errors: { module: 'buttress', title: 'Errors', group: 'Reference' },
  testing: { title: 'Testing', group: 'Reference' },
  extending: { title: 'Extending', group: 'Reference' },
  'migrating-from-cockatiel': { title: 'Moving from cockatiel', group: 'Migration' },
  'migrating-from-opossum': { title: 'Moving from opossum', group: 'Migration' },
  'migrating-from-bentocache': { title: 'Moving from bentocache', group: 'Migration' },
  'migrating-from-bullmq': { title: 'Moving from BullMQ', group: 'Migration' },
  README: { title: 'Benchmarks', group: 'Reference' },
};
const GROUP_ORDER = ['Guides', 'Observability', 'Reference', 'Migration', 'Modules', '*'];

/**
 * Types that public signatures mention but that are deliberately not exported: internal
 * plumbing (the policy types `wrap()` computes with, the pool's session host, the Redis
 * connection type that names ioredis without importing it), or helpers whose shape the docs show
 * inline.
 */
const INTERNAL_TYPES = [
  'AnyPolicy',
  'ButtressErrorOptions',
  'DurationUnit',
  'MergePolicies',
  'RedisConnection',
  'SessionHost',
];

// One module per public subpath, named as users import it. Subpaths first, the root entry last:
// TypeDoc documents a symbol in the first module that exports it, so each lives on its own
// subpath's page and the root entry (which re-exports them all) links there.
const modules = Object.entries(entries as Record<string, string>)
  .map(([name, file]) => {
    const sub = name.replace(/\/?index$/, '');
    return { file: join(root, file), name: sub === '' ? 'buttress' : `buttress/${sub}` };
  })
  .sort((a, b) => (a.name === 'buttress' ? 1 : b.name === 'buttress' ? -1 : a.name.localeCompare(b.name)));
for (const m of modules) {
  if (!existsSync(m.file)) throw new Error(`tsup.config.ts names ${m.file}, which does not exist`);
}
// TypeDoc names each module by its path below the entry points' common folder: src/breaker/index.ts
// is "breaker", src/index.ts is "index"; they are renamed after their subpath below.
const base = commonDir(modules.map((m) => dirname(m.file)));
const renames = new Map(
  modules.map((m) => {
    const rel = relative(base, m.file).replace(/\\/g, '/').replace(/\.ts$/, '');
    return [rel === 'index' ? 'index' : rel.replace(/\/index$/, ''), m.name];
  }),
);

const app = await Application.bootstrapWithPlugins({
  name: 'buttress',
  includeVersion: true,
  entryPoints: modules.map((m) => m.file),
  entryPointStrategy: 'resolve',
  tsconfig: join(root, 'scripts/tsconfig.docs.json'),
  readme: join(root, 'README.md'),
  projectDocuments: [
    join(root, 'docs/*.md'),
    join(root, 'docs/adapters/*.md'),
    join(root, 'benchmarks/README.md'),
  ],
  out,
  excludeInternal: true,
  excludePrivate: true,
  excludeProtected: true,
  disableSources: true,
  headings: { readme: false, document: false },
  markdownItLoader: keepCodeInHeadings,
  githubPages: false,
  groupOrder: GROUP_ORDER,
  navigation: { includeGroups: true, includeCategories: false, includeFolders: true },
  intentionallyNotExported: INTERNAL_TYPES,
  treatWarningsAsErrors: !preview,
  highlightLanguages: [
    'bash',
    'console',
    'css',
    'html',
    'http',
    'javascript',
    'json',
    'jsonc',
    'sh',
    'text',
    'tsx',
    'typescript',
    'yaml',
  ],
  validation: { notExported: true, invalidLink: true, invalidPath: true, notDocumented: false },
  logLevel: LogLevel.Info,
});

/** Module name -> its guide page, filled as pages are read. */
const guides = new Map<string, DocumentReflection>();
app.converter.on(Converter.EVENT_CREATE_DOCUMENT, (_context, doc: DocumentReflection) => {
  // Pages from several folders are named by their path ("docs/cache"): look them up by file name.
  const file = doc.name.slice(doc.name.lastIndexOf('/') + 1);
  const page = PAGES[file];
  doc.frontmatter.group = page?.group ?? 'Guides';
  // A page not in the table (a new module's) is titled by its first heading, and is the guide of
  // the module of the same name: docs/shard-router.md for buttress/shard-router.
  doc.name = page?.title ?? firstHeading(join(root, `${doc.name}.md`)) ?? file;
  const module = page?.module ?? `buttress/${file}`;
  if (modules.some((m) => m.name === module)) guides.set(module, doc);
});
app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
  for (const child of context.project.children ?? []) {
    if (!child.kindOf(ReflectionKind.Module)) continue;
    const name = renames.get(child.name);
    if (name === undefined) throw new Error(`TypeDoc made a module "${child.name}" that no entry names`);
    child.name = name;
    // The module's API page opens with a link to its guide (the index files carry no prose).
    const guide = guides.get(name);
    if (guide !== undefined && child.comment === undefined) {
      child.comment = new Comment([
        { kind: 'text', text: `The API reference of \`${name}\`; the guide, with examples: ` },
        { kind: 'inline-tag', tag: '@link', text: guide.name, target: guide },
        { kind: 'text', text: '.' },
      ]);
    }
  }
});

const project = await app.convert();
if (project === undefined) {
  console.error('docs: TypeDoc could not convert the project');
  process.exit(1);
}
app.validate(project);
if (app.logger.hasErrors() || (!preview && app.logger.hasWarnings())) {
  console.error('docs: TypeDoc reported problems (above); warnings count as errors');
  process.exit(1);
}
await app.generateDocs(project, out);
if (app.logger.hasErrors() || (!preview && app.logger.hasWarnings())) {
  console.error('docs: TypeDoc reported problems while rendering (above)');
  process.exit(1);
}

const links = checkLinks(out);
for (const problem of links.problems) console.error(`broken link: ${problem}`);
console.log(
  `docs: ${links.pages} pages in ${relative(process.cwd(), out) || out}, ${links.checked} relative links and anchors checked, ${links.problems.length} broken`,
);
if (links.problems.length > 0) process.exit(1);

/**
 * TypeDoc builds a heading's id and its "On this page" entry from the heading's text tokens only,
 * so `## \`bulkhead(options)\`` would get an empty entry and an id no GitHub link uses. Giving each
 * inline code span of a heading a text child (its renderer ignores children) makes TypeDoc see the
 * same text GitHub does, so `#bulkheadoptions` works on both.
 */
function keepCodeInHeadings(parser: unknown): void {
  interface Token {
    type: string;
    content: string;
    children: Token[] | null;
  }
  const md = parser as {
    core: {
      ruler: {
        push(
          name: string,
          rule: (state: {
            tokens: Token[];
            Token: new (type: string, tag: string, nesting: number) => Token;
          }) => void,
        ): void;
      };
    };
  };
  md.core.ruler.push('buttress_heading_code', (state) => {
    for (let i = 0; i + 1 < state.tokens.length; i++) {
      if (state.tokens[i]!.type !== 'heading_open') continue;
      for (const child of state.tokens[i + 1]!.children ?? []) {
        if (child.type !== 'code_inline' || child.children !== null) continue;
        const text = new state.Token('text', '', 0);
        text.content = child.content;
        child.children = [text];
      }
    }
  });
}

/** The text of the first `# ` heading of a Markdown file, without its code marks. */
function firstHeading(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const line = readFileSync(path, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('# '));
  return line?.slice(2).replace(/`/g, '').trim() || undefined;
}

function commonDir(dirs: readonly string[]): string {
  let common = dirs[0]!;
  for (const d of dirs) {
    while (!`${d}/`.startsWith(`${common}/`)) common = dirname(common);
  }
  return common;
}
