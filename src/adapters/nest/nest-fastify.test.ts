import 'reflect-metadata';
import { Controller, Get, type INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { bulkhead } from '../../bulkhead/bulkhead.js';
import { type Cache, createCache } from '../../cache/cache.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { until } from '../http/test-helpers.js';
import {
  ButtressModule,
  type ButtressModuleOptions,
  Cached,
  RouteSignal,
  Shed,
  UseTimeout,
} from './index.js';

// The same enhancers on platform-fastify, through a real listener: requests and responses are
// Fastify's there (`request.raw`, `reply.raw` are Node's), and Nest sets statuses through `reply`.

const apps: INestApplication[] = [];
const caches: Cache[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  for (const c of caches.splice(0)) await c.close();
});

let runs = 0;
let release = () => {};
let signal: AbortSignal | undefined;

@Controller()
class Routes {
  @Get('items/:id')
  @Cached({ ttl: '10s' })
  item() {
    runs++;
    return { runs };
  }

  @Get('busy')
  @Shed()
  async busy() {
    await new Promise<void>((resolve) => (release = resolve));
    return { ok: true };
  }

  @Get('slow')
  @UseTimeout('1s')
  async slow(@RouteSignal() s: AbortSignal) {
    signal = s;
    await new Promise<void>((resolve) => (release = resolve));
    return { late: true };
  }
}

async function start(options: ButtressModuleOptions): Promise<string> {
  const moduleRef = await Test.createTestingModule({
    imports: [ButtressModule.forRoot({ ...options, shedding: 'routes' })],
    controllers: [Routes],
  }).compile();
  const app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), {
    logger: false,
  });
  apps.push(app);
  await app.listen(0, '127.0.0.1');
  return (await app.getUrl()).replace('[::1]', '127.0.0.1');
}

describe('buttress/nest on platform-fastify', () => {
  it('@Cached(): a hit from the cache, 304 on a matching If-None-Match, one handler run', async () => {
    const clock = new FakeClock();
    const cache = createCache({ clock, namespace: `nest-fastify-${Math.random()}` });
    caches.push(cache);
    const url = await start({ cache, clock });
    const before = runs;
    const first = await fetch(`${url}/items/1`);
    expect(await first.json()).toEqual({ runs: before + 1 });
    expect(first.headers.get('content-type')).toMatch(/^application\/json/);
    const etag = first.headers.get('etag')!;
    clock.advance(2_000);
    const hit = await fetch(`${url}/items/1`);
    expect(await hit.json()).toEqual({ runs: before + 1 });
    expect(hit.headers.get('age')).toBe('2');
    expect(hit.headers.get('etag')).toBe(etag);
    const notModified = await fetch(`${url}/items/1`, { headers: { 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    expect(await notModified.text()).toBe('');
    expect(runs).toBe(before + 1);
  });

  it('@Shed(): 503 with Retry-After and a problem body over the limit', async () => {
    const limiter = bulkhead({ limit: 1 });
    const url = await start({ limiter });
    const first = fetch(`${url}/busy`);
    await until(() => limiter.executing === 1, 'the slot to be taken');
    const shed = await fetch(`${url}/busy`);
    expect(shed.status).toBe(503);
    expect(shed.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(shed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await shed.json()).toMatchObject({ code: 'E_BULKHEAD_FULL', status: 503, instance: '/busy' });
    release();
    expect((await first).status).toBe(200);
  });

  it('@UseTimeout(): 504 and the route signal aborts', async () => {
    const clock = new FakeClock();
    const url = await start({ clock });
    signal = undefined;
    const pending = fetch(`${url}/slow`);
    await until(() => signal !== undefined, 'the handler to start');
    await clock.advanceAsync(1_000);
    const r = await pending;
    expect(r.status).toBe(504);
    expect(await r.json()).toMatchObject({ code: 'E_TIMEOUT' });
    expect(signal!.aborted).toBe(true);
    release();
  });
});
