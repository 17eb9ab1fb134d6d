import { CacheCorruptError } from '../errors.js';
import { dropProtoKeys, type Serializer } from './serializer.js';

/*
 * One cached value with its timing. L1 holds `Entry` objects (the value decoded, never a
 * payload); L2 holds the envelope `{ f, v, c, e, g, d, t }` serialized, inside a Redis hash whose
 * other fields let the Lua scripts judge freshness (`e`) and tag validity (`t`) without decoding it.
 *
 * Times are client clock milliseconds since the epoch: `expiresAt` and `staleUntil` are written by
 * the instance that produced the value, so instances whose clocks disagree by s ms disagree by s ms
 * on freshness. Redis keeps the hash a little longer than `staleUntil` (its own TTL is only for
 * garbage collection).
 */

/** Format tag of the envelope: a payload without it is foreign. */
const FORMAT = 1;

/** What the Redis payload decodes to. */
interface Envelope {
  /** Format, {@link FORMAT}. */
  f: number;
  /** The value. */
  v: unknown;
  /** createdAt. */
  c: number;
  /** expiresAt. */
  e: number;
  /** staleUntil. */
  g: number;
  /** Load duration (ms), for early refresh; 0 when unknown. */
  d?: number;
  /** Tags. */
  t?: string[];
}

/** A value in L1, or decoded from L2. */
export class Entry {
  /** The value, decoded. */
  readonly value: unknown;
  /** When the value was read from its source (the load's start): data is at least this recent. */
  readonly createdAt: number;
  /** Fresh until this time (the value's own TTL). */
  readonly expiresAt: number;
  /** Servable as a graced (stale) value until this time. */
  readonly staleUntil: number;
  /** How long the load that produced the value took (ms); drives early refresh. 0 when unknown. */
  readonly delta: number;
  /** Tags, or undefined. */
  readonly tags: readonly string[] | undefined;
  /** Fresh in L1 until this time: `expiresAt`, capped by the L1 TTL cap from when L1 got it. */
  freshUntil: number;
  /** After a failed refresh served this graced value, no new load is tried before this time. */
  retryAt = 0;
  /**
   * Set when the bus had a gap while the entry was in L1: an invalidation may have been missed,
   * so it is no longer served as fresh, only as a graced stand-in.
   */
  suspect = false;
  /** Estimated bytes, when L1 is bounded by bytes; else 0. */
  size = 0;
  /** The resolved promise handed to every L1 hit, created on the first one. */
  promise: Promise<unknown> | undefined = undefined;

  constructor(
    value: unknown,
    createdAt: number,
    expiresAt: number,
    staleUntil: number,
    delta: number,
    tags: readonly string[] | undefined,
  ) {
    this.value = value;
    this.createdAt = createdAt;
    this.expiresAt = expiresAt;
    this.staleUntil = staleUntil;
    this.delta = delta;
    this.tags = tags;
    this.freshUntil = expiresAt;
  }

  /** A copy for another L1 slot (L1 entries carry per-install state: freshUntil, retryAt, promise). */
  clone(): Entry {
    return new Entry(this.value, this.createdAt, this.expiresAt, this.staleUntil, this.delta, this.tags);
  }
}

/** Serializes an entry for L2. Throws what the serializer throws. */
export function encodeEntry(entry: Entry, serializer: Serializer): string | Uint8Array {
  const envelope: Envelope = {
    f: FORMAT,
    v: entry.value,
    c: entry.createdAt,
    e: entry.expiresAt,
    g: entry.staleUntil,
  };
  if (entry.delta > 0) envelope.d = entry.delta;
  if (entry.tags !== undefined && entry.tags.length > 0) envelope.t = entry.tags as string[];
  return serializer.serialize(envelope);
}

const isTime = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);

/**
 * Decodes an L2 payload. Anything that is not an envelope we wrote (corrupt bytes, another
 * serializer's output, a value some other program stored under our key) throws
 * {@link CacheCorruptError}; callers count it as a miss.
 */
export function decodeEntry(key: string, payload: string | Buffer, serializer: Serializer): Entry {
  let decoded: unknown;
  try {
    decoded = serializer.deserialize(payload);
    if (!serializer.safe) decoded = dropProtoKeys(decoded);
  } catch (error) {
    throw new CacheCorruptError(key, error);
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) {
    throw new CacheCorruptError(key, 'not an envelope');
  }
  const env = decoded as Partial<Envelope>;
  if (env.f !== FORMAT || !isTime(env.c) || !isTime(env.e) || !isTime(env.g) || !('v' in env)) {
    throw new CacheCorruptError(key, 'not an envelope');
  }
  let tags: string[] | undefined;
  if (env.t !== undefined) {
    if (!Array.isArray(env.t) || !env.t.every((t) => typeof t === 'string')) {
      throw new CacheCorruptError(key, 'bad tags');
    }
    tags = env.t;
  }
  const delta = isTime(env.d) && env.d > 0 ? env.d : 0;
  return new Entry(env.v, env.c, env.e, env.g, delta, tags);
}
