/**
 * Checks the links of a built static site: every relative `href` / `src` of every HTML page must
 * name a file of the site, and every `#anchor` an element id (or `name`) of its target page.
 * External links (`https:`, `mailto:`, ...) are not followed: the site must not depend on them
 * being up, and CI has no network.
 *
 *   npx tsx scripts/check-links.ts site     (npm run docs runs it after the build)
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What {@link checkLinks} found. */
export interface LinkReport {
  /** HTML pages read. */
  pages: number;
  /** Relative links (and same-page anchors) checked. */
  checked: number;
  /** One line per broken link: `page: link (why)`. */
  problems: string[];
}

const ATTRIBUTE = /\s(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)')/gi;
const ID = /\s(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)')/gi;
const EXTERNAL = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

/** Checks every HTML page under `dir`. */
export function checkLinks(dir: string): LinkReport {
  const rootDir = resolve(dir);
  const pages = htmlFiles(rootDir);
  const ids = new Map<string, Set<string>>();
  const idsOf = (file: string): Set<string> => {
    let set = ids.get(file);
    if (set === undefined) {
      set = new Set();
      const html = withoutCode(readFileSync(file, 'utf8'));
      for (const m of html.matchAll(ID)) set.add(decodeHtml(m[1] ?? m[2] ?? ''));
      ids.set(file, set);
    }
    return set;
  };
  const problems: string[] = [];
  let checked = 0;
  for (const page of pages) {
    const html = withoutCode(readFileSync(page, 'utf8'));
    const from = relative(rootDir, page);
    for (const m of html.matchAll(ATTRIBUTE)) {
      const link = decodeHtml(m[1] ?? m[2] ?? '').trim();
      // "#" alone is a script hook (menus, "back to top"), not a link to check.
      if (link === '' || link === '#' || EXTERNAL.test(link)) continue;
      checked++;
      const hash = link.indexOf('#');
      const pathPart = stripQuery(hash === -1 ? link : link.slice(0, hash));
      const anchor = hash === -1 ? undefined : link.slice(hash + 1);
      let target = page;
      if (pathPart !== '') {
        let decoded: string;
        try {
          decoded = decodeURIComponent(pathPart);
        } catch {
          problems.push(`${from}: ${link} (malformed URL)`);
          continue;
        }
        target = pathPart.startsWith('/') ? join(rootDir, decoded) : resolve(dirname(page), decoded);
        if (!`${target}/`.startsWith(`${rootDir}/`)) {
          problems.push(`${from}: ${link} (points outside the site)`);
          continue;
        }
        if (existsSync(target) && statSync(target).isDirectory()) target = join(target, 'index.html');
        if (!existsSync(target)) {
          problems.push(`${from}: ${link} (no such file)`);
          continue;
        }
      }
      if (anchor !== undefined && anchor !== '' && target.endsWith('.html')) {
        let id: string;
        try {
          id = decodeURIComponent(anchor);
        } catch {
          id = anchor;
        }
        if (!idsOf(target).has(id)) problems.push(`${from}: ${link} (no element with id "${id}")`);
      }
    }
  }
  return { pages: pages.length, checked, problems };
}

function htmlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return htmlFiles(path);
    return entry.name.endsWith('.html') ? [path] : [];
  });
}

/** Drops `<pre>`/`<code>` contents: a code sample showing `href="..."` is not a link. */
function withoutCode(html: string): string {
  return html.replace(/<(pre|code)\b[^>]*>[\s\S]*?<\/\1>/gi, '');
}

function stripQuery(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

function decodeHtml(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? 'site';
  const report = checkLinks(dir);
  for (const p of report.problems) console.error(`broken link: ${p}`);
  console.log(
    `${report.pages} pages, ${report.checked} relative links and anchors checked, ${report.problems.length} broken`,
  );
  if (report.problems.length > 0) process.exitCode = 1;
}
