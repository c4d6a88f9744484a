/**
 * Static sites: a build that leaves static files and no server to start is served by CodeRunner
 * itself, with no app process. The files are copied out of the sandbox into the data folder,
 * `<dataDir>/static/<deployment id>/` (shared by replicas like sources/), so that the sandbox is freed
 * at once; the proxy serves them while the deployment is RUNNING. STOPPED keeps them (503 meanwhile),
 * `start` and every rebuild replace them, destroy removes them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Sandbox } from '@coderunner/sandbox';

/** What one static site may hold (the files copied out of its sandbox). */
export const STATIC_LIMITS = { maxBytes: 512 * 1024 * 1024, maxFiles: 20_000 };

/** The proxy's target for a static site: a file: URL of its folder (an app's is http:). */
export function staticTarget(dir: string): string {
  return pathToFileURL(`${dir}/`).href;
}

/** The folder of a static site's target, or null when `target` is an app's URL. */
export function staticDirOf(target: string): string | null {
  return target.startsWith('file:') ? fileURLToPath(target) : null;
}

export class StaticSites {
  constructor(private readonly root: string) {}

  dirOf(id: string): string {
    return path.join(this.root, id);
  }

  /** The site's folder when it has files (a RUNNING static deployment's), else null. */
  existing(id: string): string | null {
    const dir = this.dirOf(id);
    return fs.existsSync(path.join(dir, '.complete')) ? dir : null;
  }

  /**
   * Copy the first of `candidates` (folders of the app) holding an index.html, else the first that
   * exists, out of `sandbox`; swapped in whole (a rebuild replaces the previous files atomically).
   * Null when none of them exists.
   */
  async publish(
    id: string,
    sandbox: Sandbox,
    candidates: string[],
    has: (relative: string) => Promise<boolean>,
  ): Promise<{ dir: string; from: string; files: number; bytes: number; skipped: string[] } | null> {
    if (!sandbox.copyOut)
      throw new Error('this sandbox provider cannot serve static sites (use the local provider)');
    let from: string | undefined;
    for (const dir of candidates)
      if (await has(`${dir}/index.html`)) {
        from = dir;
        break;
      }
    if (from === undefined)
      for (const dir of candidates)
        if (await has(dir)) {
          from = dir;
          break;
        }
    if (from === undefined) return null;
    fs.mkdirSync(this.root, { recursive: true, mode: 0o755 });
    const temp = `${this.dirOf(id)}.new-${process.pid}-${Date.now()}`;
    const old = `${this.dirOf(id)}.old-${process.pid}-${Date.now()}`;
    try {
      const copied = await sandbox.copyOut(from, temp, STATIC_LIMITS);
      fs.writeFileSync(path.join(temp, '.complete'), '');
      const dir = this.dirOf(id);
      if (fs.existsSync(dir)) fs.renameSync(dir, old);
      fs.renameSync(temp, dir);
      return { dir, from, ...copied };
    } finally {
      fs.rmSync(temp, { recursive: true, force: true });
      fs.rmSync(old, { recursive: true, force: true });
    }
  }

  remove(id: string): void {
    fs.rmSync(this.dirOf(id), { recursive: true, force: true });
  }
}
