/**
 * The same store with buttress: every piece of buttress wiring the demo uses is in this file.
 *
 * - Product reads go through `createCache().getOrSet`: served from memory (and from Redis L2 when
 *   `REDIS_URL` is set), and N shoppers asking for a product that is not cached share one
 *   database query (single-flight). A graced copy stands in if the database fails.
 * - Checkout runs inside an `adaptiveLimiter`: it learns from latency how many checkouts the
 *   payment provider takes at once, and answers the rest at once with 503 and `Retry-After`
 *   instead of queueing them where they would time out.
 * - The charge goes through `wrap(retry + retryBudget, circuitBreaker, timeout)`: a transient
 *   failure is retried (with the order id as idempotency key, so nobody is charged twice), but
 *   retries never exceed a tenth of the traffic; when the provider is down the breaker opens and
 *   checkouts fail in microseconds with 503 and `Retry-After` until a trial charge succeeds.
 * - The confirmation email leaves the request: a `buttress/queue` job (memory backend, or Redis
 *   with `REDIS_URL`), sent by a worker that retries with backoff until it is delivered.
 */
import { ExponentialBackoff } from 'cockatiel';
import Fastify, { type FastifyError, type FastifyReply } from 'fastify';
import { circuitBreaker, countWindow, isCircuitOpenError } from '../../src/breaker/index.js';
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

  // --- product reads: cache + single-flight ---------------------------------------------------
  const cache = createCache({
    namespace,
    ...(redis === undefined ? {} : { l2: { redis } }),
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
    // The provider's 503s and our timeouts on it mean "too many at once", as a lost packet does to TCP.
    isDrop: (error) => error instanceof UpstreamError || isTimeoutError(error) || isBulkheadFullError(error),
  });

  // --- payments: budgeted retry, breaker, timeout ---------------------------------------------
  const paymentBudget = retryBudget({ ratio: 0.1, minPerSecond: 2 });
  const paymentBreaker = circuitBreaker({
    name: 'payments',
    strategy: countWindow({ size: 20, minimumCalls: 10, failureRate: 0.5 }),
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

  // --- routes ---------------------------------------------------------------------------------
  app.get<{ Params: { id: number } }>('/products/:id', productRoute, async (request, reply) => {
    const found = await product(request.params.id);
    if (found === null) return reply.code(404).send({ error: 'no such product' });
    return found;
  });

  app.post<{ Body: CheckoutBody }>('/checkout', checkoutRoute, (request, reply) =>
    checkoutLimiter.execute(async () => {
      const { productId, customer } = request.body;
      const item = await product(productId);
      if (item === null) return reply.code(404).send({ error: 'no such product' });
      const orderId = nextOrder();
      const charge = await paymentsPolicy.execute(() =>
        payments.charge({ idempotencyKey: orderId, amountCents: item.priceCents }),
      );
      if (!(await db.sell(productId))) return reply.code(409).send({ error: 'sold out' });
      counters.ordersPaid++;
      await emails.add(confirmation(orderId, customer, item), { jobId: `confirm-${orderId}` });
      return reply.code(201).send({ orderId, chargeId: charge.chargeId });
    }),
  );

  app.get('/health', async () => ({
    ok: true,
    payments: paymentBreaker.state,
    checkoutLimit: checkoutLimiter.limit,
  }));

  // --- errors to HTTP: 503 + Retry-After for load shed and open circuits, 504 for timeouts ----
  const jitter = Math.random;
  const unavailable = (reply: FastifyReply, retryAfterMs: number, code: string, detail: string) =>
    reply
      .code(503)
      // Whole seconds, at least 1, spread by up to 50% so turned-away clients do not return together.
      .header('retry-after', String(Math.max(1, Math.ceil((retryAfterMs * (1 + jitter() / 2)) / 1000))))
      .type('application/problem+json')
      .send({ type: 'about:blank', title: 'Service Unavailable', status: 503, code, detail });
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error.validation !== undefined) return reply.code(400).send({ error: error.message });
    if (isBulkheadFullError(error)) {
      return unavailable(
        reply,
        error.retryAfter,
        error.code,
        'too many checkouts at once; try again shortly',
      );
    }
    if (isCircuitOpenError(error)) {
      return unavailable(reply, error.retryAfter, error.code, 'payments are unavailable; try again shortly');
    }
    if (error instanceof UpstreamError) {
      return reply
        .code(502)
        .type('application/problem+json')
        .send({ type: 'about:blank', title: 'Bad Gateway', status: 502, detail: error.message });
    }
    if (isTimeoutError(error)) {
      return reply.code(504).type('application/problem+json').send({ title: 'Gateway Timeout', status: 504 });
    }
    return reply.code(500).send({ error: 'internal error' });
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
        stillQueued = s.waiting + s.active + s.delayed;
        if (stillQueued === 0 || performance.now() >= deadline) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async close() {
      await app.close();
      await emails.close({ timeout: '2s' });
      if (redis !== undefined) {
        await cache.clear();
        await redis.del(...redisQueueKeys(queueName, namespace));
      }
      await cache.close();
      await checkoutLimiter.close();
      await paymentBreaker.close();
    },
    details: () => {
      const c = cache.stats();
      const r = paymentRetry.stats();
      return {
        cacheHits: c.l1Hits + c.l2Hits + c.gracedHits,
        cacheL2Hits: c.l2Hits,
        cacheLoads: c.loads,
        breakerOpened,
        paymentRetries: r.retries,
        budgetRefusals: r.budgetRefusals,
        checkoutLimit: checkoutLimiter.limit,
        stillQueued,
      };
    },
  };
}
