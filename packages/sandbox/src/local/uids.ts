/**
 * One unprivileged uid (and gid of the same number) per isolated sandbox, from a configurable range,
 * with no /etc/passwd entry. A uid is claimed by a file `<claimsDir>/<uid>` (created exclusively, so
 * two servers on one machine never hand out the same uid) listing the folders that may hold files of
 * that uid. A claim is released after its sandbox's folder is gone; a claim left by a crash is taken
 * over only when none of its folders exists and no process runs as that uid: a uid is never handed to
 * a new sandbox while a file or a process of the old one exists.
 */
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SandboxError } from '../types';

export interface UidRange {
  first: number;
  count: number;
}

export const DEFAULT_UID_RANGE: UidRange = { first: 3_000_000, count: 100_000 };
export const DEFAULT_UID_CLAIMS_DIR = '/var/lib/coderunner/uids';
const TRIES = 64;

/** `first-last` (e.g. `3000000-3099999`) → a range; throws a clear message otherwise. */
export function parseUidRange(text: string): UidRange {
  const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  const first = Number(match?.[1]);
  const last = Number(match?.[2]);
  if (!match || first < 1000 || last < first || last > 4_294_967_294) {
    throw new SandboxError(
      `uid range "${text}" is not valid: write it as FIRST-LAST, e.g. 3000000-3099999 (FIRST at least 1000)`,
    );
  }
  return { first, count: last - first + 1 };
}

export class UidAllocator {
  constructor(
    private readonly range: UidRange,
    private readonly claimsDir: string,
  ) {}

  /** Claim a free uid for a sandbox whose folder is `root`. */
  async claim(root: string): Promise<number> {
    await fs.promises.mkdir(this.claimsDir, { recursive: true, mode: 0o700 });
    for (let i = 0; i < TRIES; i++) {
      const uid = this.range.first + randomInt(this.range.count);
      if (await this.tryClaim(uid, root)) return uid;
    }
    throw new SandboxError(
      `no free sandbox uid in ${this.range.first}-${this.range.first + this.range.count - 1} after ${TRIES} tries: widen the range`,
    );
  }

  /** Add a folder that may hold the uid's files (before renaming the sandbox's folder there). */
  async addPath(uid: number, folder: string): Promise<void> {
    await fs.promises.appendFile(this.file(uid), `${folder}\n`);
  }

  /** Release a uid whose files and processes are all gone. */
  async release(uid: number): Promise<void> {
    await fs.promises.rm(this.file(uid), { force: true });
  }

  private file(uid: number): string {
    return path.join(this.claimsDir, String(uid));
  }

  private async tryClaim(uid: number, root: string): Promise<boolean> {
    const file = this.file(uid);
    try {
      await fs.promises.writeFile(file, `${root}\n`, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // Taken: take it over only when it is stale (a crash left it), and only if we win the race for it.
    const text = await fs.promises.readFile(file, 'utf8').catch(() => null);
    if (text === null) return false;
    const folders = text.split('\n').filter(Boolean);
    if (folders.some((f) => fs.existsSync(f)) || (await uidHasProcesses(uid))) return false;
    const stale = `${file}.stale-${process.pid}-${randomInt(1e9)}`;
    try {
      await fs.promises.rename(file, stale);
    } catch {
      return false;
    }
    await fs.promises.rm(stale, { force: true });
    return this.tryClaim(uid, root);
  }
}

/** Does any process run as `uid` (real, effective or saved)? */
export async function uidHasProcesses(uid: number): Promise<boolean> {
  const names = await fs.promises.readdir('/proc').catch(() => [] as string[]);
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const status = await fs.promises.readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
    const line = /^Uid:\s+(.*)$/m.exec(status)?.[1];
    if (line?.split(/\s+/).some((field) => Number(field) === uid)) return true;
  }
  return false;
}
