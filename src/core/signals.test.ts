import { types } from 'node:util';
import { retry as cockatielRetry, handleAll, noop } from 'cockatiel';
import { describe, expect, it, vi } from 'vitest';
import { LazySignal } from '../retry/internal/signals.js';
import { neverAbortedSignal } from './abort.js';
import {
  accessorContext,
  ContextFactory,
  canAbort,
  cockatielNeverAbortedSignal,
  isDeferred,
  kSource,
  type LayerContext,
  lazyContext,
  listen,
  materialize,
} from './signals.js';

/** Counts AbortControllers constructed while `run` runs. */
function countControllers(run: () => void): number {
  const Original = globalThis.AbortController;
  let count = 0;
  globalThis.AbortController = class extends Original {
    constructor() {
      super();
      count++;
    }
  };
  try {
    run();
  } finally {
    globalThis.AbortController = Original;
  }
  return count;
}

describe('canAbort', () => {
  it('is false for no signal and for the shared never-aborting signals', async () => {
    expect(canAbort(undefined)).toBe(false);
    expect(canAbort(neverAbortedSignal)).toBe(false);
    const seen: AbortSignal[] = [];
    await noop.execute(({ signal }) => seen.push(signal));
    await cockatielRetry(handleAll, { maxAttempts: 0 }).execute(({ signal }) => seen.push(signal));
    expect(cockatielNeverAbortedSignal()).toBe(seen[0]);
    for (const signal of seen) expect(canAbort(signal)).toBe(false);
  });

  it('is true for any other signal, deferred ones included', () => {
    expect(canAbort(new AbortController().signal)).toBe(true);
    expect(canAbort(AbortSignal.abort())).toBe(true);
    expect(canAbort(new LazySignal(undefined))).toBe(true);
  });
});

describe('deferred signals', () => {
  it('are told apart from real ones, and materialize on demand only', () => {
    const lazy = new LazySignal(undefined);
    const real = new AbortController().signal;
    expect(isDeferred(lazy)).toBe(true);
    expect(isDeferred(real)).toBe(false);
    expect(isDeferred(undefined)).toBe(false);
    expect(materialize(real)).toBe(real);
    expect(materialize(undefined)).toBeUndefined();
    expect(countControllers(() => expect(lazy.aborted).toBe(false))).toBe(0);
    expect(countControllers(() => expect(materialize(lazy)).toBeInstanceOf(AbortSignal))).toBe(1);
  });

  it('listen() hears real and deferred signals without creating one, and unsubscribes', () => {
    const controller = new AbortController();
    const lazy = new LazySignal(controller.signal);
    const onReal = vi.fn();
    const onLazy = vi.fn();
    const onGone = vi.fn();
    let offGone: () => void = () => {};
    const created = countControllers(() => {
      listen(controller.signal, onReal);
      listen(lazy, onLazy);
      offGone = listen(lazy, onGone);
    });
    expect(created).toBe(0);
    offGone();
    controller.abort('why');
    expect(onReal).toHaveBeenCalledWith('why');
    expect(onLazy).toHaveBeenCalledWith('why');
    expect(onGone).not.toHaveBeenCalled();
    expect(lazy.aborted).toBe(true);
    expect(lazy.reason).toBe('why');
    expect(lazy.signal.aborted).toBe(true);
    expect(lazy.signal.reason).toBe('why');
  });

  it('listen() on a signal that cannot abort costs nothing', () => {
    const off = listen(neverAbortedSignal, () => {});
    expect(off).toBeTypeOf('function');
    off();
    listen(undefined, () => {})();
  });

  it('a deferred child reports its parent aborted before hearing of it', () => {
    const parent = new LazySignal(undefined);
    const child = new LazySignal(parent);
    parent.abort('stop');
    expect(child.aborted).toBe(true);
    expect(child.reason).toBe('stop');
    expect(child.signal.reason).toBe('stop');
  });
});

describe('lazyContext', () => {
  it('creates the signal only when read, once', () => {
    const lazy = new LazySignal(undefined);
    const target: LayerContext = { [kSource]: lazy, attempt: 2 };
    const ctx = lazyContext<{ signal: AbortSignal; attempt: number }>(target);
    expect(countControllers(() => expect(ctx.attempt).toBe(2))).toBe(0);
    let first: AbortSignal | undefined;
    expect(countControllers(() => (first = ctx.signal))).toBe(1);
    expect(ctx.signal).toBe(first);
    lazy.abort('done');
    expect(first!.aborted).toBe(true);
  });

  it("exposes signal as an own enumerable property, so cockatiel's spread merge carries it", () => {
    const lazy = new LazySignal(undefined);
    const ctx = lazyContext<{ signal: AbortSignal; attempt: number }>({ [kSource]: lazy, attempt: 1 });
    expect(Object.keys(ctx)).toEqual(['attempt', 'signal']);
    expect('signal' in ctx).toBe(true);
    expect(Object.getOwnPropertyDescriptor(ctx, 'signal')?.enumerable).toBe(true);
    const merged = { ...{ signal: neverAbortedSignal, other: true }, ...ctx };
    expect(merged.signal).toBe(lazy.signal);
    expect(merged.attempt).toBe(1);
    expect(merged.other).toBe(true);
  });

  it('falls back to the never-aborted signal without a source, and lets callers assign fields', () => {
    const ctx = lazyContext<{ signal: AbortSignal; extra?: number }>({ [kSource]: undefined });
    expect(ctx.signal).toBe(neverAbortedSignal);
    const mine = new AbortController().signal;
    ctx.signal = mine;
    ctx.extra = 3;
    expect(ctx.signal).toBe(mine);
    expect({ ...ctx }).toMatchObject({ signal: mine, extra: 3 });
  });
});

describe('ContextFactory', () => {
  it('hands out proxies until a context is enumerated, then own-accessor objects', () => {
    const contexts = new ContextFactory();
    const lazy = new LazySignal(undefined);
    const first = contexts.create<{ signal: AbortSignal }>({ [kSource]: lazy });
    expect(types.isProxy(first)).toBe(true);
    expect(contexts.spread).toBe(false);
    void first.signal;
    expect(contexts.spread).toBe(false);
    const copy = { ...first };
    expect(copy.signal).toBe(lazy.signal);
    expect(contexts.spread).toBe(true);
    const second = contexts.create<{ signal: AbortSignal; attempt: number }>({ [kSource]: lazy, attempt: 1 });
    expect(types.isProxy(second)).toBe(false);
    expect({ ...second }).toMatchObject({ signal: lazy.signal, attempt: 1 });
  });

  it('own-accessor contexts create the signal only when read, and take assignments', () => {
    const lazy = new LazySignal(undefined);
    const ctx = accessorContext<{ signal: AbortSignal }>({ [kSource]: lazy });
    expect(Object.getOwnPropertyDescriptor(ctx, 'signal')?.enumerable).toBe(true);
    expect(countControllers(() => void Object.keys(ctx))).toBe(0);
    expect(countControllers(() => void ctx.signal)).toBe(1);
    const mine = new AbortController().signal;
    ctx.signal = mine;
    expect(ctx.signal).toBe(mine);
    expect(accessorContext<{ signal: AbortSignal }>({ [kSource]: undefined }).signal).toBe(
      neverAbortedSignal,
    );
  });
});
