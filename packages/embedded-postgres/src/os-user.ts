import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The OS user the clusters run as when we are root: Postgres refuses root, and sharing the distro's
 * `postgres` user would hand our clusters' files to whatever else runs as it (the host's PostgreSQL). */
export const DEFAULT_OS_USER = 'coderunner-pg';

export interface RunAs {
  user?: string;
  uid?: number;
  gid?: number;
}

function lookup(user: string): RunAs {
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: 'pipe' }).trim());
  const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', stdio: 'pipe' }).trim());
  return { user, uid, gid };
}

/** Not root: Postgres runs as we do. Root: as `user`, created (system account, no login, no home) when missing. */
export function runAsIdentity(user: string, fail: (message: string) => Error): RunAs {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  let lastError = '';
  // Several processes may create it at once: useradd then fails on the locked /etc/passwd, and the
  // user appears a moment later.
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      return lookup(user);
    } catch {
      // not there yet
    }
    try {
      execFileSync(
        'useradd',
        [
          '--system',
          '--user-group',
          '--no-create-home',
          '--home-dir',
          '/nonexistent',
          '--shell',
          '/usr/sbin/nologin',
          user,
        ],
        { stdio: 'pipe' },
      );
      return lookup(user);
    } catch (err) {
      lastError = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  throw fail(
    `running as root, PostgreSQL needs an OS user "${user}" and it could not be created: ${lastError}`,
  );
}

/** Gives a whole tree to `ids` (a cluster initialised by another OS user, e.g. an older release's `postgres`). */
export function chownTree(dir: string, ids: RunAs): void {
  if (ids.uid === undefined) return;
  const gid = ids.gid ?? ids.uid;
  const walk = (p: string) => {
    fs.lchownSync(p, ids.uid!, gid);
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
  };
  walk(dir);
}
