import { type Clock, systemClock } from '../core/clock.js';
import { type Disposable, toDisposable } from '../core/events.js';
import { clockOption, knownKeys, optionsObject } from '../core/validate.js';
import type {
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
import { MinHeap } from './internal/heap.js';

/*
 * The embedded backend: the same states and transitions as the Redis scripts, in one process,
 * each transition a synchronous step (so as atomic as a script). Time is the backend's clock,
 * playing the part Redis's TIME plays for the Redis backend. Queues opened on one backend
 * instance under the same name share their jobs, like processes sharing one Redis: a test can run
 * two "servers" in one process.
 */

/** Options of {@link memoryBackend}. */
export interface MemoryBackendOptions {
  /** The backend's time (the part Redis's TIME plays). @default the clock of the first queue opened on it, else systemClock */
  clock?: Clock;
}

type State = 'wait' | 'delayed' | 'active' | 'done' | 'dead';

interface MemJob {
  readonly id: string;
  readonly record: string;
  readonly priority: number;
  state: State;
  /** Position in waiting (valid while state is 'wait'). */
  score: number;
  /** Due time while delayed. */
  due: number;
  failures: number;
  stalls: number;
  token: string | undefined;
  deadline: number;
  /** Bumped on every state change, so lazily deleted heap entries can be recognised. */
  version: number;
}

interface HeapEntry {
  readonly job: MemJob;
  readonly version: number;
}

const P32 = 4294967296;

/** The state of one queue name, shared by every store opened on it. */
class MemoryQueue {
  readonly jobs = new Map<string, MemJob>();
  readonly wait = new MinHeap<HeapEntry>();
  readonly delayed = new MinHeap<HeapEntry>();
  readonly active = new Map<string, MemJob>();
  /** Completed jobs retained, in completion order: id -> finished at. */
  readonly done = new Map<string, number>();
  /** Dead letters, in order: id -> { failedAt, error }. */
  readonly dead = new Map<string, { failedAt: number; error: string }>();
  readonly dedupe = new Map<string, number>();
  readonly listeners = new Set<() => void>();
  readonly ring = new Float64Array(120);
  nextId = 0;
  seq = 0;
  waiting = 0;
  delayedCount = 0;
  completed = 0;
  deadLettered = 0;
  stalled = 0;
  rateUsed = 0;
  rateEnds = 0;
  #wakeQueued = false;

  constructor(readonly clock: Clock) {}

  now(): number {
    return this.clock.now();
  }

  toWait(job: MemJob, score?: number): void {
    const wasEmpty = this.waiting === 0;
    job.state = 'wait';
    job.version++;
    job.score = score ?? job.priority * P32 + (++this.seq % P32);
    this.waiting++;
    this.wait.push(job.score, { job, version: job.version });
    if (wasEmpty) this.wake();
  }

  toDelayed(job: MemJob, due: number): void {
    job.state = 'delayed';
    job.version++;
    job.due = due;
    this.delayedCount++;
    const first = this.#firstDelayed();
    this.delayed.push(due, { job, version: job.version });
    if (first === undefined || due < first) this.wake();
  }

  leave(job: MemJob): void {
    if (job.state === 'wait') this.waiting--;
    else if (job.state === 'delayed') this.delayedCount--;
    else if (job.state === 'active') this.active.delete(job.id);
    job.token = undefined;
    job.version++;
  }

  #firstDelayed(): number | undefined {
    for (;;) {
      const top = this.delayed.peek();
      if (top === undefined) return undefined;
      if (top.job.state === 'delayed' && top.job.version === top.version) return top.job.due;
      this.delayed.pop();
    }
  }

  promote(now: number): number {
    for (;;) {
      const due = this.#firstDelayed();
      if (due === undefined) return -1;
      if (due > now) return due - now;
      const { job } = this.delayed.pop()!;
      this.delayedCount--;
      this.toWait(job);
    }
  }

  popWaiting(): MemJob | undefined {
    for (;;) {
      const top = this.wait.pop();
      if (top === undefined) return undefined;
      if (top.job.state === 'wait' && top.job.version === top.version) {
        this.waiting--;
        return top.job;
      }
    }
  }

  trimDone(keep: Retention, now: number): void {
    for (const [id, at] of this.done) {
      if (this.done.size <= keep.count && at >= now - keep.age) break;
      this.done.delete(id);
      this.jobs.delete(id);
    }
  }

  trimDead(keep: Retention, now: number): void {
    for (const [id, d] of this.dead) {
      if (this.dead.size <= keep.count && d.failedAt >= now - keep.age) break;
      this.dead.delete(id);
      this.jobs.delete(id);
    }
  }

  deadLetter(job: MemJob, error: string, now: number): void {
    this.leave(job);
    job.state = 'dead';
    job.failures = 0;
    job.stalls = 0;
    this.dead.set(job.id, { failedAt: now, error });
    this.deadLettered++;
  }

  countCompletions(n: number, now: number): void {
    this.completed += n;
    const sec = Math.floor(now / 1000);
    const slot = (sec % 60) * 2;
    if (this.ring[slot] !== sec) {
      this.ring[slot] = sec;
      this.ring[slot + 1] = 0;
    }
    this.ring[slot + 1]! += n;
  }

  recent(now: number): number {
    const sec = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < 120; i += 2) if (this.ring[i]! > sec - 60) sum += this.ring[i + 1]!;
    return sum;
  }

  /** Tells every listener, once per microtask however many transitions asked. */
  wake(): void {
    if (this.#wakeQueued || this.listeners.size === 0) return;
    this.#wakeQueued = true;
    queueMicrotask(() => {
      this.#wakeQueued = false;
      for (const l of [...this.listeners]) l();
    });
  }
}

class MemoryStore implements QueueStore {
  readonly #q: MemoryQueue;
  readonly #own = new Set<() => void>();

  constructor(q: MemoryQueue) {
    this.#q = q;
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  add(jobs: readonly NewJob[], dedupeWindow: number): Promise<{ id: string; added: boolean }[]> {
    const q = this.#q;
    const now = q.now();
    for (const [id, until] of q.dedupe) if (until <= now) q.dedupe.delete(id);
    const out: { id: string; added: boolean }[] = [];
    for (const j of jobs) {
      let id = j.id;
      if (id === undefined) {
        id = String(++q.nextId);
      } else if (q.jobs.has(id) || q.dedupe.has(id)) {
        out.push({ id, added: false });
        continue;
      }
      const job: MemJob = {
        id,
        record: j.record,
        priority: j.priority,
        state: 'wait',
        score: 0,
        due: 0,
        failures: 0,
        stalls: 0,
        token: undefined,
        deadline: 0,
        version: 0,
      };
      q.jobs.set(id, job);
      if (j.id !== undefined && dedupeWindow > 0) q.dedupe.set(id, now + dedupeWindow);
      if (j.delay > 0) q.toDelayed(job, now + j.delay);
      else q.toWait(job);
      out.push({ id, added: true });
    }
    return Promise.resolve(out);
  }

  fetch(request: FetchRequest): Promise<FetchResult> {
    const q = this.#q;
    const now = q.now();
    const refused: string[] = [];
    let acked = 0;
    for (const { id, token } of request.completed) {
      const job = q.active.get(id);
      if (job === undefined || job.token !== token) {
        refused.push(id);
        continue;
      }
      q.leave(job);
      job.state = 'done';
      job.failures = 0;
      job.stalls = 0;
      acked++;
      if (request.retention.count > 0) q.done.set(id, now);
      else q.jobs.delete(id);
    }
    if (acked > 0) {
      q.countCompletions(acked, now);
      if (request.retention.count > 0) q.trimDone(request.retention, now);
    }
    const nextDelay = q.promote(now);
    let max = request.max;
    let rateLimitedFor = 0;
    const rate = request.rateLimit;
    if (max > 0 && rate !== undefined) {
      if (now >= q.rateEnds) q.rateUsed = 0;
      if (q.rateUsed >= rate.max) {
        rateLimitedFor = Math.max(1, q.rateEnds - now);
        max = 0;
      } else {
        max = Math.min(max, rate.max - q.rateUsed);
      }
    }
    const jobs: LeasedJob[] = [];
    const deadline = now + request.lockDuration;
    while (jobs.length < max) {
      const job = q.popWaiting();
      if (job === undefined) break;
      job.state = 'active';
      job.version++;
      job.token = request.token;
      job.deadline = deadline;
      q.active.set(job.id, job);
      jobs.push({
        id: job.id,
        record: job.record,
        score: job.score,
        failures: job.failures,
        stalls: job.stalls,
      });
    }
    if (rate !== undefined && jobs.length > 0) {
      if (q.rateUsed === 0) q.rateEnds = now + rate.duration;
      q.rateUsed += jobs.length;
      if (q.rateUsed >= rate.max) rateLimitedFor = Math.max(1, q.rateEnds - now);
    }
    return Promise.resolve({ jobs, nextDelay, rateLimitedFor, refused });
  }

  fail(attempts: readonly FailedAttempt[], deadRetention: Retention): Promise<boolean[]> {
    const q = this.#q;
    const now = q.now();
    const out: boolean[] = [];
    let dead = false;
    for (const a of attempts) {
      const job = q.active.get(a.id);
      if (job === undefined || job.token !== a.token) {
        out.push(false);
        continue;
      }
      out.push(true);
      if (a.retryIn < 0) {
        q.deadLetter(job, a.error, now);
        dead = true;
      } else {
        q.leave(job);
        job.failures++;
        if (a.retryIn > 0) q.toDelayed(job, now + a.retryIn);
        else q.toWait(job);
      }
    }
    if (dead) q.trimDead(deadRetention, now);
    return Promise.resolve(out);
  }

  extend(jobs: readonly { id: string; token: string }[], lockDuration: number): Promise<string[]> {
    const q = this.#q;
    const deadline = q.now() + lockDuration;
    const lost: string[] = [];
    for (const { id, token } of jobs) {
      const job = q.active.get(id);
      if (job === undefined || job.token !== token) lost.push(id);
      else job.deadline = deadline;
    }
    return Promise.resolve(lost);
  }

  release(jobs: readonly { id: string; token: string; score: number | string }[]): Promise<number> {
    const q = this.#q;
    let released = 0;
    for (const { id, token, score } of jobs) {
      const job = q.active.get(id);
      if (job === undefined || job.token !== token) continue;
      q.leave(job);
      q.toWait(job, Number(score));
      released++;
    }
    if (released > 0) q.wake();
    return Promise.resolve(released);
  }

  recoverStalled(
    maxStalls: number,
    limit: number,
    deadRetention: Retention,
    error: string,
  ): Promise<{ requeued: string[]; deadLettered: string[] }> {
    const q = this.#q;
    const now = q.now();
    const requeued: string[] = [];
    const deadLettered: string[] = [];
    for (const job of [...q.active.values()]) {
      if (requeued.length + deadLettered.length >= limit) break;
      if (job.deadline >= now) continue;
      q.stalled++;
      if (job.stalls + 1 > maxStalls) {
        q.deadLetter(job, error, now);
        deadLettered.push(job.id);
      } else {
        q.leave(job);
        job.stalls++;
        q.toWait(job);
        requeued.push(job.id);
      }
    }
    if (deadLettered.length > 0) q.trimDead(deadRetention, now);
    return Promise.resolve({ requeued, deadLettered });
  }

  deadLetters(offset: number, limit: number): Promise<StoredDeadLetter[]> {
    const q = this.#q;
    const all = [...q.dead].reverse().slice(offset, offset + limit);
    return Promise.resolve(
      all.map(([id, d]) => ({
        id,
        record: q.jobs.get(id)?.record ?? '',
        failedAt: d.failedAt,
        error: d.error,
      })),
    );
  }

  retry(id: string): Promise<boolean> {
    const q = this.#q;
    const job = q.jobs.get(id);
    if (job === undefined || job.state !== 'dead') return Promise.resolve(false);
    q.dead.delete(id);
    job.failures = 0;
    job.stalls = 0;
    q.toWait(job);
    q.wake();
    return Promise.resolve(true);
  }

  purge(): Promise<number> {
    const q = this.#q;
    const n = q.dead.size;
    for (const id of q.dead.keys()) q.jobs.delete(id);
    q.dead.clear();
    return Promise.resolve(n);
  }

  stats(): Promise<BackendStats> {
    const q = this.#q;
    return Promise.resolve({
      waiting: q.waiting,
      active: q.active.size,
      delayed: q.delayedCount,
      failed: q.dead.size,
      retained: q.done.size,
      completed: q.completed,
      deadLettered: q.deadLettered,
      stalled: q.stalled,
      recentCompletions: q.recent(q.now()),
    });
  }

  onWake(listener: () => void): Disposable {
    const q = this.#q;
    const l = () => listener();
    q.listeners.add(l);
    this.#own.add(l);
    return toDisposable(() => {
      q.listeners.delete(l);
      this.#own.delete(l);
    });
  }

  close(): Promise<void> {
    for (const l of this.#own) this.#q.listeners.delete(l);
    this.#own.clear();
    return Promise.resolve();
  }
}

class MemoryBackend implements QueueBackend {
  readonly kind = 'memory';
  readonly #queues = new Map<string, MemoryQueue>();
  #clock: Clock | undefined;

  constructor(clock: Clock | undefined) {
    this.#clock = clock;
  }

  open(name: string, context: { readonly clock: Clock }): QueueStore {
    this.#clock ??= context.clock ?? systemClock;
    let q = this.#queues.get(name);
    if (q === undefined) {
      q = new MemoryQueue(this.#clock);
      this.#queues.set(name, q);
    }
    return new MemoryStore(q);
  }
}

/**
 * The embedded backend: jobs live in this process's memory, with the same API and the same
 * semantics as {@link redisBackend} (leases, stalls, retries, delays, priorities, retention), and
 * are lost when the process exits. Queues opened on one instance under the same name share their
 * jobs; each `createQueue` without a `backend` gets its own instance.
 *
 * @example
 * const backend = memoryBackend();
 * const producer = createQueue('emails', { backend });
 * const consumer = createQueue('emails', { backend }); // same jobs
 */
export function memoryBackend(options?: MemoryBackendOptions): QueueBackend {
  const o = optionsObject(options);
  knownKeys(o, ['clock']);
  return new MemoryBackend(o.clock === undefined ? undefined : clockOption(o.clock));
}
