/**
 * deploy: create → RUNNING for a dependency-free Node hello-world on the local provider. 20 sequential
 * deploys (median, and how the time splits between the control plane and the sandbox, from the
 * deployment's log timestamps), then 20 created at once (wall time until all are RUNNING).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import type { BenchContext, BenchOutput } from '../lib/context';
import { client, register, withPg } from '../lib/http';
import { sleep } from '../lib/scope';
import { freshDatabase, newAuthSecret, startCodeRunner, tempDir } from '../lib/services';
import { fmt, median, ms, percentile, ratio, seconds } from '../lib/stats';
import { measureRedeploys, redeployDetails, redeployLine } from './redeploy';

const SEQUENTIAL = 20;
/** Sequential deploys on a second server with CODERUNNER_ISOLATION=none, for the isolation ratio. */
const UNISOLATED = 8;
const CONCURRENT = 20;
const DEPLOY_TIMEOUT_MS = 60_000;

const APP = {
  'package.json': JSON.stringify({
    name: 'hello',
    version: '1.0.0',
    private: true,
    scripts: { start: 'node server.js' },
  }),
  // The app stamps its own boot and listen times: the log follower reads app output every 200 ms.
  'server.js': `console.log('boot ' + Date.now());
require('http').createServer((req, res) => res.end('hello')).listen(process.env.PORT, '127.0.0.1', () => console.log('listening ' + Date.now()));
`,
};

interface StoredLine {
  i: number;
  t: number;
  s: string;
  m: string;
}

/** Phase boundaries (epoch ms) from the deployment's log, as the engine writes it (packages/api/src/deployments/engine.ts). */
interface Timeline {
  queued: number;
  provisioning: number;
  upload: number;
  install: number;
  starting: number;
  boot: number;
  listening: number;
  running: number;
}

/** A deployment's stored log lines: its segment files (`<first id>.ndjson`) in order. */
function storedLines(logFolder: string): StoredLine[] {
  if (!fs.existsSync(logFolder)) return [];
  return fs
    .readdirSync(logFolder)
    .filter((n) => n.endsWith('.ndjson'))
    .sort()
    .flatMap((n) => fs.readFileSync(path.join(logFolder, n), 'utf8').split('\n'))
    .filter(Boolean)
    .map((l) => JSON.parse(l) as StoredLine);
}

async function readTimeline(logFolder: string): Promise<Timeline> {
  const deadline = Date.now() + 3_000;
  for (;;) {
    const lines = storedLines(logFolder);
    const sys = (prefix: string) => lines.find((l) => l.s === 'system' && l.m.startsWith(prefix))?.t;
    const app = (word: string) => {
      const m = lines.map((l) => new RegExp(`^${word} (\\d+)$`).exec(l.m)).find(Boolean);
      return m ? Number(m[1]) : undefined;
    };
    const t = {
      queued: sys('queued'),
      provisioning: sys('runtime '),
      upload: sys('uploading the source'),
      // An app without dependencies has no install step: sandbox time then starts at `starting:`.
      install: sys('install: ') ?? sys('starting: '),
      starting: sys('starting: '),
      boot: app('boot'),
      listening: app('listening'),
      running: sys('running at '),
    };
    if (Object.values(t).every((v) => v !== undefined)) return t as Timeline;
    if (Date.now() > deadline) {
      const missing = Object.entries(t)
        .filter(([, v]) => v === undefined)
        .map(([k]) => k);
      throw new Error(`log ${logFolder} lacks ${missing.join(', ')}:\n${lines.map((l) => l.m).join('\n')}`);
    }
    await sleep(100);
  }
}

/** Resolves with the time the client saw RUNNING (deployments.watch, pushed on the status NOTIFY). */
function waitRunning(api: CodeRunnerClient, id: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`deployment ${id} not RUNNING within ${DEPLOY_TIMEOUT_MS} ms`));
    }, DEPLOY_TIMEOUT_MS);
    const sub = api.deployments.watch.subscribe(
      { id },
      {
        onData: (d) => {
          if (d.status !== 'RUNNING' && d.status !== 'FAILED') return;
          const at = Date.now();
          clearTimeout(timer);
          sub.unsubscribe();
          if (d.status === 'RUNNING') resolve(at);
          else reject(new Error(`deployment ${id} FAILED`));
        },
        onError: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      },
    );
  });
}

function form(projectId: string, archive: Uint8Array): FormData {
  const f = new FormData();
  f.set('projectId', projectId);
  f.set('source', new Blob([archive]), 'source.tar.gz');
  return f;
}

interface SandboxOverhead {
  bwrapKb: number;
  pastaKb: number;
  totalKb: number;
}

/** Proportional set size of a process, KiB (0 when it is gone). */
function pssKb(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * Memory of what isolation adds to the one running sandbox under `sandboxesDir`: its bubblewrap
 * processes (found by their id marker) and its pasta process(es) (recorded in its sandbox.json).
 */
function sandboxOverhead(sandboxesDir: string): SandboxOverhead | null {
  const id = fs.readdirSync(sandboxesDir).find((d) => /^local-[0-9a-f]{12}$/.test(d));
  if (!id) return null;
  let record: { isolation?: { outbound?: { pid: number } | null; inbound?: { pid: number } | null } };
  try {
    record = JSON.parse(fs.readFileSync(path.join(sandboxesDir, id, 'sandbox.json'), 'utf8'));
  } catch {
    return null;
  }
  let bwrapKb = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'bwrap') continue;
      if (!fs.readFileSync(`/proc/${entry}/environ`, 'utf8').includes(`CODERUNNER_SANDBOX_ID=${id}`))
        continue;
      bwrapKb += pssKb(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  const pastaKb = [record.isolation?.outbound?.pid, record.isolation?.inbound?.pid]
    .filter((p): p is number => typeof p === 'number')
    .reduce((sum, pid) => sum + pssKb(pid), 0);
  return { bwrapKb, pastaKb, totalKb: bwrapKb + pastaKb };
}

/** Sandbox processes still alive (their environment carries the sandbox id): killed by pid. */
export function killSandboxProcesses(sandboxIds: Set<string>): number {
  let killed = 0;
  if (!sandboxIds.size) return 0;
  // A sandbox's network helper (pasta) runs with a fixed environment: it is known by its namespace.
  const namespaces = [...sandboxIds].map((id) => `/run/netns/cr-${id.replace(/^local-/, '')}`);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    let cmdline: string;
    try {
      environ = fs.readFileSync(`/proc/${entry}/environ`, 'utf8');
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const m = /(?:^|\0)CODERUNNER_SANDBOX_ID=([^\0]+)/.exec(environ);
    const ours = (m && sandboxIds.has(m[1]!)) || namespaces.some((ns) => cmdline.split('\0').includes(ns));
    if (ours) {
      try {
        process.kill(Number(entry), 'SIGKILL');
        killed++;
      } catch {
        // gone meanwhile
      }
    }
  }
  for (const ns of namespaces) {
    if (!fs.existsSync(ns)) continue;
    try {
      execFileSync('ip', ['netns', 'delete', path.basename(ns)], { stdio: 'ignore' });
    } catch {
      // not ours to delete (not root), or gone meanwhile
    }
  }
  return killed;
}

export async function deploy({ scope, log }: BenchContext): Promise<BenchOutput> {
  const db = await freshDatabase(scope);
  const logDir = tempDir(scope, 'logs');
  const dataDir = tempDir(scope, 'data');
  fs.chmodSync(dataDir, 0o711); // the sandbox user must reach its folders inside
  const sandboxesDir = path.join(dataDir, 'sandboxes');
  const sandboxIds = new Set<string>();
  const noteSandboxes = () => {
    for (const d of fs.existsSync(sandboxesDir) ? fs.readdirSync(sandboxesDir) : [])
      if (/^local-[0-9a-f]{12}$/.test(d)) sandboxIds.add(d);
  };
  // Runs after the server has stopped (scopes undo in reverse): nothing of ours may outlive the run.
  scope.defer('kill leftover sandbox processes', () => {
    noteSandboxes();
    const n = killSandboxProcesses(sandboxIds);
    if (n) log(`killed ${n} leftover sandbox processes`);
  });
  const server = await startCodeRunner(scope, {
    databaseUrl: db.url,
    dataDir,
    authSecret: newAuthSecret(),
    logDir,
    env: { CODERUNNER_START_TIMEOUT_S: '30' },
  });
  const isolation = ((await (await fetch(`${server.url}/readyz`)).json()) as { isolation?: string })
    .isolation;
  log(
    `server up at ${server.url} on ${db.description} (local provider, WORKER_CONCURRENCY 2, isolation ${isolation})`,
  );

  const { token, userId } = await register(server.url, 'deployer@bench.example', 'deploy bench password');
  await withPg(db.url, (c) => c.query("UPDATE users SET plan_type = 'team' WHERE id = $1", [userId]));
  const api = client(server.url, token);
  const projectId = (await api.projects.create.mutate({ name: 'hello' })).id;
  const appDir = tempDir(scope, 'app');
  for (const [name, content] of Object.entries(APP)) fs.writeFileSync(path.join(appDir, name), content);
  const archive = (await packFolder(appDir)).archive;

  const live = new Set<string>();
  scope.defer('destroy the deployments left', async () => {
    for (const id of live) await api.deployments.destroy.mutate({ id }).catch(() => {});
  });
  const destroy = async (ids: string[]) => {
    noteSandboxes();
    await Promise.all(ids.map((id) => api.deployments.destroy.mutate({ id })));
    for (const id of ids) live.delete(id);
  };

  // 20 one after the other.
  const seq: { total: number; t: Timeline; t0: number; seen: number }[] = [];
  const overheads: SandboxOverhead[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const t0 = Date.now();
    const { id } = await api.deployments.create.mutate(form(projectId, archive));
    live.add(id);
    const seen = await waitRunning(api, id);
    const t = await readTimeline(path.join(dataDir, 'logs', id));
    seq.push({ total: seen - t0, t, t0, seen });
    if (isolation === 'sandbox' && i < 5) {
      const overhead = sandboxOverhead(sandboxesDir);
      if (overhead) overheads.push(overhead);
    }
    const sandbox = t.listening - t.install;
    log(
      `deploy ${i + 1}/${SEQUENTIAL}: RUNNING after ${ms(seen - t0)} (sandbox ${ms(sandbox)}, control plane ${ms(seen - t0 - sandbox)})`,
    );
    await destroy([id]);
  }

  // 20 at once, a project each (in one project each would replace the one before).
  const projects = await Promise.all(
    Array.from(
      { length: CONCURRENT },
      async (_, i) => (await api.projects.create.mutate({ name: `at-once-${i}` })).id,
    ),
  );
  const c0 = Date.now();
  const created = await Promise.all(
    projects.map(async (project) => {
      const { id } = await api.deployments.create.mutate(form(project, archive));
      live.add(id);
      return { id, seen: await waitRunning(api, id) };
    }),
  );
  const wall = Math.max(...created.map((c) => c.seen)) - c0;
  const each = created.map((c) => c.seen - c0);
  const running = (
    await withPg(db.url, (c) =>
      c.query(
        "SELECT count(*)::int AS n FROM deployments WHERE status = 'RUNNING' AND id = ANY($1::uuid[])",
        [created.map((c) => c.id)],
      ),
    )
  ).rows[0].n as number;
  log(
    `${CONCURRENT} at once: ${running}/${CONCURRENT} RUNNING, all after ${seconds(wall)} (first ${seconds(Math.min(...each))})`,
  );
  if (running !== CONCURRENT) throw new Error(`only ${running} of ${CONCURRENT} deployments are RUNNING`);
  await destroy(created.map((c) => c.id));
  const left = (
    await withPg(db.url, (c) =>
      c.query("SELECT count(*)::int AS n FROM deployments WHERE status <> 'DESTROYED'"),
    )
  ).rows[0].n as number;
  if (left) throw new Error(`${left} deployments not DESTROYED`);

  // Redeploys of one project under load: the project URL's switch.
  const switchProject = (await api.projects.create.mutate({ name: 'switch' })).id;
  const redeploys = await measureRedeploys({
    api,
    projectId: switchProject,
    workDir: tempDir(scope, 'versions'),
    dataDir,
    waitRunning: (id) => {
      live.add(id);
      return waitRunning(api, id);
    },
    log,
  });
  log(redeployLine(redeploys));
  await destroy([...live]);

  // The same deploys on a server that does not isolate (same plan; a database of its own, or the
  // first server's workers would claim its deployments), for the ratio.
  const offDb = await freshDatabase(scope);
  const offDir = tempDir(scope, 'data-unisolated');
  fs.chmodSync(offDir, 0o711);
  const off = await startCodeRunner(scope, {
    databaseUrl: offDb.url,
    dataDir: offDir,
    authSecret: newAuthSecret(),
    logDir: tempDir(scope, 'logs-unisolated'),
    env: { CODERUNNER_START_TIMEOUT_S: '30', CODERUNNER_ISOLATION: 'none' },
  });
  const offLogin = await register(off.url, 'unisolated@bench.example', 'deploy bench password');
  await withPg(db.url, (c) =>
    c.query("UPDATE users SET plan_type = 'team' WHERE id = $1", [offLogin.userId]),
  );
  const offApi = client(off.url, offLogin.token);
  const offProject = (await offApi.projects.create.mutate({ name: 'hello-unisolated' })).id;
  const offTotals: number[] = [];
  const offSeq: typeof seq = [];
  for (let i = 0; i < UNISOLATED; i++) {
    const t0 = Date.now();
    const { id } = await offApi.deployments.create.mutate(form(offProject, archive));
    const seen = await waitRunning(offApi, id);
    offTotals.push(seen - t0);
    offSeq.push({ total: seen - t0, t: await readTimeline(path.join(offDir, 'logs', id)), t0, seen });
    await offApi.deployments.destroy.mutate({ id });
  }
  log(`isolation off: median ${ms(median(offTotals))} over ${UNISOLATED} sequential deploys`);

  // Phases of the sequential deploys (medians).
  // Each phase: [isolated median, unisolated median].
  const phase = (f: (s: (typeof seq)[number]) => number): [number, number] => [
    median(seq.map(f)),
    median(offSeq.map(f)),
  ];
  const phases: [string, [number, number], 'control plane' | 'sandbox'][] = [
    ['upload + `deployments.create` (client → "queued")', phase((s) => s.t.queued - s.t0), 'control plane'],
    [
      'queue → worker claims, unpacks, detects the runtime ("runtime nodejs…")',
      phase((s) => s.t.provisioning - s.t.queued),
      'control plane',
    ],
    [
      'create the sandbox, record it, → BUILDING ("uploading…")',
      phase((s) => s.t.upload - s.t.provisioning),
      'control plane',
    ],
    [
      'copy the source into the sandbox ("install: …")',
      phase((s) => s.t.install - s.t.upload),
      'control plane',
    ],
    [
      '`npm install --no-audit --no-fund` (no dependencies)',
      phase((s) => s.t.starting - s.t.install),
      'sandbox',
    ],
    ['`npm start` until the app runs (its "boot" stamp)', phase((s) => s.t.boot - s.t.starting), 'sandbox'],
    ['app boot → listening (its own stamps)', phase((s) => s.t.listening - s.t.boot), 'sandbox'],
    [
      'readiness probe notices, → RUNNING ("running at")',
      phase((s) => s.t.running - s.t.listening),
      'control plane',
    ],
    ['status NOTIFY → `deployments.watch` → client', phase((s) => s.seen - s.t.running), 'control plane'],
  ];
  const totals = seq.map((s) => s.total);
  const sandboxes = seq.map((s) => s.t.listening - s.t.install);
  const controls = seq.map((s) => s.total - (s.t.listening - s.t.install));
  const shares = seq.map((s) => (s.total - (s.t.listening - s.t.install)) / s.total);
  const share = ratio(median(shares), 1);
  const line =
    `deploy: create → RUNNING median ${seconds(median(totals))} over ${SEQUENTIAL} sequential (control plane ${seconds(median(controls))}, sandbox ${seconds(median(sandboxes))}); ` +
    `${CONCURRENT} at once all RUNNING in ${seconds(wall)}; control-plane share — ratio ${share}`;
  const details: string[] = [
    `A dependency-free Node hello-world (package.json with a start script, server.js), packed once, deployed through \`deployments.create\` on the local provider (WORKER_CONCURRENCY 2, the default), a user on the team plan. ` +
      'Time from the client starting the upload until `deployments.watch` tells it RUNNING; each deployment destroyed after its measurement.',
    '',
    "**Control-plane share** = (total − time in the sandbox) / total, per deploy, median; time in the sandbox = from the engine logging `install: npm install …` (or `starting: …` when the app has no dependencies, so no install step) to the app's own \"listening\" timestamp, i.e. the install command plus the app's start until it listens. Everything else (upload, queueing, unpacking, sandbox creation, copying files, readiness polling, status updates, notification) is the control plane's.",
    '',
    `| of ${SEQUENTIAL} sequential deploys | median | p90 | max |`,
    '| --- | --- | --- | --- |',
    `| total create → RUNNING | ${ms(median(totals))} | ${ms(percentile(totals, 90))} | ${ms(Math.max(...totals))} |`,
    `| control plane | ${ms(median(controls))} | ${ms(percentile(controls, 90))} | ${ms(Math.max(...controls))} |`,
    `| sandbox | ${ms(median(sandboxes))} | ${ms(percentile(sandboxes, 90))} | ${ms(Math.max(...sandboxes))} |`,
    `| control-plane share | ${fmt(median(shares) * 100, 1)}% | | |`,
    '',
    `Phases (median of each; from the deployment log's timestamps), of the ${SEQUENTIAL} deploys above (isolation ${isolation}) and of the ${UNISOLATED} on the server with \`CODERUNNER_ISOLATION=none\` (see Isolation below):`,
    '',
    '| phase | median | unisolated | whose |',
    '| --- | --- | --- | --- |',
    ...phases.map(([name, [on, off], who]) => `| ${name} | ${ms(on)} | ${ms(off)} | ${who} |`),
    '',
    `- ${CONCURRENT} created at once: all ${CONCURRENT} RUNNING after ${seconds(wall)} (first after ${seconds(Math.min(...each))}, median ${seconds(median(each))}); ${fmt(wall / median(totals), 1)}× one deploy's median; ${fmt(wall / CONCURRENT / 1000, 2)} s per deploy with 2 workers.`,
  ];
  const onMedian = median(totals);
  const offMedian = median(offTotals);
  const memory = overheads.length
    ? `; a sandbox costs ${fmt(median(overheads.map((o) => o.totalKb)) / 1024, 1)} MB beyond the app (bubblewrap ${fmt(median(overheads.map((o) => o.bwrapKb)) / 1024, 1)} MB, pasta ${fmt(median(overheads.map((o) => o.pastaKb)) / 1024, 1)} MB; PSS)`
    : '';
  const isolationLine =
    `isolation: create → RUNNING median ${ms(onMedian)} isolated (${isolation}) vs ${ms(offMedian)} with CODERUNNER_ISOLATION=none ` +
    `(${onMedian >= offMedian ? '+' : '−'}${ms(Math.abs(onMedian - offMedian))})${memory} — ratio ${ratio(onMedian, offMedian)}`;
  details.push(
    '',
    `**Isolation** (same run, same plan, a database each): the ${SEQUENTIAL} sequential deploys above ran with the server's default \`CODERUNNER_ISOLATION=auto\` (here: ${isolation}); ${UNISOLATED} more ran on a second server with \`CODERUNNER_ISOLATION=none\`: median ${ms(offMedian)} (p90 ${ms(percentile(offTotals, 90))}). Ratio = isolated median / unisolated median.`,
    ...(overheads.length
      ? [
          `Memory a sandbox costs beyond the app (proportional set size, median of ${overheads.length} running sandboxes): the two bubblewrap processes (the monitor outside and the PID namespace's init) and the pasta process that carries the sandbox's network (outbound, and the app's port inbound; earlier versions ran a second pasta for inbound, also counted when recorded).`,
        ]
      : []),
  );
  return {
    line: `${line}
${isolationLine}
${redeployLine(redeploys)}`,
    details: [...details, ...redeployDetails(redeploys)],
    database: db.description,
  };
}
