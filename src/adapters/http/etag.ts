import { createHash } from 'node:crypto';

/**
 * A strong entity tag for a response body: the quoted base64url SHA-1 of its bytes. Two bodies
 * get the same tag only when their bytes are the same, which is what "strong" promises
 * (RFC 9110 §8.8.1); SHA-1 is used for speed and spread, not for security.
 *
 * @example strongEtag(Buffer.from('hello')) // '"qvTGHdzF6KLavt4PO0gs2a6pQ00"'
 */
export function strongEtag(body: Uint8Array | string): string {
  return `"${createHash('sha1').update(body).digest('base64url')}"`;
}

/**
 * Whether an `If-None-Match` header matches `etag`, by the weak comparison RFC 9110 §13.1.2 asks
 * for: `*` matches anything, and `W/"x"` matches `"x"`. A malformed list matches nothing.
 */
export function ifNoneMatch(header: string | readonly string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const text = typeof header === 'string' ? header : header.join(',');
  if (text.trim() === '*') return true;
  const want = opaque(etag);
  // Entity tags cannot contain commas inside their quotes except as data between the quotes;
  // scan tag by tag instead of splitting on commas, so `"a,b"` stays one tag.
  let i = 0;
  while (i < text.length) {
    const ch = text.charCodeAt(i);
    if (ch === 0x20 || ch === 0x09 || ch === 0x2c) {
      i++;
      continue;
    }
    let start = i;
    if (text.startsWith('W/', i)) start = i += 2;
    if (text.charCodeAt(i) !== 0x22) return false;
    const end = text.indexOf('"', i + 1);
    if (end === -1) return false;
    if (text.slice(start, end + 1) === want) return true;
    i = end + 1;
  }
  return false;
}

/**
 * Whether the resource is unmodified for an `If-Modified-Since` header, given its `Last-Modified`
 * value: both HTTP dates, compared at one-second resolution (RFC 9110 §13.1.3). Unparseable
 * dates never match, so the full response is sent.
 */
export function notModifiedSince(header: string | undefined, lastModified: string | undefined): boolean {
  if (header === undefined || lastModified === undefined) return false;
  const since = Date.parse(header);
  const modified = Date.parse(lastModified);
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since;
}

function opaque(etag: string): string {
  return etag.startsWith('W/') ? etag.slice(2) : etag;
}
