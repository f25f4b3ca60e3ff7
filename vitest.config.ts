import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores on CI: run files in two forks.
    pool: 'forks',
    maxWorkers: 2,
    globalSetup: ['test/setup/seed.ts', 'test/setup/display.ts'],
    setupFiles: ['test/setup/fast-check.ts'],
  },
});
