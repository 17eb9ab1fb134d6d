// buttress/queue: background jobs on a memory or Redis backend, at-least-once, with retries,
// delays, priorities, dead letters, a shared rate limit and crash recovery.
export type {
  BackendStats,
  FailedAttempt,
  FetchRequest,
  FetchResult,
  LeasedJob,
  NewJob,
  QueueBackend,
  QueueStore,
  Retention,
  StoredDeadLetter,
} from './backend.js';
export {
  isJobLeaseLostError,
  isJobNotFoundError,
  isJobSerializeError,
  isJobTimeoutError,
  isQueueEvictionPolicyError,
  isQueueUnavailableError,
  JobLeaseLostError,
  JobNotFoundError,
  JobSerializeError,
  JobTimeoutError,
  QueueEvictionPolicyError,
  QueueUnavailableError,
} from './errors.js';
export { type MemoryBackendOptions, memoryBackend } from './memory-backend.js';
export { createQueue, Queue, type QueueCallOptions } from './queue.js';
export { type RedisBackendOptions, redisBackend, redisQueueKeys } from './redis-backend.js';
export type {
  AddedJob,
  AddOptions,
  BackoffOptions,
  BulkJob,
  CloseOptions,
  CompletedEvent,
  DeadLetter,
  FailedEvent,
  Job,
  JobAddMessage,
  JobContext,
  JobHandler,
  JobOptions,
  JobProcessMessage,
  QueueErrorEvent,
  QueueOptions,
  QueueStats,
  RetentionOptions,
  StalledEvent,
  WorkerOptions,
} from './types.js';
export { Worker } from './worker.js';
