// Checks the built package the way users receive it. Run after `npm run build`:
//   npm run test:package          (KEEP_TMP=1 keeps the packed tarball and the consumer folder)
//
// 1. exports map: every target file of every subpath exists in the build.
// 2. self-reference: every subpath of "exports" imports by name (`buttress/<sub>`) under ESM (import())
//    and CJS (require()) from the repo, to the file the map names, with a non-empty module
//    namespace, and the same export names under both.
// 3. no peers: `npm pack`, install the tarball into a fresh folder with --omit=peer (so no ioredis,
//    pg, express, ...), then the root entry and every primitive subpath import there under ESM and CJS.
// 4. publint --strict and attw --profile node16 on the same tarball.
// Prints PASS/FAIL per check; exits non-zero when any check fails.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// Subpaths that exist to bind a framework or SDK: they may (and do) need their peer installed.
// Every other subpath, and the root entry, must import with no peer present (DESIGN.md).
const NEEDS_PEER = new Set(['./express', './fastify', './nest', './otel']);

const results = [];
function report(ok, name, detail = '') {
  results.push({ ok, name });
  const line = `${ok ? 'PASS' : 'FAIL'}  ${name}${detail ? `  ${detail}` : ''}`;
  if (ok) console.log(line);
  else console.error(line);
}
function section(title) {
  console.log(`\n== ${title}`);
}
function indent(text, maxLines = Number.POSITIVE_INFINITY) {
  const lines = text.trim().split('\n');
  const shown =
    lines.length > maxLines
      ? [...lines.slice(0, maxLines), `... (${lines.length - maxLines} more lines)`]
      : lines;
  return shown.map((l) => `      ${l}`).join('\n');
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  return {
    status: r.status ?? 1,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
  };
}

const subpaths = Object.keys(pkg.exports ?? {}).filter((k) => k !== './package.json');
const specifier = (sub) => (sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`);

// Resolve an exports entry for a set of conditions, the way Node does (first matching key wins).
function target(entry, conditions) {
  if (typeof entry === 'string') return entry;
  if (entry === null || typeof entry !== 'object') return null;
  if (Array.isArray(entry)) {
    for (const e of entry) {
      const t = target(e, conditions);
      if (t) return t;
    }
    return null;
  }
  for (const [key, value] of Object.entries(entry)) {
    if (key === 'default' || conditions.includes(key)) {
      const t = target(value, conditions);
      if (t) return t;
    }
  }
  return null;
}
function leaves(entry, out = []) {
  if (typeof entry === 'string') out.push(entry);
  else if (entry && typeof entry === 'object') for (const v of Object.values(entry)) leaves(v, out);
  return out;
}

// One fresh node process per (format, subpath): a failure in one cannot hide or cause another.
// The probe prints {file, keys} as JSON: the file the specifier resolved to, and its export names.
const PROBE = {
  esm: `const spec = process.env.PROBE_SPEC;
const ns = await import(spec);
const keys = Object.keys(ns).filter((k) => k !== 'default' && k !== '__esModule').sort();
console.log(JSON.stringify({ file: new URL(import.meta.resolve(spec)).pathname, keys }));`,
  cjs: `const spec = process.env.PROBE_SPEC;
const ns = require(spec);
const keys = Object.keys(ns).filter((k) => k !== 'default' && k !== '__esModule').sort();
console.log(JSON.stringify({ file: require.resolve(spec), keys }));`,
};
function probe(format, spec, cwd) {
  const args = format === 'esm' ? ['--input-type=module', '-e', PROBE.esm] : ['-e', PROBE.cjs];
  const r = run(process.execPath, args, { cwd, env: { ...process.env, PROBE_SPEC: spec, NODE_OPTIONS: '' } });
  if (r.status !== 0) return { error: r.stderr.trim() || `exit code ${r.status}` };
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `unexpected output: ${r.stdout.trim()}` };
  }
}

// Import spec under ESM and CJS from cwd; report one line per format, plus one comparing names.
// expectedRoot: where the export map's targets should resolve (the package folder used).
function checkImports(label, sub, cwd, expectedRoot) {
  const spec = specifier(sub);
  const found = {};
  for (const format of ['esm', 'cjs']) {
    const name = `${label}: ${format} ${spec}`;
    const r = probe(format, spec, cwd);
    if (r.error) {
      report(false, name, `\n${indent(r.error, 15)}`);
      continue;
    }
    const want = target(pkg.exports[sub], format === 'esm' ? ['node', 'import'] : ['node', 'require']);
    const wantFile = want ? resolve(expectedRoot, want) : null;
    if (wantFile && r.file !== wantFile) {
      report(false, name, `resolved to ${r.file}, expected ${wantFile}`);
    } else if (r.keys.length === 0) {
      report(false, name, 'empty module namespace');
    } else {
      found[format] = r.keys;
      report(true, name, `${r.keys.length} exports`);
    }
  }
  if (found.esm && found.cjs) {
    const only = (a, b) => a.filter((k) => !b.includes(k));
    const esmOnly = only(found.esm, found.cjs);
    const cjsOnly = only(found.cjs, found.esm);
    const ok = esmOnly.length === 0 && cjsOnly.length === 0;
    report(
      ok,
      `${label}: same export names under ESM and CJS for ${spec}`,
      ok ? '' : `ESM only: [${esmOnly.join(', ')}]; CJS only: [${cjsOnly.join(', ')}]`,
    );
  }
}

function main() {
  const keep = Boolean(process.env.KEEP_TMP);
  const tmp = mkdtempSync(join(tmpdir(), 'buttress-package-'));
  try {
    section('exports map');
    if (subpaths.length === 0) report(false, 'package.json has an "exports" map with subpaths');
    if (!existsSync(join(root, 'dist'))) {
      report(false, 'dist/ exists', 'run `npm run build` first');
      return;
    }
    for (const sub of subpaths) {
      const missing = leaves(pkg.exports[sub]).filter((f) => !existsSync(join(root, f)));
      report(
        missing.length === 0,
        `exports["${sub}"]: every target exists`,
        missing.length ? `missing: ${missing.join(', ')}` : '',
      );
    }

    section('self-reference from the repo (import() and require() by package name)');
    for (const sub of subpaths) checkImports('repo', sub, root, root);

    section('packed tarball installed with no peers (npm install --omit=peer)');
    const packDir = join(tmp, 'pack');
    mkdirSync(packDir);
    const pack = run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: root });
    let tarball = null;
    if (pack.status === 0) {
      try {
        const info = JSON.parse(pack.stdout)[0];
        tarball = join(packDir, info.filename);
        report(true, 'npm pack', `${info.filename}: ${info.entryCount} files, ${info.size} bytes`);
      } catch {
        report(false, 'npm pack', `unexpected output:\n${indent(pack.stdout)}`);
      }
    } else {
      report(false, 'npm pack', `\n${indent(pack.stderr)}`);
    }
    if (tarball) {
      const consumer = join(tmp, 'consumer');
      mkdirSync(consumer);
      writeFileSync(
        join(consumer, 'package.json'),
        `${JSON.stringify({ name: 'buttress-consumer', version: '0.0.0', private: true }, null, 2)}\n`,
      );
      const install = run(
        'npm',
        ['install', '--omit=peer', '--no-audit', '--no-fund', '--no-save', '--loglevel=error', tarball],
        { cwd: consumer },
      );
      report(
        install.status === 0,
        'npm install --omit=peer <tarball>',
        install.status === 0 ? '' : `\n${indent(install.stderr)}`,
      );
      if (install.status === 0) {
        const peers = Object.keys(pkg.peerDependencies ?? {});
        const present = peers.filter((p) => existsSync(join(consumer, 'node_modules', p)));
        report(
          present.length === 0 && !existsSync(join(consumer, 'node_modules', 'ioredis')),
          'no peer installed (node_modules/ioredis absent)',
          present.length ? `present: ${present.join(', ')}` : `checked: ${peers.join(', ')}`,
        );
        const installedRoot = join(consumer, 'node_modules', pkg.name);
        for (const sub of subpaths) {
          if (NEEDS_PEER.has(sub)) {
            console.log(`skip  no-peers: ${specifier(sub)} (needs its peer)`);
            continue;
          }
          checkImports('no-peers', sub, consumer, installedRoot);
        }
      }

      section('publint --strict');
      const publint = run(join(root, 'node_modules/.bin/publint'), ['run', tarball, '--strict'], {
        cwd: root,
      });
      console.log(indent(publint.stdout + publint.stderr));
      report(publint.status === 0, 'publint --strict');

      section('attw --profile node16 (@arethetypeswrong/cli)');
      const attw = run(join(root, 'node_modules/.bin/attw'), [tarball, '--profile', 'node16', '--no-emoji'], {
        cwd: root,
        env: { ...process.env, FORCE_COLOR: '0' },
      });
      console.log(indent(attw.stdout + attw.stderr));
      report(attw.status === 0, 'attw --profile node16');
    }
  } finally {
    if (keep) console.log(`\n(kept ${tmp})`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

main();
const failed = results.filter((r) => !r.ok);
console.log(
  failed.length === 0
    ? `\npackage checks: all ${results.length} passed`
    : `\npackage checks: ${failed.length} of ${results.length} FAILED:\n${failed.map((r) => `  - ${r.name}`).join('\n')}`,
);
process.exitCode = failed.length === 0 ? 0 : 1;
