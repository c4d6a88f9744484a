/**
 * How the common Node.js frameworks deploy, as their own docs say: which production server to start
 * (never a dev server), or which folder of static files the build leaves when there is no server.
 * Decided from package.json and the framework's config file; `coderunner.json` overrides all of it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** What a framework needs beyond the generic Node.js plan. */
export interface FrameworkPlan {
  /** For the log: "Next.js", "SvelteKit (adapter-node)", ... */
  name: string;
  /** The production start command; absent when the build leaves a static site. */
  start?: string;
  /** Folders (relative) where the build leaves static files, the first one holding files wins. */
  static?: string[];
  /** A build step to run after (or instead of) `npm run build`. */
  build?: string;
}

/** The project cannot be deployed as it is: the message names the exact change to make. */
export class FrameworkError extends Error {}

/** Dev servers: fine on a laptop, wrong for a deployment (slow, memory-hungry, and not on PORT). */
const DEV_SERVERS: [RegExp, string][] = [
  [/\bnext\s+dev\b/, 'next dev'],
  [/\bnuxt\s+dev\b|\bnuxi\s+dev\b/, 'nuxt dev'],
  [/\bastro\s+(dev|preview)\b/, 'astro dev'],
  [/\bvite(\s+(dev|serve|preview))?(\s|$)/, 'vite'],
  [/\bnest\s+start\b(?![^&|;]*--?prod)/, 'nest start'],
  [/\breact-scripts\s+start\b/, 'react-scripts start'],
  [/\bwebpack(-dev-server|\s+serve)\b/, 'webpack serve'],
  [/\bng\s+serve\b/, 'ng serve'],
];

/** The dev server a start script runs (its name), or null. */
export function devServerOf(script: string | undefined): string | null {
  if (!script) return null;
  for (const [pattern, name] of DEV_SERVERS) if (pattern.test(script)) return name;
  return null;
}

export interface PackageView {
  scripts: Record<string, string>;
  /** dependencies and devDependencies together. */
  deps: Set<string>;
}

/**
 * The framework of the package in `appDir` and how it deploys, or null for a plain Node.js package
 * (Express, Fastify, Koa, ...: its start script or entry file, as before).
 */
export async function detectFramework(appDir: string, pkg: PackageView): Promise<FrameworkPlan | null> {
  const { scripts, deps } = pkg;
  const start = scripts.start;
  const keepStart = start !== undefined && devServerOf(start) === null;
  if (deps.has('next')) {
    const config = await readFirst(appDir, [
      'next.config.ts',
      'next.config.mjs',
      'next.config.js',
      'next.config.cjs',
    ]);
    const output = /\boutput\s*:\s*['"`](export|standalone)['"`]/.exec(config)?.[1];
    if (output === 'export') return { name: 'Next.js (static export)', static: ['out'] };
    if (output === 'standalone')
      return {
        name: 'Next.js (standalone)',
        // Next's docs: the standalone server needs public/ and .next/static beside it.
        build:
          'mkdir -p .next/standalone/.next && cp -r .next/static .next/standalone/.next/ && { [ ! -d public ] || cp -r public .next/standalone/; }',
        start: 'node .next/standalone/server.js',
      };
    return {
      name: 'Next.js',
      start:
        keepStart && !/\bnext\s+start\b/.test(start)
          ? 'npm start'
          : 'node_modules/.bin/next start -p "$PORT"',
    };
  }
  if (deps.has('@nestjs/core')) {
    if (keepStart) return { name: 'NestJS', start: 'npm start' };
    if (scripts['start:prod']) return { name: 'NestJS', start: 'npm run start:prod' };
    if (/\bnest\s+build\b/.test(scripts.build ?? '')) return { name: 'NestJS', start: 'node dist/main' };
    throw new FrameworkError(
      `package.json: "start" runs \`${start ?? 'nothing'}\`, the NestJS dev CLI; add "start:prod": "node dist/main" (after "build": "nest build")`,
    );
  }
  if (deps.has('nuxt')) {
    if (keepStart) return { name: 'Nuxt', start: 'npm start' };
    if (/\bnux(t|i)\s+generate\b/.test(scripts.build ?? ''))
      return { name: 'Nuxt (generate)', static: ['.output/public', 'dist'] };
    return { name: 'Nuxt', start: 'node .output/server/index.mjs' };
  }
  if (deps.has('@sveltejs/kit')) return sveltekit(appDir, deps, start, keepStart);
  if (deps.has('astro')) {
    if (keepStart) return { name: 'Astro', start: 'npm start' };
    if (deps.has('@astrojs/node'))
      return { name: 'Astro (node adapter)', start: 'node ./dist/server/entry.mjs' };
    return { name: 'Astro', static: ['dist'] };
  }
  if (deps.has('vite') && !keepStart) {
    const name = deps.has('vue') ? 'Vue (Vite)' : deps.has('react') ? 'React (Vite)' : 'Vite';
    return { name, static: ['dist'] };
  }
  if (!keepStart && start !== undefined) {
    throw new FrameworkError(
      `package.json: "start" runs \`${start}\`, a development server: make "start" the production server (listening on the PORT variable), or remove it to deploy the build's static files`,
    );
  }
  for (const [dep, name] of [
    ['express', 'Express'],
    ['fastify', 'Fastify'],
    ['koa', 'Koa'],
  ] as const) {
    if (deps.has(dep)) return { name };
  }
  return null;
}

async function sveltekit(
  appDir: string,
  deps: Set<string>,
  start: string | undefined,
  keepStart: boolean,
): Promise<FrameworkPlan> {
  if (keepStart) return { name: 'SvelteKit', start: 'npm start' };
  const config = await readFirst(appDir, [
    'svelte.config.js',
    'svelte.config.mjs',
    'svelte.config.ts',
    'vite.config.ts',
    'vite.config.js',
    'vite.config.mjs',
  ]);
  const adapter =
    /@sveltejs\/adapter-([a-z-]+)/.exec(config)?.[1] ??
    [...deps].find((d) => d.startsWith('@sveltejs/adapter-'))?.slice('@sveltejs/adapter-'.length);
  if (adapter === 'node') return { name: 'SvelteKit (adapter-node)', start: 'node build' };
  if (adapter === 'static') return { name: 'SvelteKit (adapter-static)', static: ['build'] };
  const file = config.includes('@sveltejs/adapter') ? 'its config file' : 'svelte.config.js';
  throw new FrameworkError(
    `SvelteKit with ${adapter ? `adapter-${adapter}` : 'no adapter'} cannot be deployed here${start ? ` (its "start" runs \`${start}\`, a dev server)` : ''}: ` +
      `run \`npm install -D @sveltejs/adapter-node\` and import adapter from '@sveltejs/adapter-node' instead of '@sveltejs/adapter-${adapter ?? 'auto'}' in ${file} ` +
      `(or @sveltejs/adapter-static for a site without a server)`,
  );
}

/** The text of the first of `files` that exists (config files are read as text, never run). */
async function readFirst(appDir: string, files: string[]): Promise<string> {
  for (const file of files) {
    const text = await fs.readFile(path.join(appDir, file), 'utf8').catch(() => null);
    if (text !== null) return text;
  }
  return '';
}
