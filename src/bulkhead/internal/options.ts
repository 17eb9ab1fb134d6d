import { duration, integer, nonEmptyString, oneOf } from '../../core/validate.js';
import type { QueueOrder } from './wait-queue.js';

/** The queue options the bulkhead and the adaptive limiter share, validated. */
export interface QueueSettings {
  queue: number;
  queueTimeout: number;
  order: QueueOrder;
  codelTarget: number;
  codelInterval: number;
}

export const QUEUE_KEYS = ['queue', 'queueTimeout', 'order', 'codelTarget', 'codelInterval'] as const;

const MAX_INT = 2 ** 31 - 1;

export function queueSettings(opts: {
  queue?: unknown;
  queueTimeout?: unknown;
  order?: unknown;
  codelTarget?: unknown;
  codelInterval?: unknown;
}): QueueSettings {
  return {
    queue: integer(opts.queue, 'queue', 0, MAX_INT, 0),
    queueTimeout:
      opts.queueTimeout === undefined
        ? Number.POSITIVE_INFINITY
        : duration(opts.queueTimeout, 'queueTimeout', undefined, 0),
    order: oneOf<QueueOrder>(opts.order, 'order', ['fifo', 'lifo', 'adaptive-lifo'], 'fifo'),
    codelTarget: duration(opts.codelTarget, 'codelTarget', 5, 0),
    codelInterval: duration(opts.codelInterval, 'codelInterval', 100, 0),
  };
}

export function optionalName(name: unknown): string | undefined {
  return name === undefined ? undefined : nonEmptyString(name, 'name');
}
