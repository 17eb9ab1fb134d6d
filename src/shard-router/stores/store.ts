import { type Disposable, toDisposable } from '../../core/events.js';
import type { ShardMapSpec } from '../shard-map.js';

/**
 * Where the authoritative shard map lives, shared by every router instance: the built-ins keep it
 * in PostgreSQL ({@link pgShardMapStore}) or Redis ({@link redisShardMapStore}), or in memory for
 * one process and tests ({@link memoryShardMapStore}). A change is written with a compare-and-set
 * on the version, and pushed to the other instances (NOTIFY, pub/sub); routers also poll, so a
 * lost push only delays them by their `pollInterval`.
 *
 * Implement it to keep the map elsewhere (etcd, Consul, ZooKeeper), and check it with
 * `shardMapStoreConformance` from `buttress/testing`, which the built-ins pass.
 */
export interface ShardMapStore {
  /** A name for stats and errors: `'postgres:buttress_shard_map/users'`. */
  readonly name: string;
  /** The stored map, or undefined when nothing is stored yet. */
  load(signal?: AbortSignal): Promise<ShardMapSpec | undefined>;
  /**
   * Stores `next` if the stored map's version is `expected` (`undefined`: only if nothing is
   * stored), and tells the other instances. Resolves false, storing nothing, otherwise.
   */
  compareAndSet(expected: number | undefined, next: ShardMapSpec, signal?: AbortSignal): Promise<boolean>;
  /**
   * Calls `listener` with the version of each map another instance (or this one) stores, as soon
   * as the store learns of it. Best effort: pushes can be lost while a connection is down.
   */
  watch(listener: (version: number) => void): Disposable;
  /** Releases the store's own connections and timers (never the user's). */
  close(): Promise<void>;
}

/** Reads a stored map's JSON, returning undefined for anything that is not an object with a version. */
export function parseStoredMap(raw: unknown): ShardMapSpec | undefined {
  let value: unknown = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      return undefined;
    }
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = (value as { version?: unknown }).version;
  return typeof v === 'number' && Number.isSafeInteger(v) ? (value as ShardMapSpec) : undefined;
}

/** The watchers of a store: what `watch` adds and a push notifies; silent once closed. */
export class VersionWatchers {
  readonly #listeners = new Set<(version: number) => void>();
  #closed = false;

  /** Adds `listener`; dispose the result to remove it. */
  add(listener: (version: number) => void): Disposable {
    this.#listeners.add(listener);
    return toDisposable(() => {
      this.#listeners.delete(listener);
    });
  }

  /** Tells every watcher about `version` (a listener removed meanwhile is still called this once). */
  emit(version: number): void {
    if (this.#closed) return;
    for (const l of [...this.#listeners]) l(version);
  }

  /** Drops every watcher; later pushes go nowhere. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
  }
}
