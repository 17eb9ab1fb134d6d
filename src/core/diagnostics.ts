import dc from 'node:diagnostics_channel';

/**
 * Diagnostics channels named `buttress:<module>:<op>`. Publishing is guarded by
 * `hasSubscribers`, so a channel nobody listens to costs one property read.
 *
 * @example
 * import dc from 'node:diagnostics_channel';
 * dc.subscribe('buttress:breaker:state', (msg) => console.log(msg));
 */
export function channel(module: string, op: string): dc.Channel {
  return dc.channel(`buttress:${module}:${op}`);
}

/** Publishes the message built by `build` only when the channel has subscribers. */
export function publish<T>(ch: dc.Channel, build: () => T): void {
  if (ch.hasSubscribers) ch.publish(build());
}
