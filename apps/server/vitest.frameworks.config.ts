import { defineConfig } from 'vitest/config';

/** `pnpm test:frameworks`: the frameworks' starters deployed as generated (minutes each), one at a time. */
export default defineConfig({
  test: {
    globalSetup: ['@coderunner/db/testing-global-setup'],
    include: ['test/frameworks/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 20 * 60_000,
    hookTimeout: 180_000,
  },
});
