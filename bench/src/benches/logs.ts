/**
 * logs: log streaming at dashboard scale. One deployed app prints `tick <epoch ms> <seq>` 10 times a
 * second; N followers (100, 300, 1,000) of its deployments.logs subscription run through the typed
 * client in child processes (250 per process); meanwhile the bench process calls projects.list 10
 * times a second (100 calls). Then 100 deployments × 10 followers, their lines written by a separate
 * process on the shared data folder (as a worker-only replica would). Reported per case: API p50/p99
 * vs idle, lag p50/p99 (receive time − the line's stamp), lines lost by followers (gaps in seq), lines
 * the server said it skipped, server CPU and RSS growth per 1,000 followers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { packFolder } from '@coderunner/api/pack';
import type { BenchContext, BenchOutput } from '../lib/context';
import { client, register, trpcQueryPath, withPg } from '../lib/http';
import { analyzeProfile } from '../lib/profile';
import type { Scope } from '../lib/scope';
import { sleep } from '../lib/scope';
import { freshDatabase, newAuthSecret, REPO_ROOT, startCodeRunner, tempDir } from '../lib/services';
import { fmt, ms, percentile, ratio } from '../lib/stats';
import { killSandboxProcesses } from './deploy';

/**
 * For a quicker look while working on the log path (not for RESULTS.md figures):
 * BENCH_LOGS_FOLLOWERS=1000 runs only those cases, BENCH_LOGS_MULTI=0 skips 100 deployments × 10,
 * BENCH_LOGS_WATCHERS=0 skips the watch case, BENCH_LOGS_PROFILE=1 runs the server under
 * `node --cpu-prof` and keeps the profile in bench/profiles/logs-server.cpuprofile (read it with
 * src/analyze-profile.ts).
 */
const FOLLOWER_COUNTS = process.env.BENCH_LOGS_FOLLOWERS
  ? process.env.BENCH_LOGS_FOLLOWERS.split(',').map(Number)
  : [100, 300, 1_000];
const RUN_MULTI = process.env.BENCH_LOGS_MULTI !== '0';
const RUN_WATCH = process.env.BENCH_LOGS_WATCHERS !== '0';
const WATCHERS = 1_000;
const PROFILE = process.env.BENCH_LOGS_PROFILE === '1';
const PER_PROCESS = 250;
const API_CALLS = 100;
const API_INTERVAL_MS = 100;
const MULTI_DEPLOYMENTS = 100;
const MULTI_PER_DEPLOYMENT = 10;
const READY_TIMEOUT_MS = 45_000;
/** The benchmark's limit in main.ts, and what one case may take at worst (connecting, measuring, settling). */
const LIMIT_MS = 320_000;
const CASE_MS = 80_000;

const APP = {
  'package.json': JSON.stringify({
    name: 'ticker',
    version: '1.0.0',
    private: true,
    scripts: { start: 'node app.js' },
  }),
  'app.js': `let n = 0;
setInterval(() => console.log('tick ' + Date.now() + ' ' + n++), 100);
require('http').createServer((req, res) => res.end('ok')).listen(process.env.PORT, '127.0.0.1');
`,
};

interface Report {
  followers: number;
  started: number;
  lags: number[];
  received: number;
  lost: number[];
  missed: number;
  errors: number;
}

interface Case {
  name: string;
  followers: number;
  /** Followers that had their first batch by the end of the window. */
  started: number;
  apiP50: number;
  apiP99: number;
  apiErrors: number;
  lagP50: number;
  lagP99: number;
  received: number;
  lostMax: number;
  lostTotal: number;
  missed: number;
  streamErrors: number;
  cpuPct: number;
  rssMb: number;
  /** The follower processes together, % of one core. */
  followersCpuPct: number;
}

/** `count` GETs, one every `intervalMs` (not waiting for the previous), each latency in ms. */
async function pacedLatency(
  url: string,
  headers: Record<string, string>,
): Promise<{ latencies: number[]; errors: number }> {
  const agent = new http.Agent({ keepAlive: true });
  const target = new URL(url);
  const latencies: number[] = [];
  let errors = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const start = process.hrtime.bigint();
      const req = http.get(
        { host: target.hostname, port: target.port, path: target.pathname + target.search, headers, agent },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
            else errors++;
            resolve();
          });
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  const calls: Promise<void>[] = [];
  for (let i = 0; i < API_CALLS; i++) {
    calls.push(one());
    await sleep(API_INTERVAL_MS);
  }
  await Promise.all(calls);
  agent.destroy();
  return { latencies, errors };
}

/** utime + stime (clock ticks, 100 a second) and RSS (MB) of a process. */
function usage(pid: number): { ticks: number; rssMb: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rss = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { ticks, rssMb: Number(rss?.[1] ?? 0) / 1024 };
}

interface Child {
  child: ChildProcess;
  /** JSON messages printed on stdout, not yet taken; plain lines are kept as `{ line }`. */
  messages: Record<string, unknown>[];
  changed: () => Promise<void>;
}

function spawnChild(scope: Scope, script: string, env: Record<string, string>, logFile: string): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', fs.openSync(logFile, 'a')],
  });
  scope.logFiles.push(logFile);
  scope.defer(`stop ${path.basename(script)} (pid ${child.pid})`, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const messages: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  let signal = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const notify = () => {
    wake?.();
    signal = new Promise<void>((resolve) => {
      wake = resolve;
    });
  };
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    messages.push(line.startsWith('{') ? (JSON.parse(line) as Record<string, unknown>) : { line });
    notify();
  });
  child.once('exit', notify);
  return { child, messages, changed: () => signal };
}

/** Takes the first message carrying `key`, waiting up to `timeoutMs`. */
async function nextJson<T>(c: Child, key: string, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const i = c.messages.findIndex((m) => key in m);
    if (i !== -1) return c.messages.splice(i, 1)[0]![key] as T;
    if (c.child.exitCode !== null || c.child.signalCode !== null)
      throw new Error(`${what}: the process ended (${c.child.exitCode ?? c.child.signalCode})`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${what}: nothing within ${timeoutMs / 1000} s`);
    await Promise.race([c.changed(), sleep(Math.min(left, 1_000))]);
  }
}

export async function logs({ scope, log }: BenchContext): Promise<BenchOutput> {
  const benchStart = Date.now();
  const db = await freshDatabase(scope);
  const logDir = tempDir(scope, 'logs');
  const dataDir = tempDir(scope, 'data');
  fs.chmodSync(dataDir, 0o711); // the sandbox user must reach its folders inside
  const sandboxesDir = path.join(dataDir, 'sandboxes');
  scope.defer('kill leftover sandbox processes', () => {
    const ids = new Set(fs.existsSync(sandboxesDir) ? fs.readdirSync(sandboxesDir) : []);
    killSandboxProcesses(ids);
  });
  const profDir = PROFILE ? tempDir(scope, 'prof') : '';
  const server = await startCodeRunner(scope, {
    databaseUrl: db.url,
    dataDir,
    authSecret: newAuthSecret(),
    logDir,
    env: { CODERUNNER_START_TIMEOUT_S: '30', LOG_LEVEL: 'warn' },
    ...(PROFILE ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] } : {}),
  });
  log(`server up at ${server.url} (pid ${server.pid}) on ${db.description}`);

  const { token, userId } = await register(server.url, 'logs@bench.example', 'logs bench password');
  await withPg(db.url, (c) => c.query("UPDATE users SET plan_type = 'team' WHERE id = $1", [userId]));
  const api = client(server.url, token);
  const project = await api.projects.create.mutate({ name: 'ticker' });
  for (let i = 0; i < 19; i++) await api.projects.create.mutate({ name: `project ${i + 2}` });

  const appDir = tempDir(scope, 'app');
  for (const [name, content] of Object.entries(APP)) fs.writeFileSync(path.join(appDir, name), content);
  const form = new FormData();
  form.set('projectId', project.id);
  form.set('source', new Blob([(await packFolder(appDir)).archive]), 'source.tar.gz');
  const { id: appId } = await api.deployments.create.mutate(form);
  scope.defer('destroy the app', async () => {
    await api.deployments.destroy.mutate({ id: appId }).catch(() => {});
  });
  for (let waited = 0; (await api.deployments.get.query({ id: appId })).status !== 'RUNNING'; waited += 200) {
    if (waited > 60_000) throw new Error('the ticking app did not reach RUNNING in 60 s');
    await sleep(200);
  }
  log(`app ${appId.slice(0, 8)} RUNNING, printing 10 lines/s`);

  const headers = { authorization: `Bearer ${token}` };
  const listUrl = `${server.url}${trpcQueryPath('projects.list', { limit: 20 })}`;
  const trpcUrl = `${server.url}/trpc`;

  /** Starts followers, waits until each has its first batch, then measures during 100 paced API calls. */
  async function measure(
    name: string,
    ids: string[],
    per: number,
    mode: 'logs' | 'watch' = 'logs',
  ): Promise<Case> {
    const total = ids.length * per;
    const children: Child[] = [];
    if (total) {
      // Spread the followers over processes, whole deployments each where possible.
      const processes = Math.ceil(total / PER_PROCESS);
      for (let p = 0; p < processes; p++) {
        const mine = ids.length >= processes ? ids.filter((_, i) => i % processes === p) : ids;
        const perHere = ids.length >= processes ? per : Math.ceil(per / processes);
        children.push(
          spawnChild(
            scope,
            'bench/src/children/log-followers.ts',
            {
              API_URL: trpcUrl,
              TOKEN: token,
              DEPLOYMENTS: mine.join(','),
              PER_DEPLOYMENT: String(perHere),
              MODE: mode,
            },
            path.join(logDir, `followers-${name.replace(/\W+/g, '-')}-${p}.log`),
          ),
        );
      }
      // Measuring starts once every follower has its first batch, or after 45 s with those that have.
      const ready = await Promise.all(
        children.map((c, i) =>
          nextJson<number>(c, 'ready', READY_TIMEOUT_MS, `${name} followers ${i}`).then(
            () => true,
            () => false,
          ),
        ),
      );
      if (!ready.every(Boolean))
        log(`${name}: not every follower connected within ${READY_TIMEOUT_MS / 1000} s`);
      await sleep(2_000); // let the connection burst settle
    }
    const before = usage(server.pid);
    const childTicks = () => children.reduce((sum, c) => sum + usage(c.child.pid!).ticks, 0);
    const childrenBefore = childTicks();
    const t0 = Date.now();
    const startUs = Number(process.hrtime.bigint() / 1000n);
    for (const c of children) c.child.stdin!.write('start\n');
    const apiRun = await pacedLatency(listUrl, headers);
    const seconds = (Date.now() - t0) / 1000;
    windows.push({ name, startUs, endUs: Number(process.hrtime.bigint() / 1000n) });
    const after = usage(server.pid);
    const childrenAfter = childTicks();
    for (const c of children) c.child.stdin!.write('stop\n');
    const reports = await Promise.all(
      children.map((c, i) => nextJson<Report>(c, 'report', 30_000, `${name} report ${i}`)),
    );
    await Promise.all(
      children.map((c) => (c.child.exitCode === null ? new Promise((r) => c.child.once('exit', r)) : null)),
    );
    const lags = reports.flatMap((r) => r.lags);
    const lost = reports.flatMap((r) => r.lost);
    const result: Case = {
      name,
      followers: reports.reduce((s, r) => s + r.followers, 0),
      started: reports.reduce((s, r) => s + r.started, 0),
      apiP50: percentile(apiRun.latencies, 50),
      apiP99: percentile(apiRun.latencies, 99),
      apiErrors: apiRun.errors,
      lagP50: percentile(lags, 50),
      lagP99: percentile(lags, 99),
      received: reports.reduce((s, r) => s + r.received, 0),
      lostMax: Math.max(0, ...lost),
      lostTotal: lost.reduce((s, n) => s + n, 0),
      missed: reports.reduce((s, r) => s + r.missed, 0),
      streamErrors: reports.reduce((s, r) => s + r.errors, 0),
      cpuPct: ((after.ticks - before.ticks) / 100 / seconds) * 100,
      rssMb: after.rssMb,
      followersCpuPct: ((childrenAfter - childrenBefore) / 100 / seconds) * 100,
    };
    log(
      `${name}: ${result.started}/${result.followers} followers streaming, API p50 ${ms(result.apiP50)} p99 ${ms(result.apiP99)}, lag p50 ${ms(result.lagP50)} p99 ${ms(result.lagP99)}, ${fmt(result.received)} lines received, lost ${result.lostTotal}, server CPU ${fmt(result.cpuPct)}%, RSS ${fmt(result.rssMb)} MB; followers' CPU ${fmt(result.followersCpuPct)}%; load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    await sleep(2_000); // the server lets go of the closed subscriptions
    return result;
  }

  const windows: { name: string; startUs: number; endUs: number }[] = [];
  await pacedLatency(listUrl, headers); // warm-up
  const cases: Case[] = [await measure('idle', [], 0)];
  const skipped: string[] = [];
  // Within the benchmark's time limit even on a busy machine: a case that cannot finish is skipped.
  const timeLeft = () => LIMIT_MS - (Date.now() - benchStart);
  for (const n of FOLLOWER_COUNTS) {
    const name = `1 deployment × ${fmt(n)}`;
    if (timeLeft() < CASE_MS) skipped.push(name);
    else cases.push(await measure(name, [appId], n));
  }

  // Status watchers (every open deployment page holds one besides its logs): no lines, only the cost of holding them.
  const watchName = `1 deployment × ${fmt(WATCHERS)} status watchers`;
  if (!RUN_WATCH) skipped.push(watchName);
  else if (timeLeft() < CASE_MS) skipped.push(watchName);
  else cases.push(await measure(watchName, [appId], WATCHERS, 'watch'));

  // 100 deployments (rows only: no sandbox), their lines written by another process on the data folder.
  const multiName = `${MULTI_DEPLOYMENTS} deployments × ${MULTI_PER_DEPLOYMENT}`;
  if (!RUN_MULTI) skipped.push(multiName);
  else if (timeLeft() < CASE_MS) skipped.push(multiName);
  else await multiCase();
  async function multiCase() {
    const { rows } = await withPg(db.url, (c) =>
      c.query<{ id: string }>(
        `INSERT INTO deployments (project_id, status) SELECT $1, 'STOPPED' FROM generate_series(1, ${MULTI_DEPLOYMENTS}) RETURNING id`,
        [project.id],
      ),
    );
    const ids = rows.map((r) => r.id);
    const writer = spawnChild(
      scope,
      'bench/src/children/log-writer.ts',
      { LOG_DIR: path.join(dataDir, 'logs'), DEPLOYMENTS: ids.join(',') },
      path.join(logDir, 'log-writer.log'),
    );
    await nextJson<string>(writer, 'line', 30_000, 'the log writer');
    await sleep(1_000);
    cases.push(await measure(multiName, ids, MULTI_PER_DEPLOYMENT));
    writer.child.kill('SIGTERM');
  }

  if (PROFILE) {
    await server.stop();
    await sleep(100);
    const profFile = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (profFile) {
      fs.mkdirSync(path.join(REPO_ROOT, 'bench', 'profiles'), { recursive: true });
      const kept = path.join(REPO_ROOT, 'bench', 'profiles', 'logs-server.cpuprofile');
      fs.copyFileSync(path.join(profDir, profFile), kept);
      for (const w of windows.filter((x) => x.name !== 'idle')) {
        const r = analyzeProfile(kept, REPO_ROOT, w, 25);
        log(`profile of ${w.name}: busy ${fmt(r.busyMs)} ms of ${fmt(r.windowMs)} ms`);
        for (const c of r.inclusive) log(`  inclusive ${c.category}: ${c.pct}%`);
        for (const f of r.topSelf) log(`  self ${f.selfPct}% ${f.name} ${f.where} [${f.category}]`);
        for (const f of r.oursByTotal) log(`  ours ${f.selfPct}% / ${f.totalPct}% ${f.name} ${f.where}`);
      }
    }
  }
  const idle = cases[0]!;
  const top = cases.filter((c) => c.name.startsWith('1 deployment') && !c.name.includes('watchers')).at(-1);
  const watchers = cases.find((c) => c.name === watchName);
  const multi = cases.find((c) => c.name === multiName);
  const perThousand = (c: Case) => ((c.rssMb - idle.rssMb) / c.followers) * 1_000;
  const r = top ? ratio(top.apiP99, idle.apiP99) : Number.NaN;
  const line = top
    ? `logs: projects.list p99 ${ms(idle.apiP99)} idle, ${ms(top.apiP99)} with ${fmt(top.started)}/${fmt(top.followers)} followers streaming from an app printing 10 lines/s (lag p50 ${ms(top.lagP50)}, p99 ${ms(top.lagP99)}, ${top.lostTotal} lines lost; server ${fmt(top.cpuPct)}% CPU, +${fmt(perThousand(top))} MB RSS per 1,000 followers)${watchers ? `; ${fmt(watchers.followers)} status watchers: API p99 ${ms(watchers.apiP99)}, server ${fmt(watchers.cpuPct)}% CPU` : ''}${multi ? `; 100 deployments × 10: API p99 ${ms(multi.apiP99)}, lag p99 ${ms(multi.lagP99)}` : ''}${skipped.length ? `; not run in time: ${skipped.join(', ')}` : ''} — ratio ${r}`
    : `logs: not measured — no follower case fitted in the time limit`;

  const details = [
    `One app deployed on the local provider prints \`tick <epoch ms> <seq>\` 10 times a second. Followers subscribe to \`deployments.logs({ follow: true, tail: 1 })\` through the typed client (SSE, \`eventsource\`) in child processes of ${PER_PROCESS} followers each, connecting 10 per 100 ms per process (a failed subscription is retried after 1 s from its last event id, as the CLI does); measuring starts 2 s after every follower has its first batch (or after 45 s with those that have: the table says how many). Meanwhile the bench process calls \`projects.list\` (20 projects) ${API_CALLS} times, one every ${API_INTERVAL_MS} ms (not waiting for answers). Lag = time a follower received a line − the stamp the app put in it. Lost = gaps in a follower's seq during the window; "skipped" = lines the server told a follower it skipped (\`missed\`). CPU = utime+stime over the window, % of one core (server; follower processes together); RSS at the end of the window; per 1,000 followers = (RSS − idle RSS) ÷ followers × 1,000. The 100 deployments × 10 case has no sandboxes: a separate process (\`src/children/log-writer.ts\`, standing for a worker-only replica) appends the lines to the shared data folder through the product's LogStore, so the server's feeds pick them up from disk. The status watchers case holds ${fmt(WATCHERS)} \`deployments.watch\` subscriptions of the app's deployment (what every open deployment page holds besides its logs): no lines, only what holding them costs.`,
    '',
    '| case | followers (streaming / started) | API p50 | API p99 | lag p50 | lag p99 | lines received | lost (total / worst follower) | skipped | stream errors | server CPU | server RSS | RSS per 1,000 followers | CPU of the followers |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...cases.map(
      (c) =>
        `| ${c.name} | ${fmt(c.started)} / ${fmt(c.followers)} | ${ms(c.apiP50)} | ${ms(c.apiP99)} | ${c.received ? ms(c.lagP50) : '–'} | ${c.received ? ms(c.lagP99) : '–'} | ${fmt(c.received)} | ${c.lostTotal} / ${c.lostMax} | ${c.missed} | ${c.streamErrors} | ${fmt(c.cpuPct)}% | ${fmt(c.rssMb)} MB | ${c.followers ? `${fmt(perThousand(c))} MB` : '–'} | ${fmt(c.followersCpuPct)}% |`,
    ),
    ...(skipped.length ? ['', `Not run (the benchmark's time limit was near): ${skipped.join(', ')}.`] : []),
    '',
    `Ratio = API p99 with the most followers measured (1,000 unless skipped) ÷ idle p99 (goal ≤ 2; lag p99 goal < 250 ms; no line lost; < 50 KB per idle follower = 50 MB per 1,000).`,
  ];
  return { line, details, database: db.description };
}
