import type { PoolClient } from 'pg';
import type { CircuitBreaker } from '../../breaker/index.js';
import { onAbort } from '../../core/abort.js';
import type { Clock } from '../../core/clock.js';
import { AbortedError, ClosedError } from '../../core/errors.js';
import { canAbort } from '../../core/signals.js';
import { sharedTimerWheel, TimerEntry, type TimerWheel } from '../../core/timer-wheel.js';
import { PoolFullError, PoolTimeoutError } from '../errors.js';
import { destroyClient, type PgPool, toPgError } from './pg.js';
import type { Redactor } from './redact.js';
import type { RouteCandidate } from './route.js';

/*
 * One database node (the primary or a replica): its pg pool behind a gate of our own.
 *
 * pg-pool's defaults are unsafe under load: a caller waits forever for a connection, the queue
 * of waiters has no bound, and an error on a checked-out client with no listener crashes the
 * process. The gate in front of it admits at most `max` outstanding checkouts (the pool's own
 * `max`), queues up to `maxWaiting` more callers, each with a deadline (`acquireTimeout`) on the
 * clock's shared timer wheel, and rejects the rest at once (`E_POOL_FULL`). So pg-pool's own queue
 * stays empty, and a caller never waits longer than its deadline, however slow the server is to
 * accept connections.
 *
 * The common checkout costs pg-pool's own `connect()` plus a few field writes: when the pool is
 * ours and has an idle client, pg-pool hands it over on the next tick and no deadline is armed.
 * Otherwise (a new connection must be opened, or the pool is the user's and may be shared) the
 * checkout gets a wheel deadline, and a client that arrives after it is put straight back.
 *
 * Each client, on its first checkout, gets an error listener (pg-pool removes its own while a
 * client is checked out, so a connection dropped between two queries of a transaction would
 * otherwise be an uncaught 'error' event), a lifetime deadline, and a `release` of ours that
 * returns the slot to the gate. On release, a client that errored, is still inside a transaction
 * (`getTransactionStatus()` is 'T' or 'E'), or has outlived `maxLifetime` is destroyed instead of
 * pooled: the next caller never inherits a broken or half-finished session.
 */

const kState = Symbol('buttress.pool.client');

/**
 * What the gate keeps on a client: one object behind one symbol property, added once per client
 * (a single hidden-class transition, shared by every client), so a checkout writes fields of our
 * own object rather than adding properties to pg's. It is also the client's node in the list of
 * checked-out clients, so tracking a checkout costs two pointer writes and no hashing.
 */
class ClientState {
  /** pg-pool's release for the current checkout; undefined while the client is not checked out by us. */
  pgRelease: ((err?: Error | boolean) => void) | undefined = undefined;
  /** Why the client must be destroyed on release, if it must. */
  broken: unknown = undefined;
  prev: ClientState | null = null;
  next: ClientState | null = null;
  /** Our `release`, bound once per client. */
  readonly release: (err?: Error | boolean) => void;

  constructor(
    readonly node: PgNode,
    readonly client: TrackedClient,
    /** When the client has outlived maxLifetime (ms on the cluster clock). */
    readonly expires: number,
  ) {
    this.release = (err) => node.release(client, err);
  }
}

/** A pg client as the gate sees it. */
export interface TrackedClient extends PoolClient {
  [kState]?: ClientState;
}

/** Why a client is destroyed on release; pg-pool only checks that the argument is truthy. */
const EXPIRED = new Error('buttress/pool: connection reached maxLifetime');
const IN_TRANSACTION = new Error('buttress/pool: connection released inside a transaction');
const CLOSED = new Error('buttress/pool: the cluster was closed before this connection was released');
/** Lifetimes are spread over [90%, 100%] of maxLifetime so a pool's clients do not all reconnect at once. */
const LIFETIME_JITTER = 0.1;

/** Why a replica is not serving reads. */
export type EjectReason = 'lag' | 'unreachable' | 'not-in-recovery' | 'breaker-open';

/** Settings every node of a cluster shares. */
export interface NodeSettings {
  readonly acquireTimeout: number;
  readonly maxWaiting: number;
  readonly maxLifetime: number;
  readonly clock: Clock;
  readonly redactor: Redactor;
  readonly onClientError: (node: PgNode, error: unknown, source: 'client' | 'idle-client') => void;
}

/** Receives a checked-out client, or why there is none. Called exactly once. */
export type CheckoutCallback = (error: unknown, client: TrackedClient | undefined) => void;

/** A caller waiting for a slot; it is its own timer-wheel entry. */
class Waiter extends TimerEntry {
  next: Waiter | null = null;
  prev: Waiter | null = null;
  queued = true;
  offAbort: (() => void) | undefined;

  constructor(
    readonly node: PgNode,
    readonly deadline: number,
    readonly signal: AbortSignal | undefined,
    readonly callback: CheckoutCallback,
  ) {
    super();
  }

  fire(): void {
    this.node.waiterTimedOut(this);
  }
}

/** A checkout in progress that carries a deadline; also its own timer-wheel entry. */
class Checkout extends TimerEntry {
  settled = false;
  offAbort: (() => void) | undefined;

  constructor(
    readonly node: PgNode,
    readonly callback: CheckoutCallback,
  ) {
    super();
  }

  fire(): void {
    if (this.settled) return;
    this.settled = true;
    this.offAbort?.();
    this.node.totalTimeouts++;
    this.callback(new PoolTimeoutError(this.node.name, this.node.settings.acquireTimeout), undefined);
  }
}

/** Listener added once to every client we check out; `this` is the client (EventEmitter calls it so). */
function onTrackedClientError(this: TrackedClient, error: unknown): void {
  const state = this[kState];
  state?.node.clientError(state, error);
}

/** One node of a cluster: a pg pool, the gate in front of it, and its health as last measured. */
export class PgNode implements RouteCandidate {
  readonly name: string;
  readonly role: 'primary' | 'replica';
  /** `host:port/database`, never credentials. */
  readonly address: string;
  readonly pool: PgPool;
  /** True when the cluster built the pool and so ends it; a pool passed in is the user's. */
  readonly owned: boolean;
  readonly max: number;
  readonly settings: NodeSettings;
  readonly breaker: CircuitBreaker | undefined;
  readonly #wheel: TimerWheel;

  readonly #handOff: boolean;
  #inUse = 0;
  /** Fast checkouts asked of pg-pool and not yet served: each will take one of its idle clients. */
  #fastPending = 0;
  #waiting = 0;
  #head: Waiter | null = null;
  #tail: Waiter | null = null;
  /** Clients checked out through the gate, as an intrusive list (for a forced end). */
  #checkedOut: ClientState | null = null;
  #closed = false;
  #drained: (() => void) | undefined;

  // Health, written by the cluster's health checker.
  /** A health round has answered (or failed) at least once. */
  probed = false;
  /** Whether the last health check succeeded. */
  healthy = false;
  ejected = false;
  ejectReason: EjectReason | undefined;
  /** For replicas, the last replay position seen; for the primary, unused. */
  replayLsn: bigint | undefined;
  lagMs: number | undefined;
  inRecovery: boolean | undefined;
  replayPaused: boolean | undefined;
  consecutiveFailures = 0;
  lastCheckAt: number | undefined;
  lastError: Error | undefined;
  /** Set while the breaker is open, so routing reads the breaker's state only then. */
  breakerOpen = false;

  // Counters.
  totalAcquired = 0;
  totalTimeouts = 0;
  totalFull = 0;
  totalErrors = 0;

  constructor(options: {
    name: string;
    role: 'primary' | 'replica';
    address: string;
    pool: PgPool;
    owned: boolean;
    settings: NodeSettings;
    breaker: CircuitBreaker | undefined;
  }) {
    this.name = options.name;
    this.role = options.role;
    this.address = options.address;
    this.pool = options.pool;
    this.owned = options.owned;
    this.settings = options.settings;
    this.breaker = options.breaker;
    const max = this.pool.options?.max;
    this.max = typeof max === 'number' && max >= 1 ? Math.floor(max) : 10;
    // A pool the cluster alone uses, without pg-pool's own per-release bookkeeping (maxUses,
    // maxLifetimeSeconds, which a direct hand-off would skip), lets a released client go straight
    // to the next waiter.
    const o = this.pool.options as { maxUses?: number; maxLifetimeSeconds?: number } | undefined;
    this.#handOff =
      this.owned &&
      (o?.maxUses === undefined || o.maxUses === Number.POSITIVE_INFINITY) &&
      !o?.maxLifetimeSeconds;
    this.#wheel = sharedTimerWheel(options.settings.clock);
    this.pool.on('error', this.#onPoolError);
  }

  /** Connections checked out or being opened through the gate. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Callers waiting at the gate. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Routing's measure of how busy the node is. */
  get load(): number {
    return this.#inUse + this.#waiting;
  }

  /** True when reads may be routed here (see {@link RouteCandidate}). */
  get routable(): boolean {
    if (!this.probed || this.ejected || this.#closed) return false;
    if (!this.breakerOpen) return true;
    // An open breaker turns half-open only when read after its delay: ask it.
    const state = this.breaker!.state;
    return state === 'half-open' || state === 'closed';
  }

  /**
   * Checks out a client: at once when a slot is free, else after waiting in line (at most
   * `acquireTimeout`, and only when fewer than `maxWaiting` are waiting).
   * @throws {PoolFullError} `E_POOL_FULL` at once when the line is full.
   * @throws {PoolTimeoutError} `E_POOL_TIMEOUT` when no client came in time.
   * @throws {PgConnectionError} `E_PG_CONNECTION` (`sent: false`) when a new connection failed.
   */
  acquire(signal?: AbortSignal): Promise<PoolClient> {
    return new Promise<PoolClient>((resolve, reject) => {
      this.checkout(signal, (error, client) => {
        if (client === undefined) reject(error);
        else resolve(client);
      });
    });
  }

  /**
   * {@link PgNode.acquire} with a callback, which the query path uses so that a statement costs
   * one promise of ours, as `pool.query()` costs one of pg-pool's. The callback may be called
   * synchronously (an immediate rejection).
   */
  checkout(signal: AbortSignal | undefined, callback: CheckoutCallback): void {
    if (this.#closed) {
      callback(new ClosedError(`PgCluster node ${this.name}`), undefined);
      return;
    }
    const abortable = canAbort(signal);
    if (abortable && signal!.aborted) {
      callback(new AbortedError(signal!.reason), undefined);
      return;
    }
    if (this.#inUse < this.max && this.#head === null) {
      this.#inUse++;
      this.#connect(this.settings.acquireTimeout, abortable ? signal : undefined, callback);
      return;
    }
    if (this.#waiting >= this.settings.maxWaiting) {
      this.totalFull++;
      callback(new PoolFullError(this.name, this.settings.maxWaiting), undefined);
      return;
    }
    const timeout = this.settings.acquireTimeout;
    const waiter = new Waiter(
      this,
      this.settings.clock.now() + timeout,
      abortable ? signal : undefined,
      callback,
    );
    this.#enqueue(waiter);
    this.#wheel.insert(waiter, timeout);
    if (abortable) {
      waiter.offAbort = onAbort(signal, (reason) => {
        if (!waiter.queued) return;
        this.#dequeue(waiter);
        this.#wheel.cancel(waiter);
        callback(new AbortedError(reason), undefined);
      });
    }
  }

  /** Gets a client of pg-pool for a caller that holds a slot of the gate. */
  #connect(remaining: number, signal: AbortSignal | undefined, callback: CheckoutCallback): void {
    const pool = this.pool;
    if (this.owned && signal === undefined && pool.idleCount > this.#fastPending) {
      // Only we use this pool and it has an idle client for this caller: pg-pool hands it over
      // on the next tick, so no deadline is needed. The callback form spares pg-pool's promise
      // and its stack-capturing catch.
      this.#fastPending++;
      pool.connect((error, client) => {
        this.#fastPending--;
        if (error === undefined || error === null) callback(undefined, this.#adopt(client!));
        else callback(this.#connectFailed(error), undefined);
      });
      return;
    }
    const checkout = new Checkout(this, callback);
    this.#wheel.insert(checkout, Math.max(0, remaining));
    if (signal !== undefined) {
      checkout.offAbort = onAbort(signal, (reason) => {
        if (checkout.settled) return;
        checkout.settled = true;
        this.#wheel.cancel(checkout);
        callback(new AbortedError(reason), undefined);
      });
    }
    pool.connect((error, client) => {
      if (error !== undefined && error !== null) {
        const typed = this.#connectFailed(error);
        if (checkout.settled) return;
        checkout.settled = true;
        this.#wheel.cancel(checkout);
        checkout.offAbort?.();
        callback(typed, undefined);
        return;
      }
      const tracked = this.#adopt(client!);
      if (checkout.settled) {
        // The caller gave up (deadline or abort): the connection goes straight back.
        this.release(tracked);
        return;
      }
      checkout.settled = true;
      this.#wheel.cancel(checkout);
      checkout.offAbort?.();
      callback(undefined, tracked);
    });
  }

  /** First sight of a client: listener, lifetime, our release. Every checkout: swap in our release. */
  readonly #adopt = (client: PoolClient): TrackedClient => {
    const c = client as TrackedClient;
    let state = c[kState];
    if (state === undefined || state.node !== this) {
      const lifetime = this.settings.maxLifetime;
      state = new ClientState(
        this,
        c,
        lifetime > 0
          ? this.settings.clock.now() + lifetime * (1 - LIFETIME_JITTER * Math.random())
          : Number.POSITIVE_INFINITY,
      );
      c[kState] = state;
      c.on('error', onTrackedClientError);
    }
    state.pgRelease = c.release;
    c.release = state.release;
    // Push onto the checked-out list.
    state.prev = null;
    state.next = this.#checkedOut;
    if (this.#checkedOut !== null) this.#checkedOut.prev = state;
    this.#checkedOut = state;
    this.totalAcquired++;
    return c;
  };

  /** A connect failed: frees the slot and returns the typed error for the caller. */
  #connectFailed(error: unknown): unknown {
    this.totalErrors++;
    this.#inUse--;
    this.#dispatch();
    return toPgError(error, this.name, false, this.settings.redactor);
  }

  /**
   * Returns a client to the pool (what `client.release()` calls). Destroys it instead when `err`
   * is given, when it errored while checked out, when it is still inside a transaction, or when
   * it has outlived `maxLifetime`.
   * @throws when the client was already released.
   */
  release(client: TrackedClient, err?: Error | boolean): void {
    const state = client[kState];
    const pgRelease = state?.pgRelease;
    if (state === undefined || pgRelease === undefined) {
      throw new Error('Release called on a client that was already released to the pool (buttress/pool)');
    }
    let destroy: unknown = err || state.broken;
    if (!destroy) {
      if (this.#closed) destroy = CLOSED;
      else {
        const tx = client.getTransactionStatus?.();
        if (tx === 'T' || tx === 'E') destroy = IN_TRANSACTION;
        else if (state.expires !== Number.POSITIVE_INFINITY && this.settings.clock.now() >= state.expires) {
          destroy = EXPIRED;
        }
      }
    }
    const waiter = this.#head;
    if (!destroy && waiter !== null && this.#handOff) {
      // Someone is waiting and the client is fine: hand it over directly, as pg-pool itself does
      // with its own waiters, instead of a round trip through its idle list (a timer, a next-tick
      // pulse and a fresh checkout). It stays checked out from pg-pool's point of view.
      this.#dequeue(waiter);
      this.#wheel.cancel(waiter);
      waiter.offAbort?.();
      this.totalAcquired++;
      waiter.callback(undefined, client);
      return;
    }
    state.pgRelease = undefined;
    // Unlink from the checked-out list.
    if (state.prev === null) this.#checkedOut = state.next;
    else state.prev.next = state.next;
    if (state.next !== null) state.next.prev = state.prev;
    state.prev = state.next = null;
    try {
      pgRelease(destroy ? (destroy as Error) : undefined);
    } finally {
      this.#inUse--;
      this.#dispatch();
    }
  }

  /** Hands freed slots to waiters, oldest first. */
  #dispatch(): void {
    while (this.#head !== null && this.#inUse < this.max) {
      const waiter = this.#head;
      this.#dequeue(waiter);
      this.#wheel.cancel(waiter);
      waiter.offAbort?.();
      this.#inUse++;
      this.#connect(waiter.deadline - this.settings.clock.now(), waiter.signal, waiter.callback);
    }
    if (this.#inUse === 0 && this.#drained !== undefined) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained();
    }
  }

  /** @internal Called by a waiter's wheel entry. */
  waiterTimedOut(waiter: Waiter): void {
    if (!waiter.queued) return;
    this.#dequeue(waiter);
    waiter.offAbort?.();
    this.totalTimeouts++;
    waiter.callback(new PoolTimeoutError(this.name, this.settings.acquireTimeout), undefined);
  }

  #enqueue(waiter: Waiter): void {
    waiter.prev = this.#tail;
    if (this.#tail === null) this.#head = waiter;
    else this.#tail.next = waiter;
    this.#tail = waiter;
    this.#waiting++;
  }

  #dequeue(waiter: Waiter): void {
    waiter.queued = false;
    if (waiter.prev === null) this.#head = waiter.next;
    else waiter.prev.next = waiter.next;
    if (waiter.next === null) this.#tail = waiter.prev;
    else waiter.next.prev = waiter.prev;
    waiter.next = waiter.prev = null;
    this.#waiting--;
  }

  /** @internal A checked-out client emitted 'error' (an idle one is pg-pool's, reported by the pool). */
  clientError(state: ClientState, error: unknown): void {
    if (state.pgRelease === undefined) return;
    state.broken = error;
    this.totalErrors++;
    this.settings.onClientError(this, error, 'client');
  }

  readonly #onPoolError = (error: unknown): void => {
    this.totalErrors++;
    this.settings.onClientError(this, error, 'idle-client');
  };

  /** Marks a checked-out client so that its release destroys it (after an abort mid-query). */
  markBroken(client: PoolClient, reason: unknown): void {
    const state = (client as TrackedClient)[kState];
    if (state !== undefined) state.broken ??= reason;
  }

  /** Stops admitting callers and rejects the waiting ones with `E_CLOSED`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#head !== null) {
      const waiter = this.#head;
      this.#dequeue(waiter);
      this.#wheel.cancel(waiter);
      waiter.offAbort?.();
      waiter.callback(new ClosedError(`PgCluster node ${this.name}`), undefined);
    }
  }

  /** Resolves once no checkout is outstanding. */
  drained(): Promise<void> {
    if (this.#inUse === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const previous = this.#drained;
      this.#drained = () => {
        previous?.();
        resolve();
      };
    });
  }

  /** Destroys the connection of every client still checked out (their work fails; their release then removes them). */
  destroyCheckedOut(): number {
    let n = 0;
    for (let state = this.#checkedOut; state !== null; state = state.next) {
      state.broken ??= CLOSED;
      destroyClient(state.client);
      n++;
    }
    return n;
  }

  /** Detaches from the pool (its error listener); the pool itself is ended by the cluster if it owns it. */
  detach(): void {
    this.pool.removeListener('error', this.#onPoolError);
  }
}
