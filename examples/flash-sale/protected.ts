/**
 * The same store with buttress: every piece of buttress wiring the demo uses is in this file.
 * The `buttress/fastify` plugin does the HTTP part (response caching, load shedding, errors as
 * RFC 9457 problems with `Retry-After`, health routes); the primitives do the rest.
 *
 * - Product pages are cached by the plugin (`config.buttress.cache`): served from memory (and
 *   from Redis L2 when `REDIS_URL` is set), and N shoppers asking for a page that is not cached
 *   run its handler once. Behind it, product reads go through `createCache().getOrSet`, which
 *   checkouts share (single-flight again; a graced copy stands in if the database fails).
 * - Checkout runs inside an `adaptiveLimiter` (`config.buttress.limiter`): it learns from latency
 *   how many checkouts the payment provider takes at once, and the plugin answers the rest at
 *   once with 503 and `Retry-After` instead of queueing them where they would time out.
 * - The charge goes through `wrap(retry + retryBudget, circuitBreaker, timeout)`: a transient
 *   failure is retried (with the order id as idempotency key, so nobody is charged twice), but
 *   retries never exceed a tenth of the traffic; when the provider is down the breaker opens and
 *   checkouts fail in microseconds with 503 and `Retry-After` until a trial charge succeeds.
 * - The confirmation email leaves the request: a `buttress/queue` job (memory backend, or Redis
 *   with `REDIS_URL`), sent by a worker that retries with backoff until it is delivered.
 * - A checkout that fails after its charge may have gone through (a timed-out attempt, a failed
 *   sale) queues a refund by the order id: nobody is left charged without an order.
 */
import { ExponentialBackoff } from 'cockatiel';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { buttress, isHttpStatusError } from '../../src/adapters/fastify/index.js';
import { circuitBreaker, countWindow } from '../../src/breaker/index.js';
import { adaptiveLimiter, isBulkheadFullError } from '../../src/bulkhead/index.js';
import { createCache } from '../../src/cache/index.js';
import { isTimeoutError } from '../../src/core/public.js';
import { createQueue, memoryBackend, redisBackend, redisQueueKeys } from '../../src/queue/index.js';
import { retry, retryBudget, timeout, wrap } from '../../src/retry/index.js';
import {
  type CheckoutBody,
  checkoutRoute,
  confirmation,
  newCounters,
  orderIds,
  productRoute,
  type Store,
  type StoreServices,
  trackHandlers,
} from './store.js';
import { type Product, UpstreamError } from './world.js';

type Email = ReturnType<typeof confirmation>;

export function protectedStore({ db, payments, mailer, redis }: StoreServices): Store {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const counters = newCounters();
  const nextOrder = orderIds();
  const handlers = trackHandlers(app);
  // Redis keys and queue names of this run carry a random suffix: the Redis may be shared.
  const suffix = Math.random().toString(36).slice(2, 10);
  const namespace = `flash-sale-${suffix}`;

  // --- product pages and reads: two caches, single-flight in each ------------------------------
  const l2 = redis === undefined ? {} : { l2: { redis } };
  /** The plugin's: whole product pages, keyed by URL. */
  const pages = createCache({ namespace: `${namespace}-pages`, ...l2 });
  /** Product rows, for the page handler and for checkouts. */
  const cache = createCache({
    namespace,
    ...l2,
    ttl: '5s',
    jitter: 0.2, // expiries of products cached together spread out
    grace: '1m', // a copy up to a minute old stands in while the database fails
  });
  /** Products whose load is running now, to count the requests that share it. */
  const loading = new Set<number>();
  function product(id: number): Promise<Product | null> {
    let loaded = false;
    const joining = loading.has(id);
    const value = cache.getOrSet(`product:${id}`, async ({ signal }) => {
      loaded = true;
      loading.add(id);
      try {
        return await db.readProduct(id, signal);
      } finally {
        loading.delete(id);
      }
    });
    if (joining)
      void value.then(
        () => !loaded && counters.sharedLoads++,
        () => {},
      );
    return value;
  }

  // --- checkout: load shedding ----------------------------------------------------------------
  const checkoutLimiter = adaptiveLimiter({
    name: 'checkout',
    algorithm: 'vegas',
    initialLimit: 8,
    minLimit: 2,
    maxLimit: 64,
    queue: 8,
    queueTimeout: '50ms',
    // The provider's failures (answered 502) and timeouts (504) mean "too many at once", as a lost
    // packet does to TCP. The plugin hands the limiter a 5xx answer as an HttpStatusError; a 503
    // for an open payments circuit is no overload of this limiter, so it is not a drop.
    isDrop: (error) =>
      (isHttpStatusError(error) && (error.status === 502 || error.status === 504)) ||
      isTimeoutError(error) ||
      isBulkheadFullError(error),
  });

  // --- payments: budgeted retry, breaker, timeout ---------------------------------------------
  const paymentBudget = retryBudget({ ratio: 0.1, minPerSecond: 2 });
  const paymentBreaker = circuitBreaker({
    name: 'payments',
    // Slow calls count too: a provider that answers in 300 ms instead of 50 is not back, even
    // when a trial charge happens to succeed, and closing on it would flood it again.
    strategy: countWindow({ size: 20, minimumCalls: 10, failureRate: 0.5, slowCallRate: 0.5 }),
    slowCallDuration: '200ms',
    halfOpenAfter: '500ms',
  });
  const paymentRetry = retry({
    maxAttempts: 2,
    backoff: new ExponentialBackoff({ initialDelay: 20, maxDelay: 200 }),
    budget: paymentBudget,
    // An open circuit is an answer, not a failure to retry: wait for the breaker instead.
    isFailure: (error) => error instanceof UpstreamError || isTimeoutError(error),
  });
  // The timeout sits above the provider's slowest answer (350 ms while down): giving up on a
  // charge it may still complete would leave a customer charged without an order.
  const paymentsPolicy = wrap(paymentRetry, paymentBreaker, timeout('400ms'));
  let breakerOpened = 0;
  paymentBreaker.onBreak(() => breakerOpened++);

  // --- emails: a queue and a worker -----------------------------------------------------------
  const queueName = `emails-${suffix}`;
  const emails = createQueue<Email>(queueName, {
    backend: redis === undefined ? memoryBackend() : redisBackend(redis, { prefix: namespace }),
    defaults: { attempts: 10, backoff: { delay: 50, maxDelay: '1s' } },
    retention: { completed: false },
  });
  emails.process((job) => mailer.send(job.payload), { concurrency: 4 });
  emails.onFailed((event) => {
    if (event.deadLettered) counters.emailsLost++;
  });

  // --- refunds: a checkout that failed after a charge may have gone through ----------------
  const refundsQueue = `refunds-${suffix}`;
  const refunds = createQueue<{ idempotencyKey: string }>(refundsQueue, {
    backend: redis === undefined ? memoryBackend() : redisBackend(redis, { prefix: namespace }),
    defaults: { attempts: 10, backoff: { delay: 50, maxDelay: '1s' } },
    retention: { completed: false },
  });
  refunds.process((job) => payments.refund(job.payload.idempotencyKey), { concurrency: 2 });
  /** Orders whose charge may have gone through without an order recorded. */
  const refund = (orderId: string) =>
    // After a second: a charge our timeout gave up on may still be landing at the provider.
    refunds.add({ idempotencyKey: orderId }, { jobId: `refund-${orderId}`, delay: '1s' }).then(
      () => {},
      () => {},
    );

  // --- the plugin, then the routes it applies to -----------------------------------------------
  app.register(buttress, {
    cache: pages,
    // This store's own error handler (below) asks the plugin how to answer buttress's errors.
    errors: false,
    health: { breakers: { payments: paymentBreaker } },
  });
  let pageRequests = 0;
  let pageRuns = 0;
  app.register(async (shop: FastifyInstance) => {
    shop.get<{ Params: { id: number } }>(
      '/products/:id',
      { ...productRoute, config: { buttress: { cache: { ttl: '5s' }, shed: false } } },
      async (request, reply) => {
        pageRuns++;
        const found = await product(request.params.id);
        if (found === null) return reply.code(404).send({ error: 'no such product' });
        return found;
      },
    );
    shop.addHook('onRequest', async (request) => {
      if (request.routeOptions.url === '/products/:id') pageRequests++;
    });

    shop.post<{ Body: CheckoutBody }>(
      '/checkout',
      { ...checkoutRoute, config: { buttress: { limiter: checkoutLimiter } } },
      async (request, reply) => {
        const { productId, customer } = request.body;
        const item = await product(productId);
        if (item === null) return reply.code(404).send({ error: 'no such product' });
        const orderId = nextOrder();
        let mayBeCharged = false;
        try {
          const charge = await paymentsPolicy.execute(() => {
            mayBeCharged = true;
            return payments.charge({ idempotencyKey: orderId, amountCents: item.priceCents });
          });
          if (!(await db.sell(productId))) {
            await refund(orderId);
            return reply.code(409).send({ error: 'sold out' });
          }
          mayBeCharged = false;
          counters.ordersPaid++;
          await emails.add(confirmation(orderId, customer, item), { jobId: `confirm-${orderId}` });
          return reply.code(201).send({ orderId, chargeId: charge.chargeId });
        } catch (error) {
          // An attempt reached the provider and the order was not recorded: whether or not the
          // charge went through, void it (a refund of nothing is a no-op).
          if (mayBeCharged) await refund(orderId);
          throw error;
        }
      },
    );

    // Buttress's errors (E_BULKHEAD_FULL and E_CIRCUIT_OPEN: 503 + Retry-After; E_TIMEOUT: 504)
    // as the plugin maps them; a provider's failure is a 502.
    shop.setErrorHandler((error: FastifyError, _request, reply) => {
      if (error.validation !== undefined) return reply.code(400).send({ error: error.message });
      const problem = shop.buttress.problem(error);
      if (problem !== undefined)
        return reply.code(problem.status).headers(problem.headers).send(problem.body);
      if (error instanceof UpstreamError) {
        return reply
          .code(502)
          .type('application/problem+json')
          .send({ type: 'about:blank', title: 'Bad Gateway', status: 502, detail: error.message });
      }
      return reply.code(500).send({ error: 'internal error' });
    });
  });

  let stillQueued = 0;
  return {
    app,
    namespace,
    counters,
    async settle(timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      await handlers.idle(timeoutMs);
      for (;;) {
        const s = await emails.stats();
        const r = await refunds.stats();
        stillQueued = s.waiting + s.active + s.delayed + r.waiting + r.active + r.delayed;
        if (stillQueued === 0 || performance.now() >= deadline) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async close() {
      await app.close();
      await emails.close({ timeout: '2s' });
      await refunds.close({ timeout: '2s' });
      if (redis !== undefined) {
        await cache.clear();
        await pages.clear();
        await redis.del(...redisQueueKeys(queueName, namespace), ...redisQueueKeys(refundsQueue, namespace));
      }
      await cache.close();
      await pages.close();
      await checkoutLimiter.close();
      await paymentBreaker.close();
    },
    details: () => {
      const c = cache.stats();
      const p = pages.stats();
      const r = paymentRetry.stats();
      return {
        pagesFromCache: pageRequests - pageRuns,
        pageL2Hits: p.l2Hits,
        cacheHits: c.l1Hits + c.l2Hits + c.gracedHits,
        cacheL2Hits: c.l2Hits,
        cacheLoads: c.loads,
        breakerOpened,
        refunds: payments.refunds,
        paymentRetries: r.retries,
        budgetRefusals: r.budgetRefusals,
        checkoutLimit: checkoutLimiter.limit,
        stillQueued,
      };
    },
  };
}
