import type { Bridge, ModuleBridge } from '../bridge.js';

/*
 * buttress/retry: retries, hedges, budget refusals, timeouts and adaptive throttling, all from
 * the channels (these policies are per call site and hold no gauge worth reading). Policies are
 * told apart by the `name` option they were given.
 */

const NAME = 'buttress.retry.name';

export const retryBridge: ModuleBridge = {
  module: 'retry',
  kinds: {},
  install(bridge: Bridge) {
    const meter = bridge.meter;
    if (meter === undefined) return;

    const retries = meter.createCounter('buttress.retry.retries', {
      unit: '{retry}',
      description: 'Retries made (retry() and budgetedRetry())',
    });
    bridge.subscribe('buttress:retry:retry', (m) => {
      retries.add(1, { [NAME]: (m as { name?: string }).name ?? '' });
    });

    const hedges = meter.createCounter('buttress.retry.hedges', {
      unit: '{attempt}',
      description: 'Hedged attempts started',
    });
    bridge.subscribe('buttress:retry:hedge', (m) => {
      hedges.add(1, { [NAME]: (m as { name?: string }).name ?? '' });
    });

    const exhausted = meter.createCounter('buttress.retry.budget.exhausted', {
      unit: '{retry}',
      description: 'Retries or hedges the retry budget refused, by policy (retry, budgeted-retry, hedge)',
    });
    bridge.subscribe('buttress:retry:budget-exhausted', (m) => {
      const { name, policy } = m as { name?: string; policy: string };
      exhausted.add(1, { [NAME]: name ?? '', 'buttress.retry.policy': policy });
    });

    const timeouts = meter.createCounter('buttress.retry.timeouts', {
      unit: '{call}',
      description: 'Calls whose deadline passed, by strategy (aggressive, cooperative)',
    });
    bridge.subscribe('buttress:retry:timeout', (m) => {
      const { name, strategy } = m as { name?: string; strategy: string };
      timeouts.add(1, { 'buttress.timeout.name': name ?? '', 'buttress.timeout.strategy': strategy });
    });

    const throttled = meter.createCounter('buttress.retry.throttle.rejections', {
      unit: '{call}',
      description: 'Calls rejected locally by adaptive throttling',
    });
    bridge.subscribe('buttress:retry:throttle', (m) => {
      throttled.add(1, { 'buttress.throttle.name': (m as { name?: string }).name ?? '' });
    });
  },
};
