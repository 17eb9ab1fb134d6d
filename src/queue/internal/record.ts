import { InvalidOptionError } from '../../core/errors.js';
import { duration, integer, knownKeys, numberIn, oneOf, optionsObject } from '../../core/validate.js';
import { JobSerializeError } from '../errors.js';
import type { BackoffOptions, JobOptions } from '../types.js';

/*
 * A job record is one string the backends store as is and never parse:
 *
 *   <createdAt>,<attempts>,<backoff type e|f>,<backoff delay>,<max delay>,<jitter>,<timeout>,<priority>\n<payload JSON>
 *
 * A flat header of numbers (a split is cheaper than a JSON parse of an object), then the payload's
 * JSON, which never holds a raw newline. Everything a worker on another machine needs to run and
 * retry the job travels with it, so producers with different defaults can share a queue.
 *
 * When a subscriber of `buttress:queue:add` (a tracing bridge) gave the job headers, a ninth header
 * field `h` says that a line of their JSON comes before the payload:
 *
 *   <createdAt>,...,<priority>,h\n<headers JSON>\n<payload JSON>
 *
 * so a job's trace context travels with it through any backend, and a job nobody traced carries
 * nothing.
 */

/** Highest priority number accepted (BullMQ's limit: priority * 2^32 + counter stays below 2^53). */
export const MAX_PRIORITY = 2 ** 21;
/** Longest delay, backoff or timeout: about 24.8 days (the timer range). */
const MAX_MS = 2 ** 31 - 1;

/** Job options with defaults applied. */
export interface ResolvedJobOptions {
  readonly delay: number;
  readonly priority: number;
  readonly attempts: number;
  readonly backoffType: 'e' | 'f';
  readonly backoffDelay: number;
  readonly maxDelay: number;
  readonly jitter: number;
  readonly timeout: number;
}

/** The built-in defaults. */
export const DEFAULT_JOB_OPTIONS: ResolvedJobOptions = Object.freeze({
  delay: 0,
  priority: 0,
  attempts: 3,
  backoffType: 'e',
  backoffDelay: 1000,
  maxDelay: 3_600_000,
  jitter: 0.5,
  timeout: 0,
});

const JOB_KEYS = ['jobId', 'delay', 'priority', 'attempts', 'backoff', 'timeout'] as const;
const ADD_KEYS = [...JOB_KEYS, 'signal'] as const;
const BACKOFF_KEYS = ['type', 'delay', 'maxDelay', 'jitter'] as const;

/**
 * Applies `options` over `base`, validating each field given.
 * @throws {InvalidOptionError} naming the option (under `path`) and the value received.
 */
export function resolveJobOptions(
  options: JobOptions | undefined,
  base: ResolvedJobOptions,
  path: string,
  allowSignal = false,
): ResolvedJobOptions {
  if (options === undefined) return base;
  const o = optionsObject(options, path);
  knownKeys(o, allowSignal ? ADD_KEYS : JOB_KEYS, path);
  const p = path === 'options' ? '' : `${path}.`;
  let backoff = base;
  if (o.backoff !== undefined) {
    const b = optionsObject<BackoffOptions>(o.backoff, `${p}backoff`);
    knownKeys(b, BACKOFF_KEYS, `${p}backoff`);
    backoff = {
      ...base,
      backoffType:
        b.type === undefined
          ? base.backoffType
          : oneOf(b.type, `${p}backoff.type`, ['exponential', 'fixed']) === 'fixed'
            ? 'f'
            : 'e',
      backoffDelay: duration(b.delay, `${p}backoff.delay`, base.backoffDelay, 0, MAX_MS),
      maxDelay: duration(b.maxDelay, `${p}backoff.maxDelay`, base.maxDelay, 0, MAX_MS),
      jitter: numberIn(b.jitter, `${p}backoff.jitter`, 0, 1, base.jitter),
    };
  }
  return {
    delay: duration(o.delay, `${p}delay`, base.delay, 0, MAX_MS),
    priority: integer(o.priority, `${p}priority`, 0, MAX_PRIORITY, base.priority),
    attempts: integer(o.attempts, `${p}attempts`, 1, 1_000_000, base.attempts),
    backoffType: backoff.backoffType,
    backoffDelay: backoff.backoffDelay,
    maxDelay: backoff.maxDelay,
    jitter: backoff.jitter,
    timeout: duration(o.timeout, `${p}timeout`, base.timeout, 0, MAX_MS),
  };
}

/**
 * Validates a custom job id: a string of 1 to 256 characters that is not all digits (auto ids
 * are decimal counters, so such an id could collide with one).
 */
export function checkJobId(id: unknown, option: string): string | undefined {
  if (id === undefined) return undefined;
  if (typeof id !== 'string' || id.length === 0 || id.length > 256 || /^\d+$/.test(id)) {
    throw new InvalidOptionError(
      option,
      id,
      'a string of 1 to 256 characters that is not only digits (those are auto ids)',
    );
  }
  return id;
}

/** The header after `createdAt`, up to and including the newline. */
export function headerTail(o: ResolvedJobOptions): string {
  return `,${o.attempts},${o.backoffType},${o.backoffDelay},${o.maxDelay},${o.jitter},${o.timeout},${o.priority}\n`;
}

/** Most characters of headers kept with a job: trace context is a few hundred. */
const MAX_HEADERS = 8192;

/**
 * `tail` (a {@link headerTail}) carrying `headers`, or `tail` itself when there are none to keep:
 * only string values are kept, and nothing at all past {@link MAX_HEADERS} characters (headers are
 * diagnostics; they never fail an add).
 */
export function withHeaders(tail: string, headers: Readonly<Record<string, unknown>>): string {
  // Entries, not assignments: a key such as `__proto__` stays a key (and sets no prototype).
  const kept = Object.entries(headers).filter((e): e is [string, string] => typeof e[1] === 'string');
  if (kept.length === 0) return tail;
  const json = JSON.stringify(Object.fromEntries(kept));
  if (json.length > MAX_HEADERS) return tail;
  return `${tail.slice(0, -1)},h\n${json}\n`;
}

/** A record decoded by a worker. */
export interface DecodedRecord {
  readonly createdAt: number;
  readonly options: ResolvedJobOptions;
  readonly payload: unknown;
  /** Headers a subscriber of `buttress:queue:add` stored with the job, if any. */
  readonly headers: Readonly<Record<string, string>> | undefined;
}

/** Decodes a record; throws a TypeError on a malformed one. */
export function decodeRecord(record: string): DecodedRecord {
  const nl = record.indexOf('\n');
  if (nl === -1) throw new TypeError('malformed job record');
  const h = record.slice(0, nl).split(',');
  let start = nl + 1;
  let headers: Record<string, string> | undefined;
  if (h.length === 9 && h[8] === 'h') {
    const end = record.indexOf('\n', start);
    if (end === -1) throw new TypeError('malformed job record headers');
    headers = parseHeaders(record.slice(start, end));
    start = end + 1;
  } else if (h.length !== 8) {
    throw new TypeError('malformed job record header');
  }
  return {
    createdAt: Number(h[0]),
    options: {
      delay: 0,
      attempts: Number(h[1]),
      backoffType: h[2] === 'f' ? 'f' : 'e',
      backoffDelay: Number(h[3]),
      maxDelay: Number(h[4]),
      jitter: Number(h[5]),
      timeout: Number(h[6]),
      priority: Number(h[7]),
    },
    payload: JSON.parse(record.slice(start)),
    headers,
  };
}

/** Headers as stored; unreadable ones are dropped rather than failing the job. */
function parseHeaders(json: string): Record<string, string> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  return Object.fromEntries(
    Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
}

/**
 * The delay before attempt `attempt + 1`, after attempt `attempt` (from 1) failed.
 * `random` is in [0, 1).
 */
export function backoffDelay(o: ResolvedJobOptions, attempt: number, random: number): number {
  const base = o.backoffType === 'f' ? o.backoffDelay : o.backoffDelay * 2 ** Math.min(attempt - 1, 52);
  const capped = Math.min(base, o.maxDelay);
  return Math.round(capped * (1 - o.jitter * random));
}

/**
 * Serialises a payload as JSON, first checking that the JSON round trip gives back an equal
 * value: plain objects and arrays of strings, finite numbers, booleans and null. Anything JSON
 * would drop, change or choke on is refused with its path, before anything is written.
 * @throws {JobSerializeError} `E_JOB_SERIALIZE`.
 */
export function serializePayload(payload: unknown, index?: number): string {
  check(payload, 'payload', [], index);
  return JSON.stringify(payload);
}

function check(value: unknown, path: string, ancestors: object[], index: number | undefined): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) {
        throw new JobSerializeError(
          path,
          `is ${value}: JSON has no NaN or Infinity (it would arrive as null)`,
          index,
        );
      }
      return;
    case 'undefined':
      throw new JobSerializeError(path, 'is undefined: JSON drops it (use null)', index);
    case 'bigint':
      throw new JobSerializeError(path, 'is a BigInt: JSON cannot hold it (pass a string)', index);
    case 'symbol':
      throw new JobSerializeError(path, 'is a symbol: JSON cannot hold it', index);
    case 'function':
      throw new JobSerializeError(path, 'is a function: JSON cannot hold it', index);
  }
  if (value === null) return;
  const object = value as object;
  if (ancestors.includes(object)) {
    throw new JobSerializeError(path, 'refers back to one of its parents (a cycle)', index);
  }
  if (Array.isArray(object)) {
    ancestors.push(object);
    for (let i = 0; i < object.length; i++) check(object[i], `${path}[${i}]`, ancestors, index);
    ancestors.pop();
    return;
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const name = (proto?.constructor as { name?: string } | undefined)?.name || 'object with a prototype';
    const hint =
      name === 'Date'
        ? ' (pass date.toISOString() or date.getTime())'
        : name === 'Map' || name === 'Set'
          ? ' (JSON turns it into {}; pass an array or a plain object)'
          : '';
    throw new JobSerializeError(
      path,
      `is a ${name}: only plain objects, arrays, strings, finite numbers, booleans and null survive JSON${hint}`,
      index,
    );
  }
  ancestors.push(object);
  for (const key in object) {
    const v = (object as Record<string, unknown>)[key];
    // JSON drops undefined properties: an absent and an undefined property read the same.
    if (v === undefined) continue;
    check(
      v,
      /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`,
      ancestors,
      index,
    );
  }
  ancestors.pop();
}

/** Serialises an error for the dead-letter set. */
export function serializeError(error: unknown, attempts: number): string {
  const e = error as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown } | null;
  const out: Record<string, unknown> = { attempts };
  if (error instanceof Error || (typeof e === 'object' && e !== null)) {
    out.name = typeof e?.name === 'string' ? e.name : 'Error';
    out.message = typeof e?.message === 'string' ? e.message : String(error);
    if (typeof e?.code === 'string') out.code = e.code;
    if (typeof e?.stack === 'string') out.stack = e.stack.slice(0, 4000);
  } else {
    out.name = 'Error';
    out.message = String(error);
  }
  return JSON.stringify(out);
}
