/**
 * Removing an isolated sandbox's folder without ever following a link its code planted. Called only
 * once every process of the sandbox is gone (its cgroup is empty), so nothing can swap folders for
 * symlinks meanwhile. What the sandbox's code could write (app/, home/) is emptied by a process
 * running as the sandbox's own uid, inside bubblewrap with only those two folders mounted: whatever
 * it follows, it can delete nothing its uid could not already delete. The server (root) then removes
 * only what it wrote itself (logs, record, passwd) and the two folders, now empty.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { SandboxError } from '../types';
import { dropPrivileges, type IsolationTools, systemArgs } from './isolation';
import type { UidAllocator } from './uids';

const run = promisify(execFile);
const EMPTY_SCRIPT =
  'chmod -R u+rwx /d/app /d/home 2>/dev/null; find /d/app /d/home -mindepth 1 -delete; ' +
  'test -z "$(find /d/app /d/home -mindepth 1 -print -quit)"';

export async function removeIsolatedFolder(
  root: string,
  uid: number,
  tools: IsolationTools,
  uids: UidAllocator,
): Promise<void> {
  if (!fs.existsSync(root)) return;
  const trash = path.join(path.dirname(root), `.trash-${path.basename(root)}-${process.pid}-${Date.now()}`);
  // The claim lists every place files of the uid may be, so that a crash from here on keeps it claimed.
  await uids.addPath(uid, trash);
  try {
    await fs.promises.rename(root, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await emptyAsUid(trash, uid, tools);
  await fs.promises.rm(trash, { recursive: true, force: true });
  await uids.release(uid);
}

async function emptyAsUid(trash: string, uid: number, tools: IsolationTools): Promise<void> {
  const mounts: string[] = [];
  for (const dir of ['app', 'home']) {
    const full = path.join(trash, dir);
    const stat = await fs.promises.lstat(full).catch(() => null);
    if (!stat) continue;
    // The server made these folders; anything else there now is not ours to trust.
    if (!stat.isDirectory() || stat.isSymbolicLink())
      throw new SandboxError(`sandbox folder ${full} is not a folder: left in place`);
    mounts.push('--bind', full, `/d/${dir}`);
  }
  if (mounts.length === 0) return;
  try {
    await run(
      tools.bwrap,
      [
        ...systemArgs(),
        '--dev',
        '/dev',
        '--perms',
        '0755',
        '--dir',
        '/d',
        ...mounts,
        '--unshare-pid',
        '--unshare-ipc',
        '--unshare-uts',
        '--unshare-net',
        '--new-session',
        '--',
        ...dropPrivileges(tools.setpriv, uid),
        '/bin/sh',
        '-c',
        EMPTY_SCRIPT,
      ],
      { timeout: 120_000, env: { PATH: '/usr/bin:/bin' } },
    );
  } catch (err) {
    throw new SandboxError(
      `could not empty the sandbox folder ${trash} as its uid ${uid}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
}
