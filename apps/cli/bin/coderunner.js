#!/usr/bin/env node
// The `coderunner` command. In this repository (where src/ exists) it runs the TypeScript source
// through tsx, so `pnpm coderunner` needs no build step; an installed package (dist/ only) runs
// the bundle that `pnpm --filter @coderunner/cli build` makes.
import fs from 'node:fs';

const source = new URL('../src/main.ts', import.meta.url);
if (fs.existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/coderunner.js', import.meta.url).href);
}
