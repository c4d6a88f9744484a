/**
 * tenant-cpu: can one tenant take the machine's CPU? One client's projects.list p99, idle and while a
 * team-plan deployment runs 4 busy loops (all the CPU its plan allows), with the tenants' cgroup as
 * the server sets it (capped below the host's CPUs, weighted below the control plane) and, for
 * comparison in the same run, with that cap and weight lifted (as sandboxes were before: the plan's
 * 2 CPUs, the default weight).
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { packFolder } from '@coderunner/api/pack';
import type { BenchContext, BenchOutput } from '../lib/context';
import { client, register, sampleLatency, trpcQueryPath, withPg } from '../lib/http';
import { sleep } from '../lib/scope';
import { freshDatabase, newAuthSecret, startCodeRunner, tempDir } from '../lib/services';
import { fmt, ms, percentile, ratio } from '../lib/stats';
import { killSandboxProcesses } from './deploy';

const BURNERS = 4;
const WINDOW_MS = 5_000;
const ROUNDS = 2;

/** Serves HTTP; `/burn` starts BURNERS busy threads, `/rest` ends them. */
const APP = {
  'package.json': JSON.stringify({
    name: 'burner',
    version: '1.0.0',
    private: true,
    scripts: { start: 'node server.js' },
  }),
  'server.js': `const { Worker } = require('worker_threads');
const workers = [];
require('http').createServer((req, res) => {
  if (req.url === '/burn') while (workers.length < ${BURNERS}) workers.push(new Worker('for (;;) {}', { eval: true }));
  if (req.url === '/rest') for (const w of workers.splice(0)) w.terminate();
  res.end(String(workers.length));
}).listen(process.env.PORT, '127.0.0.1');
`,
};

/** The tenants' cgroup and a sandbox's, on cgroup v1 (cpu controller) or v2; null when not found. */
interface CpuGroups {
  version: 1 | 2;
  tenants: string;
  sandbox: string;
}

function cpuGroups(sandboxId: string): CpuGroups | null {
  for (const [version, tenants] of [
    [1, '/sys/fs/cgroup/cpu/coderunner'],
    [2, '/sys/fs/cgroup/coderunner'],
  ] as const) {
    const sandbox = path.join(tenants, sandboxId);
    if (fs.existsSync(sandbox)) return { version, tenants, sandbox };
  }
  return null;
}

interface CpuSettings {
  tenants: { quota: string; weight: string };
  sandbox: { quota: string; weight: string };
}

const read = (file: string) => fs.readFileSync(file, 'utf8').trim();
const files = (g: CpuGroups) =>
  g.version === 1
    ? { quota: 'cpu.cfs_quota_us', weight: 'cpu.shares' }
    : { quota: 'cpu.max', weight: 'cpu.weight' };

function readSettings(g: CpuGroups): CpuSettings {
  const f = files(g);
  const of = (dir: string) => ({
    quota: read(path.join(dir, f.quota)),
    weight: read(path.join(dir, f.weight)),
  });
  return { tenants: of(g.tenants), sandbox: of(g.sandbox) };
}

/** Write settings; v1 refuses a child's quota above its parent's, so the order depends on the direction. */
function writeSettings(g: CpuGroups, s: CpuSettings, raising: boolean): void {
  const f = files(g);
  const write = (dir: string, v: { quota: string; weight: string }) => {
    fs.writeFileSync(path.join(dir, f.quota), v.quota);
    fs.writeFileSync(path.join(dir, f.weight), v.weight);
  };
  if (raising) {
    write(g.tenants, s.tenants);
    write(g.sandbox, s.sandbox);
  } else {
    write(g.sandbox, s.sandbox);
    write(g.tenants, s.tenants);
  }
}

/** As sandboxes were before the tenants' cap: no cap on the group, the plan's 2 CPUs, the default weight. */
function uncapped(g: CpuGroups): CpuSettings {
  return g.version === 1
    ? { tenants: { quota: '-1', weight: '1024' }, sandbox: { quota: '200000', weight: '1024' } }
    : { tenants: { quota: 'max 100000', weight: '100' }, sandbox: { quota: '200000 100000', weight: '100' } };
}

/** CPU seconds (user + system, all threads) of the sandbox's processes now. */
function sandboxCpuSeconds(g: CpuGroups): number {
  const pids = new Set<string>();
  for (const leaf of fs.readdirSync(g.sandbox, { withFileTypes: true })) {
    if (!leaf.isDirectory()) continue;
    for (const pid of (fs.readFileSync(path.join(g.sandbox, leaf.name, 'cgroup.procs'), 'utf8') || '').split(
      '\n',
    ))
      if (pid) pids.add(pid);
  }
  let total = 0;
  for (const pid of pids) total += processCpuSeconds(Number(pid));
  return total;
}

function processCpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** GET through the server's proxy, as a browser would reach the app. */
function getApp(serverPort: string, publicUrl: string, pathname: string): Promise<string> {
  const host = new URL(publicUrl).host;
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: serverPort, path: pathname, headers: { host } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode} ${body}`)),
        );
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

interface Window {
  case: 'idle' | 'capped' | 'uncapped';
  latencies: number[];
  burnerCores: number;
  serverCores: number;
}

export async function tenantCpu({ scope, log }: BenchContext): Promise<BenchOutput> {
  const db = await freshDatabase(scope);
  const dataDir = tempDir(scope, 'data');
  fs.chmodSync(dataDir, 0o711);
  const sandboxIds = new Set<string>();
  scope.defer('kill leftover sandbox processes', () => {
    const n = killSandboxProcesses(sandboxIds);
    if (n) log(`killed ${n} leftover sandbox processes`);
  });
  const server = await startCodeRunner(scope, {
    databaseUrl: db.url,
    dataDir,
    authSecret: newAuthSecret(),
    logDir: tempDir(scope, 'logs'),
    env: { CODERUNNER_START_TIMEOUT_S: '30' },
  });
  const serverPort = new URL(server.url).port;

  // The measured user: 20 projects (more than the free plan's 3: a personal plan).
  const reader = await register(server.url, 'reader@bench.example', 'tenant cpu bench password');
  await withPg(db.url, (c) =>
    c.query("UPDATE users SET plan_type = 'personal' WHERE id = $1", [reader.userId]),
  );
  const readerApi = client(server.url, reader.token);
  for (let i = 0; i < 20; i++) await readerApi.projects.create.mutate({ name: `project-${i}` });
  const listUrl = `${server.url}${trpcQueryPath('projects.list', { limit: 20 })}`;
  const headers = { authorization: `Bearer ${reader.token}` };

  // The tenant: team plan, one deployment of the burner.
  const tenant = await register(server.url, 'burner@bench.example', 'tenant cpu bench password');
  await withPg(db.url, (c) => c.query("UPDATE users SET plan_type = 'team' WHERE id = $1", [tenant.userId]));
  const api = client(server.url, tenant.token);
  const projectId = (await api.projects.create.mutate({ name: 'burner' })).id;
  const appDir = tempDir(scope, 'app');
  for (const [name, content] of Object.entries(APP)) fs.writeFileSync(path.join(appDir, name), content);
  const form = new FormData();
  form.set('projectId', projectId);
  form.set('source', new Blob([(await packFolder(appDir)).archive]), 'source.tar.gz');
  const { id } = await api.deployments.create.mutate(form);
  scope.defer('destroy the burner', () => api.deployments.destroy.mutate({ id }).then(() => {}));
  const deadline = Date.now() + 60_000;
  let row: { status: string; public_url: string | null; app_sandbox_id: string | null } | undefined;
  while (Date.now() < deadline) {
    row = (
      await withPg(db.url, (c) =>
        c.query('SELECT status, public_url, app_sandbox_id FROM deployments WHERE id = $1', [id]),
      )
    ).rows[0];
    if (row?.status === 'RUNNING' || row?.status === 'FAILED') break;
    await sleep(200);
  }
  if (row?.status !== 'RUNNING' || !row.public_url || !row.app_sandbox_id) {
    const logFolder = path.join(dataDir, 'logs', id);
    const lines = fs.existsSync(logFolder)
      ? fs
          .readdirSync(logFolder)
          .flatMap((n) => fs.readFileSync(path.join(logFolder, n), 'utf8').trim().split('\n'))
      : [];
    throw new Error(
      `the burner is not RUNNING (${row?.status}); its log ends:\n${lines.slice(-15).join('\n')}`,
    );
  }
  sandboxIds.add(row.app_sandbox_id);
  const publicUrl = row.public_url;
  const groups = cpuGroups(row.app_sandbox_id);
  const asSet = groups ? readSettings(groups) : null;
  log(
    groups
      ? `burner running in ${row.app_sandbox_id}: tenants' group quota ${asSet!.tenants.quota}, weight ${asSet!.tenants.weight}; sandbox quota ${asSet!.sandbox.quota}, weight ${asSet!.sandbox.weight}`
      : `burner running in ${row.app_sandbox_id}, no cgroup of its own found (isolation off?): only the capped case is measured`,
  );
  if (groups) {
    // Whatever happens, the tenants' group is left as the server set it.
    scope.defer('restore the cgroups', () => writeSettings(groups, asSet!, false));
  }

  await sampleLatency(listUrl, headers, { durationMs: 1_000, maxRequests: 300, warmup: 100 });
  const windows: Window[] = [];
  const measure = async (kind: Window['case']) => {
    if (kind !== 'idle') {
      if (groups) writeSettings(groups, kind === 'capped' ? asSet! : uncapped(groups), kind === 'uncapped');
      const threads = await getApp(serverPort, publicUrl, '/burn');
      if (threads !== String(BURNERS))
        throw new Error(`the burner runs ${threads} busy threads, not ${BURNERS}`);
      await sleep(500);
    }
    const cpu0 = groups ? sandboxCpuSeconds(groups) : 0;
    const server0 = processCpuSeconds(server.pid);
    const t0 = Date.now();
    const sample = await sampleLatency(listUrl, headers, { durationMs: WINDOW_MS, maxRequests: 20_000 });
    const wall = (Date.now() - t0) / 1000;
    const w: Window = {
      case: kind,
      latencies: sample.latencies,
      burnerCores: groups ? (sandboxCpuSeconds(groups) - cpu0) / wall : Number.NaN,
      serverCores: (processCpuSeconds(server.pid) - server0) / wall,
    };
    if (kind !== 'idle') await getApp(serverPort, publicUrl, '/rest');
    if (groups) writeSettings(groups, asSet!, false);
    windows.push(w);
    log(
      `${kind}: projects.list p50 ${ms(percentile(w.latencies, 50))} p99 ${ms(percentile(w.latencies, 99))} (${w.latencies.length}); burner ${fmt(w.burnerCores, 2)} cores, server ${fmt(w.serverCores * 100)}%; load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    await sleep(500);
  };
  const cases: Window['case'][] = groups ? ['idle', 'capped', 'uncapped'] : ['idle', 'capped'];
  for (let round = 0; round < ROUNDS; round++) for (const kind of cases) await measure(kind);

  const of = (kind: Window['case']) => {
    const ws = windows.filter((w) => w.case === kind);
    const lat = ws.flatMap((w) => w.latencies);
    const avg = (f: (w: Window) => number) => ws.reduce((s, w) => s + f(w), 0) / ws.length;
    return {
      n: lat.length,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      burner: avg((w) => w.burnerCores),
      server: avg((w) => w.serverCores),
    };
  };
  const idle = of('idle');
  const capped = of('capped');
  const before = groups ? of('uncapped') : null;
  const r = ratio(capped.p99, idle.p99);
  const line =
    `tenant-cpu: projects.list p99 ${ms(idle.p99)} idle, ${ms(capped.p99)} while a team tenant runs ${BURNERS} busy loops (it got ${fmt(capped.burner, 2)} cores)` +
    (before
      ? `; ${ms(before.p99)} with the tenants' cap and weight lifted (${fmt(before.burner, 2)} cores, ratio ${ratio(before.p99, idle.p99)})`
      : '') +
    ` — ratio ${r}`;
  const row2 = (name: string, s: ReturnType<typeof of>) =>
    `| ${name} | ${ms(s.p50)} | ${ms(s.p99)} | ${fmt(s.n)} | ${fmt(s.burner, 2)} | ${fmt(s.server * 100)}% | ${ratio(s.p99, idle.p99)} |`;
  const details = [
    `One client calls \`projects.list\` (20 projects, a user on the personal plan) back to back over one kept-alive connection, in windows of ${WINDOW_MS / 1000} s, ${ROUNDS} rounds of: idle; while a team user's deployment (local provider, isolated) runs ${BURNERS} busy threads; the same with the tenants' cgroup's cap and weight lifted and the sandbox at its plan's 2 CPUs and the default weight, as sandboxes were before (restored right after). ` +
      `Cgroups as the server set them: tenants' group quota \`${asSet?.tenants.quota ?? 'n/a'}\`, weight \`${asSet?.tenants.weight ?? 'n/a'}\`; the sandbox's quota \`${asSet?.sandbox.quota ?? 'n/a'}\`, weight \`${asSet?.sandbox.weight ?? 'n/a'}\` (${os.availableParallelism()} cores). ` +
      "Burner cores = CPU time of the sandbox's processes ÷ window; server = the server process's. Goal: ratio = p99 with the tenant burning ÷ p99 idle ≤ 2.",
    '',
    '| case | p50 | p99 | requests | burner cores | server CPU | p99 ÷ idle |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    row2('idle', idle),
    row2('tenant burning (capped, weighted)', capped),
    ...(before ? [row2('tenant burning, cap and weight lifted', before)] : []),
  ];
  return { line, details, database: db.description };
}
