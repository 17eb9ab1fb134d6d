import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    typecheck: {
      enabled: true,
      include: ['src/**/*.test-d.ts', 'test/**/*.test-d.ts'],
      tsconfig: './tsconfig.json',
    },
    // Integration tests share one Redis / PostgreSQL; files run in parallel but keys are namespaced.
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
