/**
 * The store as it is usually first written: every handler calls the database and the providers
 * directly, and waits for them. Nothing here is wrong on a quiet day.
 */
import Fastify from 'fastify';
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

export function unprotectedStore({ db, payments, mailer }: StoreServices): Store {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const counters = newCounters();
  const nextOrder = orderIds();
  const handlers = trackHandlers(app);

  app.get<{ Params: { id: number } }>('/products/:id', productRoute, async (request, reply) => {
    const product = await db.readProduct(request.params.id);
    if (product === null) return reply.code(404).send({ error: 'no such product' });
    return product;
  });

  app.post<{ Body: CheckoutBody }>('/checkout', checkoutRoute, async (request, reply) => {
    const { productId, customer } = request.body;
    const product = await db.readProduct(productId);
    if (product === null) return reply.code(404).send({ error: 'no such product' });
    const orderId = nextOrder();
    // A failed charge surfaces as Fastify's default 500.
    const charge = await payments.charge({ idempotencyKey: orderId, amountCents: product.priceCents });
    if (!(await db.sell(productId))) return reply.code(409).send({ error: 'sold out' });
    counters.ordersPaid++;
    try {
      await mailer.send(confirmation(orderId, customer, product));
    } catch {
      // The customer has paid; failing the request now would be worse. The email is lost.
      counters.emailsLost++;
    }
    return reply.code(201).send({ orderId, chargeId: charge.chargeId });
  });

  app.get('/health', async () => ({ ok: true }));

  return {
    app,
    counters,
    settle: (timeoutMs) => handlers.idle(timeoutMs),
    close: () => app.close(),
    details: () => ({}),
  };
}
