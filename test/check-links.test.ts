import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkLinks } from '../scripts/check-links.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A throwaway site: path -> HTML. */
function site(pages: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'buttress-links-'));
  dirs.push(dir);
  for (const [path, html] of Object.entries(pages)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), html);
  }
  return dir;
}

describe('checkLinks', () => {
  it('passes links to files and anchors that exist', () => {
    const dir = site({
      'index.html':
        '<a href="docs/a.html#intro">a</a> <a href="#top">top</a> <img src="media/x.svg"> <a id="top"></a>',
      'docs/a.html': '<h2 id="intro">Intro</h2><a href="../index.html">home</a><a href="b/">b</a>',
      'docs/b/index.html': '<a href="../a.html?x=1#intro">back</a>',
      'media/x.svg': '<svg/>',
    });
    const report = checkLinks(dir);
    expect(report.problems).toEqual([]);
    expect(report.pages).toBe(3);
    expect(report.checked).toBe(6);
  });

  it('reports a missing file, a missing anchor, and a link out of the site', () => {
    const dir = site({
      'index.html': [
        '<a href="gone.html">x</a>',
        '<a href="docs/a.html#nope">y</a>',
        "<a href='#missing'>z</a>",
        '<a href="../../etc/passwd">w</a>',
        '<a href="docs/a%20b.html">encoded</a>',
      ].join(''),
      'docs/a.html': '<h2 id="intro">Intro</h2>',
      'docs/a b.html': '<p>fine</p>',
    });
    const problems = checkLinks(dir).problems;
    expect(problems).toHaveLength(4);
    expect(problems[0]).toContain('gone.html (no such file)');
    expect(problems[1]).toContain('no element with id "nope"');
    expect(problems[2]).toContain('no element with id "missing"');
    expect(problems[3]).toContain('outside the site');
  });

  it('skips external links, bare "#", and link-like text inside code', () => {
    const dir = site({
      'index.html':
        '<a href="https://example.com/x#y">e</a><a href="mailto:a@b">m</a><a href="//cdn/x">c</a><a href="#">menu</a>' +
        '<pre><code>&lt;a href="nowhere.html"&gt;</code></pre><code>href="also-nowhere.html"</code>',
    });
    const report = checkLinks(dir);
    expect(report.problems).toEqual([]);
    expect(report.checked).toBe(0);
  });
});
