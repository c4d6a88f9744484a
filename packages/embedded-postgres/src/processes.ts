/** What we need to know about other processes: alive or not, started when, by whom. Linux `/proc` first. */
import fs from 'node:fs';
import path from 'node:path';

/**
 * Whether `pid` runs. A zombie does not: a postmaster killed after its starter died is reparented to
 * whatever reaps orphans here, and until that reaps it, signal 0 still reaches it.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return statFields(pid)?.[0] !== 'Z';
}

/** Fields of `/proc/<pid>/stat` after the command name (field 3 is index 0). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * When the process started (clock ticks since boot), so that a recycled pid is not taken for the
 * process we recorded. Undefined without `/proc` (macOS): callers then trust the pid alone.
 */
export function processStartTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

export function parentPid(pid: number): number | undefined {
  const ppid = Number(statFields(pid)?.[1]);
  return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
}

export function commandLine(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

/** A Node.js process (the kind that starts clusters), as opposed to init or a subreaper. */
export function isNodeProcess(pid: number): boolean {
  const argv0 = commandLine(pid)?.split(' ')[0];
  return argv0 !== undefined && /^node/.test(path.basename(argv0));
}

export function processUid(pid: number): number | undefined {
  try {
    return fs.statSync(`/proc/${pid}`).uid;
  } catch {
    return undefined;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!processAlive(pid)) return true;
    await sleep(50);
  }
  return !processAlive(pid);
}

/** Fast shutdown (SIGINT: open transactions roll back, data is kept), then SIGKILL if it hangs. */
export async function stopProcess(pid: number, timeoutMs = 20_000): Promise<boolean> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return true;
  }
  if (await waitForExit(pid, timeoutMs)) return true;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return true;
  }
  return waitForExit(pid, 5_000);
}
