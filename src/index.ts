/**
 * buttress: resilience and scale-out primitives for Node.js backends.
 * The root entry re-exports each primitive's public API and the shared error family; import a
 * subpath (`buttress/breaker`) to load only what you use.
 */
export * from './breaker/index.js';
export * from './bulkhead/index.js';
export * from './cache/index.js';
export * from './core/public.js';
export * from './pool/index.js';
export * from './queue/index.js';
export * from './retry/index.js';
export * from './shard-router/index.js';
