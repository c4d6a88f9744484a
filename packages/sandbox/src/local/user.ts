/**
 * Who runs sandbox code. A server running as root never runs users' code as root: it runs it as an
 * unprivileged OS user. A server running as anyone else runs it as itself (it cannot switch users).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SandboxError } from '../types';

const run = promisify(execFile);

export interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

/** Created on first use (as a system user without a home or shell) when the server runs as root. */
export const DEFAULT_SANDBOX_USER = 'coderunner-sandbox';
/** Used when the default user cannot be created (no useradd, read-only /etc). */
const FALLBACK_USER = 'nobody';

const resolved = new Map<string, Promise<RunAs>>();

/**
 * The user sandbox code runs as: undefined when the server is not root. `requested` must exist;
 * the default user is created when missing.
 */
export function resolveRunAs(requested: string | undefined): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return Promise.resolve(undefined);
  const key = requested ?? '';
  let pending = resolved.get(key);
  if (!pending) {
    pending = requested ? existingUser(requested) : defaultUser();
    // A failure is not cached: the next sandbox tries again (e.g. after the admin created the user).
    pending.catch(() => resolved.delete(key));
    resolved.set(key, pending);
  }
  return pending;
}

async function existingUser(name: string): Promise<RunAs> {
  const user = await lookup(name);
  if (!user) throw new SandboxError(`runAsUser: there is no OS user named "${name}"`);
  if (user.uid === 0)
    throw new SandboxError(`runAsUser: "${name}" is root; sandbox code must run unprivileged`);
  return user;
}

async function defaultUser(): Promise<RunAs> {
  const existing = await lookup(DEFAULT_SANDBOX_USER);
  if (existing) return existing;
  try {
    await run('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      DEFAULT_SANDBOX_USER,
    ]);
  } catch {
    // Another server may have created it meanwhile, or useradd is missing: look again, then fall back.
  }
  const user = (await lookup(DEFAULT_SANDBOX_USER)) ?? (await lookup(FALLBACK_USER));
  if (!user || user.uid === 0) {
    throw new SandboxError(
      `cannot create the OS user ${DEFAULT_SANDBOX_USER} and there is no "${FALLBACK_USER}" user: ` +
        'create an unprivileged user and pass it as runAsUser',
    );
  }
  return user;
}

async function lookup(name: string): Promise<RunAs | null> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return null;
  }
}
