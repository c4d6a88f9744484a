/**
 * Processes of sandboxes, seen through Linux's /proc: a pid plus its start time (and the boot id)
 * names one process for good, even after the pid is reused; process groups and environment markers
 * find everything a command started. Without /proc (not Linux) this degrades to kill(pid, 0).
 */
import fs from 'node:fs';

/** Identifies one process across server restarts (pids are reused; pid + start time + boot are not). */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot. */
  startTime: string;
  bootId: string;
}

interface ProcStat {
  state: string;
  pgrp: number;
  startTime: string;
}

const HAS_PROC = fs.existsSync('/proc/self/stat');
/** States of a process that has ended but not been reaped yet. */
const ENDED_STATES = new Set(['Z', 'X', 'x']);
/** How long to wait for processes to go after SIGKILL (they cannot refuse; this only bounds the wait). */
const KILL_WAIT_MS = 2_000;
const POLL_MS = 25;

let cachedBootId: string | undefined;

function bootId(): string {
  cachedBootId ??= readText('/proc/sys/kernel/random/boot_id')?.trim() ?? '';
  return cachedBootId;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function parseStat(text: string | null): ProcStat | null {
  if (text === null) return null;
  // Field 2, the command name, is in parentheses and may itself hold spaces and ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const [state, , pgrp] = fields;
  const startTime = fields[19];
  if (state === undefined || pgrp === undefined || startTime === undefined) return null;
  return { state, pgrp: Number(pgrp), startTime };
}

/**
 * The identity of a live process, read synchronously so that it is taken before Node reaps a child
 * that exits at once (until then its pid cannot be reused). Null when it is already gone.
 */
export function identify(pid: number): ProcessIdentity | null {
  if (!HAS_PROC) return { pid, startTime: '', bootId: '' };
  const stat = parseStat(readText(`/proc/${pid}/stat`));
  if (!stat || ENDED_STATES.has(stat.state)) return null;
  return { pid, startTime: stat.startTime, bootId: bootId() };
}

/** Is this very process still running (not ended, not another process that got the same pid)? */
export function isRunning(id: ProcessIdentity): boolean {
  if (!HAS_PROC) return signalAlive(id.pid);
  if (id.bootId !== bootId()) return false;
  const stat = parseStat(readText(`/proc/${id.pid}/stat`));
  return stat !== null && stat.startTime === id.startTime && !ENDED_STATES.has(stat.state);
}

/**
 * Waits until this very process has ended; SIGKILL when it is still there after `graceMs`, then a
 * bounded wait. True when it ended.
 */
export async function waitUntilEnded(id: ProcessIdentity, graceMs: number): Promise<boolean> {
  for (const [ms, then] of [
    [graceMs, 'SIGKILL'],
    [KILL_WAIT_MS, null],
  ] as const) {
    const deadline = Date.now() + ms;
    while (isRunning(id)) {
      if (Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (!isRunning(id)) return true;
    if (then) trySignal(id.pid, then);
  }
  return !isRunning(id);
}

function signalAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function allPids(): Promise<number[]> {
  const names = await fs.promises.readdir('/proc').catch(() => [] as string[]);
  return names.filter((name) => /^\d+$/.test(name)).map(Number);
}

async function readProc(pid: number, file: string): Promise<string | null> {
  return fs.promises.readFile(`/proc/${pid}/${file}`, 'utf8').catch(() => null);
}

/** Running (not ended) members of process group `pgid`. */
export async function groupMembers(pgid: number): Promise<number[]> {
  if (!HAS_PROC) return signalAlive(-pgid) ? [pgid] : [];
  const members: number[] = [];
  for (const pid of await allPids()) {
    const stat = parseStat(await readProc(pid, 'stat'));
    if (stat && stat.pgrp === pgid && !ENDED_STATES.has(stat.state)) members.push(pid);
  }
  return members;
}

/**
 * Running processes whose environment holds every one of `entries` ("NAME=value"). Sandbox
 * processes carry such markers, which survive leaving the process group (setsid, daemons).
 */
export async function processesWithEnv(entries: readonly string[]): Promise<number[]> {
  if (!HAS_PROC || entries.length === 0) return [];
  const found: number[] = [];
  for (const pid of await allPids()) {
    if (pid === process.pid) continue;
    const environ = await readProc(pid, 'environ');
    if (environ === null) continue;
    const vars = new Set(environ.split('\0'));
    if (!entries.every((entry) => vars.has(entry))) continue;
    const stat = parseStat(await readProc(pid, 'stat'));
    if (stat && !ENDED_STATES.has(stat.state)) found.push(pid);
  }
  return found;
}

export interface TerminateTarget {
  /** Process groups (a command's shell is its group's leader: pgid = its pid). */
  groups?: readonly number[];
  /** Also every process whose environment holds all these markers. */
  env?: readonly string[];
}

/**
 * SIGTERM to the target processes, then SIGKILL to whatever is left after `graceMs`. Resolves once
 * none is left (or, should a process survive SIGKILL, after a bounded wait).
 */
export async function terminate(target: TerminateTarget, graceMs: number): Promise<void> {
  const find = async () => {
    const groups: number[] = [];
    const pids = new Set<number>();
    for (const pgid of target.groups ?? []) {
      const members = await groupMembers(pgid);
      if (members.length > 0) groups.push(pgid);
      for (const pid of members) pids.add(pid);
    }
    for (const pid of await processesWithEnv(target.env ?? [])) pids.add(pid);
    return { groups, pids: [...pids] };
  };
  const send = async (signal: NodeJS.Signals): Promise<boolean> => {
    // Groups are signalled only while they have members: then their number cannot belong to anyone else.
    const { groups, pids } = await find();
    for (const pgid of groups) trySignal(-pgid, signal);
    for (const pid of pids) trySignal(pid, signal);
    return pids.length > 0;
  };
  const gone = async (ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    for (;;) {
      if ((await find()).pids.length === 0) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };
  if (!(await send('SIGTERM'))) return;
  if (await gone(graceMs)) return;
  await send('SIGKILL');
  await gone(KILL_WAIT_MS);
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone (ESRCH), which is the point.
  }
}
