import { configDefaults, defineConfig } from 'vitest/config';

// `pnpm test` (the fast tier) leaves out the load and fault tests in test/load: `pnpm test:load` runs
// them with vitest.load.config.ts.
export default defineConfig({
  test: {
    globalSetup: ['@coderunner/db/testing-global-setup'],
    exclude: [...configDefaults.exclude, 'test/load/**', 'test/frameworks/**', 'test/fixtures/starters/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
