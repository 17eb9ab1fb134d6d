import type { Clock } from '../core/clock.js';
import type { Disposable } from '../core/events.js';

/*
 * The storage a queue runs on. A backend holds each job's record (an opaque string the queue
 * builds) and moves it between states with one atomic step per transition:
 *
 *   add -> waiting | delayed            fetch: waiting -> active (leased), active -> completed (ack)
 *   fail: active -> waiting | delayed | dead     recoverStalled: active (lease expired) -> waiting | dead
 *   release: active -> waiting          retry: dead -> waiting
 *
 * Every transition out of `active` checks the lease token handed out by `fetch`: a worker that
 * lost its lease can no longer complete, fail, extend or release the job. The built-in backends
 * are `memoryBackend()` and `redisBackend()`; `queueBackendConformance` in `buttress/testing`
 * checks a third-party one against the same contract.
 */

/** A job to store, as built by the queue. */
export interface NewJob {
  /** The custom id, or undefined for an auto id (the backend assigns a decimal counter). */
  readonly id: string | undefined;
  /** The job's record, opaque to the backend. */
  readonly record: string;
  /** 0 (most urgent) to 2^21; lower runs first, FIFO within a priority. */
  readonly priority: number;
  /** Milliseconds before the job may run (0: waiting at once). */
  readonly delay: number;
}

/** A job handed to a worker by `fetch`. */
export interface LeasedJob {
  readonly id: string;
  readonly record: string;
  /** The job's place in the waiting order, given back to `release` to keep it. */
  readonly score: number | string;
  /** Failed attempts so far. */
  readonly failures: number;
  /** Lost leases so far. */
  readonly stalls: number;
}

/** How many finished jobs a backend keeps, and for how long. */
export interface Retention {
  /** 0: delete at once. */
  readonly count: number;
  /** Milliseconds. */
  readonly age: number;
}

/** One worker round trip: acknowledgements of finished jobs, then new leases. */
export interface FetchRequest {
  /** The token of the leases handed out by this call. */
  readonly token: string;
  /** Jobs to lease at most (0: only acknowledge). */
  readonly max: number;
  /** Lease lifetime, ms. */
  readonly lockDuration: number;
  /** Shared rate limit: at most `max` leases per `duration` ms across the queue. */
  readonly rateLimit: { readonly max: number; readonly duration: number } | undefined;
  /** Jobs completed by the worker: id and the token of its lease. */
  readonly completed: readonly { readonly id: string; readonly token: string }[];
  /** Retention of completed jobs. */
  readonly retention: Retention;
}

/** What `fetch` answers. */
export interface FetchResult {
  readonly jobs: readonly LeasedJob[];
  /** Milliseconds until the next delayed job is due, or -1 when none is. */
  readonly nextDelay: number;
  /** Milliseconds until the rate window reopens when this call found or left it full, else 0. */
  readonly rateLimitedFor: number;
  /** Acknowledged ids whose lease was no longer the caller's (nothing was done to them). */
  readonly refused: readonly string[];
}

/** One failed attempt to record. */
export interface FailedAttempt {
  readonly id: string;
  readonly token: string;
  /** Milliseconds until the next attempt; -1 to dead-letter the job. */
  readonly retryIn: number;
  /** The error, serialised for the dead-letter set. */
  readonly error: string;
}

/** A dead letter as stored. */
export interface StoredDeadLetter {
  readonly id: string;
  readonly record: string;
  readonly failedAt: number;
  readonly error: string;
}

/** Gauges and counters of one queue. */
export interface BackendStats {
  readonly waiting: number;
  readonly active: number;
  readonly delayed: number;
  readonly failed: number;
  readonly retained: number;
  readonly completed: number;
  readonly deadLettered: number;
  readonly stalled: number;
  /** Completions within the last 60 seconds. */
  readonly recentCompletions: number;
}

/** The storage of one queue, opened by {@link QueueBackend.open}. */
export interface QueueStore {
  /** Resolves once the store can be used (the Redis backend checks `maxmemory-policy` here). */
  ready(): Promise<void>;
  /**
   * Stores jobs atomically per call; returns, in order, each id and whether it was added. A
   * custom id is refused while a job with it exists, or for `dedupeWindow` ms after it was added.
   */
  add(jobs: readonly NewJob[], dedupeWindow: number): Promise<{ id: string; added: boolean }[]>;
  /** See {@link FetchRequest}. */
  fetch(request: FetchRequest): Promise<FetchResult>;
  /** Records failed attempts; returns, in order, whether each lease was still the caller's. */
  fail(attempts: readonly FailedAttempt[], deadRetention: Retention): Promise<boolean[]>;
  /** Renews leases; returns the ids whose lease was lost. */
  extend(jobs: readonly { id: string; token: string }[], lockDuration: number): Promise<string[]>;
  /** Gives leases back: the jobs return to waiting at `score`, at once. */
  release(jobs: readonly { id: string; token: string; score: number | string }[]): Promise<number>;
  /** Moves jobs whose lease expired back to waiting, or to the dead-letter set past `maxStalls`. */
  recoverStalled(
    maxStalls: number,
    limit: number,
    deadRetention: Retention,
    error: string,
  ): Promise<{ requeued: string[]; deadLettered: string[] }>;
  /** Dead letters, newest first. */
  deadLetters(offset: number, limit: number): Promise<StoredDeadLetter[]>;
  /** Moves a dead letter back to waiting with fresh attempts; false when there is none with that id. */
  retry(id: string): Promise<boolean>;
  /** Deletes every dead letter; returns how many. */
  purge(): Promise<number>;
  stats(): Promise<BackendStats>;
  /**
   * Calls `listener` when work may have become available (a job added to an empty queue, an
   * earlier delayed job, a retry, a recovered or released job). A hint: workers poll as well.
   */
  onWake(listener: () => void): Disposable;
  /** Releases what the store opened (never a connection the user passed in). */
  close(): Promise<void>;
}

/** A queue backend: opens the store of a queue by name. Stores of one name share their jobs. */
export interface QueueBackend {
  /** A short name for messages: `'memory'`, `'redis'`. */
  readonly kind: string;
  /** Opens queue `name`; `clock` is the queue's. */
  open(name: string, context: { readonly clock: Clock }): QueueStore;
}
