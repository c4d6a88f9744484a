import { defineConfig } from 'vitest/config';

/** `pnpm test:load`: the load and fault tests (minutes each), one file at a time. */
export default defineConfig({
  test: {
    globalSetup: ['@coderunner/db/testing-global-setup'],
    include: ['test/load/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 180_000,
  },
});
