/**
 * Resource limits and process tracking of isolated sandboxes through cgroups. One group per sandbox
 * (`coderunner/<sandbox id>`) holds the limits; every process the sandbox runs (an app, a command)
 * lives in a leaf group of its own below it, so that stopping the app kills exactly the app and
 * everything it started (setsid, double forks and `env -i` included: nothing leaves a cgroup).
 * The tenants' group (`coderunner`) caps all sandboxes together below the host's CPUs, leaving a
 * reserve to the control plane, and weighs them below it: the server and the databases it starts
 * stay outside, in the server's own group, with the default weight.
 *
 * cgroup v2 (one hierarchy, `cgroup.kill`) where the host has it with the memory, pids and cpu
 * controllers; else cgroup v1 (`/sys/fs/cgroup/{memory,pids,cpu}` and, when mounted, `freezer`, which
 * stops a fork bomb in its tracks while it is killed).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SandboxUsage } from '../types';

export interface ResourceLimits {
  /** Memory (and memory + swap) cap, MiB. */
  memoryMb: number;
  /** Most processes (threads count too) at once. */
  pids: number;
  /** CPU time per wall-clock second (0.5 = half a core). */
  cpus: number;
  /** Cap of the sandbox's folder (app, home), MiB; checked by polling. */
  diskMb: number;
  /** Size of its private /tmp (memory-backed, counted in memoryMb), MiB. */
  tmpMb: number;
}

export const DEFAULT_LIMITS: ResourceLimits = {
  memoryMb: 256,
  pids: 128,
  cpus: 0.5,
  diskMb: 1024,
  tmpMb: 64,
};

/**
 * The tenants' group's weight against the control plane's default (v1 cpu.shares 1024, v2
 * cpu.weight 100): when the CPU is contended, all sandboxes together get half of what the server
 * (or one of its database's processes) gets; when it is not, they use what their quotas allow. Half,
 * not less: with an eighth, builds and app starts missed their start timeouts while a test suite (or
 * any busy neighbour) ran, and the reserve left by the quota already keeps the API answering.
 */
export const TENANTS_CPU_SHARES = 512;
export const TENANTS_CPU_WEIGHT = 50;

/** The host's CPUs (those this process may run on). */
export function hostCpus(): number {
  return os.availableParallelism();
}

/** CPUs kept for the control plane (server, databases) by default: a quarter of the host's, at least half a CPU. */
export function defaultCpuReserve(cpus: number): number {
  return Math.max(0.5, cpus / 4);
}

/** The fewest CPUs the sandboxes may be left together. */
export const MIN_TENANT_CPUS = 0.1;

/** What all sandboxes together may use: the host's CPUs less the reserve. */
export function tenantCpuBudget(cpus = hostCpus(), reserve = defaultCpuReserve(cpus)): number {
  return Math.max(MIN_TENANT_CPUS, Math.round((cpus - reserve) * 1000) / 1000);
}

const ROOT = '/sys/fs/cgroup';
const GROUP_PREFIX = 'coderunner';
const CPU_PERIOD_US = 100_000;
const KILL_ROUNDS = 200;

/** v1 counters of leaves already removed, by `<sandbox id>/<controller>` (this process's). */
const removedCounts = new Map<string, number>();

export type CgroupLayout =
  | { version: 2; base: string }
  | {
      version: 1;
      memory: string;
      pids: string;
      cpu: string;
      freezer: string | null;
      /** The cpuacct hierarchy when it is mounted apart from cpu (its CPU time); null when joined to cpu, or absent. */
      cpuacct?: string | null;
    };

/**
 * The cgroup hierarchy this host offers for sandboxes, or a sentence saying what is missing.
 * `prefix` names the tenants' group (tests use one of their own).
 */
export function detectCgroups(prefix = GROUP_PREFIX): CgroupLayout | string {
  const controllers = readText(path.join(ROOT, 'cgroup.controllers'));
  if (controllers !== null) {
    const have = new Set(controllers.trim().split(/\s+/));
    const missing = ['memory', 'pids', 'cpu'].filter((c) => !have.has(c));
    if (missing.length > 0) return `cgroup v2 without the ${missing.join(', ')} controller(s)`;
    return { version: 2, base: path.join(ROOT, prefix) };
  }
  const v1 = (name: string, probe: string) =>
    fs.existsSync(path.join(ROOT, name, probe)) ? path.join(ROOT, name, prefix) : null;
  const memory = v1('memory', 'memory.limit_in_bytes');
  const pids = v1('pids', 'cgroup.procs');
  const cpu = v1('cpu', 'cpu.cfs_quota_us');
  if (!memory || !pids || !cpu)
    return 'no cgroup v2, nor cgroup v1 memory, pids and cpu under /sys/fs/cgroup';
  // cpu and cpuacct are often one hierarchy (`cpu,cpuacct`, linked as both names): then cpu has it.
  let cpuacct = v1('cpuacct', 'cpuacct.usage');
  if (cpuacct && fs.existsSync(path.join(ROOT, 'cpu', 'cpuacct.usage'))) cpuacct = null;
  return { version: 1, memory, pids, cpu, freezer: v1('freezer', 'cgroup.procs'), cpuacct };
}

/** Can this process create groups there (root, writable hierarchy)? */
export function cgroupsWritable(layout: CgroupLayout): boolean {
  try {
    for (const dir of groupDirs(layout, '')) fs.mkdirSync(dir, { recursive: true });
    if (layout.version === 2) enableControllers(path.dirname(layout.base), layout.base);
    return true;
  } catch {
    return false;
  }
}

function enableControllers(parent: string, child: string): void {
  for (const dir of [parent, child]) {
    const control = path.join(dir, 'cgroup.subtree_control');
    const enabled = readText(control) ?? '';
    const wanted = ['memory', 'pids', 'cpu'].filter((c) => !enabled.split(/\s+/).includes(c));
    if (wanted.length > 0) fs.writeFileSync(control, wanted.map((c) => `+${c}`).join(' '));
  }
}

/** Every hierarchy's folder for `name` (a path below the coderunner group). */
function groupDirs(layout: CgroupLayout, name: string): string[] {
  if (layout.version === 2) return [path.join(layout.base, name)];
  return [
    layout.memory,
    layout.pids,
    layout.cpu,
    ...(layout.freezer ? [layout.freezer] : []),
    ...(layout.cpuacct ? [layout.cpuacct] : []),
  ].map((d) => path.join(d, name));
}

const cpuQuota = (cpus: number) => Math.max(1_000, Math.round(cpus * CPU_PERIOD_US));
const clamp = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n));
/** A sandbox's weight among the others: in proportion to its plan's CPUs (1 CPU = the default weight). */
export const sandboxCpuShares = (cpus: number) => clamp(Math.round(1024 * cpus), 2, 262_144);
export const sandboxCpuWeight = (cpus: number) => clamp(Math.round(100 * cpus), 1, 10_000);

/** The tenants' group's CPU quota in µs per period, or null when it has none. */
function tenantsQuota(layout: CgroupLayout): number | null {
  if (layout.version === 2) {
    const max = (readText(path.join(layout.base, 'cpu.max')) ?? 'max').trim().split(/\s+/)[0];
    return max === undefined || max === 'max' ? null : Number(max);
  }
  const quota = Number((readText(path.join(layout.cpu, 'cpu.cfs_quota_us')) ?? '-1').trim());
  return quota > 0 ? quota : null;
}

/**
 * Cap all sandboxes together at `cpus` and weigh them below the control plane (idempotent; every
 * server on the host writes the same). cgroup v1 refuses a parent's quota below a child's, so
 * sandboxes made under a larger cap are lowered to it first.
 */
export function configureTenants(layout: CgroupLayout, cpus: number): void {
  const quota = cpuQuota(cpus);
  if (layout.version === 2) {
    enableControllers(path.dirname(layout.base), layout.base);
    fs.writeFileSync(path.join(layout.base, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
    fs.writeFileSync(path.join(layout.base, 'cpu.weight'), String(TENANTS_CPU_WEIGHT));
    return;
  }
  const dir = layout.cpu;
  fs.writeFileSync(path.join(dir, 'cpu.shares'), String(TENANTS_CPU_SHARES));
  for (let attempt = 1; ; attempt++) {
    for (const child of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!child.isDirectory()) continue;
      const file = path.join(dir, child.name, 'cpu.cfs_quota_us');
      if (Number(readText(file)) > quota) tryWrite(file, String(quota));
    }
    try {
      fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quota));
      return;
    } catch (err) {
      // EINVAL: a sandbox made meanwhile with a larger quota; lower it and try again.
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL' || attempt >= 3) throw err;
    }
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function tryWrite(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch {
    // An optional knob the kernel lacks (e.g. memsw without swap accounting).
  }
}

/** A sandbox's group and its leaves. Names are sandbox ids (checked by the caller against ID_PATTERN). */
export class SandboxCgroup {
  constructor(
    private readonly layout: CgroupLayout,
    private readonly sandboxId: string,
  ) {}

  /** Create the sandbox's group with its limits (idempotent). */
  create(limits: ResourceLimits): void {
    const dirs = groupDirs(this.layout, this.sandboxId);
    for (const dir of dirs) fs.mkdirSync(dir, { recursive: true });
    const bytes = String(limits.memoryMb * 1024 * 1024);
    // No sandbox above all sandboxes' cap (v1 refuses it; v2 would apply the cap anyway).
    const cap = tenantsQuota(this.layout);
    const quota = String(cap === null ? cpuQuota(limits.cpus) : Math.min(cap, cpuQuota(limits.cpus)));
    if (this.layout.version === 2) {
      const dir = dirs[0]!;
      enableControllers(path.dirname(this.layout.base), this.layout.base);
      fs.writeFileSync(path.join(dir, 'memory.max'), bytes);
      tryWrite(path.join(dir, 'memory.swap.max'), '0');
      fs.writeFileSync(path.join(dir, 'pids.max'), String(limits.pids));
      fs.writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
      fs.writeFileSync(path.join(dir, 'cpu.weight'), String(sandboxCpuWeight(limits.cpus)));
      tryWrite(path.join(dir, 'cgroup.subtree_control'), '+memory +pids +cpu');
    } else {
      const memory = path.join(this.layout.memory, this.sandboxId);
      fs.writeFileSync(path.join(memory, 'memory.limit_in_bytes'), bytes);
      tryWrite(path.join(memory, 'memory.memsw.limit_in_bytes'), bytes);
      fs.writeFileSync(path.join(this.layout.pids, this.sandboxId, 'pids.max'), String(limits.pids));
      const cpu = path.join(this.layout.cpu, this.sandboxId);
      fs.writeFileSync(path.join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      fs.writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), quota);
      fs.writeFileSync(path.join(cpu, 'cpu.shares'), String(sandboxCpuShares(limits.cpus)));
    }
  }

  /**
   * Change the sandbox's memory and CPU (the end of its build: the app's run limits). Lowering memory
   * below what the group holds makes the kernel reclaim first (page cache left by the build), and
   * fails (EBUSY on v1) only when it cannot: then the caller is told, with what the group uses.
   */
  setLimits(limits: Pick<ResourceLimits, 'memoryMb' | 'cpus'>): void {
    const bytes = String(limits.memoryMb * 1024 * 1024);
    const cap = tenantsQuota(this.layout);
    const quota = String(cap === null ? cpuQuota(limits.cpus) : Math.min(cap, cpuQuota(limits.cpus)));
    if (this.layout.version === 2) {
      const dir = groupDirs(this.layout, this.sandboxId)[0]!;
      fs.writeFileSync(path.join(dir, 'memory.max'), bytes);
      fs.writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
      fs.writeFileSync(path.join(dir, 'cpu.weight'), String(sandboxCpuWeight(limits.cpus)));
      return;
    }
    const memory = path.join(this.layout.memory, this.sandboxId);
    const limit = path.join(memory, 'memory.limit_in_bytes');
    const memsw = path.join(memory, 'memory.memsw.limit_in_bytes');
    // v1 keeps memory ≤ memory+swap: lower memory first, raise memory+swap first.
    const lowering = Number(bytes) < Number(readText(limit) ?? 0);
    if (lowering) {
      fs.writeFileSync(limit, bytes);
      tryWrite(memsw, bytes);
    } else {
      tryWrite(memsw, bytes);
      fs.writeFileSync(limit, bytes);
    }
    const cpu = path.join(this.layout.cpu, this.sandboxId);
    fs.writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), quota);
    fs.writeFileSync(path.join(cpu, 'cpu.shares'), String(sandboxCpuShares(limits.cpus)));
  }

  /** Create a leaf for one process; returns the `cgroup.procs` files its process must join. */
  leaf(name: string): string[] {
    const dirs = groupDirs(this.layout, path.join(this.sandboxId, name));
    for (const dir of dirs) fs.mkdirSync(dir, { recursive: true });
    return dirs.map((dir) => path.join(dir, 'cgroup.procs'));
  }

  /** Names of the leaves that exist. */
  leaves(): string[] {
    const dir = groupDirs(this.layout, this.sandboxId)[0]!;
    try {
      return fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return [];
    }
  }

  /** Pids in a leaf (or in every leaf when none is named). */
  members(leaf?: string): number[] {
    const names = leaf ? [leaf] : this.leaves();
    const pids = new Set<number>();
    for (const name of names) {
      for (const dir of groupDirs(this.layout, path.join(this.sandboxId, name))) {
        for (const line of (readText(path.join(dir, 'cgroup.procs')) ?? '').split('\n')) {
          if (line) pids.add(Number(line));
        }
        if (this.layout.version === 2) break;
      }
    }
    return [...pids];
  }

  signal(leaf: string | undefined, signal: NodeJS.Signals): number {
    const pids = this.members(leaf);
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    }
    return pids.length;
  }

  /**
   * SIGKILL to every process of a leaf (or of the whole sandbox), until none is left. Forks racing
   * the kill are frozen first (v1 freezer) or killed by the kernel at once (v2 cgroup.kill).
   */
  async kill(leaf?: string): Promise<boolean> {
    const names = leaf ? [leaf] : this.leaves();
    for (const name of names) {
      const sub = path.join(this.sandboxId, name);
      if (this.layout.version === 2) {
        tryWrite(path.join(this.layout.base, sub, 'cgroup.kill'), '1');
      } else if (this.layout.freezer) {
        tryWrite(path.join(this.layout.freezer, sub, 'freezer.state'), 'FROZEN');
      }
    }
    let empty = false;
    for (let round = 0; round < KILL_ROUNDS; round++) {
      let left = 0;
      for (const name of names) left += this.signal(name, 'SIGKILL');
      if (left === 0) {
        empty = true;
        break;
      }
      if (this.layout.version === 1 && this.layout.freezer) {
        for (const name of names)
          tryWrite(path.join(this.layout.freezer, this.sandboxId, name, 'freezer.state'), 'THAWED');
      }
      // Processes that are just exiting are usually gone within a millisecond or two.
      await new Promise((resolve) => setTimeout(resolve, Math.min(10, 2 ** round)));
    }
    return empty;
  }

  /** How often the kernel's OOM killer ended a process of this sandbox. */
  oomKills(): number {
    const file = this.layout.version === 2 ? 'memory.events' : 'memory.oom_control';
    return this.count('memory', file, /oom_kill (\d+)/);
  }

  /** How often a fork was refused at the process limit. */
  pidsLimitHits(): number {
    return this.count('pids', 'pids.events', /max (\d+)/);
  }

  /** Memory in use by the sandbox now, bytes. */
  memoryUsage(): number {
    const dir = this.dir('memory');
    const file = this.layout.version === 2 ? 'memory.current' : 'memory.usage_in_bytes';
    return Number(readText(path.join(dir, file)) ?? 0);
  }

  /**
   * Memory now and at its peak, CPU time, and the limits in force, from the sandbox's own group (the
   * kernel's figures, read at each call: a limit lowered after the build shows at once). cpuSeconds
   * is null when the group has no CPU accounting (a v1 sandbox made before cpuacct was joined).
   */
  usage(): SandboxUsage {
    const num = (file: string) => {
      const text = readText(file)?.trim();
      return text === undefined || text === '' || text === 'max' || !Number.isFinite(Number(text))
        ? null
        : Number(text);
    };
    if (this.layout.version === 2) {
      const dir = path.join(this.layout.base, this.sandboxId);
      const usec = /usage_usec (\d+)/.exec(readText(path.join(dir, 'cpu.stat')) ?? '')?.[1];
      const [quota, period] = (readText(path.join(dir, 'cpu.max')) ?? 'max').trim().split(/\s+/);
      return {
        memoryBytes: num(path.join(dir, 'memory.current')) ?? 0,
        // memory.peak came with Linux 5.19.
        memoryPeakBytes: num(path.join(dir, 'memory.peak')),
        cpuSeconds: usec === undefined ? null : Number(usec) / 1e6,
        memoryLimitBytes: num(path.join(dir, 'memory.max')),
        cpus: quota && quota !== 'max' ? Number(quota) / Number(period || CPU_PERIOD_US) : null,
      };
    }
    const memory = path.join(this.layout.memory, this.sandboxId);
    const cpu = path.join(this.layout.cpu, this.sandboxId);
    const ns = num(
      path.join(this.layout.cpuacct ? path.join(this.layout.cpuacct, this.sandboxId) : cpu, 'cpuacct.usage'),
    );
    const quota = num(path.join(cpu, 'cpu.cfs_quota_us'));
    const period = num(path.join(cpu, 'cpu.cfs_period_us')) ?? CPU_PERIOD_US;
    const limit = num(path.join(memory, 'memory.limit_in_bytes'));
    return {
      memoryBytes: num(path.join(memory, 'memory.usage_in_bytes')) ?? 0,
      memoryPeakBytes: num(path.join(memory, 'memory.max_usage_in_bytes')),
      cpuSeconds: ns === null ? null : ns / 1e9,
      // v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages).
      memoryLimitBytes: limit === null || limit >= 2 ** 62 ? null : limit,
      cpus: quota !== null && quota > 0 ? quota / period : null,
    };
  }

  /** Start the peak over from the memory in use now (v1; v2's memory.peak cannot be reset for all readers). */
  resetMemoryPeak(): void {
    if (this.layout.version === 1)
      tryWrite(path.join(this.layout.memory, this.sandboxId, 'memory.max_usage_in_bytes'), '0');
  }

  /**
   * A counter of the sandbox. v2 counts in the group and its descendants; v1 counts in the leaf
   * where it happened: summed over the leaves, those removed already included.
   */
  private count(controller: 'memory' | 'pids', file: string, pattern: RegExp): number {
    const read = (leaf?: string) =>
      Number(pattern.exec(readText(path.join(this.dir(controller, leaf), file)) ?? '')?.[1] ?? 0);
    if (this.layout.version === 2) return read();
    let total = read() + (removedCounts.get(`${this.sandboxId}/${controller}`) ?? 0);
    for (const leaf of this.leaves()) total += read(leaf);
    return total;
  }

  /** Remove a leaf, or every leaf and then the sandbox's group (once empty). */
  remove(leaf?: string): void {
    const names = leaf ? [leaf] : this.leaves();
    if (this.layout.version === 1 && leaf) {
      // Its counters go with it: count() keeps them.
      const kept: [controller: 'memory' | 'pids', file: string, pattern: RegExp][] = [
        ['memory', 'memory.oom_control', /oom_kill (\d+)/],
        ['pids', 'pids.events', /max (\d+)/],
      ];
      for (const [controller, file, pattern] of kept) {
        const text = readText(path.join(this.dir(controller, leaf), file)) ?? '';
        const n = Number(pattern.exec(text)?.[1] ?? 0);
        const key = `${this.sandboxId}/${controller}`;
        if (n > 0) removedCounts.set(key, (removedCounts.get(key) ?? 0) + n);
      }
    }
    for (const name of names) {
      for (const dir of groupDirs(this.layout, path.join(this.sandboxId, name))) rmdir(dir);
    }
    if (!leaf) {
      for (const dir of groupDirs(this.layout, this.sandboxId)) rmdir(dir);
      removedCounts.delete(`${this.sandboxId}/memory`);
      removedCounts.delete(`${this.sandboxId}/pids`);
    }
  }

  private dir(controller: 'memory' | 'pids', leaf?: string): string {
    const sub = leaf ? path.join(this.sandboxId, leaf) : this.sandboxId;
    return this.layout.version === 2
      ? path.join(this.layout.base, sub)
      : path.join(this.layout[controller], sub);
  }
}

function rmdir(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // Gone, or still busy (a process that could not be killed): left for the next removal.
  }
}
