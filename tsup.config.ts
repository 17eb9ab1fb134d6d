import { defineConfig } from 'tsup';

// One entry per public subpath; keep in sync with package.json "exports".
export const entries = {
  index: 'src/index.ts',
  'breaker/index': 'src/breaker/index.ts',
  'bulkhead/index': 'src/bulkhead/index.ts',
  'cache/index': 'src/cache/index.ts',
  'express/index': 'src/adapters/express/index.ts',
  'nest/index': 'src/adapters/nest/index.ts',
  'fastify/index': 'src/adapters/fastify/index.ts',
  'pool/index': 'src/pool/index.ts',
  'queue/index': 'src/queue/index.ts',
  'retry/index': 'src/retry/index.ts',
  'testing/index': 'src/testing/index.ts',
};

export default defineConfig({
  entry: entries,
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  splitting: true,
  treeshake: true,
  target: 'node20',
  platform: 'node',
  // Lua scripts are shipped inline as strings.
  loader: { '.lua': 'text' },
  external: [
    'ioredis',
    'pg',
    'pg-pool',
    'express',
    'fastify',
    'fastify-plugin',
    /^@nestjs\//,
    '@opentelemetry/api',
  ],
});
