/**
 * A project's build cache on this machine: `<cache dir>/<project key>/<name>/`, one folder per cached
 * thing (npm's cache, a node_modules by lockfile, `.next/cache`), only root may enter the project's
 * folder (0700). Folders go into a sandbox before its install and come back after its build, while
 * none of its code runs (so nothing of it can race the server's renames and copies); inside, they
 * belong to the sandbox's uid (each deployment has its own: they are handed over with chown, which
 * does not follow links). A project never sees another's folder: the key is its own id.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { type CachedFolder, type CacheSaveResult, SandboxError } from '../types';

const run = promisify(execFile);
const TOOL_ENV = { PATH: '/usr/bin:/bin', LC_ALL: 'C' };
const KEY_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,100}$/;

export interface CacheTargets {
  app: string;
  home: string;
  /** Owner of what goes into the sandbox (its uid), or none (the server's own user). */
  owner: { uid: number; gid: number } | undefined;
  /** Throws when a process of the sandbox runs (its code could race what the server does in its folders). */
  assertIdle(): void;
}

export class LocalBuildCache {
  private readonly dir: string;

  constructor(
    storeRoot: string,
    key: string,
    private readonly targets: CacheTargets,
  ) {
    if (!KEY_PATTERN.test(key)) throw new SandboxError(`build cache key "${key}" is not valid`);
    this.dir = path.join(storeRoot, key);
  }

  /** Move (or, `keep`, copy) each cached folder into the sandbox; the names restored. */
  async restore(folders: CachedFolder[]): Promise<string[]> {
    this.targets.assertIdle();
    const restored: string[] = [];
    for (const folder of folders) {
      const source = this.entry(folder.name);
      if (!(await isDirectory(source))) continue;
      const target = await this.target(folder.at, true);
      if (!target || (await exists(target))) continue;
      const staging = `${target}.cr-restore`;
      await fs.promises.rm(staging, { recursive: true, force: true });
      if (folder.keep) await copyTree(source, staging);
      else await fs.promises.rename(source, staging);
      if (this.targets.owner) await chownTree(staging, this.targets.owner);
      await fs.promises.rename(staging, target);
      if (folder.keep) await touch(source);
      restored.push(folder.name);
    }
    return restored;
  }

  /**
   * Take each folder back from the sandbox (a copy of `keep` ones), replacing the cached one of that
   * name; then the least recently used folders are dropped until the project's cache is within
   * `capMb` (the one just saved too, when it alone is larger).
   */
  async save(folders: CachedFolder[], capMb: number): Promise<CacheSaveResult> {
    this.targets.assertIdle();
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const saved: string[] = [];
    for (const folder of folders) {
      const source = await this.target(folder.at, false);
      if (!source || !(await isDirectory(source))) continue;
      const staging = path.join(this.dir, `.saving-${folder.name}-${process.pid}`);
      await fs.promises.rm(staging, { recursive: true, force: true });
      if (folder.keep) await copyTree(source, staging);
      else await fs.promises.rename(source, staging);
      await this.remove(folder.name);
      await fs.promises.rename(staging, this.entry(folder.name));
      await touch(this.entry(folder.name));
      saved.push(folder.name);
    }
    const { evicted, bytes } = await this.evict(capMb * 1024 * 1024);
    return { saved: saved.filter((n) => !evicted.includes(n)), evicted, bytes };
  }

  /** Names of the cached folders. */
  async names(): Promise<string[]> {
    const names = await fs.promises.readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => NAME_PATTERN.test(n) && !n.startsWith('.'));
  }

  /** Forget everything cached for the project. */
  async drop(): Promise<void> {
    const trash = `${this.dir}.dropped-${process.pid}-${Date.now()}`;
    await fs.promises.rename(this.dir, trash).catch(() => {});
    await fs.promises.rm(trash, { recursive: true, force: true });
  }

  private async evict(capBytes: number): Promise<{ evicted: string[]; bytes: number }> {
    const entries = await Promise.all(
      (await this.names()).map(async (name) => {
        const full = this.entry(name);
        const stat = await fs.promises.stat(full);
        return { name, usedAt: stat.mtimeMs, bytes: await treeBytes(full) };
      }),
    );
    entries.sort((a, b) => a.usedAt - b.usedAt);
    let total = entries.reduce((sum, e) => sum + e.bytes, 0);
    const evicted: string[] = [];
    for (const entry of entries) {
      if (total <= capBytes) break;
      await this.remove(entry.name);
      total -= entry.bytes;
      evicted.push(entry.name);
    }
    return { evicted, bytes: total };
  }

  private async remove(name: string): Promise<void> {
    const full = this.entry(name);
    const trash = path.join(this.dir, `.trash-${name}-${process.pid}-${Date.now()}`);
    await fs.promises.rename(full, trash).catch(() => {});
    await fs.promises.rm(trash, { recursive: true, force: true });
  }

  private entry(name: string): string {
    if (!NAME_PATTERN.test(name) || name.startsWith('.'))
      throw new SandboxError(`build cache folder name "${name}" is not valid`);
    return path.join(this.dir, name);
  }

  /**
   * `app/<path>` or `home/<path>` in the sandbox; null when a folder on the way is a link or not a
   * folder (the code put it there: nothing is cached through it). `create`: missing folders on the
   * way are made, owned by the sandbox.
   */
  private async target(at: string, create: boolean): Promise<string | null> {
    const [base, ...rest] = at.split('/');
    const root = base === 'app' ? this.targets.app : base === 'home' ? this.targets.home : undefined;
    if (!root || rest.length === 0 || rest.some((p) => p === '' || p === '.' || p === '..'))
      throw new SandboxError(`build cache path "${at}" must be app/<path> or home/<path>`);
    let dir = root;
    for (const part of rest.slice(0, -1)) {
      dir = path.join(dir, part);
      const stat = await fs.promises.lstat(dir).catch(() => null);
      if (stat?.isDirectory()) continue;
      if (stat || !create) return null;
      await fs.promises.mkdir(dir, { mode: 0o755 });
      if (this.targets.owner) await fs.promises.lchown(dir, this.targets.owner.uid, this.targets.owner.gid);
    }
    return path.join(dir, rest.at(-1)!);
  }
}

async function exists(file: string): Promise<boolean> {
  return (await fs.promises.lstat(file).catch(() => null)) !== null;
}

async function isDirectory(file: string): Promise<boolean> {
  return (await fs.promises.lstat(file).catch(() => null))?.isDirectory() ?? false;
}

async function touch(file: string): Promise<void> {
  const now = new Date();
  await fs.promises.utimes(file, now, now).catch(() => {});
}

/** A copy that keeps links as links (never follows one), modes and times; shares blocks where the file system can. */
async function copyTree(from: string, to: string): Promise<void> {
  await run('cp', ['-a', '--reflink=auto', '--no-dereference', '--', from, to], { env: TOOL_ENV }).catch(
    (err: { stderr?: string }) => {
      throw new SandboxError(`cannot copy the build cache: ${(err.stderr ?? '').trim().slice(0, 300)}`);
    },
  );
}

/** Hand a tree to the sandbox's uid; links themselves are changed, never what they point to. */
async function chownTree(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  await run('chown', ['-R', '-h', '-P', `${owner.uid}:${owner.gid}`, '--', dir], { env: TOOL_ENV }).catch(
    (err: { stderr?: string }) => {
      throw new SandboxError(`cannot hand the build cache over: ${(err.stderr ?? '').trim().slice(0, 300)}`);
    },
  );
}

/** Blocks used under `dir` (du, not following links). */
async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-s', '-x', '-B1', '--', dir], { env: TOOL_ENV }).catch(
    (err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }),
  );
  return Number.parseInt(stdout, 10) || 0;
}
