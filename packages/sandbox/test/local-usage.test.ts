/**
 * What a sandbox's app uses (`Sandbox.usage()`), against the kernel's own figures: a real app that
 * allocates 100 MB, frees it and burns CPU on request. Isolated: the sandbox's cgroup files, read
 * here directly; unisolated: the app's process tree in /proc.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { APPS_ADDRESS, createLocalProvider, findFreePort } from '../src/local';
import { detectCgroups } from '../src/local/cgroups';
import type { Sandbox, SandboxUsage } from '../src/types';
import { eventually, sandboxProcesses, tempRoot } from './fixtures/local/helpers';

const root = tempRoot('coderunner-usage-');
const isolated = createLocalProvider({ rootDir: root.rootDir }).isolation().mode === 'sandbox';
const MB = 1024 * 1024;
const LIMITS = { memoryMb: 256, pids: 64, cpus: 0.5, diskMb: 64, tmpMb: 16 };

/** 100 MB on /alloc (written, so resident), freed on /free; /busy?ms= loops until it has used `ms` of CPU (whatever the load). */
const APP = `
let held = null;
require('http').createServer((q, r) => {
  const url = new URL(q.url, 'http://x');
  if (url.pathname === '/alloc') held = Buffer.alloc(100 * 1024 * 1024, 7);
  if (url.pathname === '/free') { held = null; global.gc(); }
  if (url.pathname === '/busy') {
    const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    const end = cpu() + Number(url.searchParams.get('ms'));
    while (cpu() < end);
  }
  r.end(String(process.memoryUsage().rss));
}).listen(process.env.PORT, '127.0.0.1');
`;

const created: Sandbox[] = [];

afterEach(async () => {
  await Promise.all(created.splice(0).map((s) => s.kill()));
});

afterAll(async () => {
  await eventually(() => expect(sandboxProcesses(root.rootDir)).toEqual([]), 5_000);
  root.cleanup();
});

async function startApp(isolation: 'auto' | 'none') {
  const provider = createLocalProvider({
    rootDir: root.rootDir,
    isolation,
    killGraceMs: 500,
    limits: () => LIMITS,
  });
  const sandbox = await provider.create({
    metadata: { deploymentId: 'd-usage', projectId: 'p-usage', role: 'app' },
  });
  created.push(sandbox);
  await sandbox.writeFiles([{ path: 'server.js', data: APP }]);
  return { provider, sandbox };
}

async function serve(sandbox: Sandbox, isolation: 'auto' | 'none') {
  const port = await findFreePort(isolation === 'none' ? '127.0.0.1' : APPS_ADDRESS);
  const app = await sandbox.startApp({ command: 'node --expose-gc server.js', port });
  await sandbox.waitUntilReady(app, { timeoutMs: 30_000 });
  return (p: string) =>
    fetch(`${app.internalUrl}${p}`, { signal: AbortSignal.timeout(30_000) }).then((r) => r.text());
}

const usageOf = async (sandbox: Sandbox): Promise<SandboxUsage> => {
  const usage = await sandbox.usage!();
  expect(usage).not.toBeNull();
  return usage!;
};

describe.skipIf(!isolated)('usage of an isolated sandbox, from its cgroup', () => {
  const layout = detectCgroups();
  const file = (controller: 'memory' | 'cpu' | 'cpuacct', id: string, name: string) => {
    if (typeof layout === 'string') throw new Error(layout);
    if (layout.version === 2)
      return Number(
        fs
          .readFileSync(path.join(layout.base, id, name), 'utf8')
          .trim()
          .split(/\s+/)[0],
      );
    const dir = controller === 'cpuacct' ? (layout.cpuacct ?? layout.cpu) : layout[controller];
    return Number(fs.readFileSync(path.join(dir, id, name), 'utf8'));
  };
  const v2 = typeof layout !== 'string' && layout.version === 2;
  const memoryNow = (id: string) => file('memory', id, v2 ? 'memory.current' : 'memory.usage_in_bytes');
  const cpuNow = (id: string) =>
    v2
      ? Number(
          /usage_usec (\d+)/.exec(
            fs.readFileSync(path.join((layout as { base: string }).base, id, 'cpu.stat'), 'utf8'),
          )![1],
        ) / 1e6
      : file('cpuacct', id, 'cpuacct.usage') / 1e9;
  const within10 = (ours: number, theirs: number) =>
    expect(Math.abs(ours - theirs)).toBeLessThanOrEqual(theirs * 0.1);

  it('memory now and at its peak, within 10% of the cgroup, with the limits in force', async () => {
    const { sandbox } = await startApp('auto');
    // A build that used 150 MB: the app's peak starts over when it starts.
    const build = await sandbox.run(`node -e "Buffer.alloc(150 * 1024 * 1024, 1)"`, { timeoutMs: 60_000 });
    expect(build.exitCode, build.stderr).toBe(0);
    const get = await serve(sandbox, 'auto');

    const idle = await usageOf(sandbox);
    within10(idle.memoryBytes, memoryNow(sandbox.id));
    expect(idle.memoryLimitBytes).toBe(256 * MB);
    expect(idle.cpus).toBe(0.5);
    if (!v2) expect(idle.memoryPeakBytes!).toBeLessThan(140 * MB);

    await get('/alloc');
    const allocated = await usageOf(sandbox);
    within10(allocated.memoryBytes, memoryNow(sandbox.id));
    expect(allocated.memoryBytes).toBeGreaterThan(idle.memoryBytes + 95 * MB);

    // A collection may leave the buffer to the next one (V8 frees external memory lazily): ask again until it is gone.
    const freed = await eventually(async () => {
      await get('/free');
      const usage = await usageOf(sandbox);
      expect(usage.memoryBytes).toBeLessThan(allocated.memoryBytes - 80 * MB);
      return usage;
    }, 30_000);
    within10(freed.memoryBytes, memoryNow(sandbox.id));
    if (freed.memoryPeakBytes !== null) {
      expect(freed.memoryPeakBytes).toBeGreaterThanOrEqual(allocated.memoryBytes);
      within10(
        freed.memoryPeakBytes,
        file('memory', sandbox.id, v2 ? 'memory.peak' : 'memory.max_usage_in_bytes'),
      );
    }
  }, 120_000);

  it('CPU time rises while the app is busy, within 10% of the cgroup', async () => {
    const { sandbox } = await startApp('auto');
    const get = await serve(sandbox, 'auto');
    const before = await usageOf(sandbox);
    await get('/busy?ms=800');
    const after = await usageOf(sandbox);
    within10(after.cpuSeconds!, cpuNow(sandbox.id));
    expect(after.cpuSeconds! - before.cpuSeconds!).toBeGreaterThanOrEqual(0.8);
  }, 120_000);

  it('a lowered memory limit shows at the next read', async () => {
    const { sandbox } = await startApp('auto');
    await serve(sandbox, 'auto');
    if (typeof layout === 'string') throw new Error(layout);
    const limitFile =
      layout.version === 2
        ? path.join(layout.base, sandbox.id, 'memory.max')
        : path.join(layout.memory, sandbox.id, 'memory.limit_in_bytes');
    fs.writeFileSync(limitFile, String(200 * MB));
    expect((await usageOf(sandbox)).memoryLimitBytes).toBe(200 * MB);
  }, 120_000);
});

describe('usage of an unisolated app, from its process tree', () => {
  it('memory and CPU of the app, no limits; null once it has stopped', async () => {
    const { sandbox } = await startApp('none');
    const get = await serve(sandbox, 'none');
    const idle = await usageOf(sandbox);
    expect(idle).toMatchObject({ memoryPeakBytes: null, memoryLimitBytes: null, cpus: null });
    // The app reports its own resident set: the tree is the app here (sh execs node, or runs it).
    await get('/alloc');
    const rss = Number(await get('/'));
    const allocated = await usageOf(sandbox);
    expect(allocated.memoryBytes).toBeGreaterThan(idle.memoryBytes + 95 * MB);
    expect(Math.abs(allocated.memoryBytes - rss)).toBeLessThan(rss * 0.1);
    await get('/busy?ms=800');
    // The kernel counts in ticks of 10 ms.
    expect((await usageOf(sandbox)).cpuSeconds! - allocated.cpuSeconds!).toBeGreaterThanOrEqual(0.78);
    await sandbox.stopApp();
    expect(await sandbox.usage!()).toBeNull();
  }, 120_000);
});
