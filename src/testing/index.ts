export {
  ALL_SERIALIZER_FEATURES,
  type ConformanceApi,
  HOSTILE_JSON_PAYLOADS,
  type SerializerConformanceOptions,
  type SerializerFeature,
  serializerConformance,
} from './cache-conformance.js';
export { FakeClock, flushMicrotasks } from './fake-clock.js';
export {
  type ConformanceTestApi,
  type QueueConformanceOptions,
  queueBackendConformance,
} from './queue-conformance.js';
export {
  type ShardMapStoreConformanceOptions,
  shardMapStoreConformance,
} from './shard-map-store-conformance.js';
export { createTcpProxy, type TcpAddress, TcpProxy, type TcpProxyOptions } from './tcp-proxy.js';
