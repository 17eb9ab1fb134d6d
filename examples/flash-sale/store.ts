/**
 * What both versions of the store share: the services they call, the routes' shapes, and the
 * counters the demo reads after a run. The two apps differ only in how they call the services.
 */
import type { FastifyInstance, RouteHandlerMethod } from 'fastify';
import type { Database, Mailer, PaymentService, Product } from './world.js';

/** The services a store calls. `redis`, when given, is the shared Redis (`REDIS_URL`). */
export interface StoreServices {
  db: Database;
  payments: PaymentService;
  mailer: Mailer;
  redis?: import('ioredis').Redis;
}

/** One of the two apps, listening or ready to. */
export interface Store {
  readonly app: FastifyInstance;
  /** The prefix of every Redis key and queue name of the store (protected store only). */
  readonly namespace?: string;
  /** What the app did, as seen from inside (the load generator sees the rest). */
  readonly counters: StoreCounters;
  /**
   * Waits, at most `timeoutMs`, for what the app still does after the surge: handlers whose
   * shopper gave up are still running, and queued emails are still being sent.
   */
  settle(timeoutMs: number): Promise<void>;
  /** Closes the app and what it opened; the services stay the caller's. */
  close(): Promise<void>;
  /** Facts about the protection, for the report (empty for the unprotected app). */
  details(): Record<string, number>;
}

export interface StoreCounters {
  /** Orders paid and recorded. */
  ordersPaid: number;
  /** Paid orders whose confirmation email was given up on. */
  emailsLost: number;
  /** Product requests that arrived while the same product was being loaded and shared that load. */
  sharedLoads: number;
}

export const newCounters = (): StoreCounters => ({ ordersPaid: 0, emailsLost: 0, sharedLoads: 0 });

export interface CheckoutBody {
  productId: number;
  customer: string;
}

/** JSON schemas for both apps, so Fastify validates and serializes the same way in each. */
export const productRoute = {
  schema: {
    params: {
      type: 'object',
      properties: { id: { type: 'integer', minimum: 1 } },
      required: ['id'],
    },
  },
} as const;

export const checkoutRoute = {
  schema: {
    body: {
      type: 'object',
      properties: { productId: { type: 'integer', minimum: 1 }, customer: { type: 'string', minLength: 1 } },
      required: ['productId', 'customer'],
    },
  },
} as const;

/** Order ids are unique per app: the idempotency key of the charge and of the email. */
export function orderIds(): () => string {
  let next = 0;
  return () => `order-${++next}`;
}

export const confirmation = (orderId: string, customer: string, product: Product) => ({
  idempotencyKey: `confirm:${orderId}`,
  to: `${customer}@example.com`,
  subject: `Your ${product.name} is on its way (${orderId})`,
});

/**
 * Counts the route handlers running now. A shopper who gives up closes the connection, but the
 * handler goes on (waiting for the database, charging, sending): a run's counters are read only
 * once every handler has finished. Call before the routes are added.
 */
export function trackHandlers(app: FastifyInstance): { idle(timeoutMs: number): Promise<void> } {
  let running = 0;
  app.addHook('onRoute', (route) => {
    const handler = route.handler as (...args: Parameters<RouteHandlerMethod>) => unknown;
    route.handler = async function (this: FastifyInstance, request, reply) {
      running++;
      try {
        return await handler.call(this, request, reply);
      } finally {
        running--;
      }
    };
  });
  return {
    async idle(timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      while (running > 0 && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
  };
}
