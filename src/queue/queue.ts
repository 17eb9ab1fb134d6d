import { throwIfAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import {
  announce,
  isTraced,
  lifecycle,
  traceSettled,
  traceSync,
  tracingChannel,
} from '../core/diagnostics.js';
import { ClosedError, InvalidOptionError } from '../core/errors.js';
import type { Event } from '../core/events.js';
import {
  clockOption,
  duration,
  fn,
  integer,
  knownKeys,
  nonEmptyString,
  optionsObject,
} from '../core/validate.js';
import type { NewJob, QueueBackend, QueueStore, Retention } from './backend.js';
import { JobNotFoundError } from './errors.js';
import {
  checkJobId,
  DEFAULT_JOB_OPTIONS,
  decodeRecord,
  headerTail,
  type ResolvedJobOptions,
  resolveJobOptions,
  serializePayload,
  withHeaders,
} from './internal/record.js';
import { memoryBackend } from './memory-backend.js';
import type {
  AddedJob,
  AddOptions,
  BulkJob,
  CloseOptions,
  CompletedEvent,
  DeadLetter,
  FailedEvent,
  JobAddMessage,
  JobHandler,
  QueueErrorEvent,
  QueueOptions,
  QueueStats,
  RetentionOptions,
  StalledEvent,
  WorkerOptions,
} from './types.js';
import { QueueEmitters, Worker } from './worker.js';

const MAX_MS = 2 ** 31 - 1;
const DEFAULT_COMPLETED: Retention = { count: 1000, age: 3_600_000 };
const DEFAULT_FAILED: Retention = { count: 10_000, age: 7 * 86_400_000 };

const addChannel = tracingChannel<JobAddMessage>('queue', 'add');
const lifecycleChannels = lifecycle('queue');

interface PendingAdd {
  readonly job: NewJob;
  readonly resolve: (job: AddedJob) => void;
  readonly reject: (error: unknown) => void;
}

/** Starts the `buttress:queue:add` trace of one job: subscribers may give it headers. */
function traceAdd(
  queue: string,
  jobId: string | undefined,
  o: { readonly delay: number; readonly priority: number },
): JobAddMessage {
  const message: JobAddMessage = { queue, jobId, delay: o.delay, priority: o.priority, headers: {} };
  traceSync(addChannel, message, noop);
  return message;
}

/** Ends the trace of one added job. */
function settleAdd(message: JobAddMessage | undefined, failed: boolean, outcome: unknown): void {
  if (message !== undefined) traceSettled(addChannel, message, failed, outcome);
}

function noop(): void {}

/** Per-call options of the queue's other async methods. */
export interface QueueCallOptions {
  signal?: AbortSignal;
}

/**
 * A named job queue on a backend (memory or Redis). Producers `add` jobs; `process` starts a
 * worker that runs them. Several `Queue` objects (in one process or many) with the same name on
 * the same backend share their jobs. Create it with {@link createQueue}.
 */
export class Queue<T = unknown> {
  /** The queue's name. */
  readonly name: string;
  readonly #backend: QueueBackend;
  readonly #store: QueueStore;
  readonly #clock: Clock;
  readonly #defaults: ResolvedJobOptions;
  readonly #defaultTail: string;
  readonly #dedupeWindow: number;
  readonly #completedRetention: Retention;
  readonly #failedRetention: Retention;
  readonly #events = new QueueEmitters<T>();
  readonly #workers = new Set<Worker<T>>();
  #ready: Promise<void> | undefined;
  #isReady = false;
  #pending: PendingAdd[] = [];
  #flushQueued = false;
  #closing: Promise<void> | undefined;
  /** Batches of `add` sent and not answered yet (close waits for them). */
  readonly #inFlight = new Set<Promise<void>>();

  /** @internal Use {@link createQueue}. */
  constructor(name: string, options?: QueueOptions) {
    this.name = nonEmptyString(name, 'name');
    const o = optionsObject(options);
    knownKeys(o, ['backend', 'defaults', 'dedupeWindow', 'retention', 'clock']);
    this.#clock = clockOption(o.clock);
    this.#defaults = resolveJobOptions(o.defaults, DEFAULT_JOB_OPTIONS, 'defaults');
    if ((o.defaults as { jobId?: unknown } | undefined)?.jobId !== undefined) {
      throw new InvalidOptionError('defaults.jobId', o.defaults!.jobId, 'no jobId (an id is per job)');
    }
    this.#defaultTail = headerTail(this.#defaults);
    this.#dedupeWindow = duration(o.dedupeWindow, 'dedupeWindow', 0, 0, MAX_MS);
    const retention = optionsObject(o.retention, 'retention');
    knownKeys(retention, ['completed', 'failed'], 'retention');
    this.#completedRetention =
      retention.completed === false
        ? { count: 0, age: 0 }
        : resolveRetention(retention.completed, 'retention.completed', DEFAULT_COMPLETED);
    this.#failedRetention = resolveRetention(retention.failed, 'retention.failed', DEFAULT_FAILED);
    const backend = o.backend ?? memoryBackend({ clock: this.#clock });
    if (typeof backend !== 'object' || backend === null || typeof backend.open !== 'function') {
      throw new InvalidOptionError(
        'backend',
        backend,
        'a queue backend (memoryBackend(), redisBackend(redis))',
      );
    }
    this.#backend = backend;
    this.#store = backend.open(this.name, { clock: this.#clock });
    announce(lifecycleChannels.create, 'queue', this);
  }

  /** The backend's kind: `'memory'`, `'redis'`, or a third-party name. */
  get backend(): string {
    return this.#backend.kind;
  }

  /** Resolves once the backend is usable (the Redis backend checks `maxmemory-policy` first). */
  ready(): Promise<void> {
    if (this.#ready === undefined) {
      const ready = this.#store.ready();
      this.#ready = ready.then(
        () => {
          this.#isReady = true;
        },
        (error: unknown) => {
          // Let the next call try again (Redis may come back), unless the policy was refused.
          if ((error as { code?: unknown }).code !== 'E_QUEUE_EVICTION_POLICY') this.#ready = undefined;
          throw error;
        },
      );
    }
    return this.#ready;
  }

  /**
   * Adds a job. With a `jobId`, adding the same id again while the job exists (or within
   * `dedupeWindow`) adds nothing and resolves `{ id, duplicate: true }`. Adds issued in the same
   * tick go to the backend together, in one atomic call.
   *
   * @throws {JobSerializeError} `E_JOB_SERIALIZE` when the payload would not survive JSON; nothing is written.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
   * @throws {QueueUnavailableError} `E_QUEUE_UNAVAILABLE` when Redis cannot be reached or timed
   *   out: the job may or may not have been added (retry with the same `jobId` to be safe).
   * @example
   * await queue.add({ to: 'a@example.com' }, { jobId: `welcome:${userId}`, delay: '10m' });
   */
  add(payload: T, options?: AddOptions): Promise<AddedJob> {
    if (this.#closing !== undefined) return Promise.reject(new ClosedError(`Queue "${this.name}"`));
    let job: NewJob;
    let trace: JobAddMessage | undefined;
    try {
      if (options !== undefined) throwIfAborted(options.signal);
      const o =
        options === undefined ? this.#defaults : resolveJobOptions(options, this.#defaults, 'options', true);
      const json = serializePayload(payload);
      const id = options === undefined ? undefined : checkJobId(options.jobId, 'jobId');
      let tail = o === this.#defaults ? this.#defaultTail : headerTail(o);
      if (isTraced(addChannel)) {
        trace = traceAdd(this.name, id, o);
        tail = withHeaders(tail, trace.headers);
      }
      job = { id, record: `${this.#clock.now()}${tail}${json}`, priority: o.priority, delay: o.delay };
    } catch (error) {
      return Promise.reject(error);
    }
    if (trace !== undefined) {
      const message = trace;
      return new Promise<AddedJob>((resolve, reject) => {
        this.#pending.push({
          job,
          resolve: (added) => {
            settleAdd(message, false, added);
            resolve(added);
          },
          reject: (error) => {
            settleAdd(message, true, error);
            reject(error);
          },
        });
        this.#queueFlush();
      });
    }
    return new Promise<AddedJob>((resolve, reject) => {
      this.#pending.push({ job, resolve, reject });
      this.#queueFlush();
    });
  }

  #queueFlush(): void {
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      process.nextTick(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#flushQueued = false;
    const pending = this.#pending;
    this.#pending = [];
    const send = () =>
      this.#store.add(
        pending.map((p) => p.job),
        this.#dedupeWindow,
      );
    const flight = (this.#isReady ? send() : this.ready().then(send)).then(
      (results) => {
        for (let i = 0; i < pending.length; i++) {
          const r = results[i]!;
          pending[i]!.resolve({ id: r.id, duplicate: !r.added });
        }
      },
      (error: unknown) => {
        for (const p of pending) p.reject(error);
      },
    );
    this.#inFlight.add(flight);
    void flight.finally(() => this.#inFlight.delete(flight));
  };

  /**
   * Adds several jobs. Every payload and option is validated first: one bad item rejects the
   * call and nothing is written. The Redis backend writes chunks of 500 jobs, each atomically.
   * @throws {JobSerializeError} `E_JOB_SERIALIZE`, with `index` naming the item.
   */
  async addBulk(items: readonly BulkJob<T>[], options?: QueueCallOptions): Promise<AddedJob[]> {
    if (this.#closing !== undefined) throw new ClosedError(`Queue "${this.name}"`);
    if (!Array.isArray(items))
      throw new InvalidOptionError('items', items, 'an array of { payload, options }');
    throwIfAborted(options?.signal);
    const now = this.#clock.now();
    const jobs: NewJob[] = new Array(items.length);
    const traced = isTraced(addChannel);
    const traces: JobAddMessage[] = traced ? new Array(items.length) : [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (typeof item !== 'object' || item === null) {
        throw new InvalidOptionError(`items[${i}]`, item, 'an object { payload, options }');
      }
      const o =
        item.options === undefined
          ? this.#defaults
          : resolveJobOptions(item.options, this.#defaults, `items[${i}].options`);
      const id =
        item.options === undefined ? undefined : checkJobId(item.options.jobId, `items[${i}].options.jobId`);
      const tail = o === this.#defaults ? this.#defaultTail : headerTail(o);
      const json = serializePayload(item.payload, i);
      // Traced, the record is completed below, once every item has passed validation: a trace
      // that starts is a trace that ends.
      const record = traced ? `${tail}${json}` : `${now}${tail}${json}`;
      jobs[i] = { id, record, priority: o.priority, delay: o.delay };
    }
    if (traced) {
      for (let i = 0; i < jobs.length; i++) {
        const job = jobs[i]!;
        const message = traceAdd(this.name, job.id, job);
        traces[i] = message;
        const nl = job.record.indexOf('\n');
        const tail = withHeaders(job.record.slice(0, nl + 1), message.headers);
        jobs[i] = { ...job, record: `${now}${tail}${job.record.slice(nl + 1)}` };
      }
    }
    let added: AddedJob[];
    try {
      if (!this.#isReady) await this.ready();
      throwIfAborted(options?.signal);
      const results = await this.#store.add(jobs, this.#dedupeWindow);
      added = results.map((r) => ({ id: r.id, duplicate: !r.added }));
    } catch (error) {
      for (const message of traces) settleAdd(message, true, error);
      throw error;
    }
    for (let i = 0; i < traces.length; i++) settleAdd(traces[i], false, added[i]);
    return added;
  }

  /**
   * Starts a worker running `handler` for this queue's jobs. The handler gets the job and
   * `{ signal, attempt, heartbeat }`; resolving acknowledges the job, throwing or rejecting fails
   * the attempt (retried with backoff up to `attempts`, then dead-lettered).
   *
   * Delivery is at-least-once: a job runs again if its worker dies (or blocks its event loop past
   * `lockDuration`) before acknowledging it. Make handlers idempotent on `job.id` (with
   * `job.attempt` when attempts must be told apart).
   * @example
   * const worker = queue.process(async (job, { signal }) => send(job.payload, { signal }), { concurrency: 20 });
   */
  process(handler: JobHandler<T>, options?: WorkerOptions): Worker<T> {
    if (this.#closing !== undefined) throw new ClosedError(`Queue "${this.name}"`);
    fn(handler, 'handler');
    const o = optionsObject(options);
    knownKeys(o, ['concurrency', 'lockDuration', 'maxStalls', 'rateLimit', 'pollInterval']);
    let rateLimit: { max: number; duration: number } | undefined;
    if (o.rateLimit !== undefined) {
      const r = optionsObject(o.rateLimit, 'rateLimit');
      knownKeys(r, ['max', 'duration'], 'rateLimit');
      rateLimit = {
        max: integer(r.max, 'rateLimit.max', 1, 1_000_000),
        duration: duration(r.duration, 'rateLimit.duration', undefined, 1, MAX_MS),
      };
    }
    const worker = new Worker<T>(
      {
        name: this.name,
        store: this.#store,
        clock: this.#clock,
        ready: () => this.ready(),
        queueEvents: this.#events,
        completedRetention: this.#completedRetention,
        failedRetention: this.#failedRetention,
        concurrency: integer(o.concurrency, 'concurrency', 1, 1000, 1),
        lockDuration: duration(o.lockDuration, 'lockDuration', 30_000, 10, MAX_MS),
        maxStalls: integer(o.maxStalls, 'maxStalls', 0, 1_000_000, 1),
        rateLimit,
        pollInterval: duration(o.pollInterval, 'pollInterval', 5_000, 1, MAX_MS),
        random: Math.random,
        onClosed: (w) => this.#workers.delete(w),
      },
      handler,
    );
    this.#workers.add(worker);
    return worker;
  }

  /** Dead letters, newest first. @default offset 0, limit 100 (at most 1000) */
  async deadLetters(
    options?: QueueCallOptions & { offset?: number; limit?: number },
  ): Promise<DeadLetter<T>[]> {
    const o = optionsObject(options);
    knownKeys(o, ['offset', 'limit', 'signal']);
    const offset = integer(o.offset, 'offset', 0, Number.MAX_SAFE_INTEGER, 0);
    const limit = integer(o.limit, 'limit', 1, 1000, 100);
    await this.#call(o.signal);
    const stored = await this.#store.deadLetters(offset, limit);
    return stored.map((d) => {
      let payload: unknown;
      try {
        payload = d.record === '' ? undefined : decodeRecord(d.record).payload;
      } catch {
        payload = undefined;
      }
      let error: Record<string, unknown> = {};
      try {
        error = JSON.parse(d.error) as Record<string, unknown>;
      } catch {
        error = { message: d.error };
      }
      const out: DeadLetter<T> = {
        id: d.id,
        payload: payload as T,
        failedAt: d.failedAt,
        attempts: typeof error.attempts === 'number' ? error.attempts : 0,
        error: {
          name: typeof error.name === 'string' ? error.name : 'Error',
          message: typeof error.message === 'string' ? error.message : '',
          ...(typeof error.code === 'string' ? { code: error.code } : {}),
          ...(typeof error.stack === 'string' ? { stack: error.stack } : {}),
        },
      };
      return out;
    });
  }

  /**
   * Moves a dead-lettered job back to waiting with a fresh budget of attempts.
   * @throws {JobNotFoundError} `E_JOB_NOT_FOUND` when no dead letter has that id.
   */
  async retry(id: string, options?: QueueCallOptions): Promise<void> {
    nonEmptyString(id, 'id');
    await this.#call(options?.signal);
    if (!(await this.#store.retry(id))) throw new JobNotFoundError(id, 'dead-lettered');
  }

  /** Deletes every dead letter; resolves how many there were. */
  async purge(options?: QueueCallOptions): Promise<number> {
    await this.#call(options?.signal);
    return this.#store.purge();
  }

  /** A snapshot of the queue's gauges and counters (shared by every process using the queue). */
  async stats(options?: QueueCallOptions): Promise<QueueStats> {
    await this.#call(options?.signal);
    const s = await this.#store.stats();
    return {
      waiting: s.waiting,
      active: s.active,
      delayed: s.delayed,
      failed: s.failed,
      completed: s.completed,
      retained: s.retained,
      deadLettered: s.deadLettered,
      stalled: s.stalled,
      throughput: Math.round((s.recentCompletions / 60) * 100) / 100,
    };
  }

  async #call(signal: AbortSignal | undefined): Promise<void> {
    if (this.#closing !== undefined) throw new ClosedError(`Queue "${this.name}"`);
    throwIfAborted(signal);
    if (!this.#isReady) await this.ready();
  }

  /** A job of this queue completed (in any of this queue object's workers). */
  get onCompleted(): Event<CompletedEvent<T>> {
    return this.#events.completed.event;
  }
  /** An attempt failed in one of this queue object's workers. */
  get onFailed(): Event<FailedEvent<T>> {
    return this.#events.failed.event;
  }
  /** A lease expired (see {@link StalledEvent}). */
  get onStalled(): Event<StalledEvent> {
    return this.#events.stalled.event;
  }
  /** A worker of this queue object found nothing left to run. */
  get onDrained(): Event<void> {
    return this.#events.drained.event;
  }
  /** A worker's backend call failed (it retries on its own). */
  get onError(): Event<QueueErrorEvent> {
    return this.#events.error.event;
  }

  /**
   * Closes every worker started from this queue (see `Worker.close`, same `timeout`), waits for
   * adds in flight, and releases what the backend opened. Never closes your Redis connection.
   */
  close(options?: CloseOptions): Promise<void> {
    if (this.#closing === undefined) this.#closing = this.#close(options);
    return this.#closing;
  }

  async #close(options: CloseOptions | undefined): Promise<void> {
    announce(lifecycleChannels.close, 'queue', this);
    // Adds accepted before close() go out on the next tick: let them land first.
    await new Promise<void>((resolve) => process.nextTick(resolve));
    await Promise.all([...this.#inFlight, ...[...this.#workers].map((w) => w.close(options))]);
    await this.#store.close();
    this.#events.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function resolveRetention(
  value: RetentionOptions | undefined,
  option: string,
  fallback: Retention,
): Retention {
  if (value === undefined) return fallback;
  const o = optionsObject(value, option);
  knownKeys(o, ['count', 'age'], option);
  return {
    count: integer(o.count, `${option}.count`, 0, 1_000_000_000, fallback.count),
    age: duration(o.age, `${option}.age`, fallback.age, 1, 10 * 365 * 86_400_000),
  };
}

/**
 * Creates a queue.
 *
 * @param name The queue's name; queues with the same name on the same backend share their jobs.
 * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the option and the value received.
 * @example
 * import { Redis } from 'ioredis';
 * import { createQueue, redisBackend } from 'buttress/queue';
 *
 * const queue = createQueue<{ to: string }>('emails', {
 *   backend: redisBackend(new Redis()),
 *   defaults: { attempts: 5, backoff: { delay: '2s' } },
 * });
 * await queue.add({ to: 'a@example.com' });
 * queue.process(async (job) => sendEmail(job.payload.to), { concurrency: 20 });
 */
export function createQueue<T = unknown>(name: string, options?: QueueOptions): Queue<T> {
  return new Queue<T>(name, options);
}
