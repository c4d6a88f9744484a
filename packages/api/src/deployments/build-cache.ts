/**
 * What a build keeps for the next build of its project, and what it finds from the last: the
 * package managers' caches (npm, pnpm, yarn, pip), `.next/cache`, and node_modules when the lockfile,
 * the install command and the Node version the sandbox runs are all unchanged (the install is then
 * skipped). The provider keeps the folders (see the local provider's build-cache.ts).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { BuildCache, BuildPlan, CachedFolder, Sandbox } from '@coderunner/sandbox';
import { type EngineOptions, systemLog } from './context';

/** Lockfiles whose content decides whether node_modules can be reused, first found wins. */
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json', 'pnpm-lock.yaml', 'yarn.lock'];
/** Root scripts that an install runs and a reused node_modules would skip. */
const INSTALL_HOOKS = ['preinstall', 'install', 'postinstall', 'prepare'];

/** Caches that cost nothing to keep correct: whatever they hold, the tools check it. */
const TOOL_CACHES: (CachedFolder & { label: string })[] = [
  { name: 'npm', at: 'home/.npm', label: "npm's cache" },
  { name: 'home-cache', at: 'home/.cache', label: 'yarn and pip caches' },
  { name: 'pnpm-store', at: 'home/.local/share/pnpm', label: "pnpm's store" },
  { name: 'next-cache', at: 'app/.next/cache', label: '.next/cache' },
];

/** What the source says about its dependencies, read before it goes into the sandbox. */
export interface DependencyFacts {
  /** The lockfile's name and the digest of its content, when there is one. */
  lockfile: { name: string; digest: string } | null;
  /** The root install hook that makes reusing node_modules wrong, if any. */
  installHook: string | null;
}

export function dependencyFacts(folder: string): DependencyFacts {
  let lockfile: DependencyFacts['lockfile'] = null;
  for (const name of LOCKFILES) {
    let content: Buffer;
    try {
      content = fs.readFileSync(path.join(folder, name));
    } catch {
      continue;
    }
    lockfile = { name, digest: createHash('sha256').update(content).digest('hex') };
    break;
  }
  let installHook: string | null = null;
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(folder, 'package.json'), 'utf8')) as {
      scripts?: Record<string, unknown>;
    };
    installHook = INSTALL_HOOKS.find((s) => typeof pkg.scripts?.[s] === 'string') ?? null;
  } catch {
    // No package.json (or not JSON): nothing of it to run.
  }
  return { lockfile, installHook };
}

export interface BuildCacheUse {
  /** node_modules came from the cache: skip the install. */
  skipInstall: boolean;
  /** For the install: npm's cache is warm and a lockfile pins every package, so npm need not revalidate them online. */
  installEnv: Record<string, string>;
  /**
   * After the build: keep what it made for the next one. After a failed one (`failed`), the tools'
   * caches only (they were moved into the sandbox, which goes now), never its node_modules.
   */
  save(opts?: { failed?: boolean }): Promise<void>;
}

/**
 * Bring the project's cached folders into the sandbox (after the source, before the install), or
 * drop them first (`fresh`: --no-cache). Null when the provider keeps no build cache.
 */
export async function useBuildCache(
  opts: EngineOptions,
  id: string,
  projectId: string,
  sandbox: Sandbox,
  plan: BuildPlan,
  facts: DependencyFacts,
  settings: { fresh: boolean; capMb: number; envs: Record<string, string> },
): Promise<BuildCacheUse | null> {
  if (!sandbox.buildCache || settings.capMb <= 0) return null;
  const cache: BuildCache = sandbox.buildCache(projectId);
  if (settings.fresh) {
    await cache.drop();
    systemLog(opts, id, 'build cache dropped (--no-cache): installing from scratch');
  }
  const folders: CachedFolder[] = TOOL_CACHES.map(({ label: _label, ...f }) => f);
  let modules: CachedFolder | null = null;
  if (plan.install && facts.lockfile && plan.runtime !== 'python') {
    if (facts.installHook) {
      systemLog(
        opts,
        id,
        `not reusing node_modules: package.json has a "${facts.installHook}" script, which the install must run`,
      );
    } else {
      const node = await nodeVersion(sandbox, settings.envs);
      if (node) {
        const key = createHash('sha256')
          .update(`${facts.lockfile.digest}\0${node}\0${plan.install}`)
          .digest('hex')
          .slice(0, 20);
        modules = { name: `node_modules-${key}`, at: 'app/node_modules', keep: true };
        folders.unshift(modules);
      }
    }
  }
  const restored = await cache.restore(folders);
  const reused = modules !== null && restored.includes(modules.name);
  if (reused)
    systemLog(
      opts,
      id,
      `reusing node_modules (lockfile unchanged: ${facts.lockfile!.name}, the same Node version and install command): skipping \`${plan.install}\``,
    );
  else if (modules && !settings.fresh)
    systemLog(
      opts,
      id,
      'node_modules not in the build cache (first build, or the lockfile or Node version changed)',
    );
  const tools = TOOL_CACHES.filter((f) => restored.includes(f.name)).map((f) => f.label);
  if (tools.length) systemLog(opts, id, `reusing from the build cache: ${tools.join(', ')}`);
  // Measured on the Express starter (host, loaded machine): `npm ci` with a warm cache 44 s, with
  // --prefer-offline 21 s, from nothing 55 s; copying its node_modules in 1.9 s.
  const warmNpm = restored.includes('npm') && facts.lockfile !== null;
  return {
    skipInstall: reused,
    installEnv: warmNpm ? { npm_config_prefer_offline: 'true' } : {},
    async save({ failed = false } = {}) {
      // A node_modules restored is still in the cache: only a fresh, successful install is worth a copy.
      const keep = folders.filter((f) => f !== modules || (!reused && !failed));
      const result = await cache.save(keep, settings.capMb);
      const mb = (b: number) => Math.round(b / 1024 / 1024);
      let line = `build cache kept for the next build (${mb(result.bytes)} MB of ${settings.capMb} MB)`;
      if (result.evicted.length) line += `; dropped, least recently used first: ${result.evicted.join(', ')}`;
      systemLog(opts, id, line);
    },
  };
}

/** `node --version` in the sandbox, with the install's environment (whatever Node it mounts), or null when it has none. */
async function nodeVersion(sandbox: Sandbox, envs: Record<string, string>): Promise<string | null> {
  const result = await sandbox.run('node --version', { envs, timeoutMs: 60_000 }).catch(() => null);
  const version = result?.exitCode === 0 ? result.stdout.trim() : '';
  return /^v\d+\.\d+\.\d+/.test(version) ? version : null;
}
