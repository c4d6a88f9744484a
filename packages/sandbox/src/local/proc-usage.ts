/**
 * What an unisolated app uses, read from /proc: it has no cgroup of its own, so its process tree
 * (the app's process and its descendants, found through each thread's `children` file) stands in.
 * Memory is the tree's resident set now; CPU the tree's time, with that of the children its
 * processes have reaped. A process that left the tree (double fork, reparented to init) is missed,
 * and there is no peak: the kernel keeps none for a tree.
 */
import fs from 'node:fs';

/** Linux's USER_HZ (clock ticks of /proc/<pid>/stat) and page size on the platforms we run on. */
const TICKS_PER_SECOND = 100;
const PAGE_BYTES = 4096;
/** A bound on the walk: an app with more processes than this is counted in part. */
const MAX_PROCESSES = 512;

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Direct children of a process (every thread's list: a worker thread may start processes too). */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const task of tasks) {
    for (const word of (readText(`/proc/${pid}/task/${task}/children`) ?? '').split(' ')) {
      if (word.trim()) out.push(Number(word));
    }
  }
  return out;
}

/** Resident memory (bytes) and CPU time (seconds, reaped children included) of `pid` and its descendants; null when it is gone. */
export function processTreeUsage(pid: number): { memoryBytes: number; cpuSeconds: number } | null {
  const seen = new Set<number>();
  const queue = [pid];
  let memoryBytes = 0;
  let ticks = 0;
  while (queue.length > 0 && seen.size < MAX_PROCESSES) {
    const p = queue.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    const stat = readText(`/proc/${p}/stat`);
    if (stat === null) {
      if (p === pid) return null;
      continue;
    }
    // After the command name (in parentheses, may hold spaces): fields 3 on; utime is field 14, rss 24.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    memoryBytes += Number(fields[21]) * PAGE_BYTES;
    queue.push(...childrenOf(p));
  }
  return { memoryBytes, cpuSeconds: ticks / TICKS_PER_SECOND };
}

/** CPU time (seconds) of a set of processes, each with the children it reaped (a v1 group without cpuacct). */
export function processesCpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const p of pids) {
    const stat = readText(`/proc/${p}/stat`);
    if (stat === null) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  }
  return ticks / TICKS_PER_SECOND;
}
