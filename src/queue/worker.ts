import { randomBytes } from 'node:crypto';
import type { Clock, Timer } from '../core/clock.js';
import {
  announce,
  channel,
  isTraced,
  lifecycle,
  publish,
  traceSettled,
  traceSync,
  tracingChannel,
} from '../core/diagnostics.js';
import { ClosedError } from '../core/errors.js';
import { type Disposable, Emitter, type Event } from '../core/events.js';
import { type Stopwatch, stopwatch } from '../core/hr-time.js';
import { sharedTimerWheel, TimerEntry, type TimerWheel } from '../core/timer-wheel.js';
import { duration, knownKeys, optionsObject } from '../core/validate.js';
import type { FailedAttempt, FetchResult, LeasedJob, QueueStore, Retention } from './backend.js';
import { JobLeaseLostError, JobTimeoutError } from './errors.js';
import { backoffDelay, decodeRecord, type ResolvedJobOptions, serializeError } from './internal/record.js';
import type {
  CloseOptions,
  CompletedEvent,
  FailedEvent,
  Job,
  JobContext,
  JobHandler,
  JobProcessMessage,
  QueueErrorEvent,
  StalledEvent,
} from './types.js';

const completedChannel = channel('queue', 'completed');
const failedChannel = channel('queue', 'failed');
const stalledChannel = channel('queue', 'stalled');
const processChannel = tracingChannel<JobProcessMessage>('queue', 'process');
const lifecycleChannels = lifecycle('queue');

/** Acknowledgements or failures per backend call. */
const BATCH = 1000;
const RETRY_MIN = 50;
const RETRY_MAX = 2000;

/** @internal The event emitters of a queue or a worker. */
export class QueueEmitters<T> {
  readonly completed = new Emitter<CompletedEvent<T>>();
  readonly failed = new Emitter<FailedEvent<T>>();
  readonly stalled = new Emitter<StalledEvent>();
  readonly drained = new Emitter<void>();
  readonly error = new Emitter<QueueErrorEvent>();

  clear(): void {
    this.completed.clear();
    this.failed.clear();
    this.stalled.clear();
    this.drained.clear();
    this.error.clear();
  }
}

/** @internal What a worker needs from its queue, validated. */
export interface WorkerSettings {
  readonly name: string;
  readonly store: QueueStore;
  readonly clock: Clock;
  readonly ready: () => Promise<void>;
  readonly queueEvents: QueueEmitters<any>;
  readonly completedRetention: Retention;
  readonly failedRetention: Retention;
  readonly concurrency: number;
  readonly lockDuration: number;
  readonly maxStalls: number;
  readonly rateLimit: { readonly max: number; readonly duration: number } | undefined;
  readonly pollInterval: number;
  readonly random: () => number;
  readonly onClosed: (worker: Worker<any>) => void;
}

/**
 * One leased job while this worker holds it: the `Job` the handler sees, its `JobContext` (the
 * same object, so a job costs one allocation), and the lease.
 */
class ActiveJob<T> implements Job<T>, JobContext {
  readonly id: string;
  readonly payload: T;
  readonly attempt: number;
  readonly attempts: number;
  readonly stalls: number;
  readonly priority: number;
  readonly createdAt: number;
  /** @internal */ readonly _token: string;
  /** @internal */ readonly _score: number | string;
  /** @internal */ readonly _options: ResolvedJobOptions;
  /** @internal */ readonly _worker: Worker<T>;
  /** @internal The handler settled, or the attempt was ended for it (timeout, close). */
  _settled = false;
  /** @internal The lease is gone (lost or released): nothing more is reported for this run. */
  _lost = false;
  /** @internal */ _started = 0;
  /** @internal What the handler returned. */
  _result: unknown;
  /** @internal */ _timeout: JobDeadline<T> | undefined;
  /** @internal The message of this attempt's `buttress:queue:process` trace, when traced. */
  _trace: JobProcessMessage | undefined;
  #controller: AbortController | undefined;
  #reason: unknown;

  constructor(
    worker: Worker<T>,
    leased: LeasedJob,
    token: string,
    payload: T,
    createdAt: number,
    options: ResolvedJobOptions,
  ) {
    this.id = leased.id;
    this.payload = payload;
    this.attempt = leased.failures + 1;
    this.attempts = options.attempts;
    this.stalls = leased.stalls;
    this.priority = options.priority;
    this.createdAt = createdAt;
    this._token = token;
    this._score = leased.score;
    this._options = options;
    this._worker = worker;
  }

  /** Created on first read: an AbortSignal costs microseconds and most handlers never look. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  heartbeat(): Promise<void> {
    return this._worker._heartbeat(this);
  }

  /** @internal */
  _abort(reason: unknown): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /** The job's public fields. */
  toJSON(): Job<T> {
    return {
      id: this.id,
      payload: this.payload,
      attempt: this.attempt,
      attempts: this.attempts,
      stalls: this.stalls,
      priority: this.priority,
      createdAt: this.createdAt,
    };
  }
}

/** A job's `timeout`, on the clock's shared timer wheel (no libuv timer per job). */
class JobDeadline<T> extends TimerEntry {
  constructor(readonly job: ActiveJob<T>) {
    super();
  }
  fire(): void {
    const job = this.job;
    job._timeout = undefined;
    if (job._settled) return;
    const error = new JobTimeoutError(job.id, job._options.timeout);
    job._abort(error);
    job._worker._settle(job, false, error);
  }
}

interface PendingFailure<T> {
  readonly job: ActiveJob<T>;
  readonly attempt: FailedAttempt;
  readonly error: unknown;
}

/**
 * Runs a queue's jobs: leases up to `concurrency` at once, runs the handler, acknowledges each job
 * only after its handler finished (at-least-once), retries failures with backoff, renews its
 * leases in the background and recovers the jobs of dead workers. Created by `queue.process()`;
 * starts at once.
 *
 * One backend round trip serves a whole batch: the jobs finished since the last call are
 * acknowledged and the next ones leased in the same call, and nothing else is written per job.
 */
export class Worker<T = unknown> {
  readonly #s: WorkerSettings;
  readonly #handler: JobHandler<T>;
  readonly #events = new QueueEmitters<T>();
  readonly #store: QueueStore;
  readonly #clock: Clock;
  readonly #wheel: TimerWheel;
  readonly #elapsed: Stopwatch;
  readonly #id = randomBytes(6).toString('hex');
  #seq = 0;
  /** Jobs whose handler runs (slots taken). */
  #running = 0;
  /** Jobs whose lease this worker holds, running or waiting to be acknowledged. */
  readonly #active = new Map<string, ActiveJob<T>>();
  #acks: ActiveJob<T>[] = [];
  #fails: PendingFailure<T>[] = [];
  #fetching = false;
  #failing = false;
  #pumpQueued = false;
  #ready = false;
  #idle = false;
  #wakeSeq = 0;
  #idleTimer: Timer | undefined;
  #retryTimer: Timer | undefined;
  #retryDelay = 0;
  #failRetryTimer: Timer | undefined;
  #maintenanceTimer: Timer | undefined;
  #extending = false;
  #recovering = false;
  #accepting = true;
  #processedSinceDrain = false;
  /** The last lease call found the rate window full (idle for that, not for want of jobs). */
  #rateLimited = false;
  #wake: Disposable | undefined;
  #closing: Promise<void> | undefined;
  #settledWaiters: (() => void)[] = [];
  readonly #started: Promise<void>;

  /** @internal Use `queue.process()`. */
  constructor(settings: WorkerSettings, handler: JobHandler<T>) {
    this.#s = settings;
    this.#handler = handler;
    this.#store = settings.store;
    this.#clock = settings.clock;
    this.#wheel = sharedTimerWheel(settings.clock);
    this.#elapsed = stopwatch(settings.clock);
    this.#started = this.#start();
    this.#started.catch(noop);
    announce(lifecycleChannels.create, 'worker', this);
  }

  /** The name of the queue it runs. */
  get queue(): string {
    return this.#s.name;
  }

  /** Jobs whose handler is running now. */
  get running(): number {
    return this.#running;
  }

  /** True once `close()` was called. */
  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Resolves once the worker has started (the backend is reachable and its checks passed).
   * @throws the start-up error, e.g. `E_QUEUE_EVICTION_POLICY`.
   */
  ready(): Promise<void> {
    return this.#started;
  }

  /** A job's handler resolved and the job was acknowledged. */
  get onCompleted(): Event<CompletedEvent<T>> {
    return this.#events.completed.event;
  }
  /** An attempt failed (`retryIn` says when the next one runs; `deadLettered` when none will). */
  get onFailed(): Event<FailedEvent<T>> {
    return this.#events.failed.event;
  }
  /** A lease expired: this worker recovered a dead worker's job, or lost a lease of its own. */
  get onStalled(): Event<StalledEvent> {
    return this.#events.stalled.event;
  }
  /** The queue had no job ready for this worker and its last running job finished. */
  get onDrained(): Event<void> {
    return this.#events.drained.event;
  }
  /** A backend call failed; the worker retries with backoff. */
  get onError(): Event<QueueErrorEvent> {
    return this.#events.error.event;
  }

  async #start(): Promise<void> {
    let delay = RETRY_MIN;
    for (;;) {
      if (this.#closing !== undefined) return;
      try {
        await this.#s.ready();
        break;
      } catch (error) {
        this.#emitError(error, 'start');
        if ((error as { code?: unknown }).code === 'E_QUEUE_EVICTION_POLICY') throw error;
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, delay));
        delay = Math.min(delay * 2, RETRY_MAX);
      }
    }
    if (this.#closing !== undefined) return;
    this.#ready = true;
    this.#wake = this.#store.onWake(this.#onWake);
    this.#maintenanceTimer = this.#clock.setTimeout(this.#maintain, this.#maintenanceInterval());
    this.#pump();
  }

  #maintenanceInterval(): number {
    return Math.max(5, Math.floor(this.#s.lockDuration / 2));
  }

  readonly #onWake = (): void => {
    this.#wakeSeq++;
    if (!this.#idle) return;
    this.#idle = false;
    if (this.#idleTimer !== undefined) {
      this.#clock.clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
    this.#schedule();
  };

  #schedule(): void {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    // After the current run of callbacks: every job finishing in this turn joins the batch.
    process.nextTick(this.#pump);
  }

  /** Sends what is pending: failures, then acknowledgements together with a request for jobs. */
  readonly #pump = (): void => {
    this.#pumpQueued = false;
    if (this.#fails.length > 0 && !this.#failing && this.#failRetryTimer === undefined) this.#sendFailures();
    if (this.#fetching || this.#retryTimer !== undefined || !this.#ready) return;
    const free = this.#accepting && !this.#idle ? this.#s.concurrency - this.#running : 0;
    if (free <= 0 && this.#acks.length === 0) return;
    let acks = this.#acks;
    if (acks.length > BATCH) {
      acks = acks.slice(0, BATCH);
      this.#acks = this.#acks.slice(BATCH);
    } else {
      this.#acks = [];
    }
    const completed = new Array<{ id: string; token: string }>(acks.length);
    for (let i = 0; i < acks.length; i++) completed[i] = { id: acks[i]!.id, token: acks[i]!._token };
    const token = `${this.#id}:${++this.#seq}`;
    const wakeSeq = this.#wakeSeq;
    this.#fetching = true;
    this.#store
      .fetch({
        token,
        max: Math.max(0, free),
        lockDuration: this.#s.lockDuration,
        rateLimit: this.#s.rateLimit,
        completed,
        retention: this.#s.completedRetention,
      })
      .then(
        (result) => this.#fetched(result, acks, token, free, wakeSeq),
        (error: unknown) => this.#fetchFailed(error, acks),
      );
  };

  #fetched(result: FetchResult, acks: ActiveJob<T>[], token: string, free: number, wakeSeq: number): void {
    this.#fetching = false;
    this.#retryDelay = 0;
    const refused = result.refused.length > 0 ? new Set(result.refused) : undefined;
    const events = this.#events.completed.size > 0 || this.#s.queueEvents.completed.size > 0;
    for (const job of acks) {
      if (this.#active.get(job.id) === job) this.#active.delete(job.id);
      if (refused?.has(job.id)) continue;
      if (events) {
        const e: CompletedEvent<T> = { job, result: job._result, duration: job._started };
        this.#events.completed.emit(e);
        this.#s.queueEvents.completed.emit(e);
      }
      publish(completedChannel, () => ({
        queue: this.#s.name,
        jobId: job.id,
        attempt: job.attempt,
        duration: job._started,
      }));
    }
    const jobs = result.jobs;
    if (!this.#accepting) {
      // Closing: leased by a call sent before close(); give them back untouched.
      if (jobs.length > 0) {
        this.#store
          .release(jobs.map((j) => ({ id: j.id, token, score: j.score })))
          .catch((error: unknown) => this.#emitError(error, 'release'));
      }
    } else {
      for (let i = 0; i < jobs.length; i++) this.#run(jobs[i]!, token);
      if (free > 0 && jobs.length < free) {
        // Nothing more for us now: sleep until woken, the next delayed job, the rate window, or the poll.
        if (wakeSeq === this.#wakeSeq) {
          this.#idle = true;
          let delay = this.#s.pollInterval;
          if (result.nextDelay >= 0) delay = Math.min(delay, result.nextDelay + 1);
          if (result.rateLimitedFor > 0) delay = Math.min(delay, result.rateLimitedFor);
          if (this.#idleTimer !== undefined) this.#clock.clearTimeout(this.#idleTimer);
          this.#idleTimer = this.#clock.setTimeout(this.#onIdleTimer, delay);
        }
        this.#rateLimited = result.rateLimitedFor > 0;
      }
      if (
        this.#idle &&
        this.#running === 0 &&
        this.#acks.length === 0 &&
        this.#processedSinceDrain &&
        !this.#rateLimited
      ) {
        this.#processedSinceDrain = false;
        this.#events.drained.emit();
        this.#s.queueEvents.drained.emit();
      }
    }
    this.#notifySettled();
    if (this.#acks.length > 0 || (!this.#idle && this.#running < this.#s.concurrency)) this.#schedule();
  }

  readonly #onIdleTimer = (): void => {
    this.#idleTimer = undefined;
    this.#idle = false;
    this.#schedule();
  };

  #fetchFailed(error: unknown, acks: ActiveJob<T>[]): void {
    this.#fetching = false;
    // The acknowledgements may or may not have landed; resending them is harmless (a lease
    // acknowledged twice is refused the second time).
    if (acks.length > 0) this.#acks = acks.concat(this.#acks);
    this.#emitError(error, 'fetch');
    this.#retryDelay = Math.min(Math.max(RETRY_MIN, this.#retryDelay * 2), RETRY_MAX);
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#schedule();
    }, this.#retryDelay);
    this.#notifySettled();
  }

  #run(leased: LeasedJob, token: string): void {
    let job: ActiveJob<T>;
    let headers: Readonly<Record<string, string>> | undefined;
    try {
      const decoded = decodeRecord(leased.record);
      headers = decoded.headers;
      job = new ActiveJob<T>(this, leased, token, decoded.payload as T, decoded.createdAt, decoded.options);
    } catch (error) {
      // A record this version cannot read: dead-letter it rather than loop on it.
      this.#fails.push({
        job: undefined as never,
        attempt: { id: leased.id, token, retryIn: -1, error: serializeError(error, leased.failures + 1) },
        error,
      });
      this.#schedule();
      return;
    }
    this.#active.set(job.id, job);
    this.#running++;
    if (job._options.timeout > 0) {
      job._timeout = new JobDeadline(job);
      this.#wheel.insert(job._timeout, job._options.timeout);
    }
    job._started = this.#elapsed();
    let result: unknown;
    try {
      result = isTraced(processChannel) ? this.#traced(job, headers) : this.#handler(job, job);
    } catch (error) {
      this._settle(job, false, error);
      return;
    }
    if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
      const then = (result as PromiseLike<unknown>).then;
      if (typeof then === 'function') {
        then.call(
          result,
          (value: unknown) => this._settle(job, true, value),
          (error: unknown) => this._settle(job, false, error),
        );
        return;
      }
    }
    this._settle(job, true, result);
  }

  /**
   * Calls the handler inside a `buttress:queue:process` trace: `start` (where a subscriber may set
   * the context the handler runs in) and `end` around the call; the attempt's outcome ends it in
   * {@link Worker._settle}.
   */
  #traced(job: ActiveJob<T>, headers: Readonly<Record<string, string>> | undefined): unknown {
    const message: JobProcessMessage = {
      queue: this.#s.name,
      jobId: job.id,
      attempt: job.attempt,
      attempts: job.attempts,
      stalls: job.stalls,
      priority: job.priority,
      createdAt: job.createdAt,
      headers,
    };
    job._trace = message;
    return traceSync(processChannel, message, () => this.#handler(job, job));
  }

  /** @internal The handler of `job` finished (or its attempt was ended for it). */
  _settle(job: ActiveJob<T>, ok: boolean, value: unknown): void {
    if (job._settled) return;
    job._settled = true;
    if (job._trace !== undefined) traceSettled(processChannel, job._trace, !ok, value);
    this.#running--;
    if (job._timeout !== undefined) {
      this.#wheel.cancel(job._timeout);
      job._timeout = undefined;
    }
    job._started = this.#elapsed() - job._started;
    this.#processedSinceDrain = true;
    if (job._lost) {
      // Lost or released: another worker may have it; this run reports nothing.
      if (this.#active.get(job.id) === job) this.#active.delete(job.id);
    } else if (ok) {
      job._result = value;
      this.#acks.push(job);
    } else {
      const retryIn =
        job.attempt < job.attempts ? backoffDelay(job._options, job.attempt, this.#s.random()) : -1;
      this.#fails.push({
        job,
        attempt: {
          id: job.id,
          token: job._token,
          retryIn,
          error: retryIn < 0 ? serializeError(value, job.attempt) : '',
        },
        error: value,
      });
    }
    this.#schedule();
    this.#notifySettled();
  }

  #sendFailures(): void {
    const batch = this.#fails.splice(0, BATCH);
    this.#failing = true;
    this.#store
      .fail(
        batch.map((f) => f.attempt),
        this.#s.failedRetention,
      )
      .then(
        (applied) => {
          this.#failing = false;
          for (let i = 0; i < batch.length; i++) {
            const { job, attempt, error } = batch[i]!;
            if (job === undefined) continue;
            if (this.#active.get(job.id) === job) this.#active.delete(job.id);
            if (!applied[i]) continue;
            const deadLettered = attempt.retryIn < 0;
            if (this.#events.failed.size > 0 || this.#s.queueEvents.failed.size > 0) {
              const e: FailedEvent<T> = {
                job,
                error,
                retryIn: deadLettered ? undefined : attempt.retryIn,
                deadLettered,
              };
              this.#events.failed.emit(e);
              this.#s.queueEvents.failed.emit(e);
            }
            publish(failedChannel, () => ({
              queue: this.#s.name,
              jobId: job.id,
              attempt: job.attempt,
              error,
              deadLettered,
              duration: job._started,
            }));
          }
          if (this.#fails.length > 0) this.#schedule();
          this.#notifySettled();
        },
        (error: unknown) => {
          this.#failing = false;
          this.#fails = batch.concat(this.#fails);
          this.#emitError(error, 'fail');
          this.#failRetryTimer = this.#clock.setTimeout(() => {
            this.#failRetryTimer = undefined;
            this.#schedule();
          }, RETRY_MAX / 4);
          this.#notifySettled();
        },
      );
  }

  /** Renews every lease this worker holds, and recovers expired leases of others. */
  readonly #maintain = (): void => {
    this.#maintenanceTimer = this.#clock.setTimeout(this.#maintain, this.#maintenanceInterval());
    if (this.#active.size > 0 && !this.#extending) {
      const jobs = [...this.#active.values()];
      this.#extending = true;
      this.#store
        .extend(
          jobs.map((j) => ({ id: j.id, token: j._token })),
          this.#s.lockDuration,
        )
        .then(
          (lost) => {
            this.#extending = false;
            for (const id of lost) this.#leaseLost(id, jobs);
          },
          (error: unknown) => {
            this.#extending = false;
            this.#emitError(error, 'extend');
          },
        );
    }
    if (!this.#recovering && this.#accepting) {
      this.#recovering = true;
      this.#store
        .recoverStalled(
          this.#s.maxStalls,
          1000,
          this.#s.failedRetention,
          JSON.stringify({
            name: 'JobLeaseLostError',
            code: 'E_JOB_LEASE_LOST',
            message: `The job's lease expired more than maxStalls (${this.#s.maxStalls}) times`,
          }),
        )
        .then(
          ({ requeued, deadLettered }) => {
            this.#recovering = false;
            for (const id of requeued) this.#emitStalled(id, 'requeued');
            for (const id of deadLettered) this.#emitStalled(id, 'dead-lettered');
            if (requeued.length > 0) this.#onWake();
          },
          (error: unknown) => {
            this.#recovering = false;
            this.#emitError(error, 'recover');
          },
        );
    }
  };

  #leaseLost(id: string, among: readonly ActiveJob<T>[]): void {
    const job = among.find((j) => j.id === id);
    if (job === undefined || job._lost) return;
    job._lost = true;
    if (this.#active.get(id) === job) this.#active.delete(id);
    job._abort(new JobLeaseLostError(id));
    this.#emitStalled(id, 'lease-lost');
  }

  #emitStalled(jobId: string, outcome: StalledEvent['outcome']): void {
    if (this.#events.stalled.size > 0 || this.#s.queueEvents.stalled.size > 0) {
      const e: StalledEvent = { jobId, outcome };
      this.#events.stalled.emit(e);
      this.#s.queueEvents.stalled.emit(e);
    }
    publish(stalledChannel, () => ({ queue: this.#s.name, jobId, outcome }));
  }

  #emitError(error: unknown, operation: string): void {
    if (this.#events.error.size > 0 || this.#s.queueEvents.error.size > 0) {
      const e: QueueErrorEvent = { error, operation };
      this.#events.error.emit(e);
      this.#s.queueEvents.error.emit(e);
    }
  }

  /** @internal `heartbeat()` of a job. */
  async _heartbeat(job: ActiveJob<T>): Promise<void> {
    if (job._lost) throw new JobLeaseLostError(job.id);
    const lost = await this.#store.extend([{ id: job.id, token: job._token }], this.#s.lockDuration);
    if (lost.length > 0) {
      this.#leaseLost(job.id, [job]);
      throw new JobLeaseLostError(job.id);
    }
  }

  #notifySettled(): void {
    if (this.#settledWaiters.length === 0) return;
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves at the next change of state (a job settled, a call answered), or after `ms`. */
  #nextChange(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.#clock.setTimeout(resolve, ms);
      this.#settledWaiters.push(() => {
        this.#clock.clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Stops taking jobs and lets running ones finish until `timeout`; then aborts their signals
   * (`E_CLOSED`) and releases their leases, so another worker takes them at once. Acknowledges
   * what finished. Resolves when nothing of the worker is left running (no timer, no listener).
   * Idempotent.
   */
  close(options?: CloseOptions): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    let timeout: number;
    try {
      const o = optionsObject(options);
      knownKeys(o, ['timeout']);
      timeout = duration(o.timeout, 'timeout', 30_000);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#accepting = false;
    announce(lifecycleChannels.close, 'worker', this);
    this.#closing = this.#close(timeout);
    return this.#closing;
  }

  async #close(timeout: number): Promise<void> {
    this.#wake?.dispose();
    this.#wake = undefined;
    if (this.#idleTimer !== undefined) {
      this.#clock.clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
    const clock = this.#clock;
    const deadline = clock.now() + timeout;
    while (this.#running > 0 && clock.now() < deadline) {
      await this.#nextChange(deadline - clock.now());
    }
    if (this.#running > 0) {
      const left = [...this.#active.values()].filter((j) => !j._settled);
      const reason = new ClosedError('Worker');
      for (const job of left) {
        job._lost = true;
        job._abort(reason);
        this._settle(job, false, reason);
      }
      try {
        await this.#store.release(left.map((j) => ({ id: j.id, token: j._token, score: j._score })));
      } catch (error) {
        // They will be recovered as stalled after lockDuration instead.
        this.#emitError(error, 'release');
      }
    }
    // Acknowledge and record what finished; bounded, so a dead Redis cannot hold close forever
    // (unacknowledged jobs are then recovered as stalled: at-least-once either way).
    const flushUntil = clock.now() + Math.max(timeout, 2_000);
    this.#schedule();
    while (
      (this.#acks.length > 0 || this.#fails.length > 0 || this.#fetching || this.#failing) &&
      clock.now() < flushUntil
    ) {
      await this.#nextChange(Math.min(100, flushUntil - clock.now()));
      if (this.#retryTimer !== undefined || this.#failRetryTimer !== undefined) continue;
      this.#schedule();
    }
    await this.#started.catch(noop);
    for (const t of [this.#maintenanceTimer, this.#retryTimer, this.#failRetryTimer, this.#idleTimer]) {
      if (t !== undefined) clock.clearTimeout(t);
    }
    this.#maintenanceTimer = this.#retryTimer = this.#failRetryTimer = this.#idleTimer = undefined;
    this.#events.clear();
    this.#s.onClosed(this);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function noop(): void {}
