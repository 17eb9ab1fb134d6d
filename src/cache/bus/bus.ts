import { randomBytes } from 'node:crypto';
import type { Clock, Timer } from '../../core/clock.js';
import {
  closeSubscriber,
  duplicateSubscriber,
  type RedisConnection,
  type SubscriberConnection,
  type SubscriberListeners,
  watchSubscriber,
} from '../../core/redis.js';

/*
 * Cross-instance L1 invalidation over Redis pub/sub. Messages carry keys (or tags, or "clear"),
 * never values: a receiver drops its L1 copy and reads L2 again on its next access. Messages are
 * published by the write scripts themselves, in the same atomic step as the write, so one is sent
 * exactly when the L2 write happened, and never before.
 *
 * The subscriber is a connection of our own (a `duplicate()` of the user's). While it is not
 * subscribed, messages may be missed, so the cache stops trusting its L1 when the subscriber goes
 * down and again when it is back (a "gap"), and in between keeps no L2-backed value in L1.
 *
 * A subscriber cut off by a silent partition reports nothing: its socket stays open and messages
 * just stop. So the bus sends itself a heartbeat through Redis, on a channel of its own: a PUBLISH
 * on the user's connection that must come back on the subscriber within the interval. A missed
 * heartbeat is a gap; so is the first one back. The staleness an undetected partition can cause
 * is thereby bounded by about two heartbeat intervals.
 */

/** A decoded bus message. Exactly one of `keys`, `tags`, `clear`, `wake` is set. */
export interface BusMessage {
  /** The sending instance. */
  readonly origin: string;
  /** Keys written or deleted. */
  readonly keys?: readonly string[];
  /** Tags invalidated. */
  readonly tags?: readonly string[];
  /** The namespace was cleared. */
  readonly clear?: true;
  /** Fill leases released without a value: waiters should try again. */
  readonly wake?: readonly string[];
}

/** What the bus tells its owner. */
export interface BusHandlers {
  /** A message from another instance on one of the channels. */
  message(channel: string, message: BusMessage): void;
  /** The subscriber lost its connection, or came back: messages may have been missed. */
  gap(): void;
  /** A malformed message or a subscriber failure. */
  error(error: unknown): void;
}

/** Options of {@link Bus}. */
export interface BusOptions {
  readonly clock: Clock;
  /** Bound on waiting for the subscriber to end on close. */
  readonly closeTimeout: number;
  /** Milliseconds between heartbeats (and the deadline of each); 0 for none. */
  readonly heartbeat: number;
  readonly handlers: BusHandlers;
}

/** See the module comment. One per cache (its namespaces add channels to it). */
export class Bus {
  /** This instance's id: the origin of its messages, which it ignores when they come back. */
  readonly id = randomBytes(9).toString('base64url');
  readonly #redis: RedisConnection;
  readonly #clock: Clock;
  readonly #closeTimeout: number;
  readonly #heartbeat: number;
  readonly #handlers: BusHandlers;
  readonly #channels = new Set<string>();
  /** This instance's heartbeat channel, set with the first channel. */
  #hbChannel: string | undefined;
  #hbTimer: Timer | undefined;
  /** The heartbeat awaited, or 0 when none is out. */
  #hbAwaited = 0;
  #hbSeq = 0;
  /** True after a missed heartbeat, until one comes back. */
  #hbMissed = false;
  #sub: SubscriberConnection | undefined;
  /** True while every channel is subscribed on a live connection. */
  #connected = false;
  /** Bumped on each (re)connection and loss; an acknowledgement from an older one is ignored. */
  #epoch = 0;
  #received = 0;
  #gaps = 0;
  #closing: Promise<void> | undefined;
  /** One object, so that close() takes off exactly the listeners #start() put on. */
  readonly #subListeners: SubscriberListeners = {
    message: (channel, raw) => this.#onMessage(channel, raw),
    ready: () => this.#subscribeAll(),
    close: () => this.#onClose(),
  };

  constructor(redis: RedisConnection, options: BusOptions) {
    this.#redis = redis;
    this.#clock = options.clock;
    this.#closeTimeout = options.closeTimeout;
    this.#heartbeat = options.heartbeat;
    this.#handlers = options.handlers;
  }

  /** True while the subscriber is connected and subscribed to every channel. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Messages received from other instances. */
  get received(): number {
    return this.#received;
  }

  /** Times the subscriber went down or came back (each time L1 was dropped). */
  get gaps(): number {
    return this.#gaps;
  }

  /** Starts listening on `channel` (a namespace's); connects the subscriber on first use. */
  add(channel: string): void {
    if (this.#closing !== undefined || this.#channels.has(channel)) return;
    if (this.#hbChannel === undefined && this.#heartbeat > 0) {
      this.#hbChannel = `${channel}:hb:${this.id}`;
      this.#channels.add(this.#hbChannel);
    }
    this.#channels.add(channel);
    if (this.#sub === undefined) {
      this.#start();
    } else if (this.#sub.status === 'ready') {
      // Until this channel's subscription is acknowledged, messages on it may be missed.
      this.#connected = false;
      this.#subscribeAll();
    }
  }

  /** The message announcing writes or deletions of `keys`. */
  keysMessage(keys: readonly string[]): string {
    return JSON.stringify({ o: this.id, k: keys });
  }

  /** The message announcing an invalidation of `tags`. */
  tagsMessage(tags: readonly string[]): string {
    return JSON.stringify({ o: this.id, t: tags });
  }

  /** The message announcing a clear of the namespace. */
  clearMessage(): string {
    return JSON.stringify({ o: this.id, c: 1 });
  }

  /** The message waking the waiters of `key` after a fill gave its lease back. */
  wakeMessage(key: string): string {
    return JSON.stringify({ o: this.id, w: [key] });
  }

  /** Disconnects the subscriber (ours); the user's connection stays open. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#connected = false;
    this.#epoch++;
    this.#stopHeartbeat();
    const sub = this.#sub;
    this.#sub = undefined;
    if (sub === undefined) return;
    await closeSubscriber(sub, this.#subListeners, this.#clock, this.#closeTimeout);
  }

  #start(): void {
    let sub: SubscriberConnection;
    try {
      sub = duplicateSubscriber(this.#redis);
    } catch (error) {
      this.#handlers.error(error);
      return;
    }
    this.#sub = sub;
    watchSubscriber(sub, this.#subListeners);
  }

  #onClose(): void {
    this.#epoch++;
    this.#stopHeartbeat();
    this.#lost();
  }

  /** The bus can no longer vouch for L1: messages may be missed from now on. */
  #lost(): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#gaps++;
    this.#handlers.gap();
  }

  /** Every channel is subscribed: from now on nothing is missed, but something may have been. */
  #found(): void {
    this.#connected = true;
    this.#hbMissed = false;
    this.#gaps++;
    this.#handlers.gap();
  }

  #stopHeartbeat(): void {
    if (this.#hbTimer !== undefined) this.#clock.clearTimeout(this.#hbTimer);
    this.#hbTimer = undefined;
    this.#hbAwaited = 0;
  }

  #scheduleHeartbeat(): void {
    if (this.#heartbeat === 0 || this.#closing !== undefined) return;
    if (this.#hbTimer !== undefined) this.#clock.clearTimeout(this.#hbTimer);
    this.#hbTimer = this.#clock.setTimeout(this.#beat, this.#heartbeat);
  }

  /**
   * Each tick: if the previous heartbeat has not come back, the subscriber is cut off (a gap);
   * then send the next one.
   */
  readonly #beat = (): void => {
    this.#hbTimer = undefined;
    if (this.#closing !== undefined || this.#hbChannel === undefined) return;
    if (this.#hbAwaited !== 0) {
      this.#hbMissed = true;
      this.#lost();
    }
    const seq = ++this.#hbSeq;
    this.#hbAwaited = seq;
    const redis = this.#redis as unknown as {
      status: string;
      publish(c: string, m: string): Promise<unknown>;
    };
    if (redis.status === 'ready') redis.publish(this.#hbChannel, String(seq)).catch(noop);
    this.#scheduleHeartbeat();
  };

  #onHeartbeat(raw: string): void {
    if (raw !== String(this.#hbAwaited)) return;
    this.#hbAwaited = 0;
    if (this.#hbMissed && !this.#connected && this.#sub?.status === 'ready') this.#found();
  }

  /**
   * (Re)subscribes every channel and waits for the acknowledgement before calling the bus
   * connected: ioredis re-subscribes on its own after a reconnect, but only the reply tells us
   * from when on no message can be missed. The L1 is dropped then, since what it holds may have
   * been invalidated while we were not listening.
   */
  #subscribeAll(): void {
    const sub = this.#sub;
    if (sub === undefined || this.#closing !== undefined || this.#channels.size === 0) return;
    const epoch = ++this.#epoch;
    sub.subscribe(...this.#channels).then(
      () => {
        if (epoch !== this.#epoch || this.#closing !== undefined) return;
        this.#found();
        this.#hbAwaited = 0;
        this.#scheduleHeartbeat();
      },
      // The connection dropped first; its next 'ready' subscribes again.
      noop,
    );
  }

  #onMessage(channel: string, raw: string): void {
    if (channel === this.#hbChannel) {
      this.#onHeartbeat(raw);
      return;
    }
    if (!this.#channels.has(channel)) return;
    const message = parse(raw);
    if (message === undefined) {
      this.#handlers.error(
        new Error(`malformed cache bus message on ${channel}: ${String(raw).slice(0, 200)}`),
      );
      return;
    }
    if (message.origin === this.id) return;
    this.#received++;
    this.#handlers.message(channel, message);
  }
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

function parse(raw: unknown): BusMessage | undefined {
  if (typeof raw !== 'string') return undefined;
  let m: { o?: unknown; k?: unknown; t?: unknown; c?: unknown; w?: unknown };
  try {
    m = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null || typeof m.o !== 'string') return undefined;
  if (isStrings(m.k)) return { origin: m.o, keys: m.k };
  if (isStrings(m.t)) return { origin: m.o, tags: m.t };
  if (m.c === 1) return { origin: m.o, clear: true };
  if (isStrings(m.w)) return { origin: m.o, wake: m.w };
  return undefined;
}

function noop(): void {}
