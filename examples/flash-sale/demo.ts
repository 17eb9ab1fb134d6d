/**
 * A flash sale, with and without buttress, in about a minute:
 *
 *   npm run demo             # about a minute
 *   npm run demo -- --quick  # about 13 s
 *
 * An online store API (Fastify) whose product pages read a slow database, and whose checkout
 * charges a flaky payment provider and sends a confirmation email. autocannon drives the same
 * surge of shoppers twice over loopback: first against plain handlers (./unprotected.ts), then
 * against the same routes protected by buttress (./protected.ts). Then a side-by-side table.
 *
 * Needs no services: the database, the payment provider and the mailer are simulated in this
 * process (./world.ts). With DATABASE_URL set, product reads and sales go to that PostgreSQL
 * (through buttress/pool, in a table of their own that is dropped afterwards); with REDIS_URL
 * set, the protected store's cache has that Redis as L2 and its email queue runs on it.
 */
import { formatTable, summarize, tableRows, verdict, wrapText } from './report.js';
import { type Environment, runScenario } from './scenario.js';
import { fullSurge, quickSurge } from './surge.js';

const quick = process.argv.includes('--quick');
const profile = quick ? quickSurge : fullSurge;
const env: Environment = {
  databaseUrl: process.env.DATABASE_URL || undefined,
  redisUrl: process.env.REDIS_URL || undefined,
};
const s = (ms: number) => `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;

console.log(
  wrapText(
    `buttress demo: a flash sale. ${profile.baseline} shoppers browse the store; at ${s(profile.surge.from)} ` +
      `${profile.surge.shoppers} more arrive within ${s(profile.surge.rampMs)} and stay until ` +
      `${s(profile.surge.until)}, each making one request a second (${Math.round(profile.buyerShare * 100)}% ` +
      `check out, the others read product pages) and giving up after ${profile.timeoutS} s. ` +
      `The payment provider, swamped by the sale, goes down at ${s(profile.brownout.from)} and can come ` +
      `back from ${s(profile.brownout.until)}, once its load has stayed within its capacity for a second. ` +
      `Each run lasts ${s(profile.durationMs)}.`,
  ),
);
console.log(
  `\n  database: ${env.databaseUrl === undefined ? 'simulated (8 connections, 18-24 ms a product read)' : 'PostgreSQL at DATABASE_URL, through buttress/pool'}` +
    `\n  cache L2 and email queue: ${env.redisUrl === undefined ? 'in memory' : 'Redis at REDIS_URL'}` +
    `\n  payment provider and mailer: simulated in this process\n`,
);

console.log('run 1: plain handlers calling the database and the providers directly...');
const unprotected = await runScenario('unprotected', profile, env);
console.log('run 2: the same store with buttress (cache, limiter, breaker, budgeted retry, queue)...\n');
const withButtress = await runScenario('protected', profile, env);

const a = summarize(unprotected);
const b = summarize(withButtress);
console.log(formatTable(['', 'without buttress', 'with buttress'], tableRows(a, b)));
console.log(`(a request that timed out counts as ${profile.timeoutS} s in the latency rows)\n`);
for (const sentence of verdict(a, b, withButtress)) console.log(wrapText(sentence));
