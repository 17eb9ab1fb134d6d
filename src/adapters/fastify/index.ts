// buttress/fastify: the Fastify plugin (response caching, load shedding, per-route breakers and
// timeouts, problem answers for buttress errors, health routes), and the framework-neutral part
// every adapter exports (health checks, problem bodies, the session store for @fastify/session).
export * from '../http/index.js';
export {
  type ButtressFastifyDecoration,
  type ButtressFastifyOptions,
  type ButtressRouteConfig,
  buttress,
  type FastifyHealthOptions,
} from './plugin.js';
