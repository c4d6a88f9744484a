#!/usr/bin/env node
/**
 * Builds the dashboard when its build is missing or older than its sources (apps/web and the API
 * client it bundles), so that `pnpm start` on a fresh clone serves it with no extra command, and a
 * second start with nothing changed costs only a few stat calls.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = path.join(web, 'dist', 'index.html');
const sources = [
  path.join(web, 'src'),
  path.join(web, 'index.html'),
  path.join(web, 'vite.config.ts'),
  path.join(web, 'package.json'),
  path.resolve(web, '../../packages/api/src'),
];

/** The newest modification time under `p` (0 when it does not exist). */
function newest(p) {
  let stat;
  try {
    stat = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.mtimeMs;
  let max = stat.mtimeMs;
  for (const name of fs.readdirSync(p)) max = Math.max(max, newest(path.join(p, name)));
  return max;
}

const builtAt = newest(built);
if (builtAt > 0 && sources.every((s) => newest(s) <= builtAt)) process.exit(0);

console.error(builtAt ? 'the dashboard changed: building it' : 'building the dashboard (first start)');
const vite = path.join(web, 'node_modules', 'vite', 'bin', 'vite.js');
const result = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], {
  cwd: web,
  stdio: 'inherit',
});
if (result.status !== 0) {
  console.error('building the dashboard failed: see the messages above');
  process.exit(result.status ?? 1);
}
