/**
 * One tenant cannot take the machine's CPU (issue #20): all sandboxes sit in one tenants' cgroup
 * whose quota leaves a reserve to the control plane and whose weight is below the server's; each
 * sandbox is weighted by its plan's CPUs and never gets more than the tenants' cap. The values are
 * read back from the cgroup files. Runs as root on a host with cgroups (v1 here, v2 elsewhere).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLocalProvider } from '../src/local';
import {
  type CgroupLayout,
  cgroupsWritable,
  configureTenants,
  DEFAULT_LIMITS,
  detectCgroups,
  SandboxCgroup,
  TENANTS_CPU_SHARES,
  TENANTS_CPU_WEIGHT,
  tenantCpuBudget,
} from '../src/local/cgroups';
import type { Sandbox } from '../src/types';
import { isRoot, tempRoot } from './fixtures/local/helpers';

const TEAM = { memoryMb: 1024, pids: 512, cpus: 2, diskMb: 4096, tmpMb: 256 };

const CGROUP_ROOT = '/sys/fs/cgroup';
/** A tenants' group of this test's own, so that it does not touch the real one's settings. */
const PREFIX = `coderunner-test-cpu-${process.pid}`;
const detected = isRoot ? detectCgroups(PREFIX) : 'not root';
const layout: CgroupLayout | null =
  typeof detected !== 'string' && cgroupsWritable(detected) ? detected : null;

const read = (file: string) => fs.readFileSync(file, 'utf8').trim();

/** The CPU settings of a group below the cgroup root (`''` is the tenants' group itself). */
function cpuOf(l: CgroupLayout, group: string): { quotaUs: number | null; weight: number } {
  if (l.version === 2) {
    const dir = path.join(l.base, group);
    const [max] = read(path.join(dir, 'cpu.max')).split(' ');
    return {
      quotaUs: max === 'max' ? null : Number(max),
      weight: Number(read(path.join(dir, 'cpu.weight'))),
    };
  }
  const dir = path.join(l.cpu, group);
  const quota = Number(read(path.join(dir, 'cpu.cfs_quota_us')));
  return { quotaUs: quota > 0 ? quota : null, weight: Number(read(path.join(dir, 'cpu.shares'))) };
}

/** The weight of this process's own group (the control plane's, in a server), default when the file is absent. */
function ownWeight(l: CgroupLayout): number {
  const lines = read('/proc/self/cgroup').split('\n');
  if (l.version === 2) {
    const group = lines.find((line) => line.startsWith('0::'))!.slice(3);
    const file = path.join(CGROUP_ROOT, group, 'cpu.weight');
    return fs.existsSync(file) ? Number(read(file)) : 100;
  }
  const group = lines.find((line) => /^\d+:([^:]*,)?cpu(,[^:]*)?:/.test(line))!.split(':')[2]!;
  return Number(read(path.join(path.dirname(l.cpu), group, 'cpu.shares')));
}

const groups: SandboxCgroup[] = [];
function sandboxGroup(l: CgroupLayout, id: string): SandboxCgroup {
  const group = new SandboxCgroup(l, id);
  groups.push(group);
  return group;
}

afterAll(() => {
  for (const group of groups) group.remove();
  if (!layout) return;
  const dirs =
    layout.version === 2
      ? [layout.base]
      : [layout.memory, layout.pids, layout.cpu, ...(layout.freezer ? [layout.freezer] : [])];
  // Only this test's own group: never the real tenants' group.
  for (const dir of dirs) if (path.basename(dir) === PREFIX) fs.rmdirSync(dir);
});

describe.skipIf(!layout)(
  'CPU of the tenants: a cap leaving the reserve, and a weight below the control plane',
  () => {
    it('the tenants group is capped at the host CPUs less the reserve and weighted below this process', () => {
      const l = layout!;
      configureTenants(l, tenantCpuBudget(2, 0.5));
      const tenants = cpuOf(l, '');
      expect(tenants.quotaUs).toBe(150_000);
      expect(tenants.weight).toBe(l.version === 2 ? TENANTS_CPU_WEIGHT : TENANTS_CPU_SHARES);
      expect(tenants.weight * 2).toBeLessThanOrEqual(ownWeight(l));
    });

    it("a sandbox's group is nested in it, weighted by its plan, and never above the tenants' cap", () => {
      const l = layout!;
      configureTenants(l, 1.5);
      const team = sandboxGroup(l, 'local-c0ffee000001');
      team.create(TEAM);
      const free = sandboxGroup(l, 'local-c0ffee000002');
      free.create(DEFAULT_LIMITS);
      const teamDir =
        l.version === 2 ? path.join(l.base, 'local-c0ffee000001') : path.join(l.cpu, 'local-c0ffee000001');
      expect(path.dirname(teamDir)).toBe(l.version === 2 ? l.base : l.cpu);
      expect(fs.existsSync(teamDir)).toBe(true);
      // 2 CPUs asked, 1.5 left to all the tenants: clamped.
      expect(cpuOf(l, 'local-c0ffee000001')).toEqual({
        quotaUs: 150_000,
        weight: l.version === 2 ? 200 : 2048,
      });
      expect(cpuOf(l, 'local-c0ffee000002')).toEqual({
        quotaUs: 50_000,
        weight: l.version === 2 ? 50 : 512,
      });
      // A process of the sandbox lives in a leaf below its group, so below the tenants' cap too.
      const procs = team.leaf('app');
      expect(procs.some((file) => file.startsWith(`${teamDir}/app/`))).toBe(true);
    });

    it('lowering the cap lowers the sandboxes made under a larger one (cgroup v1 refuses it otherwise)', () => {
      const l = layout!;
      configureTenants(l, 4);
      const group = sandboxGroup(l, 'local-c0ffee000003');
      group.create(TEAM);
      expect(cpuOf(l, 'local-c0ffee000003').quotaUs).toBe(200_000);
      configureTenants(l, 1);
      expect(cpuOf(l, '').quotaUs).toBe(100_000);
      expect(cpuOf(l, 'local-c0ffee000003').quotaUs).toBe(100_000);
    });
  },
);

describe.skipIf(!layout)('the local provider caps its tenants', () => {
  const root = tempRoot('coderunner-cpu-');
  const created: Sandbox[] = [];
  // The real tenants' group, shared with every server on this machine: put back as it was.
  const real = detectCgroups() as CgroupLayout;
  const before = layout ? cpuOf(real, '') : null;
  afterAll(async () => {
    for (const sandbox of created) await sandbox.kill();
    root.cleanup();
    if (!before) return;
    if (real.version === 2) {
      fs.writeFileSync(path.join(real.base, 'cpu.max'), `${before.quotaUs ?? 'max'} 100000`);
      fs.writeFileSync(path.join(real.base, 'cpu.weight'), String(before.weight));
    } else {
      fs.writeFileSync(path.join(real.cpu, 'cpu.cfs_quota_us'), String(before.quotaUs ?? -1));
      fs.writeFileSync(path.join(real.cpu, 'cpu.shares'), String(before.weight));
    }
  });

  it("a team sandbox's cgroup is under the tenants' group, whose quota leaves the reserve", async () => {
    const provider = createLocalProvider({
      rootDir: root.rootDir,
      isolation: 'sandbox',
      tenantCpus: 1.5,
      limits: () => TEAM,
    });
    const sandbox = await provider.create({ metadata: { deploymentId: 'd', projectId: 'p', role: 'app' } });
    created.push(sandbox);
    expect(cpuOf(real, '')).toEqual({
      quotaUs: 150_000,
      weight: real.version === 2 ? TENANTS_CPU_WEIGHT : TENANTS_CPU_SHARES,
    });
    expect(cpuOf(real, sandbox.id)).toEqual({ quotaUs: 150_000, weight: real.version === 2 ? 200 : 2048 });
  });
});
