import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../core/errors.js';
import { FakeClock } from '../testing/fake-clock.js';
import { type CircuitBreakerOptions, circuitBreaker } from './circuit-breaker.js';
import { type BreakerRegistryOptions, breakerRegistry } from './registry.js';
import type { SharedCircuitState } from './shared-state.js';
import { consecutive } from './strategies/consecutive.js';

const T0 = 1_700_000_000_000;
const boom = (): Promise<never> => Promise.reject(new Error('boom'));
const KEYS = Array.from({ length: 10 }, (_, i) => `host-${i}`);

/** A shared state that does nothing but record that it was closed: lets a test see a breaker's close(). */
function closeSpy(closed: string[], key: string): SharedCircuitState {
  return {
    attach: () => ({ dispose() {}, [Symbol.dispose]() {} }),
    publish() {},
    acquireProbe: async () => true,
    releaseProbe() {},
    close: async () => {
      closed.push(key);
    },
  };
}

describe('breakerRegistry', () => {
  it('returns the same breaker for the same key, named after it', () => {
    const created: string[] = [];
    const registry = breakerRegistry({
      create: (key) => {
        created.push(key);
        return {};
      },
    });
    const a = registry.get('a');
    expect(registry.get('a')).toBe(a);
    expect(registry.get('b')).not.toBe(a);
    expect(a.name).toBe('a');
    expect(created).toEqual(['a', 'b']);
    expect(registry.size).toBe(2);
    expect(registry.has('a')).toBe(true);
    expect(registry.has('zzz')).toBe(false);
  });

  it('a name from create() wins over the key', () => {
    const registry = breakerRegistry({ create: (key) => ({ name: `svc:${key}` }) });
    expect(registry.get('a').name).toBe('svc:a');
  });

  it('execute() runs through the key’s breaker', async () => {
    const registry = breakerRegistry({ create: () => ({ strategy: consecutive(1) }) });
    await expect(registry.execute('a', () => 42)).resolves.toBe(42);
    await expect(registry.execute('a', boom)).rejects.toThrow('boom');
    await expect(registry.execute('a', () => 1)).rejects.toMatchObject({ code: 'E_CIRCUIT_OPEN' });
    await expect(registry.execute('b', () => 2)).resolves.toBe(2);
  });

  it('evicts the least recently used breaker beyond maxKeys, closing it', () => {
    const closed: string[] = [];
    const created: string[] = [];
    const registry = breakerRegistry({
      maxKeys: 2,
      create: (key) => {
        created.push(key);
        return { shared: closeSpy(closed, key) };
      },
    });
    const a = registry.get('a');
    registry.get('b');
    registry.get('a'); // a is now the most recently used
    registry.get('c');
    expect(registry.keys()).toEqual(['c', 'a']);
    expect(registry.has('b')).toBe(false);
    expect(registry.size).toBe(2);
    expect(closed).toEqual(['b']);
    expect(registry.get('a')).toBe(a);
    registry.get('b'); // built afresh, evicting c
    expect(created).toEqual(['a', 'b', 'c', 'b']);
    expect(registry.keys()).toEqual(['b', 'a']);
  });

  it('drops a breaker idle for idleTtl, measured on the injected clock', () => {
    const clock = new FakeClock(T0);
    const registry = breakerRegistry({ create: () => ({}), idleTtl: '1m', clock });
    const a = registry.get('a');
    clock.advance(59_999);
    expect(registry.has('a')).toBe(true);
    expect(registry.get('a')).toBe(a); // use refreshes the idle timer
    clock.advance(59_999);
    expect(registry.has('a')).toBe(true);
    clock.advance(2);
    expect(registry.has('a')).toBe(false);
    expect(registry.keys()).toEqual([]);
    const again = registry.get('a');
    expect(again).not.toBe(a);
  });

  it('delete() drops one breaker; close() drops and closes every breaker', async () => {
    const closed: string[] = [];
    const registry = breakerRegistry({ create: (key) => ({ shared: closeSpy(closed, key) }) });
    for (const k of ['a', 'b', 'c']) registry.get(k);
    expect(registry.delete('a')).toBe(true);
    expect(registry.delete('a')).toBe(false);
    expect(registry.keys().sort()).toEqual(['b', 'c']);
    await registry.close();
    expect(registry.size).toBe(0);
    expect(registry.stats()).toMatchObject({ size: 0, open: 0, breakers: {} });
    expect(closed.sort()).toEqual(['a', 'b', 'c']);
  });

  it('[Symbol.asyncDispose] closes', async () => {
    const closed: string[] = [];
    const registry = breakerRegistry({ create: (key) => ({ shared: closeSpy(closed, key) }) });
    registry.get('a');
    await registry[Symbol.asyncDispose]();
    expect(closed).toEqual(['a']);
    expect(registry.size).toBe(0);
  });

  describe('maxOpenFraction', () => {
    function tenKeys(fraction: number, extra: Partial<CircuitBreakerOptions> = {}) {
      const clock = new FakeClock(T0);
      const registry = breakerRegistry({
        maxOpenFraction: fraction,
        create: () => ({ strategy: consecutive(1), halfOpenAfter: 1000, clock, ...extra }),
      });
      for (const k of KEYS) registry.get(k);
      return { clock, registry };
    }

    const openCount = (registry: ReturnType<typeof tenKeys>['registry']) =>
      KEYS.filter((k) => registry.get(k).state !== 'closed').length;

    it('with 10 keys and 0.3, at most 3 are open at once even if all fail', async () => {
      const { registry } = tenKeys(0.3);
      for (const k of KEYS) await expect(registry.execute(k, boom)).rejects.toThrow('boom');
      expect(openCount(registry)).toBe(3);
      expect(registry.stats()).toMatchObject({ size: 10, open: 3, openFraction: 0.3, vetoedOpens: 7 });
      // Vetoed breakers keep serving calls (and keep failing them through).
      for (const k of KEYS.slice(3)) await expect(registry.execute(k, boom)).rejects.toThrow('boom');
      expect(openCount(registry)).toBe(3);
      expect(registry.stats().vetoedOpens).toBe(14);
    });

    it('half-open counts as open, and a slot frees when a breaker closes', async () => {
      const { clock, registry } = tenKeys(0.3);
      for (const k of KEYS) await rejectsQuietly(registry.execute(k, boom));
      clock.advance(1000);
      expect(registry.get('host-0').state).toBe('half-open');
      await rejectsQuietly(registry.execute('host-9', boom));
      expect(openCount(registry)).toBe(3);
      await registry.execute('host-0', () => 'recovered');
      expect(registry.get('host-0').state).toBe('closed');
      await rejectsQuietly(registry.execute('host-9', boom));
      expect(registry.get('host-9').state).toBe('open');
      expect(openCount(registry)).toBe(3);
    });

    it('a failed probe may re-open a breaker that already holds a slot', async () => {
      const { clock, registry } = tenKeys(0.3);
      for (const k of KEYS) await rejectsQuietly(registry.execute(k, boom));
      clock.advance(1000);
      await rejectsQuietly(registry.execute('host-0', boom));
      expect(registry.get('host-0').state).toBe('open');
      expect(openCount(registry)).toBe(3);
    });

    it('one breaker may always open, however small the fraction', async () => {
      const single = breakerRegistry({ maxOpenFraction: 0.01, create: () => ({ strategy: consecutive(1) }) });
      await rejectsQuietly(single.execute('only', boom));
      expect(single.get('only').state).toBe('open');
      expect(single.stats().vetoedOpens).toBe(0);

      const { registry } = tenKeys(0.01);
      for (const k of KEYS) await rejectsQuietly(registry.execute(k, boom));
      expect(openCount(registry)).toBe(1);
      expect(registry.stats().vetoedOpens).toBe(9);
    });

    it('the default (1) never vetoes', async () => {
      const { registry } = tenKeys(1);
      for (const k of KEYS) await rejectsQuietly(registry.execute(k, boom));
      expect(openCount(registry)).toBe(10);
      expect(registry.stats()).toMatchObject({ open: 10, openFraction: 1, vetoedOpens: 0 });
    });

    it('a breaker created open from initialState is counted', () => {
      const registry = breakerRegistry({
        maxOpenFraction: 0.5,
        create: (key) => ({
          clock: new FakeClock(T0),
          initialState:
            key === 'a'
              ? { state: 'open', openedAt: T0, halfOpenAt: T0 + 1000, reopenCount: 1 }
              : { state: 'closed' },
        }),
      });
      registry.get('a');
      registry.get('b');
      expect(registry.stats()).toMatchObject({ size: 2, open: 1, openFraction: 0.5 });
    });

    it('an evicted breaker no longer counts toward the cap', async () => {
      const registry = breakerRegistry({ maxKeys: 2, create: () => ({ strategy: consecutive(1) }) });
      const a = registry.get('a');
      let fail!: (e: Error) => void;
      const running = a.execute(() => new Promise<never>((_, reject) => (fail = reject)));
      registry.get('b');
      registry.get('c'); // evicts a while its call is in flight
      fail(new Error('late failure'));
      await rejectsQuietly(running);
      expect(a.state).toBe('open'); // the breaker itself still works for whoever holds it
      expect(registry.stats()).toMatchObject({ size: 2, open: 0, openFraction: 0 });
    });
  });

  it('stats() snapshots every breaker', async () => {
    const registry = breakerRegistry({ create: () => ({ strategy: consecutive(2) }) });
    await rejectsQuietly(registry.execute('a', boom));
    registry.get('b');
    const stats = registry.stats();
    expect(Object.keys(stats.breakers).sort()).toEqual(['a', 'b']);
    expect(stats.breakers.a).toMatchObject({ name: 'a', state: 'closed', failures: 1, totalCalls: 1 });
    expect(stats.breakers.b).toMatchObject({ name: 'b', totalCalls: 0 });
    expect(stats).toMatchObject({ size: 2, open: 0, openFraction: 0, vetoedOpens: 0 });
  });

  it('rejects create() returning a CircuitBreaker with E_INVALID_OPTION', () => {
    const registry = breakerRegistry({ create: () => circuitBreaker() as unknown as CircuitBreakerOptions });
    const err = thrown(() => registry.get('a'));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.code).toBe('E_INVALID_OPTION');
    expect(err.option).toBe('create');
    expect(registry.size).toBe(0);
  });

  it('rejects invalid breaker options from create() when the key is first used', () => {
    const registry = breakerRegistry({ create: () => ({ halfOpenProbes: 0 }) });
    const err = thrown(() => registry.get('a'));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.option).toBe('halfOpenProbes');
  });

  it.each<[string, unknown, string, unknown]>([
    ['no options', undefined, 'create', undefined],
    ['a non-object', 42, 'options', 42],
    ['a non-function create', { create: {} }, 'create', {}],
    ['zero maxKeys', { create: () => ({}), maxKeys: 0 }, 'maxKeys', 0],
    ['fractional maxKeys', { create: () => ({}), maxKeys: 1.5 }, 'maxKeys', 1.5],
    ['too many maxKeys', { create: () => ({}), maxKeys: 2 ** 24 + 1 }, 'maxKeys', 2 ** 24 + 1],
    ['zero idleTtl', { create: () => ({}), idleTtl: 0 }, 'idleTtl', 0],
    ['a bad idleTtl string', { create: () => ({}), idleTtl: 'soon' }, 'idleTtl', 'soon'],
    ['zero maxOpenFraction', { create: () => ({}), maxOpenFraction: 0 }, 'maxOpenFraction', 0],
    ['maxOpenFraction above 1', { create: () => ({}), maxOpenFraction: 1.5 }, 'maxOpenFraction', 1.5],
    ['a non-clock', { create: () => ({}), clock: 5 }, 'clock', 5],
    ['a clock without now', { create: () => ({}), clock: {} }, 'clock', {}],
    ['an unknown key', { create: () => ({}), maxKey: 5 }, 'maxKey', 5],
  ])('rejects %s with E_INVALID_OPTION naming the option', (_, options, option, received) => {
    const err = thrown(() => breakerRegistry(options as BreakerRegistryOptions<string>));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.code).toBe('E_INVALID_OPTION');
    expect(err.option).toBe(option);
    expect(err.received).toStrictEqual(received);
    expect(err.message).toContain(`"${option}"`);
  });
});

async function rejectsQuietly(p: Promise<unknown>): Promise<void> {
  await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    () => {},
  );
}

function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}
