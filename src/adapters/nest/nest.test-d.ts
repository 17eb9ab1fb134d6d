import { Controller, type DynamicModule, Get, Injectable } from '@nestjs/common';
import { describe, expectTypeOf, it } from 'vitest';
import { circuitBreaker } from '../../breaker/index.js';
import { bulkhead } from '../../bulkhead/index.js';
import { type Cache, createCache } from '../../cache/index.js';
import type { Queue } from '../../queue/index.js';
import {
  ButtressModule,
  Cached,
  InjectCache,
  InjectPool,
  InjectQueue,
  RouteSignal,
  Shed,
  SkipShedding,
  UseBreaker,
  UseTimeout,
} from './index.js';

describe('buttress/nest types', () => {
  it('the route decorators apply to methods and classes', () => {
    expectTypeOf(Cached()).toMatchTypeOf<MethodDecorator>();
    expectTypeOf(
      Cached({ ttl: '30s', staleWhileRevalidate: '5m', vary: ['accept-language'] }),
    ).toMatchTypeOf<ClassDecorator>();
    expectTypeOf(UseBreaker('payments', { timeout: '2s' })).toMatchTypeOf<MethodDecorator>();
    expectTypeOf(UseBreaker(circuitBreaker())).toMatchTypeOf<ClassDecorator>();
    expectTypeOf(UseTimeout(2_000)).toMatchTypeOf<MethodDecorator>();
    expectTypeOf(Shed(bulkhead({ limit: 5 }))).toMatchTypeOf<MethodDecorator>();
    expectTypeOf(SkipShedding()).toMatchTypeOf<ClassDecorator>();
    expectTypeOf(InjectCache()).toMatchTypeOf<ParameterDecorator>();
    expectTypeOf(InjectPool()).toMatchTypeOf<PropertyDecorator>();
    expectTypeOf(InjectQueue('emails')).toMatchTypeOf<ParameterDecorator>();
    expectTypeOf(RouteSignal()).toMatchTypeOf<ParameterDecorator>();
  });

  it('they decorate a controller as Nest users write it', () => {
    @Controller('products')
    @UseBreaker('catalog')
    class Products {
      constructor(
        @InjectCache() readonly cache: Cache,
        @InjectQueue('emails') readonly emails: Queue<{ to: string }>,
      ) {}

      @Get(':id')
      @Cached({ ttl: '30s' })
      @UseTimeout('2s')
      find(@RouteSignal() signal: AbortSignal) {
        return { aborted: signal.aborted };
      }
    }
    @Injectable()
    class Service {
      @InjectCache() cache!: Cache;
    }
    expectTypeOf(Products).toBeConstructibleWith(createCache(), {} as Queue<{ to: string }>);
    expectTypeOf<Service['cache']>().toEqualTypeOf<Cache>();
  });

  it('options are checked', () => {
    // @ts-expect-error ttl is a duration
    Cached({ ttl: true });
    // @ts-expect-error vary is a list of header names
    Cached({ vary: 'accept' });
    // @ts-expect-error a breaker is a policy or a name
    UseBreaker(42);
    // @ts-expect-error forRoot takes no unknown option
    ButtressModule.forRoot({ caches: createCache() });
  });

  it('forRoot and forRootAsync are dynamic modules', () => {
    expectTypeOf(
      ButtressModule.forRoot({ cache: createCache(), limiter: bulkhead({ limit: 10 }) }),
    ).toEqualTypeOf<DynamicModule>();
    expectTypeOf(
      ButtressModule.forRootAsync({ useFactory: async () => ({ cache: createCache() }), shedding: 'routes' }),
    ).toEqualTypeOf<DynamicModule>();
    // @ts-expect-error useFactory is required
    ButtressModule.forRootAsync({ shedding: 'global' });
  });
});
