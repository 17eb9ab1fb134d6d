import { CircuitBreaker, type CircuitState } from '../../breaker/circuit-breaker.js';
import { type Bridge, defined, type ModuleBridge } from '../bridge.js';

/*
 * buttress/breaker. The state gauge reads every live breaker (the ones the cache and the pool
 * create for themselves included); transitions and rejections come from the channels.
 */

const NAME = 'buttress.breaker.name';
const STATE = 'buttress.breaker.state';
const STATES: readonly CircuitState[] = ['closed', 'open', 'half-open', 'isolated'];

export const breakerBridge: ModuleBridge = {
  module: 'breaker',
  kinds: { breaker: (value) => value instanceof CircuitBreaker },
  install(bridge: Bridge) {
    const meter = bridge.meter;
    if (meter === undefined) return;
    const breakers = bridge.tracked<CircuitBreaker>('breaker');

    const state = meter.createObservableGauge('buttress.breaker.state', {
      unit: '{breaker}',
      description:
        'Breakers in each state, by name: 1 in the state a breaker is in and 0 in the others (summed over breakers of the same name)',
    });
    const calls = meter.createObservableCounter('buttress.breaker.calls', {
      unit: '{call}',
      description: 'Calls run through the breaker (rejected ones excluded)',
    });
    const failures = meter.createObservableCounter('buttress.breaker.failures', {
      unit: '{call}',
      description: 'Calls that counted as failures',
    });
    const slow = meter.createObservableCounter('buttress.breaker.slow_calls', {
      unit: '{call}',
      description: 'Calls slower than slowCallDuration',
    });
    bridge.observeBatch(
      [state, calls, failures, slow],
      (o) => {
        for (const [ref, breaker] of breakers.live()) {
          const s = breaker.stats();
          const name = defined({ [NAME]: s.name ?? '' });
          for (const candidate of STATES) {
            o.gauge(state, { ...name, [STATE]: candidate }, s.state === candidate ? 1 : 0);
          }
          o.total(breakers, ref, calls, name, s.totalCalls);
          o.total(breakers, ref, failures, name, s.totalFailures);
          o.total(breakers, ref, slow, name, s.totalSlowCalls);
        }
      },
      breakers,
    );

    const transitions = meter.createCounter('buttress.breaker.transitions', {
      unit: '{transition}',
      description: 'State changes, by the state entered and the state left',
    });
    bridge.subscribe('buttress:breaker:state', (m) => {
      const { name, from, to } = m as { name?: string; from: string; to: string };
      transitions.add(1, { [NAME]: name ?? '', [STATE]: to, 'buttress.breaker.previous_state': from });
    });

    const rejections = meter.createCounter('buttress.breaker.rejections', {
      unit: '{call}',
      description: 'Calls rejected without running (open, half-open with every trial slot taken, isolated)',
    });
    bridge.subscribe('buttress:breaker:reject', (m) => {
      const { name, reason } = m as { name?: string; reason: string };
      rejections.add(1, { [NAME]: name ?? '', 'buttress.breaker.reason': reason });
    });
  },
};
