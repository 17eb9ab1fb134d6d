import { throwIfAborted } from '../../core/abort.js';
import { ClosedError } from '../../core/errors.js';
import type { Disposable } from '../../core/events.js';
import type { ShardMapSpec } from '../shard-map.js';
import { type ShardMapStore, VersionWatchers } from './store.js';

/**
 * A shard map store in memory: for one process, and for tests that run several routers side by
 * side (pass the same store to each). Pushes are delivered on a microtask, as a network would
 * deliver them: never inside `compareAndSet`'s own call.
 *
 * @example
 * const store = memoryShardMapStore(evenShardMap(64, ['a', 'b']).toJSON());
 * const r1 = createShardRouter({ logicalShards: 64, nodes, store });
 * const r2 = createShardRouter({ logicalShards: 64, nodes, store });
 * await Promise.all([r1.ready(), r2.ready()]);
 */
export function memoryShardMapStore(initial?: ShardMapSpec): MemoryShardMapStore {
  return new MemoryShardMapStore(initial);
}

/** See {@link memoryShardMapStore}. */
export class MemoryShardMapStore implements ShardMapStore {
  readonly name = 'memory';
  #json: string | undefined;
  #version: number | undefined;
  readonly #watchers = new VersionWatchers();
  #closed = false;

  constructor(initial?: ShardMapSpec) {
    if (initial !== undefined) {
      this.#json = JSON.stringify(initial);
      this.#version = initial.version;
    }
  }

  load(signal?: AbortSignal): Promise<ShardMapSpec | undefined> {
    if (this.#closed) return Promise.reject(new ClosedError('MemoryShardMapStore'));
    throwIfAborted(signal);
    // A copy, as a real store would return: callers must not share the stored object.
    return Promise.resolve(this.#json === undefined ? undefined : (JSON.parse(this.#json) as ShardMapSpec));
  }

  compareAndSet(expected: number | undefined, next: ShardMapSpec, signal?: AbortSignal): Promise<boolean> {
    if (this.#closed) return Promise.reject(new ClosedError('MemoryShardMapStore'));
    throwIfAborted(signal);
    if (this.#version !== expected) return Promise.resolve(false);
    this.#json = JSON.stringify(next);
    this.#version = next.version;
    const version = next.version;
    queueMicrotask(() => this.#watchers.emit(version));
    return Promise.resolve(true);
  }

  watch(listener: (version: number) => void): Disposable {
    return this.#watchers.add(listener);
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#watchers.close();
    return Promise.resolve();
  }
}
