import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { hasCode } from '../core/errors.js';
import { FakeClock } from './fake-clock.js';
import { createTcpProxy, type TcpProxy, type TcpProxyOptions } from './tcp-proxy.js';

// These tests move real bytes over loopback, so they wait in real time; bounds are generous
// because the machines running them are noisy.

const CI =
  process.env.CI !== undefined &&
  process.env.CI !== '' &&
  process.env.CI !== 'false' &&
  process.env.CI !== '0';
const REDIS = { host: '127.0.0.1', port: 6379 } as const;
const redisUp = await canConnect(REDIS.host, REDIS.port);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Echo {
  readonly port: number;
  readonly server: Server;
  /** Sockets the echo server accepted and that are not closed yet. */
  readonly sockets: Set<Socket>;
}

/** A TCP echo server on an ephemeral port, closed after the test. */
async function startEcho(): Promise<Echo> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('echo server has no port');
  return { port: address.port, server, sockets };
}

async function startProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const proxy = await createTcpProxy(options);
  cleanups.push(() => proxy.close());
  return proxy;
}

interface Client {
  readonly socket: Socket;
  /** Everything received so far, as text. */
  text(): string;
  /** Resolves with whether the socket closed on an error. */
  readonly closed: Promise<boolean>;
}

/** Connects a raw TCP client; resolves once connected, or closed when the proxy reset it. */
async function client(port: number): Promise<Client> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('error', () => {});
  const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
  cleanups.push(async () => {
    socket.destroy();
    await closed;
  });
  // A refused connection may be reset before its connect completes: then it only closes.
  await Promise.race([once(socket, 'connect').catch(() => {}), closed]);
  return { socket, text: () => received, closed };
}

/** Polls `condition` until it holds; fails with `what` after `timeout` ms. */
async function until(condition: () => boolean, what: string, timeout = 5_000): Promise<void> {
  const deadline = performance.now() + timeout;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A port nothing listens on: bound, read, then released. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address !== 'object') throw new Error('no port');
  return address.port;
}

/** Counts of the TCP handles alive in this process. */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

describe('createTcpProxy', () => {
  it('listens on an ephemeral loopback port by default and reports where to connect', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    expect(proxy.host).toBe('127.0.0.1');
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(echo.port);
    expect(proxy.address).toEqual({ host: '127.0.0.1', port: proxy.port });
    expect(proxy.target).toEqual({ host: '127.0.0.1', port: echo.port });
    expect(proxy.listening).toBe(true);
    expect(proxy.connections).toBe(0);
  });

  it('rejects bad options with E_INVALID_OPTION naming the option', async () => {
    const cases: [unknown, string][] = [
      [undefined, 'target'],
      [{}, 'target'],
      [{ target: { host: '127.0.0.1', port: 70_000 } }, 'target.port'],
      [{ target: { host: '', port: 1 } }, 'target.host'],
      [{ target: { host: '127.0.0.1', port: 1 }, listen: { port: -1 } }, 'listen.port'],
      [{ target: { host: '127.0.0.1', port: 1 }, tagret: {} }, 'tagret'],
    ];
    for (const [options, option] of cases) {
      const err = await createTcpProxy(options as TcpProxyOptions).catch((e: unknown) => e);
      expect(hasCode(err, 'E_INVALID_OPTION'), String(err)).toBe(true);
      expect(err).toMatchObject({ option });
    }
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: 1 } });
    expect(() => proxy.delay(-1)).toThrow(/Invalid option "delay"/);
    expect(() => proxy.delay(Number.NaN)).toThrow(/Invalid option "delay"/);
  });

  it('rejects when the listen port is taken', async () => {
    const echo = await startEcho();
    await expect(
      createTcpProxy({ target: { host: '127.0.0.1', port: echo.port }, listen: { port: echo.port } }),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('forwarding', () => {
  it('forwards bytes both ways and counts open connections', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const a = await client(proxy.port);
    const b = await client(proxy.port);
    a.socket.write('hello');
    b.socket.write('world');
    await until(() => a.text() === 'hello' && b.text() === 'world', 'echoes');
    expect(proxy.connections).toBe(2);

    // A FIN from the client travels to the server, whose FIN travels back: a clean close.
    a.socket.end();
    expect(await a.closed).toBe(false);
    await until(() => proxy.connections === 1, 'one connection left');
    b.socket.end();
    await until(() => proxy.connections === 0 && echo.sockets.size === 0, 'no connection left');
  });

  it('keeps a large payload intact (backpressure)', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const c = await client(proxy.port);
    const payload = 'abcdefghij'.repeat(400_000); // 4 MB, far beyond every socket buffer
    c.socket.write(payload);
    await until(() => c.text().length >= payload.length, 'the whole payload', 15_000);
    expect(c.text() === payload).toBe(true);
  });

  it('resets the client when the target is down, and keeps running', async () => {
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: await freePort() } });
    const c = await client(proxy.port);
    await c.closed;
    expect(c.text()).toBe('');
    await until(() => proxy.connections === 0, 'the failed pair to be dropped');
    expect(proxy.listening).toBe(true);
  });
});

describe('cut()', () => {
  it('drops every open connection on both sides and still accepts new ones', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const a = await client(proxy.port);
    const b = await client(proxy.port);
    a.socket.write('x');
    b.socket.write('y');
    await until(() => a.text() === 'x' && b.text() === 'y' && echo.sockets.size === 2, 'both connected');

    proxy.cut();
    expect(proxy.connections).toBe(0);
    // The client sees the connection reset, like a dropped link (a plain close is acceptable too).
    await Promise.all([a.closed, b.closed]);
    await until(() => echo.sockets.size === 0, 'the server side to be closed');
    expect(proxy.listening).toBe(true);

    const c = await client(proxy.port);
    c.socket.write('again');
    await until(() => c.text() === 'again', 'an echo after the cut');
    expect(proxy.connections).toBe(1);
  });
});

describe('blackhole()', () => {
  it('holds connections open but forwards nothing, then forwards again once off', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const a = await client(proxy.port);
    a.socket.write('before;');
    await until(() => a.text() === 'before;', 'an echo before the blackhole');

    proxy.blackhole();
    a.socket.write('lost;');
    const b = await client(proxy.port); // accepted, but stalled as well
    b.socket.write('lost too;');
    await sleep(150);
    expect(a.text()).toBe('before;');
    expect(b.text()).toBe('');
    expect(a.socket.destroyed || b.socket.destroyed).toBe(false);
    expect(proxy.connections).toBe(2);

    proxy.blackhole(false);
    a.socket.write('after;');
    b.socket.write('after;');
    await until(() => a.text() === 'before;after;' && b.text() === 'after;', 'echoes after the blackhole');
  });

  it('drops the replies as well as the requests', async () => {
    // A server that answers on its own: only the server-to-client direction carries bytes.
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      const tick = setInterval(() => socket.write('.'), 10);
      socket.on('close', () => {
        clearInterval(tick);
        sockets.delete(socket);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    });
    const { port } = server.address() as { port: number };
    const proxy = await startProxy({ target: { host: '127.0.0.1', port } });
    const c = await client(proxy.port);
    await until(() => c.text().length > 0, 'the first tick');
    proxy.blackhole();
    await sleep(30); // let ticks already on the wire land
    const seen = c.text().length;
    await sleep(150);
    expect(c.text().length).toBe(seen);
    proxy.blackhole(false);
    await until(() => c.text().length > seen, 'ticks after the blackhole');
  });
});

describe('refuse()', () => {
  it('resets new connections, leaves open ones alone, and accepts again once off', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const open = await client(proxy.port);

    proxy.refuse();
    const refused = await client(proxy.port);
    refused.socket.write('ignored');
    await refused.closed;
    expect(refused.text()).toBe('');
    expect(proxy.connections).toBe(1);
    expect(echo.sockets.size).toBe(1); // the refused client never reached the server

    open.socket.write('still here');
    await until(() => open.text() === 'still here', 'the open connection to keep working');

    proxy.refuse(false);
    const later = await client(proxy.port);
    later.socket.write('welcome back');
    await until(() => later.text() === 'welcome back', 'a new connection to work');
  });
});

describe('delay()', () => {
  it('delays each direction by at least the delay and keeps order', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const c = await client(proxy.port);
    proxy.delay(100);

    const start = performance.now();
    for (const part of ['a', 'b', 'c', 'd', 'e']) {
      c.socket.write(part);
      await new Promise((resolve) => setImmediate(resolve)); // separate chunks on the wire
    }
    await until(() => c.text().length === 5, 'the delayed echo');
    const elapsed = performance.now() - start;
    expect(c.text()).toBe('abcde');
    // 100 ms up and 100 ms back; timers may round a millisecond down.
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(elapsed).toBeLessThan(5_000);

    proxy.delay(0);
    const t = performance.now();
    c.socket.write('f');
    await until(() => c.text() === 'abcdef', 'the undelayed echo');
    expect(performance.now() - t).toBeLessThan(1_000);
  });

  it('never lets a chunk overtake an earlier one when the delay is lowered', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const c = await client(proxy.port);
    proxy.delay('300ms');
    c.socket.write('first;');
    await sleep(20);
    proxy.delay(0);
    c.socket.write('second;');
    await until(() => c.text().length === 'first;second;'.length, 'both echoes');
    expect(c.text()).toBe('first;second;');
  });

  it('follows an injected clock, so latency tests need not sleep', async () => {
    const echo = await startEcho();
    const clock = new FakeClock();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, clock });
    const c = await client(proxy.port);
    proxy.delay('10s');
    c.socket.write('ping');
    await until(() => clock.pending === 1, 'the chunk to be queued');
    await sleep(30);
    expect(echo.sockets.size === 1 && c.text() === '').toBe(true);

    clock.advance(9_999);
    expect(clock.pending).toBe(1); // not due yet
    clock.advance(1); // delivered to the server, whose echo is queued on the way back
    await until(() => clock.pending === 1, 'the echo to be queued');
    expect(c.text()).toBe('');
    clock.advance(10_000);
    await until(() => c.text() === 'ping', 'the echo');
    expect(clock.pending).toBe(0);
  });
});

describe('reset()', () => {
  it('turns every fault off', async () => {
    const echo = await startEcho();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const open = await client(proxy.port);
    proxy.blackhole().refuse().delay(1_000);
    proxy.reset();
    const fresh = await client(proxy.port);
    const t = performance.now();
    open.socket.write('one');
    fresh.socket.write('two');
    await until(() => open.text() === 'one' && fresh.text() === 'two', 'plain forwarding');
    expect(performance.now() - t).toBeLessThan(1_000);
  });
});

describe('close()', () => {
  it('closes the listener and every connection, leaving no handle open', async () => {
    const echo = await startEcho();
    await sleep(20); // handles closed by earlier tests are released a loop turn after their 'close'
    const baseline = tcpHandles();
    const proxy = await createTcpProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const a = await client(proxy.port);
    const b = await client(proxy.port);
    a.socket.write('x');
    await until(() => a.text() === 'x' && echo.sockets.size === 2, 'connections to be up');

    await proxy.close();
    expect(proxy.listening).toBe(false);
    expect(proxy.connections).toBe(0);
    await Promise.all([a.closed, b.closed]);
    await until(() => echo.sockets.size === 0, 'the server side to be closed');
    expect(tcpHandles()).toBe(baseline);
    expect(await canConnect('127.0.0.1', proxy.port)).toBe(false);

    // Idempotent, and so is disposal.
    await proxy.close();
    await proxy[Symbol.asyncDispose]();
  });

  it('clears the timers of delayed chunks', async () => {
    const echo = await startEcho();
    const clock = new FakeClock();
    const proxy = await createTcpProxy({ target: { host: '127.0.0.1', port: echo.port }, clock });
    const c = await client(proxy.port);
    proxy.delay('1h');
    c.socket.write('never');
    await until(() => clock.pending === 1, 'the chunk to be queued');
    await proxy[Symbol.asyncDispose]();
    expect(clock.pending).toBe(0);
    expect(proxy.listening).toBe(false);
    await c.closed;
  });

  it('clears the timers of a cut connection', async () => {
    const echo = await startEcho();
    const clock = new FakeClock();
    const proxy = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, clock });
    const c = await client(proxy.port);
    proxy.delay(50);
    c.socket.write('never');
    await until(() => clock.pending === 1, 'the chunk to be queued');
    proxy.cut();
    expect(clock.pending).toBe(0);
    await c.closed;
    clock.advance(1_000); // nothing left to fire on a destroyed socket
  });
});

// Under CI a missing Redis is a failure, never a skip: a green run must mean the test ran.
describe.skipIf(!redisUp && !CI)('against a real Redis', () => {
  function requireRedis(): void {
    if (!redisUp) throw new Error(`Redis is not reachable at ${REDIS.host}:${REDIS.port} (CI requires it)`);
  }

  it('forwards PING, survives a cut by reconnecting, and times out in a blackhole', async () => {
    requireRedis();
    const proxy = await startProxy({ target: REDIS });
    const errors: Error[] = [];
    const redis = new Redis({
      ...proxy.address,
      commandTimeout: 200,
      maxRetriesPerRequest: 3,
      retryStrategy: () => 20,
    });
    redis.on('error', (err: Error) => errors.push(err));
    cleanups.push(() => redis.disconnect());

    expect(await redis.ping()).toBe('PONG');
    expect(proxy.connections).toBe(1);

    // Not events.once: it would reject on the 'error' (ECONNRESET) that comes first.
    const closed = new Promise((resolve) => redis.once('close', resolve));
    proxy.cut();
    await closed;
    expect(redis.status).not.toBe('ready');
    // ioredis reconnects through the proxy and the next command goes through.
    expect(await redis.ping()).toBe('PONG');
    expect(proxy.connections).toBe(1);

    proxy.blackhole();
    const start = performance.now();
    await expect(redis.ping()).rejects.toThrow(/timed out/i);
    expect(performance.now() - start).toBeGreaterThanOrEqual(190);

    // Bytes lost in a blackhole leave the protocol out of step; a cut is the way to heal it.
    proxy.reset().cut();
    expect(await redis.ping()).toBe('PONG');
  });
});
