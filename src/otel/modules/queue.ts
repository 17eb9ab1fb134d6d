import { performance } from 'node:perf_hooks';
import { type Link, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { systemClock } from '../../core/clock.js';
import { Queue } from '../../queue/queue.js';
import type { AddedJob, JobAddMessage, JobProcessMessage, QueueStats } from '../../queue/types.js';
import { Worker } from '../../queue/worker.js';
import { type Bridge, defined, type ModuleBridge, seconds, withError } from '../bridge.js';
import { extractContext, injectContext } from '../propagation.js';

/*
 * buttress/queue, with OpenTelemetry's messaging names: `send <queue>` (PRODUCER) spans for adds
 * and `process <queue>` (CONSUMER) spans for attempts, `messaging.process.duration`,
 * `messaging.client.sent.messages`. The producer span's context is written into the job's
 * headers (buttress:queue:add lets a subscriber do that) and read back in the worker, whatever the
 * backend: the job's span is a child of the span that added it (or, with `jobContext: 'link'`, a
 * new trace linked to it). Depth gauges read each queue's stats(), which on Redis is a round trip
 * per queue per collection.
 */

const SYSTEM = 'buttress';
const DESTINATION = 'messaging.destination.name';
/** Longest wait for a queue's stats() during a collection. */
const STATS_TIMEOUT = 2_000;

export const queueBridge: ModuleBridge = {
  module: 'queue',
  kinds: {
    queue: (value) => value instanceof Queue,
    worker: (value) => value instanceof Worker,
  },
  install(bridge: Bridge) {
    installSpans(bridge);
    installMetrics(bridge);
  },
};

function installSpans(bridge: Bridge): void {
  const { propagator, jobContext } = bridge.settings;
  bridge.spans<JobAddMessage>('buttress:queue:add', {
    describe: (m) => ({
      name: `send ${m.queue}`,
      kind: SpanKind.PRODUCER,
      attributes: defined({
        'messaging.system': SYSTEM,
        [DESTINATION]: m.queue,
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'send',
        'messaging.message.id': m.jobId,
      }),
    }),
    started: (m, _span, active) => injectContext(propagator, active, m.headers),
    ended: (m, span) => {
      const added = m.result as AddedJob | undefined;
      if (added === undefined) return;
      span.setAttributes({ 'messaging.message.id': added.id, 'buttress.queue.duplicate': added.duplicate });
    },
  });

  bridge.spans<JobProcessMessage>('buttress:queue:process', {
    describe: (m) => {
      const producer = m.headers === undefined ? undefined : extractContext(propagator, m.headers);
      const producerSpan = producer === undefined ? undefined : trace.getSpanContext(producer);
      const attributes = {
        'messaging.system': SYSTEM,
        [DESTINATION]: m.queue,
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.message.id': m.jobId,
        'buttress.queue.attempt': m.attempt,
        'buttress.queue.attempts': m.attempts,
      };
      // Never the worker's own context: it is whatever happened to schedule the fetch.
      if (producer === undefined || producerSpan === undefined || jobContext === 'link') {
        const links: Link[] = producerSpan === undefined ? [] : [{ context: producerSpan }];
        return {
          name: `process ${m.queue}`,
          kind: SpanKind.CONSUMER,
          attributes,
          parent: ROOT_CONTEXT,
          links,
        };
      }
      return { name: `process ${m.queue}`, kind: SpanKind.CONSUMER, attributes, parent: producer };
    },
    ended: (m, span) => {
      if (m.error !== undefined) span.setAttribute('buttress.queue.last_attempt', m.attempt >= m.attempts);
    },
  });
}

function installMetrics(bridge: Bridge): void {
  const meter = bridge.meter;
  if (meter === undefined) return;
  const queues = bridge.tracked<Queue>('queue');
  const workers = bridge.tracked<Worker>('worker');

  const jobs = meter.createObservableGauge('buttress.queue.jobs', {
    unit: '{job}',
    description:
      'Jobs of each queue by state: waiting, active, delayed, dead-letter (shared by every process using the queue)',
  });
  const running = meter.createObservableUpDownCounter('buttress.queue.worker.running', {
    unit: '{job}',
    description: 'Jobs whose handler runs now in this process’s workers',
  });
  bridge.observeBatch(
    [jobs, running],
    async (o) => {
      for (const [, worker] of workers.live()) {
        o.gauge(running, { 'messaging.system': SYSTEM, [DESTINATION]: worker.queue }, worker.running);
      }
      // Queue objects with the same name share their jobs (one backend): their depth is read once.
      const seen = new Set<string>();
      const reads: Promise<void>[] = [];
      for (const [, queue] of queues.live()) {
        if (seen.has(queue.name)) continue;
        seen.add(queue.name);
        reads.push(
          statsWithin(queue).then(
            (s) => {
              if (s === undefined) return;
              const attrs = { 'messaging.system': SYSTEM, [DESTINATION]: queue.name };
              o.gauge(jobs, { ...attrs, 'buttress.queue.state': 'waiting' }, s.waiting);
              o.gauge(jobs, { ...attrs, 'buttress.queue.state': 'active' }, s.active);
              o.gauge(jobs, { ...attrs, 'buttress.queue.state': 'delayed' }, s.delayed);
              o.gauge(jobs, { ...attrs, 'buttress.queue.state': 'dead-letter' }, s.failed);
            },
            () => {
              // closed meanwhile, or the backend is down: no reading this time
            },
          ),
        );
      }
      await Promise.all(reads);
    },
    queues,
    workers,
  );

  const processDuration = meter.createHistogram(
    'messaging.process.duration',
    seconds('Duration of job handler runs, by queue; failed attempts carry error.type'),
  );
  const processed = meter.createCounter('buttress.queue.processed', {
    unit: '{job}',
    description: 'Attempts finished in this process, by outcome: completed, retry, dead-letter',
  });
  const deadLetters = meter.createCounter('buttress.queue.dead_letters', {
    unit: '{job}',
    description: 'Jobs moved to the dead-letter set by this process (attempts used up, or stalled too often)',
  });
  const stalls = meter.createCounter('buttress.queue.stalls', {
    unit: '{job}',
    description:
      'Expired leases, by outcome: requeued, dead-lettered (found by this worker), lease-lost (its own)',
  });
  const base = (queue: string) => ({
    'messaging.system': SYSTEM,
    [DESTINATION]: queue,
    'messaging.operation.name': 'process',
  });
  bridge.subscribe('buttress:queue:completed', (m) => {
    const { queue, duration } = m as { queue: string; duration: number };
    processDuration.record(duration / 1000, base(queue));
    processed.add(1, { ...base(queue), 'buttress.queue.outcome': 'completed' });
  });
  bridge.subscribe('buttress:queue:failed', (m) => {
    const { queue, duration, error, deadLettered } = m as {
      queue: string;
      duration: number;
      error: unknown;
      deadLettered: boolean;
    };
    processDuration.record(duration / 1000, withError(base(queue), error));
    processed.add(1, { ...base(queue), 'buttress.queue.outcome': deadLettered ? 'dead-letter' : 'retry' });
    if (deadLettered) deadLetters.add(1, base(queue));
  });
  bridge.subscribe('buttress:queue:stalled', (m) => {
    const { queue, outcome } = m as { queue: string; outcome: string };
    stalls.add(1, { ...base(queue), 'buttress.queue.outcome': outcome });
    if (outcome === 'dead-lettered') deadLetters.add(1, base(queue));
  });

  const sent = meter.createCounter('messaging.client.sent.messages', {
    unit: '{message}',
    description: 'Jobs added (add and addBulk items), by queue; failed adds carry error.type',
  });
  const sendDuration = meter.createHistogram(
    'messaging.client.operation.duration',
    seconds('Duration of adds, from the call to the backend’s answer'),
  );
  const started = new WeakMap<object, number>();
  bridge.subscribeTracing<JobAddMessage>('buttress:queue:add', {
    start: (m) => {
      started.set(m, performance.now());
    },
    asyncEnd: (m) => {
      const attrs = withError(
        {
          'messaging.system': SYSTEM,
          [DESTINATION]: m.queue,
          'messaging.operation.name': 'send',
        },
        m.error,
      );
      sent.add(1, attrs);
      const t0 = started.get(m);
      if (t0 !== undefined) sendDuration.record((performance.now() - t0) / 1000, attrs);
    },
  });
}

/** The queue's stats, or undefined when they take longer than {@link STATS_TIMEOUT}. */
function statsWithin(queue: Queue): Promise<QueueStats | undefined> {
  return new Promise((resolve, reject) => {
    const timer = systemClock.setTimeout(() => resolve(undefined), STATS_TIMEOUT);
    queue.stats().then(
      (s) => {
        systemClock.clearTimeout(timer);
        resolve(s);
      },
      (error: unknown) => {
        systemClock.clearTimeout(timer);
        reject(error);
      },
    );
  });
}
