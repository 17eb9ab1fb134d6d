import { describe, expect, it } from 'vitest';
import { shardMapStoreConformance } from '../../testing/shard-map-store-conformance.js';
import { type MemoryShardMapStore, memoryShardMapStore } from './memory.js';

// One process: two "instances" of a map name are the same store object.
const stores = new Map<string, MemoryShardMapStore>();
shardMapStoreConformance(
  'memory',
  (name) => {
    let store = stores.get(name);
    if (store === undefined) stores.set(name, (store = memoryShardMapStore()));
    return store;
  },
  { describe, it, expect },
  { cleanup: (name) => void stores.delete(name) },
);
