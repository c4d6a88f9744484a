/**
 * What a running app uses, through the API: an app that allocates 100 MB and burns CPU on request,
 * deployed end to end on the local provider. The figures are checked against the sandbox's own
 * cgroup files, read here (isolated), or the app's own resident set (unisolated).
 */
import fs from 'node:fs';
import path from 'node:path';
import { UsageSampler } from '@coderunner/api';
import { createClient } from '@coderunner/api/client';
import { detectIsolation } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  curl,
  type DeployingServer,
  deployFolder,
  logText,
  startDeployingServer,
  waitForStatus,
} from './fixtures/deploy-helpers';

const MB = 1024 * 1024;
let ctx: DeployingServer;

/** 100 MB on /alloc (written, so resident); /busy?ms= loops until it has used `ms` of CPU; / answers its RSS. */
const APP = {
  'package.json': JSON.stringify({ scripts: { start: 'node server.js' } }),
  'server.js': `let held = null;
require('http').createServer((q, r) => {
  const url = new URL(q.url, 'http://x');
  if (url.pathname === '/alloc') held = Buffer.alloc(100 * 1024 * 1024, 7);
  if (url.pathname === '/busy') {
    const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    const end = cpu() + Number(url.searchParams.get('ms'));
    while (cpu() < end);
  }
  r.end(String(process.memoryUsage().rss));
}).listen(process.env.PORT, '127.0.0.1');`,
};

beforeAll(async () => {
  ctx = await startDeployingServer({}, { email: 'usage@example.com', project: 'usage' });
});

afterAll(() => ctx?.close());

/** The cgroup's own figure for the sandbox (v1 or v2), or null when apps run unisolated. */
function cgroupFigure(sandboxId: string, what: 'memory' | 'limit'): number | null {
  const layout = detectIsolation('auto').tools?.cgroups;
  if (!layout) return null;
  if (layout.version === 2) {
    const file = what === 'memory' ? 'memory.current' : 'memory.max';
    return Number(fs.readFileSync(path.join(layout.base, sandboxId, file), 'utf8'));
  }
  const file = what === 'memory' ? 'memory.usage_in_bytes' : 'memory.limit_in_bytes';
  return Number(fs.readFileSync(path.join(layout.memory, sandboxId, file), 'utf8'));
}

describe('what a running deployment uses', () => {
  it('deployments.get has the figures of now, within 10% of the cgroup; deployments.usage the series; gone once stopped', async () => {
    const { client, projectId, server } = ctx;
    const created = await deployFolder(client, projectId, appFolder(APP));
    const running = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
    expect(running.status, await logText(client, created.id)).toBe('RUNNING');
    const provider = server.deps.deployments!.engine.provider;
    const [sandbox] = await provider.list({ metadata: { deploymentId: created.id, role: 'app' } });
    const isolated = (await client.system.info.query()).isolation === 'sandbox';

    await curl(`${running.publicUrl}alloc`, 30);
    const rss = Number((await curl(running.publicUrl!, 30)).body);
    const got = await client.deployments.get.query({ id: created.id });
    const usage = got.usage!;
    expect(usage).not.toBeNull();
    expect(usage.memoryBytes).toBeGreaterThan(100 * MB);
    if (isolated) {
      const own = cgroupFigure(sandbox!.id, 'memory')!;
      expect(Math.abs(usage.memoryBytes - own)).toBeLessThanOrEqual(own * 0.1);
      expect(usage.memoryLimitBytes).toBe(cgroupFigure(sandbox!.id, 'limit'));
      expect(usage.cpus).toBeGreaterThan(0);
      expect(usage.memoryPeakBytes).toBeGreaterThanOrEqual(100 * MB);
    } else {
      expect(Math.abs(usage.memoryBytes - rss)).toBeLessThanOrEqual(rss * 0.1);
      expect(usage).toMatchObject({ memoryLimitBytes: null, cpus: null, memoryPeakBytes: null });
    }

    // Two samples around a busy second: the series shows the CPU it used.
    const sampler = server.deps.deployments!.usage!;
    await sampler.sample();
    await curl(`${running.publicUrl}busy?ms=1000`, 60);
    await sampler.sample();
    const series = await client.deployments.usage.query({ id: created.id });
    expect(series.intervalMs).toBe(10_000);
    expect(series.points.length).toBeGreaterThanOrEqual(2);
    expect(series.points.at(-1)!.memoryBytes).toBeGreaterThan(100 * MB);
    expect(series.points.some((p) => (p.cpu ?? 0) > 0)).toBe(true);
    expect(series.now!.cpu).not.toBeNull();
    expect((await client.deployments.get.query({ id: created.id })).usage!.cpu).not.toBeNull();

    // A replica that has sampled nothing yet still answers the figures of now (same host).
    const fresh = new UsageSampler({ provider, running: async () => [] });
    const now = await fresh.current(created.id, sandbox!.id);
    expect(now!.memoryBytes).toBeGreaterThan(100 * MB);
    expect(now!.cpu).toBeNull();

    // Another user's deployment: NOT_FOUND, as a missing one.
    const anon = createClient({ url: `${server.url}/trpc` });
    const { token } = await anon.auth.register.mutate({
      email: 'other@example.com',
      password: 'other password',
    });
    const other = createClient({ url: `${server.url}/trpc`, token });
    const refused = await other.deployments.usage.query({ id: created.id }).catch((e) => e);
    expect(refused.data.code).toBe('NOT_FOUND');
    expect(refused.message).toBe('deployment not found');

    await client.deployments.stop.mutate({ id: created.id });
    expect((await client.deployments.get.query({ id: created.id })).usage).toBeNull();
    expect(await client.deployments.usage.query({ id: created.id })).toMatchObject({ now: null, points: [] });
    await sampler.sample();
    expect(sampler.points(created.id, sandbox!.id)).toEqual([]);
  }, 240_000);
});
