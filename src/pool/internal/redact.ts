/*
 * Passwords must not leave the process through an error message, an event or a log line. The
 * driver is mostly careful (pg hides `password` as a non-enumerable property and scrubs the input
 * of a bad connection URL), but Node's own errors, a server message echoing a connection string,
 * and our own option errors (which print the value received) are not. So every error the cluster
 * hands out is scrubbed here first: every password it was configured with is replaced by `***`,
 * and so is anything that looks like one in a connection string (`postgres://user:SECRET@`,
 * `password=SECRET`), known or not.
 */

const MASK = '***';
const URL_PASSWORD = /(postgres(?:ql)?:\/\/[^:/?#@\s]*:)([^@\s]*)@/gi;
const KEYWORD_PASSWORD = /(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]+)/gi;
/** Shorter secrets are not replaced by value: masking every "ab" of a message would garble it. */
const MIN_SECRET_LENGTH = 4;
const MAX_DEPTH = 4;

/** The passwords of one connection config: its `password`, the one in its connection string, `PGPASSWORD`. */
export function secretsOf(config: { password?: unknown; connectionString?: unknown } | undefined): string[] {
  const secrets: string[] = [];
  if (config !== undefined) {
    if (typeof config.password === 'string') secrets.push(config.password);
    if (typeof config.connectionString === 'string')
      secrets.push(...connectionStringSecrets(config.connectionString));
  }
  const env = process.env.PGPASSWORD;
  if (env) secrets.push(env);
  return secrets;
}

function connectionStringSecrets(cs: string): string[] {
  const found: string[] = [];
  for (const m of cs.matchAll(URL_PASSWORD)) {
    if (m[2]) {
      found.push(m[2]);
      try {
        found.push(decodeURIComponent(m[2]));
      } catch {
        // not percent-encoded: the raw form is enough
      }
    }
  }
  for (const m of cs.matchAll(KEYWORD_PASSWORD)) {
    const v = m[2]!;
    found.push(v.startsWith("'") ? v.slice(1, -1) : v);
    try {
      found.push(decodeURIComponent(v));
    } catch {
      // as above
    }
  }
  return found;
}

/** Masks the password of a connection string (URL or keyword/value form). */
export function redactConnectionString(cs: string): string {
  return cs.replace(URL_PASSWORD, `$1${MASK}@`).replace(KEYWORD_PASSWORD, `$1${MASK}`);
}

/** Scrubs the known secrets, and anything shaped like a password, from text and errors. */
export class Redactor {
  readonly #secrets: string[];

  constructor(secrets: Iterable<string>) {
    const unique = new Set<string>();
    for (const s of secrets) {
      if (s.length >= MIN_SECRET_LENGTH) {
        unique.add(s);
        unique.add(encodeURIComponent(s));
      }
    }
    // Longest first, so a secret containing another is masked whole.
    this.#secrets = [...unique].sort((a, b) => b.length - a.length);
  }

  /** `text` with every secret masked. */
  text(text: string): string {
    let out = redactConnectionString(text);
    for (const secret of this.#secrets) if (out.includes(secret)) out = out.split(secret).join(MASK);
    return out;
  }

  /**
   * Scrubs an error in place (its message, stack and other string fields, and its `cause`
   * chain) and returns it. In place, because the same object may already be referenced as the
   * `cause` of another error, and a copy would leave the original to leak.
   */
  error<E>(error: E, depth = 0): E {
    if (depth > MAX_DEPTH || typeof error !== 'object' || error === null) return error;
    const record = error as Record<string, unknown>;
    for (const key of Object.getOwnPropertyNames(error)) {
      const value = record[key];
      if (typeof value === 'string') {
        const clean = this.text(value);
        if (clean !== value) {
          try {
            record[key] = clean;
          } catch {
            // a read-only property: nothing we can do, and nothing else to try
          }
        }
      } else if (key === 'cause' || (key === 'errors' && Array.isArray(value))) {
        if (Array.isArray(value)) for (const e of value) this.error(e, depth + 1);
        else this.error(value, depth + 1);
      }
    }
    // `message` and `stack` may live on the prototype chain as accessors (own properties are
    // covered above); `stack` is usually an own property once read.
    return error;
  }
}

/**
 * A copy of a node config fit for an error message: passwords masked, connection strings
 * redacted, functions and instances named rather than dumped.
 */
export function sanitizeForMessage(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactConnectionString(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth > 2) return '[object]';
  if (Array.isArray(value)) return value.map((v) => sanitizeForMessage(v, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    return `[${(value as object).constructor?.name ?? 'object'}]`;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = /pass(word)?|secret|key/i.test(k) && v !== undefined ? MASK : sanitizeForMessage(v, depth + 1);
  }
  return out;
}
