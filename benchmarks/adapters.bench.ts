/**
 * The HTTP adapters' cached hit path against the bare framework route, over real HTTP on
 * loopback, driven by autocannon in the same process (one process, as the issue asks: the
 * servers and the load generator share the same two cores, for every contender alike).
 *
 * - bare: the route's handler returns the body itself (Fastify serializes it, Express's
 *   `res.json` serializes it and computes its ETag): the cheapest the framework answers.
 * - buttress hit: the same route behind the response cache, after one request filled it. Every
 *   request of the run is then a hit: key, L1 lookup, headers (ETag, Age, Cache-Control,
 *   Cache-Status) and the stored bytes. The handler must not run again (checked).
 *
 * A sample is one autocannon run (`connections` keep-alive connections, no pipelining) against
 * one contender; rounds interleave the contenders in a rotating order, and each contender's
 * median over the rounds is kept. The measure is the process's CPU time per request (user +
 * system, `process.cpuUsage()`), load generator included, the same for both: on a shared 2-core
 * machine a run's wall-clock throughput mostly measures how much CPU the scheduler gave the
 * process, which other jobs decide. Requests per second are printed beside it. Goal: a hit costs
 * at most 10% more than the bare route (ratio <= 1.1), i.e. its throughput is within 10%.
 */
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import express from 'express';
import Fastify from 'fastify';
import { responseCache } from '../src/adapters/express/index.js';
import { buttress } from '../src/adapters/fastify/index.js';
import { createCache } from '../src/cache/index.js';
import { type Bench, type BenchContext, type BenchRow, quantile, row } from './harness.js';

const BENCH = 'adapters';
const BODY = { id: 42, name: 'Espresso machine', price: 349.9, tags: ['kitchen', 'coffee'], stock: 17 };

interface Target {
  readonly name: string;
  readonly url: string;
  /** Handler runs so far: a hit contender must stay at one. */
  runs(): number;
}

/** One run: CPU ns of this process per request, and requests per second. */
async function load(
  url: string,
  seconds: number,
  connections: number,
): Promise<{ cpu: number; rps: number }> {
  const cpu = process.cpuUsage();
  const result = await autocannon({ url, connections, duration: seconds, pipelining: 1 });
  const used = process.cpuUsage(cpu);
  if (result.errors !== 0 || result.timeouts !== 0 || result.non2xx !== 0) {
    throw new Error(`${url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx`);
  }
  const requests = result.requests.total;
  return { cpu: ((used.user + used.system) * 1000) / requests, rps: requests / result.duration };
}

async function sample(
  context: BenchContext,
  caseName: string,
  targets: readonly Target[],
  seconds: number,
  rounds: number,
  connections: number,
): Promise<Map<string, number>> {
  const samples = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  const rates = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  for (const t of targets) await load(t.url, Math.max(1, seconds / 2), connections); // warm-up: JIT, sockets
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(r + k) % targets.length]!;
      const { cpu, rps } = await load(t.url, seconds, connections);
      samples.get(t.name)!.push(cpu);
      rates.get(t.name)!.push(rps);
    }
  }
  const medians = new Map<string, number>();
  const round1 = (x: number) => Math.round(x * 10) / 10;
  for (const [name, s] of samples) medians.set(name, quantile(s, 0.5));
  context.record({
    bench: BENCH,
    case: caseName,
    rounds,
    ops: Object.fromEntries(targets.map((t) => [t.name, connections])),
    median_ns: Object.fromEntries([...medians].map(([k, v]) => [k, round1(v)])),
    iqr_ns: Object.fromEntries(
      [...samples].map(([k, s]) => [k, round1(quantile(s, 0.75) - quantile(s, 0.25))]),
    ),
  });
  for (const [name, ns] of medians) {
    const rps = quantile(rates.get(name)!, 0.5);
    console.log(
      `  ${name}: ${Math.round(ns).toLocaleString('en')} CPU ns/request, ${Math.round(rps).toLocaleString('en')} req/s`,
    );
  }
  return medians;
}

async function fastifyTargets(cleanups: (() => Promise<unknown>)[]): Promise<Target[]> {
  let bareRuns = 0;
  let cachedRuns = 0;
  const cache = createCache({ namespace: 'bench-fastify', ttl: '1h' });
  const app = Fastify({ logger: false });
  await app.register(buttress, { cache });
  app.get('/bare', async () => {
    bareRuns++;
    return BODY;
  });
  app.get('/cached', { config: { buttress: { cache: { ttl: '1h' } } } }, async () => {
    cachedRuns++;
    return BODY;
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(async () => {
    await app.close();
    await cache.close();
  });
  const { port } = app.server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  await fetch(`${base}/cached`);
  return [
    { name: 'fastify bare route', url: `${base}/bare`, runs: () => bareRuns },
    { name: 'fastify buttress hit', url: `${base}/cached`, runs: () => cachedRuns },
  ];
}

async function expressTargets(cleanups: (() => Promise<unknown>)[]): Promise<Target[]> {
  let bareRuns = 0;
  let cachedRuns = 0;
  const cache = createCache({ namespace: 'bench-express', ttl: '1h' });
  const app = express();
  app.get('/bare', (_req, res) => {
    bareRuns++;
    res.json(BODY);
  });
  app.get('/cached', responseCache({ cache, ttl: '1h' }), (_req, res) => {
    cachedRuns++;
    res.json(BODY);
  });
  const server = await new Promise<import('node:http').Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  cleanups.push(async () => {
    await new Promise((resolve) => server.close(resolve));
    await cache.close();
  });
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  await fetch(`${base}/cached`);
  return [
    { name: 'express bare route', url: `${base}/bare`, runs: () => bareRuns },
    { name: 'express buttress hit', url: `${base}/cached`, runs: () => cachedRuns },
  ];
}

const bench: Bench = {
  name: BENCH,
  async run(context) {
    const rows: BenchRow[] = [];
    const cases = [
      { name: 'fastify: cached hit vs bare route', make: fastifyTargets, framework: 'fastify' },
      { name: 'express: cached hit vs bare route', make: expressTargets, framework: 'express' },
    ].filter((c) => context.selected(c.name));
    const seconds = context.quick ? 1 : 4;
    const rounds = context.quick ? 3 : 7;
    const connections = 32;
    for (const c of cases) {
      const cleanups: (() => Promise<unknown>)[] = [];
      try {
        const targets = await c.make(cleanups);
        console.log(`${BENCH} ${c.name} (${connections} connections, ${rounds} × ${seconds} s each)`);
        const m = await sample(context, c.name, targets, seconds, rounds, connections);
        const hit = targets[1]!;
        if (hit.runs() !== 1) throw new Error(`${hit.name}: the handler ran ${hit.runs()} times, not once`);
        rows.push(
          row(BENCH, c.name, [hit.name, m.get(hit.name)!], [targets[0]!.name, m.get(targets[0]!.name)!], 1.1),
        );
      } finally {
        for (const cleanup of cleanups.reverse()) await cleanup();
      }
    }
    return rows;
  },
};

export default bench;
