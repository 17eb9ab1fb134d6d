/** Reads one request header by its lower-case name, the way the framework stores it. */
export type HeaderReader = (name: string) => string | readonly string[] | number | undefined;

/**
 * The cache key of a request: method, path, query with its parameters in a canonical order, and
 * the value of each header the route varies on. Two requests get one key exactly when a cached
 * response of one is a right answer to the other:
 * - `?b=2&a=1` and `?a=1&b=2` share a key (parameter order carries no meaning for the handlers
 *   the adapters serve: frameworks parse the query into an object); repeated parameters keep
 *   their relative order (`?a=1&a=2` is not `?a=2&a=1`);
 * - a varied header that is absent and one that is present but empty get different keys;
 * - the parts are joined with characters that cannot occur in a request line or header value
 *   (`\n`, `\u0000`), so no two different requests can collide by concatenation.
 *
 * @param method the request method, `GET` for a `HEAD` (HEAD is answered from the GET entry).
 * @param url the request target, path and query (`/products?page=2`); a fragment is not sent by clients.
 * @param vary lower-case header names, in the order the route lists them.
 */
export function requestKey(
  method: string,
  url: string,
  vary: readonly string[],
  header: HeaderReader,
): string {
  const q = url.indexOf('?');
  let key = method;
  key += ' ';
  if (q === -1) key += url;
  else {
    key += url.slice(0, q);
    const query = url.slice(q + 1);
    // A single parameter (or none) is already canonical: the common case costs no split.
    if (query.length !== 0) key += `?${query.includes('&') ? canonicalQuery(query) : query}`;
  }
  for (let i = 0; i < vary.length; i++) {
    const name = vary[i]!;
    const value = header(name);
    key += '\n';
    key += name;
    if (value === undefined) continue;
    key += '\u0000';
    key += typeof value === 'string' ? value.trim() : Array.isArray(value) ? value.join(', ') : String(value);
  }
  return key;
}

/** Sorts query parameters by name, keeping the order of values of a repeated name (a stable sort). */
export function canonicalQuery(query: string): string {
  const pairs = query.split('&').filter((p) => p.length !== 0);
  const names = pairs.map((p) => {
    const eq = p.indexOf('=');
    return eq === -1 ? p : p.slice(0, eq);
  });
  const order = pairs.map((_, i) => i);
  order.sort((a, b) => (names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : a - b));
  return order.map((i) => pairs[i]).join('&');
}
