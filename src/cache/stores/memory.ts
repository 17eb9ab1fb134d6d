import { LRUCache } from 'lru-cache';
import type { Entry } from '../internal/envelope.js';
import { ENTRY_OVERHEAD, estimateSize } from '../internal/size.js';

/** Options of the in-process layer (L1). */
export interface MemoryStoreOptions {
  /** Most entries held; the least recently used go first. */
  maxEntries: number;
  /** Most estimated bytes held, or undefined for no byte bound. */
  maxBytes: number | undefined;
  /** Entries estimated bigger than this are not held in L1 (they are still written to L2). */
  maxEntryBytes: number | undefined;
  /** How an entry's size is estimated when no payload length is known. */
  sizeOf: ((value: unknown) => number) | undefined;
}

/**
 * L1: decoded entries in an `lru-cache`, bounded by count and optionally by estimated bytes, with
 * an index from tags to keys so that a tag invalidation deletes exactly the entries carrying it.
 *
 * Expiry is the cache's business, not lru-cache's: entries are checked against the clock on read
 * (one comparison), and an expired entry is never touched again, so it sinks to the cold end of
 * the list and is the first evicted. That keeps lru-cache's own TTL bookkeeping (and its timers)
 * off the hit path.
 */
export class MemoryStore {
  readonly #lru: LRUCache<string, Entry>;
  /** Tag (namespace-prefixed) -> keys of the entries carrying it. Only tagged entries pay for it. */
  readonly #tagIndex = new Map<string, Set<string>>();
  /** Index keys each tagged entry is registered under. */
  readonly #entryTags = new WeakMap<Entry, readonly string[]>();
  readonly #maxEntryBytes: number | undefined;
  readonly #sizeOf: ((value: unknown) => number) | undefined;
  readonly #bytes: boolean;
  readonly maxEntries: number;
  readonly maxBytes: number | undefined;

  constructor(options: MemoryStoreOptions) {
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    this.#maxEntryBytes = options.maxEntryBytes;
    this.#sizeOf = options.sizeOf;
    this.#bytes = options.maxBytes !== undefined || options.maxEntryBytes !== undefined;
    this.#lru = new LRUCache<string, Entry>({
      max: options.maxEntries,
      ...(options.maxBytes !== undefined
        ? { maxSize: options.maxBytes, sizeCalculation: (entry: Entry) => Math.max(1, entry.size) }
        : {}),
      dispose: this.#dispose,
    });
  }

  /** The entry under `key`, marked most recently used; undefined when absent. */
  get(key: string): Entry | undefined {
    return this.#lru.get(key);
  }

  /** The entry under `key` without touching its recency. */
  peek(key: string): Entry | undefined {
    return this.#lru.peek(key);
  }

  /**
   * Holds `entry` under `key`, replacing what was there. `payloadBytes` (the serialized length,
   * when known) sizes it; else the value is estimated. Returns false when the entry is too big to
   * be held (what was under `key` is removed then too, so L1 never keeps an older value).
   * `tagKeys` are the entry's tags as index keys (namespace-prefixed).
   */
  set(key: string, entry: Entry, tagKeys: readonly string[] | undefined, payloadBytes?: number): boolean {
    if (this.#bytes) {
      const valueBytes =
        payloadBytes ?? (this.#sizeOf !== undefined ? this.#sizeOf(entry.value) : estimateSize(entry.value));
      entry.size = ENTRY_OVERHEAD + key.length * 2 + valueBytes;
      if (
        (this.#maxEntryBytes !== undefined && entry.size > this.#maxEntryBytes) ||
        (this.maxBytes !== undefined && entry.size > this.maxBytes)
      ) {
        this.#lru.delete(key);
        return false;
      }
    }
    this.#lru.set(key, entry);
    if (tagKeys !== undefined && tagKeys.length > 0) {
      this.#entryTags.set(entry, tagKeys);
      for (const tag of tagKeys) {
        let keys = this.#tagIndex.get(tag);
        if (keys === undefined) this.#tagIndex.set(tag, (keys = new Set()));
        keys.add(key);
      }
    }
    return true;
  }

  /** Removes `key`; true when it was there. */
  delete(key: string): boolean {
    return this.#lru.delete(key);
  }

  /** Removes every entry carrying one of the (namespace-prefixed) tags; returns how many. */
  deleteTagged(tagKeys: readonly string[]): number {
    let removed = 0;
    for (const tag of tagKeys) {
      const keys = this.#tagIndex.get(tag);
      if (keys === undefined) continue;
      for (const key of [...keys]) if (this.#lru.delete(key)) removed++;
      this.#tagIndex.delete(tag);
    }
    return removed;
  }

  /** Removes every entry whose key satisfies `belongs` (one namespace's); O(entries). */
  deleteWhere(belongs: (key: string) => boolean): void {
    for (const key of [...this.#lru.keys()]) if (belongs(key)) this.#lru.delete(key);
  }

  /**
   * Stops serving every entry as fresh, keeping them as graced stand-ins (after a bus gap: an
   * invalidation may have been missed, but a value within its TTL still beats an error).
   */
  distrustAll(): void {
    for (const entry of this.#lru.values()) {
      entry.freshUntil = 0;
      entry.suspect = true;
    }
  }

  /** Removes every entry. */
  clear(): void {
    this.#lru.clear();
    this.#tagIndex.clear();
  }

  /** Entries held (expired ones not yet evicted included). */
  get size(): number {
    return this.#lru.size;
  }

  /** Estimated bytes held, when L1 is bounded by bytes; else 0. */
  get bytes(): number {
    if (!this.#bytes) return 0;
    if (this.maxBytes !== undefined) return this.#lru.calculatedSize;
    let total = 0;
    for (const entry of this.#lru.values()) total += entry.size;
    return total;
  }

  readonly #dispose = (entry: Entry, key: string): void => {
    const tags = this.#entryTags.get(entry);
    if (tags === undefined) return;
    this.#entryTags.delete(entry);
    for (const tag of tags) {
      const keys = this.#tagIndex.get(tag);
      if (keys === undefined) continue;
      keys.delete(key);
      if (keys.size === 0) this.#tagIndex.delete(tag);
    }
  };
}
