/**
 * `Cache-Control` directives (RFC 9111 §5.2), parsed into what a server-side cache decides on.
 * Directive names are case-insensitive; a quoted value is unquoted; an unknown directive is kept
 * out of the decision, as RFC 9111 says a cache must ignore what it does not understand.
 */
export interface CacheControl {
  /** `no-store`: nothing of the response may be stored. */
  noStore: boolean;
  /** `private` (with or without field names): only the user's own cache may store it. */
  private: boolean;
  /** `no-cache`: stored copies must be revalidated with the origin, which a server cache cannot do. */
  noCache: boolean;
  /** `max-age`, in seconds, when present and valid. */
  maxAge: number | undefined;
  /** `s-maxage`, in seconds: a shared cache's own max-age, overriding `max-age`. */
  sMaxAge: number | undefined;
  /** `stale-while-revalidate` (RFC 5861), in seconds. */
  staleWhileRevalidate: number | undefined;
}

/**
 * Parses a `Cache-Control` header value (or the values of several header lines).
 *
 * @example
 * parseCacheControl('public, max-age=60, stale-while-revalidate="30"')
 * // { noStore: false, private: false, noCache: false, maxAge: 60, sMaxAge: undefined, staleWhileRevalidate: 30 }
 */
export function parseCacheControl(header: string | readonly string[] | number | undefined): CacheControl {
  const cc: CacheControl = {
    noStore: false,
    private: false,
    noCache: false,
    maxAge: undefined,
    sMaxAge: undefined,
    staleWhileRevalidate: undefined,
  };
  if (header === undefined) return cc;
  const text =
    typeof header === 'string' ? header : Array.isArray(header) ? header.join(',') : String(header);
  for (const part of splitDirectives(text)) {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    const raw = eq === -1 ? undefined : unquote(part.slice(eq + 1).trim());
    switch (name) {
      case 'no-store':
        cc.noStore = true;
        break;
      case 'private':
        cc.private = true;
        break;
      case 'no-cache':
        cc.noCache = true;
        break;
      case 'max-age':
        cc.maxAge = seconds(raw) ?? cc.maxAge;
        break;
      case 's-maxage':
        cc.sMaxAge = seconds(raw) ?? cc.sMaxAge;
        break;
      case 'stale-while-revalidate':
        cc.staleWhileRevalidate = seconds(raw) ?? cc.staleWhileRevalidate;
        break;
    }
  }
  return cc;
}

/**
 * True when a server-side shared cache may keep the response: no `no-store`, no `private`, and no
 * `no-cache` (which asks for a revalidation with the origin on every use, something a cache in
 * front of the handler cannot do without running the handler anyway).
 */
export function storable(cc: CacheControl): boolean {
  return !cc.noStore && !cc.private && !cc.noCache;
}

/**
 * How long, in ms, the response's own directives allow a shared cache to keep it fresh: `s-maxage`,
 * else `max-age`, else undefined (the route's TTL applies).
 */
export function directiveTtl(cc: CacheControl): number | undefined {
  const s = cc.sMaxAge ?? cc.maxAge;
  return s === undefined ? undefined : s * 1000;
}

/** Splits on commas that are not inside a quoted string (field-name lists of `private="a, b"`). */
function splitDirectives(text: string): string[] {
  if (!text.includes('"')) return text.split(',');
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) quoted = !quoted;
    else if (ch === 0x5c /* \ */ && quoted) i++;
    else if (ch === 0x2c /* , */ && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/** A delta-seconds value (RFC 9111 §1.2.2): digits only; larger than 2^31 is clamped to it. */
function seconds(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  return Math.min(Number(raw), 2 ** 31);
}
