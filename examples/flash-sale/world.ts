/**
 * The world the store lives in: its database, the payment provider and the email provider.
 *
 * On embedded defaults all three are simulated in this process, with seeded randomness, so both
 * runs of the demo meet the same world. With `DATABASE_URL` set the database is the real
 * PostgreSQL, reached through `buttress/pool`. The two providers are always simulated: they are
 * other companies' services, and what matters is how they behave under a surge (below).
 */
import { createPgCluster, type PgCluster } from '../../src/pool/index.js';

/** A seeded random source (mulberry32), so every run draws the same numbers in the same order. */
export function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A uniform draw in `[min, max]`. */
const between = (random: () => number, [min, max]: readonly [number, number]) => min + (max - min) * random();

export interface Product {
  id: number;
  name: string;
  priceCents: number;
  stock: number;
}

/** The sale's catalogue: the same products, prices and stock in every run. */
export function catalogue(count: number): Product[] {
  const random = seededRandom(7);
  const kinds = ['sneakers', 'headphones', 'backpack', 'watch', 'jacket', 'lamp', 'kettle', 'drone'];
  return Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    name: `${kinds[i % kinds.length]} #${i + 1}`,
    priceCents: 1999 + Math.floor(random() * 20_000),
    stock: 1_000_000,
  }));
}

/**
 * An error a provider answers with: 503 when it is down or overloaded, 429 when it throttles.
 * (Named `upstreamStatus`, not `status`, so that Fastify does not pass the provider's status on
 * to the shopper: the store answers for itself.)
 */
export class UpstreamError extends Error {
  constructor(
    readonly service: string,
    readonly upstreamStatus: number,
  ) {
    super(`${service} answered ${upstreamStatus}`);
    this.name = 'UpstreamError';
  }
}

// ---------------------------------------------------------------------------------------------
// The database

/** What the store needs from its database, and the number of statements it sent. */
export interface Database {
  readonly kind: 'simulated' | 'postgresql';
  /** The table it created (PostgreSQL only). */
  readonly table?: string;
  /** Statements sent so far: product reads and sales. */
  readonly reads: number;
  readonly writes: number;
  /** The product page's query: the product with its stock (an expensive join in a real shop). */
  readProduct(id: number, signal?: AbortSignal): Promise<Product | null>;
  /** Sells one unit; false when the product is sold out. */
  sell(id: number): Promise<boolean>;
  close(): Promise<void>;
}

/** How the simulated database behaves. */
export interface SimulatedDatabaseOptions {
  /** Connections in its pool: statements run at most this many at once, the others wait. */
  connections: number;
  /** Time a product read holds a connection, ms. */
  readMs: readonly [number, number];
  /** Time a sale holds a connection, ms. */
  writeMs: readonly [number, number];
  /** A statement that waited this long for a connection fails (pg-pool's acquire timeout). */
  acquireTimeoutMs: number;
}

export const databaseDefaults: SimulatedDatabaseOptions = {
  connections: 8,
  readMs: [18, 24],
  writeMs: [3, 5],
  acquireTimeoutMs: 2_000,
};

/** The database is out of connections: a caller waited `acquireTimeoutMs` for one. */
export class DatabaseBusyError extends Error {
  constructor(waited: number) {
    super(`no database connection within ${waited} ms`);
    this.name = 'DatabaseBusyError';
  }
}

/**
 * A database with a fixed pool of connections, in this process: a statement holds a connection
 * for its service time; when every connection is busy, statements wait in line (FIFO), and a
 * statement that waits longer than the acquire timeout fails. So its throughput is capped at
 * `connections / service time`, and beyond that the line, and every caller's latency, grows.
 */
export class SimulatedDatabase implements Database {
  readonly kind = 'simulated';
  reads = 0;
  writes = 0;
  readonly #options: SimulatedDatabaseOptions;
  readonly #products: Map<number, Product>;
  readonly #random = seededRandom(11);
  #busy = 0;
  readonly #line: Array<{ grant: () => void; timer: NodeJS.Timeout }> = [];

  constructor(products: readonly Product[], options: Partial<SimulatedDatabaseOptions> = {}) {
    this.#options = { ...databaseDefaults, ...options };
    this.#products = new Map(products.map((p) => [p.id, { ...p }]));
  }

  async readProduct(id: number): Promise<Product | null> {
    this.reads++;
    await this.#statement(this.#options.readMs);
    const product = this.#products.get(id);
    return product === undefined ? null : { ...product };
  }

  async sell(id: number): Promise<boolean> {
    this.writes++;
    await this.#statement(this.#options.writeMs);
    const product = this.#products.get(id);
    if (product === undefined || product.stock === 0) return false;
    product.stock--;
    return true;
  }

  async close(): Promise<void> {}

  async #statement(serviceMs: readonly [number, number]): Promise<void> {
    await this.#acquire();
    try {
      await sleep(between(this.#random, serviceMs));
    } finally {
      this.#release();
    }
  }

  #acquire(): Promise<void> {
    if (this.#busy < this.#options.connections) {
      this.#busy++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          this.#line.splice(this.#line.indexOf(waiter), 1);
          reject(new DatabaseBusyError(this.#options.acquireTimeoutMs));
        }, this.#options.acquireTimeoutMs),
      };
      this.#line.push(waiter);
    });
  }

  #release(): void {
    const next = this.#line.shift();
    // The connection goes straight to the next in line, so #busy stays the same.
    if (next === undefined) this.#busy--;
    else next.grant();
  }
}

/**
 * The real PostgreSQL, through `buttress/pool`: a table of its own with a random suffix, created
 * here and dropped by `close()`. `pg_sleep` in the product query stands for the expensive part of
 * a real product page (joins, stock, reviews), so a read takes about as long as the simulated one.
 */
export class PostgresDatabase implements Database {
  readonly kind = 'postgresql';
  reads = 0;
  writes = 0;
  readonly table: string;
  readonly #db: PgCluster;
  readonly #readSeconds: number;

  private constructor(db: PgCluster, table: string, readMs: number) {
    this.#db = db;
    this.table = table;
    this.#readSeconds = readMs / 1000;
  }

  static async open(
    url: string,
    products: readonly Product[],
    options: Partial<SimulatedDatabaseOptions> = {},
  ): Promise<PostgresDatabase> {
    const o = { ...databaseDefaults, ...options };
    const { default: pg } = await import('pg');
    const db = createPgCluster({
      Pool: pg.Pool,
      primary: { connectionString: url, max: o.connections },
      acquireTimeout: o.acquireTimeoutMs,
      // Callers wait in line as with the simulated database; the acquire timeout bounds the wait.
      maxWaiting: 100_000,
      name: 'flash-sale',
    });
    const table = `flash_sale_${Math.random().toString(36).slice(2, 10)}`;
    try {
      await db.query(
        `CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL, stock int NOT NULL)`,
      );
      await db.query(
        `INSERT INTO ${table} (id, name, price_cents, stock) SELECT * FROM unnest($1::int[], $2::text[], $3::int[], $4::int[])`,
        [
          products.map((p) => p.id),
          products.map((p) => p.name),
          products.map((p) => p.priceCents),
          products.map((p) => p.stock),
        ],
      );
    } catch (error) {
      await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await db.end();
      throw error;
    }
    return new PostgresDatabase(db, table, (o.readMs[0] + o.readMs[1]) / 2);
  }

  async readProduct(id: number, signal?: AbortSignal): Promise<Product | null> {
    this.reads++;
    const { rows } = await this.#db.query<{ id: number; name: string; price_cents: number; stock: number }>(
      `SELECT id, name, price_cents, stock, pg_sleep($2)::text AS _ FROM ${this.table} WHERE id = $1`,
      [id, this.#readSeconds],
      signal === undefined ? undefined : { signal },
    );
    const row = rows[0];
    return row === undefined
      ? null
      : { id: row.id, name: row.name, priceCents: row.price_cents, stock: row.stock };
  }

  async sell(id: number): Promise<boolean> {
    this.writes++;
    const { rows } = await this.#db.query(
      `UPDATE ${this.table} SET stock = stock - 1 WHERE id = $1 AND stock > 0 RETURNING stock`,
      [id],
    );
    return rows.length === 1;
  }

  async close(): Promise<void> {
    try {
      await this.#db.query(`DROP TABLE IF EXISTS ${this.table}`);
    } finally {
      await this.#db.end({ timeout: '5s' });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The payment provider

/** How the simulated payment provider behaves. */
export interface PaymentServiceOptions {
  /** Charges it processes at once at full speed. */
  capacity: number;
  /** A charge's latency within capacity, ms. */
  latencyMs: readonly [number, number];
  /** Share of charges that fail with a transient 503 even when it is healthy. */
  flakiness: number;
  /**
   * When the sale's traffic from every shop swamps it (ms since the start of the run): from then
   * on it is down, answering slowly and mostly 503, until `until` has passed and it has spent
   * `recoveryMs` in a row at or under its capacity.
   */
  brownout: { from: number; until: number } | undefined;
  recoveryMs: number;
  /** A charge's latency while it is down, ms, and the share of those that fail. */
  downLatencyMs: readonly [number, number];
  downFailureRate: number;
}

export const paymentDefaults: PaymentServiceOptions = {
  capacity: 4,
  latencyMs: [40, 60],
  flakiness: 0.03,
  brownout: undefined,
  recoveryMs: 1_000,
  downLatencyMs: [250, 350],
  downFailureRate: 0.8,
};

export interface Charge {
  chargeId: string;
  amountCents: number;
}

/**
 * A payment provider that degrades and fails under a surge, and recovers.
 *
 * - Within `capacity` concurrent charges it answers in `latencyMs`, and `flakiness` of the
 *   charges fail with a transient 503 (a retry usually succeeds).
 * - Beyond capacity it shares itself among the charges in flight: each one takes
 *   `in flight / capacity` times longer. Beyond twice its capacity it also fails a share
 *   `(in flight - 2 × capacity) / in flight` of them with 503 after that wait (its workers time
 *   out): first slow, then failing.
 * - During the brownout it is down: slow and mostly failing. It comes back only once the
 *   brownout has passed and it has had `recoveryMs` without more than `capacity` charges at once:
 *   a shop that keeps hammering it keeps it down.
 *
 * Charges are idempotent by key, as real payment APIs are: a retry of a charge that went through
 * returns the same charge, and the customer is charged once.
 */
export class PaymentService {
  /** Charge requests that reached it, those it failed, and those that reached it while it was down. */
  calls = 0;
  failures = 0;
  callsWhileDown = 0;
  /** Customers charged (distinct idempotency keys that succeeded). */
  readonly charged = new Map<string, Charge>();
  readonly #options: PaymentServiceOptions;
  readonly #random = seededRandom(23);
  #start = performance.now();
  #inflight = 0;
  #down = false;
  #recovered = false;
  #downSince = 0;
  #calmSince = 0;
  /** Length of the brownout once it is over, ms. */
  #downMs = 0;
  #seq = 0;

  constructor(options: Partial<PaymentServiceOptions> = {}) {
    this.#options = { ...paymentDefaults, ...options };
  }

  /** Charges refunded (voided) by idempotency key. */
  refunds = 0;

  /**
   * Refunds the charge made under `idempotencyKey`, if there is one; true when there was. A
   * separate, light endpoint: it answers even while charging is down.
   */
  async refund(idempotencyKey: string): Promise<boolean> {
    await sleep(between(this.#random, [2, 5]));
    if (!this.charged.delete(idempotencyKey)) return false;
    this.refunds++;
    return true;
  }

  /** Starts the clock its brownout is scheduled on (it also starts at construction). */
  begin(now = performance.now()): void {
    this.#start = now;
    this.#calmSince = now;
  }

  /** Charge requests in flight now. */
  get inflight(): number {
    return this.#inflight;
  }

  /** How long it has been down in all, in ms. */
  get downMs(): number {
    const now = performance.now();
    this.#updateHealth(now);
    return this.#down ? now - this.#downSince : this.#downMs;
  }

  async charge(request: { idempotencyKey: string; amountCents: number }): Promise<Charge> {
    this.calls++;
    const o = this.#options;
    this.#updateHealth(performance.now());
    const inflight = ++this.#inflight;
    if (inflight > o.capacity) this.#calmSince = Number.POSITIVE_INFINITY;
    let latency: number;
    let fails: boolean;
    if (this.#down) {
      this.callsWhileDown++;
      latency = between(this.#random, o.downLatencyMs);
      fails = this.#random() < o.downFailureRate;
    } else {
      const stretch = Math.max(1, inflight / o.capacity);
      latency = between(this.#random, o.latencyMs) * stretch;
      const overloadFailure = Math.max(0, (inflight - 2 * o.capacity) / inflight);
      fails = this.#random() < Math.max(o.flakiness, overloadFailure);
    }
    try {
      await sleep(latency);
    } finally {
      if (--this.#inflight === o.capacity) this.#calmSince = performance.now();
    }
    if (fails) {
      this.failures++;
      throw new UpstreamError('payments', 503);
    }
    let charge = this.charged.get(request.idempotencyKey);
    if (charge === undefined) {
      charge = { chargeId: `ch_${++this.#seq}`, amountCents: request.amountCents };
      this.charged.set(request.idempotencyKey, charge);
    }
    return charge;
  }

  /** Starts the brownout on schedule, and ends it at the first moment it may recover. */
  #updateHealth(now: number): void {
    const brownout = this.#options.brownout;
    if (brownout === undefined) return;
    if (!this.#down && !this.#recovered && now >= this.#start + brownout.from) {
      this.#down = true;
      this.#downSince = this.#start + brownout.from;
    }
    if (this.#down && this.#inflight <= this.#options.capacity) {
      const recoverAt = Math.max(this.#start + brownout.until, this.#calmSince + this.#options.recoveryMs);
      if (now >= recoverAt) {
        this.#down = false;
        this.#recovered = true;
        this.#downMs = recoverAt - this.#downSince;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The email provider

export interface MailerOptions {
  /** Sends it accepts at once; more are refused with 429 at once. */
  concurrency: number;
  latencyMs: readonly [number, number];
  /** Share of sends that fail with a transient 503. */
  flakiness: number;
}

export const mailerDefaults: MailerOptions = { concurrency: 10, latencyMs: [15, 30], flakiness: 0.05 };

/** A transactional email API: a little slow, a little flaky, and it throttles bursts. */
export class Mailer {
  calls = 0;
  failures = 0;
  /** Emails delivered, by idempotency key (a resend of a delivered email is not a second email). */
  readonly delivered = new Set<string>();
  readonly #options: MailerOptions;
  readonly #random = seededRandom(31);
  #inflight = 0;

  constructor(options: Partial<MailerOptions> = {}) {
    this.#options = { ...mailerDefaults, ...options };
  }

  async send(email: { idempotencyKey: string; to: string; subject: string }): Promise<void> {
    this.calls++;
    if (this.#inflight >= this.#options.concurrency) {
      this.failures++;
      throw new UpstreamError('mailer', 429);
    }
    this.#inflight++;
    const fails = this.#random() < this.#options.flakiness;
    try {
      await sleep(between(this.#random, this.#options.latencyMs));
    } finally {
      this.#inflight--;
    }
    if (fails) {
      this.failures++;
      throw new UpstreamError('mailer', 503);
    }
    this.delivered.add(email.idempotencyKey);
  }
}
