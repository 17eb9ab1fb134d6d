import { AsyncLocalStorage } from 'node:async_hooks';
import dc from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import {
  announce,
  isTraced,
  lifecycle,
  type TracedMessage,
  traceAsync,
  traceCall,
  traceSettled,
  traceSync,
  tracingChannel,
} from './diagnostics.js';

const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const;
const unsubscribe: (() => void)[] = [];
afterEach(() => {
  for (const u of unsubscribe.splice(0)) u();
});

/** Records every event of a tracing channel as `event` (plus `:error` / `:result` when set). */
function record(op: string): { tc: ReturnType<typeof tracingChannel<TracedMessage>>; log: string[] } {
  const tc = tracingChannel<TracedMessage & { n?: number }>('test', op);
  const log: string[] = [];
  for (const event of EVENTS) {
    const fn = (m: unknown) => {
      const { error, result } = m as TracedMessage;
      log.push(
        event === 'error'
          ? `error:${String(error)}`
          : event === 'asyncEnd'
            ? `asyncEnd:${String(result)}`
            : event,
      );
    };
    tc[event].subscribe(fn);
    unsubscribe.push(() => tc[event].unsubscribe(fn));
  }
  return { tc, log };
}

describe('tracing helpers', () => {
  it('isTraced sees a subscriber of any event, and a bound store', () => {
    const tc = tracingChannel('test', 'probe');
    expect(isTraced(tc)).toBe(false);
    const fn = () => {};
    tc.asyncEnd.subscribe(fn);
    expect(isTraced(tc)).toBe(true);
    tc.asyncEnd.unsubscribe(fn);
    expect(isTraced(tc)).toBe(false);
    const als = new AsyncLocalStorage();
    tc.start.bindStore(als);
    expect(isTraced(tc)).toBe(true);
    tc.start.unbindStore(als);
    expect(isTraced(tc)).toBe(false);
  });

  it('traceAsync: start and end around the call, then asyncStart and asyncEnd with the result', async () => {
    const { tc, log } = record('ok');
    const value = await traceAsync(tc, {}, async () => {
      log.push('run');
      await null;
      return 42;
    });
    expect(value).toBe(42);
    expect(log).toEqual(['start', 'run', 'end', 'asyncStart', 'asyncEnd:42']);
  });

  it('traceAsync: a rejection publishes error before the async end; so does a synchronous throw', async () => {
    const { tc, log } = record('fail');
    await expect(traceAsync(tc, {}, () => Promise.reject(new Error('late')))).rejects.toThrow('late');
    expect(log).toEqual(['start', 'end', 'error:Error: late', 'asyncStart', 'asyncEnd:undefined']);
    log.length = 0;
    await expect(
      traceAsync(tc, {}, () => {
        throw new Error('now');
      }),
    ).rejects.toThrow('now');
    expect(log).toEqual(['start', 'end', 'error:Error: now', 'asyncStart', 'asyncEnd:undefined']);
  });

  it('traceCall keeps a synchronous result synchronous', () => {
    const { tc, log } = record('sync');
    expect(traceCall(tc, {}, () => 'v')).toBe('v');
    expect(log).toEqual(['start', 'end', 'asyncStart', 'asyncEnd:v']);
  });

  it('runs the code inside withContext, set by a start subscriber, and inside bound stores', async () => {
    const tc = tracingChannel<TracedMessage & { id: number }>('test', 'scoped');
    const als = new AsyncLocalStorage<string>();
    const wrapped = new AsyncLocalStorage<string>();
    tc.start.bindStore(als, (m) => `store:${m.id}`);
    const start = (m: unknown) => {
      const message = m as TracedMessage;
      message.withContext = (fn) => wrapped.run('wrapped', fn);
    };
    tc.start.subscribe(start);
    unsubscribe.push(
      () => tc.start.unbindStore(als),
      () => tc.start.unsubscribe(start),
    );
    const seen = await traceAsync(tc, { id: 7 }, async () => {
      await null;
      return [als.getStore(), wrapped.getStore()];
    });
    expect(seen).toEqual(['store:7', 'wrapped']);
  });

  it('traceSync leaves reporting a throw to traceSettled', () => {
    const { tc, log } = record('split');
    const message: TracedMessage = {};
    expect(() =>
      traceSync(tc, message, () => {
        throw new Error('x');
      }),
    ).toThrow('x');
    expect(log).toEqual(['start', 'end']);
    traceSettled(tc, message, true, 'boom');
    expect(log).toEqual(['start', 'end', 'error:boom', 'asyncStart', 'asyncEnd:undefined']);
  });
});

describe('lifecycle channels', () => {
  it('announce publishes { kind, instance } only while someone listens', () => {
    const { create, close } = lifecycle('test');
    const seen: unknown[] = [];
    const object = {};
    announce(create, 'thing', object);
    const fn = (m: unknown) => seen.push(m);
    dc.subscribe('buttress:test:create', fn);
    announce(create, 'thing', object);
    announce(close, 'thing', object);
    dc.unsubscribe('buttress:test:create', fn);
    expect(seen).toEqual([{ kind: 'thing', instance: object }]);
  });
});
