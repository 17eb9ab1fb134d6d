/**
 * The side-by-side table and the verdict. The verdict is built from the numbers of the two runs:
 * each sentence compares them and says what it finds, whichever way it goes.
 */
import type { RunResult } from './scenario.js';
import type { Observed } from './surge.js';

export interface Summary {
  requests: number;
  ok: number;
  /** Successful answers per second of the run. */
  throughput: number;
  /** Latency percentiles; a request that timed out counts as the timeout (the shopper gave up then). */
  p50: number;
  p99: number;
  /** Checkouts and product reads separately. */
  browseP99: number;
  buyP99: number;
  /** Failures a shopper saw: 5xx other than 503, timeouts, connection errors. */
  errors: number;
  /** 503 answers with Retry-After (load shed, or payments paused), fast by design. */
  shed: number;
  /** Of those: over the checkout limit, and while the payments circuit was open. */
  shedByLimiter: number;
  shedByBreaker: number;
  /** Latency of the limiter's rejections, and of the breaker's (which may follow a failed attempt). */
  limiterP50: number;
  limiterP99: number;
  breakerP50: number;
  /** Product pages the response cache answered without running the handler. */
  pagesFromCache: number;
  ordersPaid: number;
  /** Customers the provider charged for whom the store recorded no order. */
  chargedWithoutOrder: number;
  checkoutsAttempted: number;
  dbReads: number;
  dbWrites: number;
  paymentCalls: number;
  paymentFailures: number;
  paymentCallsWhileDown: number;
  paymentDownMs: number;
  /** When the provider came back, ms into the run. */
  paymentBackAt: number;
  surgeEndsAt: number;
  emailsSent: number;
  emailsLost: number;
}

export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const count = (o: Observed, match: (status: number) => boolean) => {
  let n = 0;
  for (const [status, times] of o.statuses) if (match(status)) n += times;
  return n;
};

export function summarize(run: RunResult): Summary {
  const { browse, buy } = run.load;
  const answered = browse.latencies.length + buy.latencies.length;
  // A shopper who gave up waited the whole timeout: leaving them out would flatter a slow store.
  const withTimeouts = (o: Observed) => [
    ...o.latencies,
    ...Array(o.timeouts).fill(run.profile.timeoutS * 1000),
  ];
  const all = [...withTimeouts(browse), ...withTimeouts(buy)];
  const shedLatencies = (code: string) => [
    ...(browse.shedLatencies.get(code) ?? []),
    ...(buy.shedLatencies.get(code) ?? []),
  ];
  const noAnswer = browse.timeouts + buy.timeouts + browse.connectionErrors + buy.connectionErrors;
  const ok = count(browse, (s) => s < 400) + count(buy, (s) => s < 400);
  const shedBy = (code: string) => (browse.shed.get(code) ?? 0) + (buy.shed.get(code) ?? 0);
  let shed = 0;
  for (const o of [browse, buy]) for (const n of o.shed.values()) shed += n;
  // A 503 without Retry-After is a failure, not a deliberate refusal.
  const serverErrors = count(browse, (s) => s >= 500) + count(buy, (s) => s >= 500) - shed;
  return {
    requests: answered + noAnswer,
    ok,
    throughput: ok / (run.profile.durationMs / 1000),
    p50: percentile(all, 0.5),
    p99: percentile(all, 0.99),
    browseP99: percentile(withTimeouts(browse), 0.99),
    buyP99: percentile(withTimeouts(buy), 0.99),
    errors: serverErrors + noAnswer,
    shed,
    shedByLimiter: shedBy('E_BULKHEAD_FULL'),
    shedByBreaker: shedBy('E_CIRCUIT_OPEN'),
    limiterP50: percentile(shedLatencies('E_BULKHEAD_FULL'), 0.5),
    limiterP99: percentile(shedLatencies('E_BULKHEAD_FULL'), 0.99),
    breakerP50: percentile(shedLatencies('E_CIRCUIT_OPEN'), 0.5),
    pagesFromCache: browse.cacheHits,
    ordersPaid: run.counters.ordersPaid,
    chargedWithoutOrder: Math.max(0, run.payments.charged - run.counters.ordersPaid),
    checkoutsAttempted: buy.latencies.length + buy.timeouts + buy.connectionErrors,
    dbReads: run.db.reads,
    dbWrites: run.db.writes,
    paymentCalls: run.payments.calls,
    paymentFailures: run.payments.failures,
    paymentCallsWhileDown: run.payments.callsWhileDown,
    paymentDownMs: run.payments.downMs,
    paymentBackAt: run.profile.brownout.from + run.payments.downMs,
    surgeEndsAt: run.profile.surge.until,
    emailsSent: run.emails.sent,
    emailsLost: run.counters.ordersPaid - run.emails.sent,
  };
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (n >= 100 ? int(n) : n.toFixed(1)) + ' ms';
const secs = (n: number) => (n / 1000).toFixed(1) + ' s';

/** The table's rows: label, then one cell per run. */
export function tableRows(a: Summary, b: Summary): string[][] {
  const row = (label: string, f: (s: Summary) => string) => [label, f(a), f(b)];
  return [
    row('requests sent', (s) => int(s.requests)),
    row('throughput (2xx/s)', (s) => int(s.throughput)),
    row('latency p50', (s) => ms(s.p50)),
    row('latency p99', (s) => ms(s.p99)),
    row('  product pages p99', (s) => ms(s.browseP99)),
    row('  checkouts p99', (s) => ms(s.buyP99)),
    row('errors (5xx, timeouts)', (s) => int(s.errors)),
    row('503 + Retry-After (shed)', (s) =>
      s.shed === 0
        ? '0'
        : `${int(s.shed)} (${int(s.shedByLimiter)} limiter, ${int(s.shedByBreaker)} breaker)`,
    ),
    row('database calls', (s) => `${int(s.dbReads + s.dbWrites)} (${int(s.dbReads)} reads)`),
    row('payment calls', (s) => `${int(s.paymentCalls)} (${int(s.paymentFailures)} failed)`),
    row('payments down for', (s) => secs(s.paymentDownMs)),
    row('orders paid', (s) => int(s.ordersPaid)),
    row('charged, but no order', (s) => int(s.chargedWithoutOrder)),
    row(
      'emails sent',
      (s) => `${int(s.emailsSent)}${s.emailsLost > 0 ? ` (${int(s.emailsLost)} lost)` : ''}`,
    ),
  ];
}

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ');
  const rule = widths.map((w) => '-'.repeat(w)).join('   ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** How many times `x` is `y`, in words: "3.2x", or "about the same". */
const times = (x: number, y: number) => {
  if (y === 0) return x === 0 ? 'the same' : 'infinitely';
  const r = x / y;
  return r >= 10 ? `${int(r)}x` : `${r.toFixed(1)}x`;
};

/**
 * Plain words from the numbers of the unprotected run `a` and the protected run `b`. Each
 * sentence compares one thing and says which way it went, with a margin so that run-to-run
 * noise does not flip a word: "about the same" within 10%.
 */
export function verdict(a: Summary, b: Summary, protectedRun: RunResult): string[] {
  const d = protectedRun.details;
  const out: string[] = [];
  const better = (x: number, y: number) => x > y * 1.1;

  // Throughput and latency.
  if (better(b.throughput, a.throughput)) {
    out.push(
      `With buttress the store served ${times(b.throughput, a.throughput)} as many successful requests ` +
        `per second (${int(b.throughput)} against ${int(a.throughput)}), and ${latencyWords(a, b)}.`,
    );
  } else if (better(a.throughput, b.throughput)) {
    out.push(
      `With buttress the store served fewer successful requests per second (${int(b.throughput)} against ` +
        `${int(a.throughput)}), and ${latencyWords(a, b)}.`,
    );
  } else {
    out.push(
      `Both stores served about as many successful requests per second (${int(b.throughput)} and ` +
        `${int(a.throughput)}), and ${latencyWords(a, b)}.`,
    );
  }

  // The database.
  const dbA = a.dbReads;
  const dbB = b.dbReads;
  const fromRedis = (n: number) => (n > 0 ? ` (${int(n)} of them from Redis)` : '');
  if (dbB < dbA) {
    out.push(
      `The database answered ${int(dbB)} product reads instead of ${int(dbA)} (${times(dbA, dbB)} fewer): ` +
        `${int(b.pagesFromCache)} product pages came from the response cache without running their ` +
        `handler${fromRedis(d.pageL2Hits ?? 0)}, shoppers asking at once for a page not yet cached sharing ` +
        `one handler run (single-flight), and the product cache served ${int(d.cacheHits ?? 0)} more reads ` +
        `to handlers and checkouts${fromRedis(d.cacheL2Hits ?? 0)}` +
        (protectedRun.counters.sharedLoads > 0
          ? `, ${int(protectedRun.counters.sharedLoads)} of which joined a query already running.`
          : '.'),
    );
  } else {
    out.push(`The caches did not spare the database: ${int(dbB)} product reads against ${int(dbA)}.`);
  }

  // Shedding and errors.
  if (b.shed > 0) {
    out.push(
      `${int(b.shed)} requests were turned away on purpose, with 503 and Retry-After: ` +
        `${int(b.shedByLimiter)} checkouts over the concurrency the adaptive limiter learned the payment ` +
        `provider could take (${int(d.checkoutLimit ?? 0)} at the end), answered in ${ms(b.limiterP50)} at the median ` +
        `(p99 ${ms(b.limiterP99)}), and ${int(b.shedByBreaker)} while the payments circuit was open ` +
        `(p50 ${ms(b.breakerP50)}; some had waited for a failed attempt first).`,
    );
  }
  const errorWords = (n: number) => (n === 1 ? '1 error or timeout' : `${int(n)} errors or timeouts`);
  if (b.errors === 0 && a.errors > 0) {
    out.push(`Shoppers saw no errors or timeouts with buttress, against ${errorWords(a.errors)} without.`);
  } else if (b.errors < a.errors) {
    out.push(`Shoppers saw ${errorWords(b.errors)} with buttress, against ${errorWords(a.errors)} without.`);
  } else {
    out.push(
      `Shoppers saw more failures with buttress: ${errorWords(b.errors)}, against ${int(a.errors)} without.`,
    );
  }

  // Payments.
  const opened = d.breakerOpened ?? 0;
  const back = (x: Summary) =>
    x.paymentBackAt > x.surgeEndsAt
      ? `came back only at ${secs(x.paymentBackAt)}, after the surge had ended`
      : `came back at ${secs(x.paymentBackAt)}`;
  const whileDown =
    b.paymentCallsWhileDown < a.paymentCallsWhileDown
      ? `it received ${int(b.paymentCallsWhileDown)} calls while down instead of ${int(a.paymentCallsWhileDown)}`
      : `it still received ${int(b.paymentCallsWhileDown)} calls while down (${int(a.paymentCallsWhileDown)} without buttress)`;
  out.push(
    (opened > 0
      ? `When the payment provider went down, the payments breaker opened (${int(opened)} times in all, ` +
        `re-opening after failed trial calls) and ${whileDown}. `
      : `The payments breaker never opened, and ${whileDown}. `) +
      `With buttress the provider ${back(b)} (down ${secs(b.paymentDownMs)}); without, it ${back(a)} ` +
      `(down ${secs(a.paymentDownMs)}). Failed charges were retried ${int(d.paymentRetries ?? 0)} times ` +
      `with the order id as idempotency key, and the retry budget refused ${int(d.budgetRefusals ?? 0)} more.`,
  );
  const paidWords = better(b.ordersPaid, a.ordersPaid)
    ? `${int(b.ordersPaid)} orders were paid instead of ${int(a.ordersPaid)}`
    : `${int(b.ordersPaid)} orders were paid (${int(a.ordersPaid)} without buttress)`;

  // Emails.
  const queued = d.stillQueued ?? 0;
  const emailWords =
    b.emailsLost === 0
      ? `every one of them got its confirmation email through the queue` +
        (protectedRun.settleMs >= 50 ? `, the last ${secs(protectedRun.settleMs)} after the surge` : '')
      : `${int(b.emailsLost)} of them are missing their email` +
        (queued > 0 ? ` (${int(queued)} still queued when the demo stopped waiting)` : '');
  const charged = (x: Summary) => (x.chargedWithoutOrder === 0 ? 'none' : `${int(x.chargedWithoutOrder)}`);
  const refunded = d.refunds ?? 0;
  if (a.chargedWithoutOrder + b.chargedWithoutOrder + refunded > 0) {
    out.push(
      `Customers charged without an order (the charge went through, then the store failed): ` +
        `${charged(b)} with buttress, ${charged(a)} without` +
        (refunded > 0
          ? `; with buttress ${int(refunded)} such ${refunded === 1 ? 'charge was' : 'charges were'} refunded through the queue.`
          : '.'),
    );
  }
  out.push(
    `${paidWords}; ${emailWords}` +
      (a.emailsLost > 0
        ? `, where sending it inside the request lost ${int(a.emailsLost)} emails to the mailer's hiccups.`
        : '.'),
  );
  return out;
}

function latencyWords(a: Summary, b: Summary): string {
  if (b.p99 < a.p99 * 0.9) return `its p99 latency was ${ms(b.p99)} instead of ${ms(a.p99)}`;
  if (b.p99 > a.p99 * 1.1) return `its p99 latency was higher: ${ms(b.p99)} against ${ms(a.p99)}`;
  return `its p99 latency was about the same (${ms(b.p99)} against ${ms(a.p99)})`;
}

/** Breaks `text` into lines of at most `width` characters. */
export function wrapText(text: string, width = 100): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return [...lines, line].join('\n');
}
