import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['@coderunner/db/testing-global-setup'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
    // One browser at a time on a 2-core machine.
    fileParallelism: false,
  },
});
