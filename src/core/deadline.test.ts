import { describe, expect, it, vi } from 'vitest';
import { FakeClock, flushMicrotasks } from '../testing/fake-clock.js';
import { withDeadline } from './deadline.js';
import { TimeoutError } from './errors.js';
import { withDeadline as withRedisDeadline } from './redis.js';

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));
const never = <T>() => new Promise<T>(() => {});

describe('withDeadline', () => {
  it('settles like the call when it answers in time, and builds no error', async () => {
    const clock = new FakeClock(0);
    const timeoutError = vi.fn(() => new Error('late'));
    await expect(withDeadline(Promise.resolve(7), 100, clock, timeoutError)).resolves.toBe(7);
    const failure = new Error('boom');
    await expect(withDeadline(Promise.reject(failure), 100, clock, timeoutError)).rejects.toBe(failure);
    expect(timeoutError).not.toHaveBeenCalled();
  });

  it('rejects with what timeoutError() returns, no earlier than ms', async () => {
    const clock = new FakeClock(0);
    const error = new Error('late');
    let outcome: unknown;
    void withDeadline(never(), 100, clock, () => error).catch((e: unknown) => (outcome = e));
    clock.advance(99);
    await flushMicrotasks();
    expect(outcome).toBeUndefined();
    clock.advance(1);
    await flushMicrotasks();
    expect(outcome).toBe(error);
  });

  it('ignores the call once the deadline has fired', async () => {
    const clock = new FakeClock(0);
    let answer!: (value: string) => void;
    const call = new Promise<string>((resolve) => (answer = resolve));
    const bounded = withDeadline(call, 10, clock, () => 'timed out');
    clock.advance(10);
    answer('too late');
    await expect(bounded).rejects.toBe('timed out');
  });

  it('arms one clock timer for many deadlines, and leaves none once they settle', async () => {
    const clock = new FakeClock(0);
    const calls = Array.from({ length: 100 }, (_, i) =>
      withDeadline(Promise.resolve(i), 50 + i, clock, () => 0),
    );
    expect(clock.pending).toBeLessThanOrEqual(1);
    await Promise.all(calls);
    await nextTick();
    expect(clock.pending).toBe(0);
  });
});

describe('core/redis withDeadline', () => {
  it('rejects with a TimeoutError coded E_REDIS_TIMEOUT naming the call and the deadline', async () => {
    const clock = new FakeClock(0);
    let outcome: unknown;
    void withRedisDeadline(never(), 250, clock, 'Redis GET').catch((e: unknown) => (outcome = e));
    clock.advance(250);
    await flushMicrotasks();
    expect(outcome).toBeInstanceOf(TimeoutError);
    expect(outcome).toMatchObject({
      code: 'E_REDIS_TIMEOUT',
      timeout: 250,
      message: 'Redis GET timed out after 250ms',
    });
  });

  it('settles like the call when it answers in time', async () => {
    const clock = new FakeClock(0);
    await expect(withRedisDeadline(Promise.resolve('OK'), 250, clock, 'Redis SET')).resolves.toBe('OK');
    const failure = new Error('WRONGTYPE');
    await expect(withRedisDeadline(Promise.reject(failure), 250, clock, 'Redis SET')).rejects.toBe(failure);
  });
});
