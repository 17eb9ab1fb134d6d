import { ButtressError, hasCode } from '../core/errors.js';

/**
 * A payload would not survive JSON unchanged: code `E_JOB_SERIALIZE`. Thrown by `add` and
 * `addBulk` before anything is written.
 */
export class JobSerializeError extends ButtressError {
  /** Where the offending value is, e.g. `payload.user.createdAt`. */
  readonly path: string;
  /** The item of `addBulk` (undefined for `add`). */
  readonly index: number | undefined;

  constructor(path: string, reason: string, index?: number, cause?: unknown) {
    super(
      'E_JOB_SERIALIZE',
      `Cannot store the job payload${index === undefined ? '' : ` of item ${index}`}: ${path} ${reason}`,
      { cause },
    );
    this.path = path;
    this.index = index;
  }
}

/** A handler ran past its job's `timeout`: code `E_JOB_TIMEOUT`. The attempt failed. */
export class JobTimeoutError extends ButtressError {
  readonly jobId: string;
  /** The timeout, ms. */
  readonly timeout: number;

  constructor(jobId: string, timeout: number) {
    super('E_JOB_TIMEOUT', `Job ${JSON.stringify(jobId)} timed out after ${timeout}ms`, { noStack: true });
    this.jobId = jobId;
    this.timeout = timeout;
  }
}

/**
 * The worker no longer holds the job's lease: code `E_JOB_LEASE_LOST`. Another worker may run the
 * job; this run's outcome is discarded.
 */
export class JobLeaseLostError extends ButtressError {
  readonly jobId: string;

  constructor(jobId: string) {
    super(
      'E_JOB_LEASE_LOST',
      `The lease of job ${JSON.stringify(jobId)} was lost (not renewed within lockDuration); another worker may run it`,
      { noStack: true },
    );
    this.jobId = jobId;
  }
}

/** No job with that id in the state the operation needs: code `E_JOB_NOT_FOUND`. */
export class JobNotFoundError extends ButtressError {
  readonly jobId: string;

  constructor(jobId: string, state: string) {
    super('E_JOB_NOT_FOUND', `No ${state} job has id ${JSON.stringify(jobId)}`);
    this.jobId = jobId;
  }
}

/**
 * The Redis backend could not be used: code `E_QUEUE_UNAVAILABLE`; `cause` says why (connection
 * down, `E_REDIS_TIMEOUT`, a reply error such as OOM). A write that timed out may still land.
 */
export class QueueUnavailableError extends ButtressError {
  constructor(operation: string, cause: unknown) {
    super(
      'E_QUEUE_UNAVAILABLE',
      `Queue ${operation} failed: Redis is unavailable (${cause instanceof Error ? cause.message : String(cause)})`,
      { cause, noStack: true },
    );
  }
}

/**
 * Redis may evict keys (`maxmemory-policy` is not `noeviction`) and the backend was told to
 * refuse that: code `E_QUEUE_EVICTION_POLICY`.
 */
export class QueueEvictionPolicyError extends ButtressError {
  /** The policy the server runs. */
  readonly policy: string;

  constructor(policy: string) {
    super(
      'E_QUEUE_EVICTION_POLICY',
      `Redis maxmemory-policy is "${policy}": it may evict queue keys and lose jobs. Set it to "noeviction" (CONFIG SET maxmemory-policy noeviction) or use maxmemoryPolicy: 'warn'`,
    );
    this.policy = policy;
  }
}

/** True for {@link JobSerializeError}. */
export const isJobSerializeError = (e: unknown): e is JobSerializeError => hasCode(e, 'E_JOB_SERIALIZE');
/** True for {@link JobTimeoutError}. */
export const isJobTimeoutError = (e: unknown): e is JobTimeoutError => hasCode(e, 'E_JOB_TIMEOUT');
/** True for {@link JobLeaseLostError}. */
export const isJobLeaseLostError = (e: unknown): e is JobLeaseLostError => hasCode(e, 'E_JOB_LEASE_LOST');
/** True for {@link JobNotFoundError}. */
export const isJobNotFoundError = (e: unknown): e is JobNotFoundError => hasCode(e, 'E_JOB_NOT_FOUND');
/** True for {@link QueueUnavailableError}. */
export const isQueueUnavailableError = (e: unknown): e is QueueUnavailableError =>
  hasCode(e, 'E_QUEUE_UNAVAILABLE');
/** True for {@link QueueEvictionPolicyError}. */
export const isQueueEvictionPolicyError = (e: unknown): e is QueueEvictionPolicyError =>
  hasCode(e, 'E_QUEUE_EVICTION_POLICY');
