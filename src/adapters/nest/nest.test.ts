import 'reflect-metadata';
import {
  BadRequestException,
  Controller,
  Get,
  Header,
  type INestApplication,
  Inject,
  Injectable,
  Param,
  Res,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Response } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreaker } from '../../breaker/circuit-breaker.js';
import { consecutive } from '../../breaker/strategies/consecutive.js';
import { bulkhead } from '../../bulkhead/bulkhead.js';
import { RateLimitedError } from '../../bulkhead/errors.js';
import { type Cache, createCache } from '../../cache/cache.js';
import { memoryBackend } from '../../queue/memory-backend.js';
import { createQueue, type Queue } from '../../queue/queue.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { deferred, until } from '../http/test-helpers.js';
import {
  BUTTRESS_CACHE,
  ButtressModule,
  type ButtressModuleOptions,
  type ButtressModuleSetup,
  Cached,
  InjectCache,
  InjectQueue,
  RouteSignal,
  Shed,
  UseBreaker,
  UseTimeout,
} from './index.js';

// Through NestJS for real: @nestjs/testing builds the module, the application listens on a port,
// fetch talks HTTP to it (platform-express). No emitDecoratorMetadata in this folder: every
// injection names its token, as the library's own code does.

const apps: INestApplication[] = [];
const caches: Cache[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  for (const c of caches.splice(0)) await c.close();
});

const counters = { products: 0, cookies: 0, lang: 0, slow: 0, pay: 0, report: 0 };
const gates = { slow: deferred(), report: deferred() };
let reportSignal: AbortSignal | undefined;

@Controller('products')
class ProductsController {
  @Get(':id')
  @Cached({ ttl: '10s' })
  find(@Param('id') id: string) {
    counters.products++;
    return { id, n: counters.products };
  }
}

@Controller()
class MiscController {
  @Get('cookie')
  @Cached()
  cookie(@Res({ passthrough: true }) res: Response) {
    counters.cookies++;
    res.cookie('sid', `s${counters.cookies}`);
    return { n: counters.cookies };
  }

  @Get('lang')
  @Cached({ vary: ['accept-language'] })
  @Header('x-route', 'lang')
  lang(@Res({ passthrough: true }) res: Response) {
    counters.lang++;
    return { lang: res.req.headers['accept-language'] ?? null, n: counters.lang };
  }

  @Get('slow')
  @Cached()
  async slow() {
    counters.slow++;
    await gates.slow.promise;
    return { runs: counters.slow };
  }

  @Get('pay')
  @UseBreaker('payments')
  pay() {
    counters.pay++;
    throw new Error('payment service down');
  }

  @Get('pay/bad')
  @UseBreaker('payments')
  badRequest() {
    throw new BadRequestException('no card');
  }

  @Get('report')
  @UseTimeout('2s')
  async report(@RouteSignal() signal: AbortSignal) {
    counters.report++;
    reportSignal = signal;
    await gates.report.promise;
    return { late: true };
  }

  @Get('limited')
  limited() {
    throw new RateLimitedError('rate', 'tenant-1', 4_000);
  }

  @Get('work')
  @Shed()
  async work() {
    await gates.slow.promise;
    return { ok: true };
  }
}

@Injectable()
class Mailer {
  constructor(
    @InjectQueue('emails') readonly emails: Queue<{ to: string }>,
    @InjectCache() readonly cache: Cache,
  ) {}
}

@Controller('mail')
class MailController {
  constructor(@Inject(Mailer) private readonly mailer: Mailer) {}

  @Get()
  async send() {
    const job = await this.mailer.emails.add({ to: 'ada@example.com' });
    return { queued: job.id, cache: this.mailer.cache.stats().namespace };
  }
}

async function start(
  options: ButtressModuleOptions & ButtressModuleSetup,
  controllers: (new (...args: any[]) => unknown)[] = [ProductsController, MiscController],
  providers: (new (...args: any[]) => unknown)[] = [],
): Promise<{ app: INestApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({
    imports: [ButtressModule.forRoot(options)],
    controllers,
    providers,
  }).compile();
  const app = moduleRef.createNestApplication({ logger: process.env.NEST_LOG ? undefined : false });
  apps.push(app);
  await app.listen(0, '127.0.0.1');
  return { app, url: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
}

function cacheWith(clock: FakeClock) {
  const cache = createCache({ clock, namespace: `nest-${Math.random().toString(36).slice(2)}` });
  caches.push(cache);
  return cache;
}

describe('ButtressModule with @Cached()', () => {
  it('a miss runs the handler, the next request is answered from the cache with ETag, Age and Cache-Control', async () => {
    const clock = new FakeClock();
    const { url } = await start({ cache: cacheWith(clock), clock });
    const before = counters.products;
    const first = await fetch(`${url}/products/7`);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ id: '7', n: before + 1 });
    expect(first.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    expect(first.headers.get('cache-control')).toBe('public, max-age=10');
    clock.advance(4_000);
    const second = await fetch(`${url}/products/7`);
    expect(await second.json()).toEqual({ id: '7', n: before + 1 });
    expect(second.headers.get('etag')).toBe(first.headers.get('etag'));
    expect(second.headers.get('age')).toBe('4');
    expect(second.headers.get('content-type')).toMatch(/^application\/json/);
    expect(second.headers.get('cache-status')).toBe('buttress; hit; ttl=6');
    expect(counters.products).toBe(before + 1);
    // 304 for a client holding the current ETag, on a hit and on the refill after expiry.
    const etag = first.headers.get('etag')!;
    const notModified = await fetch(`${url}/products/7`, { headers: { 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    expect(await notModified.text()).toBe('');
    clock.advance(6_000);
    const refill = await fetch(`${url}/products/7`, { headers: { 'if-none-match': `W/${etag}` } });
    expect(counters.products).toBe(before + 2);
    expect(refill.status).toBe(200); // n changed: a new body, a new ETag
    const again = await fetch(`${url}/products/7`, {
      headers: { 'if-none-match': refill.headers.get('etag')! },
    });
    expect(again.status).toBe(304);
  });

  it('never caches an answer that sets a cookie; Vary keeps one entry per header value', async () => {
    const clock = new FakeClock();
    const { url } = await start({ cache: cacheWith(clock), clock });
    const c0 = counters.cookies;
    const a = await fetch(`${url}/cookie`);
    const b = await fetch(`${url}/cookie`);
    expect(a.headers.get('set-cookie')).toBe(`sid=s${c0 + 1}; Path=/`);
    expect(b.headers.get('set-cookie')).toBe(`sid=s${c0 + 2}; Path=/`);
    expect(counters.cookies).toBe(c0 + 2);

    const l0 = counters.lang;
    const en = (await (await fetch(`${url}/lang`, { headers: { 'accept-language': 'en' } })).json()) as {
      lang: string;
    };
    const fr = await fetch(`${url}/lang`, { headers: { 'accept-language': 'fr' } });
    expect(fr.headers.get('vary')).toBe('accept-language');
    expect(fr.headers.get('x-route')).toBe('lang');
    const frBody = (await fr.json()) as { lang: string };
    expect(await (await fetch(`${url}/lang`, { headers: { 'accept-language': 'en' } })).json()).toEqual(en);
    expect(await (await fetch(`${url}/lang`, { headers: { 'accept-language': 'fr' } })).json()).toEqual(
      frBody,
    );
    expect([en.lang, frBody.lang]).toEqual(['en', 'fr']);
    expect(counters.lang).toBe(l0 + 2);
  });

  it('100 concurrent misses run the handler once', async () => {
    const clock = new FakeClock();
    const { url } = await start({ cache: cacheWith(clock), clock });
    gates.slow = deferred();
    const s0 = counters.slow;
    const all = Array.from({ length: 100 }, () => fetch(`${url}/slow`).then((r) => r.text()));
    await until(() => counters.slow === s0 + 1, 'the handler to start');
    await new Promise((r) => setTimeout(r, 50));
    gates.slow.resolve();
    const bodies = await Promise.all(all);
    expect(counters.slow).toBe(s0 + 1);
    expect(new Set(bodies)).toEqual(new Set([JSON.stringify({ runs: s0 + 1 })]));
  });
});

describe('ButtressModule breakers, timeouts and errors', () => {
  it('@UseBreaker: failures open it, then 503 with Retry-After and a problem body; 4xx do not count', async () => {
    const clock = new FakeClock();
    const payments = circuitBreaker({
      name: 'payments',
      strategy: consecutive(2),
      halfOpenAfter: '20s',
      clock,
    });
    const { url } = await start({ breakers: { payments }, clock });
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/pay/bad`)).status).toBe(400);
    expect(payments.state).toBe('closed');
    const p0 = counters.pay;
    expect((await fetch(`${url}/pay`)).status).toBe(500);
    expect((await fetch(`${url}/pay`)).status).toBe(500);
    expect(payments.state).toBe('open');
    const open = await fetch(`${url}/pay`);
    expect(open.status).toBe(503);
    expect(counters.pay).toBe(p0 + 2);
    expect(Number(open.headers.get('retry-after'))).toBeGreaterThanOrEqual(20);
    expect(open.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await open.json()).toMatchObject({
      status: 503,
      code: 'E_CIRCUIT_OPEN',
      title: 'Service Unavailable',
      instance: '/pay',
    });
  });

  it('@UseTimeout: 504 once the deadline passes, and the handler’s @RouteSignal() aborts', async () => {
    const clock = new FakeClock();
    const { url } = await start({ clock });
    gates.report = deferred();
    reportSignal = undefined;
    const pending = fetch(`${url}/report`);
    await until(() => reportSignal !== undefined, 'the handler to start');
    await clock.advanceAsync(2_000);
    const r = await pending;
    expect(r.status).toBe(504);
    expect(await r.json()).toMatchObject({ code: 'E_TIMEOUT', status: 504 });
    expect(reportSignal!.aborted).toBe(true);
    gates.report.resolve();
  });

  it('maps other buttress errors: E_RATE_LIMITED is 429 with Retry-After', async () => {
    const { url } = await start({ problems: { retryAfterJitter: 0 } });
    const r = await fetch(`${url}/limited`);
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('4');
    expect(await r.json()).toMatchObject({ code: 'E_RATE_LIMITED', retryAfter: 4 });
  });
});

describe('ButtressModule load shedding and health', () => {
  it('global shedding: a burst over the limit gets 503 with Retry-After; the health routes are exempt', async () => {
    const limiter = bulkhead({ limit: 1 });
    const { url } = await start({ limiter, breakers: { payments: circuitBreaker({ name: 'payments' }) } });
    gates.slow = deferred();
    const first = fetch(`${url}/work`);
    await until(() => limiter.executing === 1, 'the slot to be taken');
    const shed = await fetch(`${url}/products/1`);
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(await shed.json()).toMatchObject({ code: 'E_BULKHEAD_FULL' });
    const live = await fetch(`${url}/health`);
    expect(live.status).toBe(200);
    expect(await live.json()).toMatchObject({ status: 'ok' });
    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as any).checks.breakers).toMatchObject({ status: 'ok' });
    gates.slow.resolve();
    expect((await first).status).toBe(200);
  });

  it("shedding: 'routes' sheds only @Shed() routes", async () => {
    const limiter = bulkhead({ limit: 1 });
    const clock = new FakeClock();
    const { url } = await start({ limiter, shedding: 'routes', cache: cacheWith(clock), clock });
    gates.slow = deferred();
    const first = fetch(`${url}/work`);
    await until(() => limiter.executing === 1, 'the slot to be taken');
    expect((await fetch(`${url}/work`)).status).toBe(503);
    expect((await fetch(`${url}/products/2`)).status).toBe(200);
    gates.slow.resolve();
    await first;
  });

  it('readiness is 503 when a check is down, at the paths chosen', async () => {
    const { url } = await start({
      health: { checks: { db: () => ({ status: 'down', reason: 'primary unreachable' }) } },
      healthRoutes: { live: 'livez', ready: 'readyz' },
    });
    expect((await fetch(`${url}/livez`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({
      status: 'down',
      checks: { db: { status: 'down', reason: 'primary unreachable' } },
    });
  });
});

describe('ButtressModule providers', () => {
  it('injects the cache and the queues; forRootAsync builds them with a factory', async () => {
    const clock = new FakeClock();
    const cache = cacheWith(clock);
    const emails = createQueue<{ to: string }>('emails', { backend: memoryBackend() });
    const moduleRef = await Test.createTestingModule({
      imports: [
        ButtressModule.forRootAsync({
          queueNames: ['emails'],
          useFactory: async () => ({ cache, queues: { emails }, closeOnShutdown: true }),
        }),
      ],
      controllers: [MailController],
      providers: [Mailer],
    }).compile();
    expect(moduleRef.get(BUTTRESS_CACHE)).toBe(cache);
    const app = moduleRef.createNestApplication({ logger: false });
    apps.push(app);
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    const r = await fetch(`${url}/mail`);
    expect(await r.json()).toMatchObject({ cache: cache.stats().namespace });
    expect((await emails.stats()).waiting).toBe(1);
    const ready = (await (await fetch(`${url}/ready`)).json()) as any;
    expect(ready.checks['queue:emails']).toMatchObject({ status: 'ok' });
  });

  it('validates its options', () => {
    expect(() => ButtressModule.forRoot({ cache: {} as Cache })).toThrow(/ButtressModule\.cache/);
    expect(() => ButtressModule.forRoot({ shedding: 'some' as never })).toThrow(/ButtressModule\.shedding/);
    expect(() => Cached({ ttl: 'soon' as never })).toThrow(/Cached\.ttl/);
    expect(() => UseBreaker({} as never)).toThrow(/UseBreaker\.breaker/);
  });
});
