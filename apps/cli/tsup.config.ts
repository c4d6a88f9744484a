import { readFileSync } from 'node:fs';
import { defineConfig } from 'tsup';

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

/**
 * One self-contained file, dist/coderunner.js: commander, the typed client (@coderunner/api/client,
 * @trpc/client, superjson) are bundled in, so a global install needs no dependencies and carries no
 * server code (the client imports only types from the server side).
 */
export default defineConfig({
  entry: { coderunner: 'src/main.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  outDir: 'dist',
  clean: true,
  splitting: false,
  sourcemap: false,
  dts: false,
  noExternal: [/.*/],
  // Whitespace only: drops esbuild's file-path comments (pnpm store paths), keeps names readable in
  // --debug stack traces.
  esbuildOptions(options) {
    options.minifyWhitespace = true;
  },
  define: { __CODERUNNER_CLI_VERSION__: JSON.stringify(version) },
  banner: {
    // commander is CommonJS: its require() calls of node: built-ins need a real require in an ES module.
    js: "#!/usr/bin/env node\nimport { createRequire as __coderunnerCreateRequire } from 'node:module';\nconst require = __coderunnerCreateRequire(import.meta.url);",
  },
});
