import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import type { Duration } from '../core/duration.js';
import { InvalidOptionError } from '../core/errors.js';
import { bool, duration, integer, knownKeys, nonEmptyString, optionsObject } from '../core/validate.js';

/** A TCP endpoint: where the proxy forwards to, or where clients reach it. */
export interface TcpAddress {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link createTcpProxy}. */
export interface TcpProxyOptions {
  /** The server every accepted connection is forwarded to (Redis, PostgreSQL, ...). */
  target: TcpAddress;
  /**
   * Where the proxy listens. Port `0` picks a free ephemeral port; read it from
   * {@link TcpProxy.port} afterwards.
   * @default { host: '127.0.0.1', port: 0 }
   */
  listen?: { host?: string; port?: number };
  /**
   * Time source for {@link TcpProxy.delay}. A `FakeClock` makes latency tests deterministic:
   * delayed chunks are delivered only when the test advances it.
   * @default systemClock
   */
  clock?: Clock;
}

/*
 * Faults are read by every connection on every chunk, so they live in one small mutable object
 * shared by the proxy and its lanes: changing a fault takes effect at once on open connections.
 */
interface Faults {
  delay: number;
  blackhole: boolean;
  readonly clock: Clock;
}

/** `null` marks the end of a direction (the source sent FIN) inside a lane's queue. */
type Chunk = Buffer | null;

/**
 * One direction of a proxied connection. Chunks go straight through when there is no delay;
 * otherwise they wait in a FIFO drained by a single timer, so one connection holds at most one
 * timer per direction whatever the traffic.
 */
class Lane {
  readonly #src: Socket;
  readonly #dst: Socket;
  readonly #faults: Faults;
  #queue: { due: number; chunk: Chunk }[] = [];
  #lastDue = 0;
  #timer: Timer | undefined;
  #waitingDrain = false;
  #disposed = false;

  constructor(src: Socket, dst: Socket, faults: Faults) {
    this.#src = src;
    this.#dst = dst;
    this.#faults = faults;
    src.on('data', (chunk: Buffer) => {
      // A partition loses what is sent into it: nothing is kept for after the blackhole lifts.
      if (!this.#faults.blackhole) this.#push(chunk);
    });
    // FIN travels even through a blackhole, so a pair never outlives both of its ends.
    src.on('end', () => this.#push(null));
  }

  #push(chunk: Chunk): void {
    if (this.#disposed) return;
    const { delay, clock } = this.#faults;
    if (delay === 0 && this.#queue.length === 0) {
      this.#deliver(chunk);
      return;
    }
    const now = clock.now();
    // Never before the previous chunk: lowering the delay mid-stream must not reorder bytes.
    const due = Math.max(now + delay, this.#lastDue);
    this.#lastDue = due;
    this.#queue.push({ due, chunk });
    this.#schedule(now);
  }

  #schedule(now: number): void {
    const head = this.#queue[0];
    if (this.#timer !== undefined || head === undefined) return;
    this.#timer = this.#faults.clock.setTimeout(this.#flush, Math.max(0, head.due - now));
  }

  readonly #flush = (): void => {
    this.#timer = undefined;
    if (this.#disposed) return;
    const now = this.#faults.clock.now();
    while (this.#queue.length > 0 && this.#queue[0]!.due <= now) this.#deliver(this.#queue.shift()!.chunk);
    this.#schedule(now);
  };

  #deliver(chunk: Chunk): void {
    const dst = this.#dst;
    if (dst.destroyed || dst.writableEnded) return;
    if (chunk === null) {
      dst.end();
      return;
    }
    // Checked again here: chunks still in flight when the partition starts are lost as well.
    if (this.#faults.blackhole) return;
    if (!dst.write(chunk) && !this.#waitingDrain) {
      // Backpressure: a slow reader on one side must not make the proxy buffer without bound.
      this.#waitingDrain = true;
      this.#src.pause();
      dst.once('drain', () => {
        this.#waitingDrain = false;
        this.#src.resume();
      });
    }
  }

  /** Drops queued chunks and clears the timer; the lane never delivers again. */
  dispose(): void {
    this.#disposed = true;
    this.#queue = [];
    if (this.#timer !== undefined) {
      this.#faults.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}

/** A client connection and its upstream twin. */
class Pair {
  /** Resolves once both sockets have emitted `close` (their handles are released). */
  readonly closed: Promise<void>;
  #torn = false;
  readonly #client: Socket;
  readonly #upstream: Socket;
  readonly #lanes: readonly [Lane, Lane];

  constructor(client: Socket, upstream: Socket, faults: Faults, onSettled: (pair: Pair) => void) {
    this.#client = client;
    this.#upstream = upstream;
    this.#lanes = [new Lane(client, upstream, faults), new Lane(upstream, client, faults)];
    let open = 2;
    let settle!: () => void;
    this.closed = new Promise<void>((resolve) => (settle = resolve));
    const onClose = (hadError: boolean) => {
      // A reset or failure on one side is passed on as a reset to the other, the way a client
      // sees a dead server; a clean close needs nothing, the FIN already travelled through a lane.
      if (hadError) this.teardown(true);
      if (--open === 0) {
        this.#disposeLanes();
        this.#torn = true;
        onSettled(this);
        settle();
      }
    };
    for (const socket of [client, upstream]) {
      // The error itself needs no handling ('close' follows it); without a listener, an
      // ECONNRESET would crash the process running the tests.
      socket.on('error', noop);
      socket.once('close', onClose);
    }
  }

  /** True once this pair was torn down or both of its sockets closed. */
  get torn(): boolean {
    return this.#torn;
  }

  /** Destroys both sockets at once, with an RST when `reset` (like a dropped link), else a plain close. */
  teardown(reset: boolean): void {
    if (this.#torn) return;
    this.#torn = true;
    this.#disposeLanes();
    for (const socket of [this.#client, this.#upstream]) {
      if (reset) resetSocket(socket);
      else socket.destroy();
    }
  }

  #disposeLanes(): void {
    this.#lanes[0].dispose();
    this.#lanes[1].dispose();
  }
}

// Lets the factory reach the private `#listen` without adding a public method to the class.
let listenProxy: (proxy: TcpProxy) => Promise<void>;

/**
 * A fault-injecting TCP proxy for integration tests: clients connect to it instead of the real
 * server (Redis, PostgreSQL, ...), and the test cuts, stalls, refuses or slows the traffic to
 * see how the code under test behaves. Create one with {@link createTcpProxy}.
 *
 * Faults apply at once to open connections and to new ones, and combine: `delay` and
 * `blackhole` may both be on. {@link TcpProxy.reset} turns them all off.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #target: TcpAddress;
  readonly #listenHost: string;
  readonly #listenPort: number;
  readonly #faults: Faults;
  // Pairs stay here until both sockets closed, so close() can wait for every handle.
  readonly #pairs = new Set<Pair>();
  #refusing = false;
  #closing: Promise<void> | undefined;
  #address: TcpAddress | undefined;

  static {
    listenProxy = (proxy) => proxy.#listen();
  }

  /**
   * Validates the options; the proxy listens only once {@link createTcpProxy} has awaited it,
   * so use that factory rather than this constructor.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` naming the first bad option.
   */
  constructor(options: TcpProxyOptions) {
    const opts = optionsObject(options);
    knownKeys(opts, ['target', 'listen', 'clock']);
    if (opts.target === undefined) {
      throw new InvalidOptionError('target', undefined, 'an address { host, port }');
    }
    const target = optionsObject(opts.target, 'target');
    this.#target = {
      host: nonEmptyString(target.host, 'target.host'),
      port: integer(target.port, 'target.port', 1, 65_535),
    };
    const listen = optionsObject(opts.listen, 'listen');
    knownKeys(listen, ['host', 'port'], 'listen');
    this.#listenHost = nonEmptyString(listen.host, 'listen.host', '127.0.0.1');
    this.#listenPort = integer(listen.port, 'listen.port', 0, 65_535, 0);
    this.#faults = { delay: 0, blackhole: false, clock: opts.clock ?? systemClock };
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
    // Accept errors (EMFILE, ...) after listening must not crash the test process; the
    // listen error itself is reported by #listen.
    this.#server.on('error', noop);
  }

  /** Host clients connect to (the loopback address when listening on a wildcard). */
  get host(): string {
    return this.address.host;
  }

  /** Port clients connect to; the ephemeral port chosen by the OS when `listen.port` was 0. */
  get port(): number {
    return this.address.port;
  }

  /** Where clients connect: spread it into client options, e.g. `new Redis({ ...proxy.address })`. */
  get address(): TcpAddress {
    if (this.#address === undefined) {
      throw new Error('TcpProxy is not listening yet: create it with createTcpProxy()');
    }
    return this.#address;
  }

  /** The server every connection is forwarded to. */
  get target(): TcpAddress {
    return this.#target;
  }

  /** Number of open client connections (a refused connection never counts). */
  get connections(): number {
    let n = 0;
    for (const pair of this.#pairs) if (!pair.torn) n++;
    return n;
  }

  /** True while the listener is open, that is until {@link TcpProxy.close}. */
  get listening(): boolean {
    return this.#server.listening;
  }

  /**
   * Destroys every open connection now, with a TCP reset on both sides, like a network drop or
   * a killed server: clients see `ECONNRESET` or a close. New connections are still accepted,
   * so clients that reconnect get through.
   */
  cut(): this {
    for (const pair of this.#pairs) pair.teardown(true);
    return this;
  }

  /**
   * Stalls traffic, like a network partition: connections stay open (new ones are still
   * accepted) but every byte in either direction is discarded, including bytes already delayed
   * by {@link TcpProxy.delay}. Nothing is replayed when the blackhole is turned off, so a client
   * protocol may be out of step afterwards: {@link TcpProxy.cut} heals that. A FIN still
   * travels, so a client that gives up and closes does not leave a pair open.
   * @param on `false` resumes forwarding. @default true
   */
  blackhole(on = true): this {
    this.#faults.blackhole = bool(on, 'blackhole', true);
    return this;
  }

  /**
   * Makes the proxy act as if the server were down: each new connection is reset as soon as it
   * is accepted (clients see `ECONNRESET` or a close rather than `ECONNREFUSED`, since the port
   * stays bound). Open connections are untouched; combine with {@link TcpProxy.cut} to drop them.
   * @param on `false` accepts connections again. @default true
   */
  refuse(on = true): this {
    this.#refusing = bool(on, 'refuse', true);
    return this;
  }

  /**
   * Adds latency to every chunk in both directions (so a round trip takes at least twice
   * `ms`). Order is kept, even when the delay is lowered while chunks are in flight. Applies to
   * chunks received from now on.
   * @param ms milliseconds or a string like `'50ms'`; `0` forwards at once.
   * @throws {InvalidOptionError} `E_INVALID_OPTION` when `ms` is not a non-negative duration.
   */
  delay(ms: Duration): this {
    this.#faults.delay = duration(ms, 'delay');
    return this;
  }

  /** Back to plain forwarding: no blackhole, no refusal, no delay. Open connections stay open. */
  reset(): this {
    this.#faults.blackhole = false;
    this.#faults.delay = 0;
    this.#refusing = false;
    return this;
  }

  /**
   * Closes the listener and every connection, and resolves once their handles and timers are
   * released. Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@link TcpProxy.close}, for `await using proxy = await createTcpProxy(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => {
      // The callback fires once the server's own sockets are gone; it gets an error only when
      // the server never listened, which is just as closed.
      this.#server.close(() => resolve());
    });
    const pairs = [...this.#pairs];
    for (const pair of pairs) pair.teardown(false);
    await Promise.all([serverClosed, ...pairs.map((pair) => pair.closed)]);
    // A server emits 'close' on the next tick, but libuv frees its handle only in the loop's
    // close phase; two check-phase turns get past it, so leak checks run after close() see nothing.
    await nextCheck();
    await nextCheck();
  }

  #listen(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once('error', onError);
      this.#server.listen(this.#listenPort, this.#listenHost, () => {
        this.#server.off('error', onError);
        const bound = this.#server.address();
        const port = typeof bound === 'object' && bound !== null ? bound.port : this.#listenPort;
        this.#address = Object.freeze({ host: connectableHost(this.#listenHost), port });
        resolve();
      });
    });
  }

  #accept(client: Socket): void {
    if (this.#refusing || this.#closing !== undefined) {
      client.on('error', noop);
      resetSocket(client);
      return;
    }
    client.setNoDelay(true);
    // allowHalfOpen lets a FIN from one side be forwarded as a FIN, in order with the data,
    // instead of Node ending our side on its own.
    const upstream = netConnect({
      host: this.#target.host,
      port: this.#target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    const pair = new Pair(client, upstream, this.#faults, (settled) => this.#pairs.delete(settled));
    this.#pairs.add(pair);
  }
}

/**
 * Starts a fault-injecting TCP proxy in front of `target` and resolves once it listens.
 * Point the client under test at {@link TcpProxy.address}, then inject faults.
 *
 * @example
 * import { Redis } from 'ioredis';
 * import { createTcpProxy } from 'buttress/testing';
 *
 * await using proxy = await createTcpProxy({ target: { host: '127.0.0.1', port: 6379 } });
 * const redis = new Redis({ ...proxy.address, commandTimeout: 200 });
 * await redis.ping();          // forwarded
 * proxy.cut();                 // redis sees the connection drop, then reconnects
 * proxy.blackhole();           // commands now time out
 * proxy.reset().delay('50ms'); // every chunk 50 ms late, both ways
 *
 * @throws {InvalidOptionError} `E_INVALID_OPTION` for a bad option.
 * @throws the listen error (e.g. `EADDRINUSE`) when the port cannot be bound.
 */
export async function createTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const proxy = new TcpProxy(options);
  await listenProxy(proxy);
  return proxy;
}

/** Sends an RST when the socket is connected, else just destroys it (nothing to reset yet). */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) {
    // resetAndDestroy on a connecting socket would wait for 'connect' before acting.
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Clients cannot connect to a wildcard address; they reach it through loopback. */
function connectableHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '::0') return '::1';
  return host;
}

function nextCheck(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function noop(): void {}
