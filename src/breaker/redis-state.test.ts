import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hasCode } from '../core/errors.js';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { type RedisConnection, redisBreakerState } from './redis-state.js';
import * as scripts from './scripts/index.js';

// No Redis here: a fake connection answers (or hangs) as each test says, and a FakeClock drives
// the deadlines. The real thing is test/integration/breaker-shared.int.test.ts.

type Reply = (script: string, args: unknown[]) => Promise<unknown>;

const hang: Reply = () => new Promise(() => {});
const bySha = new Map(Object.values(scripts).map((s) => [s.sha1, s.name]));

class FakeSubscriber extends EventEmitter {
  status = 'ready';
  readonly subscribed: string[] = [];
  disconnects = 0;

  subscribe(channel: string): Promise<number> {
    this.subscribed.push(channel);
    return Promise.resolve(1);
  }

  connect(): Promise<void> {
    return Promise.resolve();
  }

  disconnect(): void {
    this.disconnects++;
    // As ioredis: between two reconnection attempts there is no socket, and no 'end' follows.
    const socket = this.status !== 'reconnecting';
    this.status = 'end';
    if (socket) this.emit('end');
  }
}

class FakeRedis {
  status = 'ready';
  reply: Reply = hang;
  readonly calls: { script: string; args: unknown[] }[] = [];
  readonly subscribers: FakeSubscriber[] = [];
  /** Anything closing the user's connection would show here. */
  readonly touched: string[] = [];

  evalsha(sha1: string, _keys: number, ...args: unknown[]): Promise<unknown> {
    const script = bySha.get(sha1) ?? sha1;
    this.calls.push({ script, args });
    return this.reply(script, args);
  }

  eval(lua: string, _keys: number, ...args: unknown[]): Promise<unknown> {
    const script = Object.values(scripts).find((s) => s.lua === lua)?.name ?? 'unknown';
    this.calls.push({ script: `eval:${script}`, args });
    return Promise.resolve(1);
  }

  duplicate(): FakeSubscriber {
    const sub = new FakeSubscriber();
    this.subscribers.push(sub);
    return sub;
  }

  quit(): void {
    this.touched.push('quit');
  }

  disconnect(): void {
    this.touched.push('disconnect');
  }
}

function setup(options: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const redis = new FakeRedis();
  const state = redisBreakerState(redis as unknown as RedisConnection, {
    key: 'payments',
    timeout: 100,
    clock,
    ...options,
  });
  return { clock, redis, state };
}

function listener() {
  const events: string[] = [];
  return {
    events,
    remoteOpen: (ms: number) => events.push(`open ${ms}`),
    remoteClose: () => events.push('closed'),
  };
}

describe('redisBreakerState options', () => {
  const redis = new FakeRedis() as unknown as RedisConnection;
  const cases: [string, unknown, unknown][] = [
    ['redis', undefined, { key: 'k' }],
    ['redis', {}, { key: 'k' }],
    ['redis', 'redis://localhost', { key: 'k' }],
    ['options', redis, null],
    ['key', redis, {}],
    ['key', redis, { key: '' }],
    ['key', redis, { key: 42 }],
    ['namespace', redis, { key: 'k', namespace: '' }],
    ['timeout', redis, { key: 'k', timeout: 0 }],
    ['timeout', redis, { key: 'k', timeout: -5 }],
    ['timeout', redis, { key: 'k', timeout: 'soon' }],
    ['timeout', redis, { key: 'k', timeout: '2m' }],
    ['leaseTtl', redis, { key: 'k', leaseTtl: 0 }],
    ['leaseTtl', redis, { key: 'k', leaseTtl: Number.NaN }],
    ['clock', redis, { key: 'k', clock: { now: () => 0 } }],
    ['tiemout', redis, { key: 'k', tiemout: 100 }],
  ];
  it.each(cases)('rejects a bad %s with E_INVALID_OPTION naming it (%#)', (option, connection, options) => {
    let error: unknown;
    try {
      redisBreakerState(connection as RedisConnection, options as never);
    } catch (e) {
      error = e;
    }
    expect(hasCode(error, 'E_INVALID_OPTION'), String(error)).toBe(true);
    expect(error).toMatchObject({ option });
    expect(String(error)).toContain(`"${option}"`);
  });

  it('accepts durations as strings and applies the defaults', () => {
    const state = redisBreakerState(redis, { key: 'k', timeout: '50ms', leaseTtl: '2s' });
    expect(state.key).toBe('k');
    expect(state.stats()).toMatchObject({ key: 'k', subscribed: false, published: 0, errors: 0 });
    expect(redisBreakerState(redis, { key: 'k' }).stats().instanceId).not.toBe(state.stats().instanceId);
  });
});

describe('Lua scripts', () => {
  const dir = fileURLToPath(new URL('./scripts/', import.meta.url));

  it('the generated module matches the .lua files (else run `npm run gen:lua`)', () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    // Exits non-zero, failing this test, when src/*/scripts/index.ts is stale.
    execFileSync(process.execPath, ['scripts/gen-lua.mjs', '--check'], { cwd: root, stdio: 'pipe' });
    const files = readdirSync(dir).filter((f) => f.endsWith('.lua'));
    expect(files.length).toBe(Object.keys(scripts).length);
    for (const script of Object.values(scripts)) {
      const lua = readFileSync(`${dir}${script.name}-${script.numberOfKeys}.lua`, 'utf8');
      expect(script.lua).toBe(lua);
      expect(script.sha1).toBe(createHash('sha1').update(lua).digest('hex'));
    }
  });

  it('every script has a header naming its KEYS, ARGV and result', () => {
    for (const script of Object.values(scripts)) {
      const header = script.lua.split('\n').filter((l) => l.startsWith('--'));
      for (let k = 1; k <= script.numberOfKeys; k++) {
        expect(header.some((l) => l.includes(`KEYS[${k}]`))).toBe(true);
      }
      for (const used of new Set(script.lua.match(/ARGV\[\d+\]/g) ?? [])) {
        expect(
          header.some((l) => l.includes(used)),
          `${script.name}: ${used}`,
        ).toBe(true);
      }
      expect(header.some((l) => /^--\s+Returns\s/.test(l))).toBe(true);
    }
  });
});

describe('acquireProbe', () => {
  it('grants locally, without a call, when the connection is not ready', async () => {
    const { redis, state } = setup();
    redis.status = 'reconnecting';
    await expect(state.acquireProbe()).resolves.toBe(true);
    expect(redis.calls).toEqual([]);
    expect(state.stats().localGrants).toBe(1);
  });

  it('settles within the timeout when Redis hangs, and leaves no timer', async () => {
    const { clock, redis, state } = setup();
    let result: boolean | undefined;
    void state.acquireProbe().then((r) => (result = r));
    await flushMicrotasks();
    expect(redis.calls.map((c) => c.script)).toEqual(['acquire-lease']);
    await clock.advanceAsync(99);
    expect(result).toBeUndefined();
    await clock.advanceAsync(1);
    expect(result).toBe(true);
    expect(clock.pending).toBe(0);
    expect(state.stats()).toMatchObject({ timeouts: 1, localGrants: 1 });
  });

  it('resolves with the lease verdict, and falls back to a local grant on errors', async () => {
    const { clock, redis, state } = setup({ leaseTtl: '3s' });
    redis.reply = () => Promise.resolve(1);
    await expect(state.acquireProbe()).resolves.toBe(true);
    expect(redis.calls[0]!.args).toEqual([
      '{buttress:breaker:payments}:lease',
      state.stats().instanceId,
      3000,
    ]);
    redis.reply = () => Promise.resolve(0);
    await expect(state.acquireProbe()).resolves.toBe(false);
    redis.reply = () => Promise.reject(new Error('LOADING'));
    await expect(state.acquireProbe()).resolves.toBe(true);
    expect(state.stats()).toMatchObject({ leasesGranted: 1, leasesDenied: 1, localGrants: 1, errors: 1 });
    expect(clock.pending).toBe(0);
  });

  it('falls back to EVAL when the server does not know the script', async () => {
    const { redis, state } = setup();
    redis.reply = () => Promise.reject(new Error('NOSCRIPT No matching script. Please use EVAL.'));
    await expect(state.acquireProbe()).resolves.toBe(true);
    expect(redis.calls.map((c) => c.script)).toEqual(['acquire-lease', 'eval:acquire-lease']);
    expect(state.stats()).toMatchObject({ leasesGranted: 1, errors: 0 });
  });

  it('rejects with E_ABORTED on abort, and gives back a lease granted afterwards', async () => {
    const { clock, redis, state } = setup();
    const already = AbortSignal.abort();
    await expect(state.acquireProbe(already)).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(redis.calls).toEqual([]);

    let grant!: (v: number) => void;
    redis.reply = () => new Promise((resolve) => (grant = resolve));
    const controller = new AbortController();
    const pending = state.acquireProbe(controller.signal);
    await flushMicrotasks();
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(clock.pending).toBe(0);
    redis.reply = () => Promise.resolve(1);
    grant(1);
    await flushMicrotasks();
    expect(redis.calls.map((c) => c.script)).toEqual(['acquire-lease', 'release-lease']);
  });
});

describe('a lease granted after its request was abandoned', () => {
  it('is given back when the probe is already over', async () => {
    const { clock, redis, state } = setup();
    let grant!: (v: number) => void;
    redis.reply = () => new Promise((resolve) => (grant = resolve));
    const granted = state.acquireProbe();
    await clock.advanceAsync(100);
    await expect(granted).resolves.toBe(true); // a local grant: Redis did not answer in time
    redis.reply = () => Promise.resolve(1);
    state.releaseProbe(); // the probe ran and finished meanwhile
    grant(1); // the stalled SET NX finally ran
    await flushMicrotasks();
    expect(redis.calls.map((c) => c.script)).toEqual(['acquire-lease', 'release-lease', 'release-lease']);
  });

  it('is kept while the probe still runs (the breaker gives it back when done)', async () => {
    const { clock, redis, state } = setup();
    let grant!: (v: number) => void;
    redis.reply = () => new Promise((resolve) => (grant = resolve));
    const granted = state.acquireProbe();
    await clock.advanceAsync(100);
    await expect(granted).resolves.toBe(true);
    grant(1);
    await flushMicrotasks();
    expect(redis.calls.map((c) => c.script)).toEqual(['acquire-lease']);
  });
});

describe('publish and releaseProbe', () => {
  it('write one script per transition with the open time as PX, and drop them while not ready', async () => {
    const { redis, state } = setup();
    redis.reply = () => Promise.resolve(2);
    state.publish({ state: 'open', halfOpenIn: 1234.2 });
    state.publish({ state: 'closed' });
    state.releaseProbe();
    await flushMicrotasks();
    const id = state.stats().instanceId;
    expect(redis.calls).toEqual([
      {
        script: 'publish-open',
        args: [
          '{buttress:breaker:payments}:state',
          '{buttress:breaker:payments}:events',
          JSON.stringify({ state: 'open', halfOpenIn: 1235, origin: id }),
          1235,
          id,
        ],
      },
      {
        script: 'publish-closed',
        args: [
          '{buttress:breaker:payments}:state',
          '{buttress:breaker:payments}:events',
          JSON.stringify({ state: 'closed', origin: id }),
        ],
      },
      { script: 'release-lease', args: ['{buttress:breaker:payments}:lease', id] },
    ]);
    expect(state.stats().published).toBe(2);

    redis.status = 'connecting';
    state.publish({ state: 'open', halfOpenIn: 0 });
    state.releaseProbe();
    expect(redis.calls.length).toBe(3);
    expect(state.stats().dropped).toBe(2);
  });

  it('never throws nor waits when Redis fails or hangs', async () => {
    const { clock, redis, state } = setup();
    const errors: unknown[] = [];
    state.onError((e) => errors.push(e));
    redis.reply = () => Promise.reject(new Error('READONLY'));
    state.publish({ state: 'open', halfOpenIn: 10 });
    await flushMicrotasks();
    redis.reply = hang;
    state.publish({ state: 'closed' });
    await clock.advanceAsync(100);
    expect(state.stats()).toMatchObject({ published: 0, errors: 1, timeouts: 1 });
    expect(errors.map((e) => (e as { code?: string }).code ?? (e as Error).message)).toEqual([
      'READONLY',
      'E_REDIS_TIMEOUT',
    ]);
    expect(clock.pending).toBe(0);
  });
});

describe('attach', () => {
  it('subscribes on a duplicate connection and reads the stored state', async () => {
    const { redis, state } = setup({ namespace: 'shop' });
    redis.reply = (script) => Promise.resolve(script === 'read-state' ? ['someone-else', 4200] : 1);
    const l = listener();
    state.attach(l);
    await flushMicrotasks();
    expect(redis.subscribers.length).toBe(1);
    expect(redis.subscribers[0]!.subscribed).toEqual(['{shop:breaker:payments}:events']);
    expect(redis.calls.map((c) => c.script)).toEqual(['read-state']);
    expect(l.events).toEqual(['open 4200']);
    expect(state.stats()).toMatchObject({ subscribed: true, received: 1 });
  });

  it('ignores its own state and messages, and delivers the others', async () => {
    const { redis, state } = setup();
    const id = state.stats().instanceId;
    redis.reply = (script) => Promise.resolve(script === 'read-state' ? [id, 4200] : 1);
    const l = listener();
    state.attach(l);
    await flushMicrotasks();
    const sub = redis.subscribers[0]!;
    const channel = '{buttress:breaker:payments}:events';
    sub.emit('message', channel, JSON.stringify({ state: 'open', halfOpenIn: 500, origin: id }));
    sub.emit('message', channel, JSON.stringify({ state: 'open', halfOpenIn: 500, origin: 'b' }));
    sub.emit('message', channel, JSON.stringify({ state: 'closed', origin: 'b' }));
    sub.emit('message', 'another channel', JSON.stringify({ state: 'closed', origin: 'b' }));
    sub.emit('message', channel, 'not json');
    sub.emit('message', channel, JSON.stringify({ state: 'open', halfOpenIn: -1, origin: 'b' }));
    expect(l.events).toEqual(['open 500', 'closed']);
    expect(state.stats()).toMatchObject({ received: 2, errors: 2 });
  });

  it('reads the state again on every reconnection, dropping a read overtaken by a message', async () => {
    const { clock, redis, state } = setup();
    let answer!: (v: unknown) => void;
    redis.reply = () => new Promise((resolve) => (answer = resolve));
    const l = listener();
    state.attach(l);
    await flushMicrotasks();
    const sub = redis.subscribers[0]!;
    // A close published while the read was in flight is newer than what the read saw.
    sub.emit(
      'message',
      '{buttress:breaker:payments}:events',
      JSON.stringify({ state: 'closed', origin: 'b' }),
    );
    answer(['b', 900]);
    await flushMicrotasks();
    expect(l.events).toEqual(['closed']);

    sub.emit('close');
    expect(state.stats().subscribed).toBe(false);
    sub.emit('ready');
    await flushMicrotasks();
    expect(sub.subscribed.length).toBe(2);
    answer(['b', 800]);
    await flushMicrotasks();
    expect(l.events).toEqual(['closed', 'open 800']);
    expect(state.stats().subscribed).toBe(true);
    expect(clock.pending).toBe(0);
  });

  it('waits for the command connection before reading the state, checking at growing intervals', async () => {
    const { clock, redis, state } = setup();
    redis.status = 'connecting';
    const l = listener();
    state.attach(l);
    await flushMicrotasks();
    await clock.advanceAsync(100 + 200 + 400);
    expect(redis.calls).toEqual([]);
    expect(clock.pending).toBe(1);
    redis.status = 'ready';
    redis.reply = () => Promise.resolve(['b', 700]);
    await clock.advanceAsync(800);
    expect(redis.calls.map((c) => c.script)).toEqual(['read-state']);
    expect(l.events).toEqual(['open 700']);
    expect(clock.pending).toBe(0);
  });

  it('gives up after a few failed reads, so a stalled link does not pile commands up', async () => {
    const { clock, redis, state } = setup();
    state.attach(listener());
    await flushMicrotasks();
    await clock.advanceAsync(10_000);
    expect(redis.calls.map((c) => c.script)).toEqual([
      'read-state',
      'read-state',
      'read-state',
      'read-state',
    ]);
    expect(state.stats().timeouts).toBe(4);
    expect(clock.pending).toBe(0);
  });
});

describe('close', () => {
  it('disconnects its own connection only, settles pending calls and leaves no timer', async () => {
    const { clock, redis, state } = setup();
    const l = listener();
    state.attach(l);
    await flushMicrotasks();
    const pending = state.acquireProbe();
    await flushMicrotasks();
    await state.close();
    await expect(pending).resolves.toBe(true);
    const sub = redis.subscribers[0]!;
    expect(sub.disconnects).toBe(1);
    expect(sub.listenerCount('message') + sub.listenerCount('ready') + sub.listenerCount('close')).toBe(0);
    expect(redis.touched).toEqual([]);
    expect(clock.pending).toBe(0);

    // After close: no call, no subscription, no throw.
    sub.emit(
      'message',
      '{buttress:breaker:payments}:events',
      JSON.stringify({ state: 'closed', origin: 'b' }),
    );
    expect(l.events).toEqual([]);
    const calls = redis.calls.length;
    state.publish({ state: 'closed' });
    state.releaseProbe();
    await expect(state.acquireProbe()).resolves.toBe(true);
    expect(redis.calls.length).toBe(calls);
    state.attach(l).dispose();
    expect(redis.subscribers.length).toBe(1);
    await state.close();
  });

  it('does not wait for a subscriber caught between two reconnection attempts', async () => {
    const { clock, redis, state } = setup();
    state.attach(listener());
    await flushMicrotasks();
    redis.subscribers[0]!.status = 'reconnecting';
    await state.close(); // would wait for the clock otherwise, which nobody advances
    expect(redis.subscribers[0]!.disconnects).toBe(1);
    expect(clock.pending).toBe(0);
  });
});
