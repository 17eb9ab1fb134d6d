// buttress/cache: a two-layer cache (in-process L1, Redis L2) kept coherent across instances.
export { Cache, createCache } from './cache.js';
export {
  CacheCorruptError,
  CacheSerializeError,
  CacheUnavailableError,
  FactoryTimeoutError,
  isCacheCorruptError,
  isCacheSerializeError,
  isCacheUnavailableError,
  isFactoryTimeoutError,
} from './errors.js';
export { jsonSerializer, richSerializer, type Serializer } from './internal/serializer.js';
export type {
  CacheBusOptions,
  CacheCallOptions,
  CacheErrorEvent,
  CacheFillMessage,
  CacheHitEvent,
  CacheInvalidateEvent,
  CacheL1Options,
  CacheL2Message,
  CacheL2Options,
  CacheLoadEvent,
  CacheLoaderMessage,
  CacheMissEvent,
  CacheOptions,
  CacheSetManyItem,
  CacheSetOptions,
  CacheStats,
  CacheWriteEvent,
  CacheWriteResult,
  GetOrSetOptions,
  Loader,
  LoaderContext,
  WrapOptions,
} from './types.js';
