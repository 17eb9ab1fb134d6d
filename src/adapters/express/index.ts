// buttress/express: Express 4 and 5 middleware for response caching, load shedding, route
// breakers and timeouts, RFC 9457 problem bodies, health routes and sessions on the buttress cache.

export * from '../http/index.js';
export {
  type ExpressCacheOptions,
  type HealthMiddleware,
  type HealthRoutesOptions,
  healthRoutes,
  type LoadShedderOptions,
  loadShedder,
  type ProblemHandlerOptions,
  problemHandler,
  type RejectMode,
  type RouteGuardOptions,
  responseCache,
  routeGuard,
  sendProblem,
  signalOf,
} from './express.js';
export { type ButtressExpressStore, type ExpressSessionModule, expressSessionStore } from './session.js';
