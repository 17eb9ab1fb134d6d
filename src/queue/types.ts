import type { Clock } from '../core/clock.js';
import type { TracedMessage } from '../core/diagnostics.js';
import type { Duration } from '../core/duration.js';
import type { QueueBackend } from './backend.js';

/** How long a failed job waits before its next attempt. */
export interface BackoffOptions {
  /**
   * `'exponential'`: `delay * 2^(attempt - 1)`, capped by `maxDelay`; `'fixed'`: `delay` every time.
   * @default 'exponential'
   */
  type?: 'exponential' | 'fixed';
  /** The first retry's delay. @default '1s' */
  delay?: Duration;
  /** The longest delay. @default '1h' */
  maxDelay?: Duration;
  /**
   * Share of the delay drawn at random, from 0 (none) to 1: the delay is `d * (1 - jitter * r)`
   * for a uniform `r` in [0, 1), so retries of jobs that failed together spread out.
   * @default 0.5
   */
  jitter?: number;
}

/** Per-job options of `add` and `addBulk`; unset ones come from the queue's `defaults`. */
export interface JobOptions {
  /**
   * Makes `add` idempotent: while a job with this id exists (waiting, delayed, active, retained as
   * completed or dead-lettered), or within the queue's `dedupeWindow` after it was added, adding it
   * again adds nothing and resolves `{ id, duplicate: true }`. At most 256 characters, and not
   * only digits (those are the auto ids).
   */
  jobId?: string;
  /** Run no sooner than this long after the add. @default 0 */
  delay?: Duration;
  /**
   * 0 (the default, most urgent) to 2,097,152; lower numbers run first, FIFO within a priority.
   * @default 0
   */
  priority?: number;
  /** Attempts in all, the first included; a job that fails them all is dead-lettered. @default 3 */
  attempts?: number;
  /** Delay between attempts. @default exponential from 1 s, jitter 0.5, at most 1 h */
  backoff?: BackoffOptions;
  /** Abort the handler's signal and fail the attempt after this long; 0 for none. @default 0 */
  timeout?: Duration;
}

/** How many finished jobs to keep, and for how long (both bounds hold). */
export interface RetentionOptions {
  /** Keep at most this many (0: delete at once). */
  count?: number;
  /** Keep none older than this. */
  age?: Duration;
}

/** Options of {@link createQueue}. */
export interface QueueOptions {
  /** Where jobs live. @default memoryBackend() with this queue's clock (one process only) */
  backend?: QueueBackend;
  /** Job options applied when `add` does not set them. */
  defaults?: JobOptions;
  /**
   * How long a custom `jobId` stays taken after its add, even once the job is gone (0: only while
   * the job exists).
   * @default 0
   */
  dedupeWindow?: Duration;
  /** Retention of completed and dead-lettered jobs. @default completed { count: 1000, age: '1h' }, failed { count: 10000, age: '7d' } */
  retention?: { completed?: RetentionOptions | false; failed?: RetentionOptions };
  /** Time source for delays, backoff, timeouts and lease renewal. @default systemClock */
  clock?: Clock;
}

/** Per-call options of `add`. */
export interface AddOptions extends JobOptions {
  /** Aborting before the write is sent rejects with `E_ABORTED`; once sent, the add stands. */
  signal?: AbortSignal;
}

/** One item of `addBulk`. */
export interface BulkJob<T> {
  payload: T;
  options?: JobOptions;
}

/** What `add` resolves to. */
export interface AddedJob {
  /** The job's id: the `jobId` given, or an auto id (a decimal number as a string). */
  readonly id: string;
  /** True when the `jobId` was taken and nothing was added. */
  readonly duplicate: boolean;
}

/** A job as a handler sees it. */
export interface Job<T = unknown> {
  /** The job's id, stable across attempts: with `attempt`, a handler's idempotency key. */
  readonly id: string;
  /** The payload given to `add` (a JSON round trip of it). */
  readonly payload: T;
  /** This attempt's number, from 1. A run after a lost lease repeats the same attempt number. */
  readonly attempt: number;
  /** Attempts allowed in all. */
  readonly attempts: number;
  /** Times the job returned to waiting after a lost lease (its worker died or stalled). */
  readonly stalls: number;
  /** The job's priority. */
  readonly priority: number;
  /** When the job was added (the adding process's clock, ms since the epoch). */
  readonly createdAt: number;
}

/** The second argument of a handler. */
export interface JobContext {
  /**
   * Aborts when the attempt must stop: the job's `timeout` passed (`E_JOB_TIMEOUT`), the lease was
   * lost (`E_JOB_LEASE_LOST`), or `close()` hit its deadline (`E_CLOSED`). Created on first read.
   */
  readonly signal: AbortSignal;
  /** Same as `job.attempt`. */
  readonly attempt: number;
  /**
   * Renews the job's lease now. Background renewal does this every `lockDuration / 2`; call it
   * between long synchronous stretches that block the event loop.
   * @throws {JobLeaseLostError} `E_JOB_LEASE_LOST` when the lease is no longer this worker's.
   */
  heartbeat(): Promise<void>;
}

/** Processes one job; a rejection or throw fails the attempt. */
export type JobHandler<T = unknown> = (job: Job<T>, context: JobContext) => unknown;

/** Options of `queue.process`. */
export interface WorkerOptions {
  /** Jobs run at once by this worker. @default 1 */
  concurrency?: number;
  /**
   * A lease's lifetime: a job whose worker does not renew its lease within this long (the process
   * died, lost Redis, or blocked its event loop) returns to waiting. Renewed every half of it.
   * @default '30s'
   */
  lockDuration?: Duration;
  /** Times a job may return to waiting after a lost lease before it is dead-lettered. @default 1 */
  maxStalls?: number;
  /** At most `max` jobs started per `duration`, across every worker of the queue. */
  rateLimit?: { max: number; duration: Duration };
  /** Check for new work this often even without a wake-up message (a safety net). @default '5s' */
  pollInterval?: Duration;
}

/** Options of `worker.close`. */
export interface CloseOptions {
  /**
   * How long running jobs may go on. Past it their signals abort (`E_CLOSED`) and their leases are
   * released, so another worker takes them at once.
   * @default '30s'
   */
  timeout?: Duration;
}

/** A dead-lettered job. */
export interface DeadLetter<T = unknown> {
  readonly id: string;
  readonly payload: T;
  /** When it was dead-lettered (ms since the epoch; the backend's clock). */
  readonly failedAt: number;
  /** Attempts made. */
  readonly attempts: number;
  /** The last error, as far as it could be stored. */
  readonly error: {
    readonly name: string;
    readonly message: string;
    readonly code?: string;
    readonly stack?: string;
  };
}

/** A plain snapshot from `stats()`. */
export interface QueueStats {
  /** Jobs ready to run. */
  readonly waiting: number;
  /** Jobs leased to a worker. */
  readonly active: number;
  /** Jobs waiting for their delay or backoff. */
  readonly delayed: number;
  /** Jobs in the dead-letter set. */
  readonly failed: number;
  /** Jobs completed since the queue was first used (all workers). */
  readonly completed: number;
  /** Completed jobs retained (bounded by `retention.completed`). */
  readonly retained: number;
  /** Jobs dead-lettered since the queue was first used. */
  readonly deadLettered: number;
  /** Leases found expired since the queue was first used. */
  readonly stalled: number;
  /** Jobs completed per second, averaged over the last minute. */
  readonly throughput: number;
}

/** Event of `onCompleted`. */
export interface CompletedEvent<T = unknown> {
  readonly job: Job<T>;
  /** What the handler returned. */
  readonly result: unknown;
  /** The handler's run time, ms. */
  readonly duration: number;
}

/** Event of `onFailed`: one failed attempt. */
export interface FailedEvent<T = unknown> {
  readonly job: Job<T>;
  readonly error: unknown;
  /** Milliseconds until the next attempt, or undefined when the job was dead-lettered. */
  readonly retryIn: number | undefined;
  /** True when this was the last attempt. */
  readonly deadLettered: boolean;
}

/** Event of `onStalled`. */
export interface StalledEvent {
  readonly jobId: string;
  /**
   * `'requeued'` or `'dead-lettered'`: this worker found the job's lease expired and moved it;
   * `'lease-lost'`: this worker was running the job and lost its lease.
   */
  readonly outcome: 'requeued' | 'dead-lettered' | 'lease-lost';
}

/** Event of `onError`: a background operation of a worker failed (it retries on its own). */
export interface QueueErrorEvent {
  readonly error: unknown;
  /** What was being done: `'fetch'`, `'fail'`, `'extend'`, `'release'`, `'recover'`. */
  readonly operation: string;
}

/**
 * Message of the tracing channel `buttress:queue:add`: one job added (`add`, or one item of
 * `addBulk`), from the call to the backend's answer. A `start` subscriber may write string
 * entries into `headers` (a trace context: `traceparent`, `tracestate`, `baggage`): they are stored
 * with the job and handed back in {@link JobProcessMessage.headers} to the worker that runs it,
 * on every backend. See docs/observability.md.
 */
export interface JobAddMessage extends TracedMessage {
  readonly queue: string;
  /** The custom `jobId`, if one was given (an auto id is in `result` once added). */
  readonly jobId: string | undefined;
  readonly delay: number;
  readonly priority: number;
  /** Entries to store with the job; only string values are kept, 8 KiB of JSON at most. */
  readonly headers: Record<string, string>;
  /** Set once the backend answered. */
  result?: AddedJob;
}

/**
 * Message of the tracing channel `buttress:queue:process`: one attempt of one job in a worker,
 * from the handler's call to the attempt's outcome (`asyncEnd` when the handler settled or the
 * attempt was ended for it: timeout, lost lease, close; `error` with the failure).
 */
export interface JobProcessMessage extends TracedMessage {
  readonly queue: string;
  readonly jobId: string;
  /** This attempt's number, from 1. */
  readonly attempt: number;
  readonly attempts: number;
  readonly stalls: number;
  readonly priority: number;
  /** When the job was added, ms since the epoch (the producer's clock). */
  readonly createdAt: number;
  /** What subscribers of `buttress:queue:add` stored with the job, if anything. */
  readonly headers: Readonly<Record<string, string>> | undefined;
}
