/**
 * argon2: does password hashing starve ordinary requests? p99 of projects.list from one client, idle,
 * then while LOGIN_CLIENTS clients log in back to back (a separate process). The server caps concurrent
 * hashes at ARGON2_MAX_CONCURRENT (default: half the cores, at least 1); a second pass with the other
 * setting (2 when the default is 1, else 1) shows what the cap buys.
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BenchContext, BenchOutput } from '../lib/context';
import { register, sampleLatency, trpcQueryPath } from '../lib/http';
import { type Scope, sleep, withTimeout } from '../lib/scope';
import {
  freshDatabase,
  type NodeService,
  newAuthSecret,
  REPO_ROOT,
  startCodeRunner,
  tempDir,
} from '../lib/services';
import { userWithProjects } from '../lib/setup';
import { fmt, ms, percentile, ratio } from '../lib/stats';

const LOGIN_CLIENTS = 20;
/** Alternating idle and loaded windows: idle, (loaded, idle) × CYCLES. */
const CYCLES = 5;
const IDLE_MS = 1_500;
const LOADED_MS = 2_500;
/** The login load runs this long before a loaded window starts (the hash queue fills up). */
const RAMP_MS = 700;
const MAX_SAMPLES = 20_000;

type ChildMessage =
  | { event: 'ready' | 'running' }
  | { event: 'paused'; ok: number; failed: number; latencies: number[] };

/** The login load as a child process driven over IPC (see children/login-load.ts). */
async function startLoginLoad(scope: Scope, target: string, email: string, password: string) {
  const child = fork(path.join(REPO_ROOT, 'bench/src/children/login-load.ts'), [], {
    cwd: REPO_ROOT,
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      TARGET_URL: target,
      LOGIN_EMAIL: email,
      LOGIN_PASSWORD: password,
      LOGIN_CONNECTIONS: String(LOGIN_CLIENTS),
      LOGIN_MAX_S: '120',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  scope.defer(`stop the login load (pid ${child.pid})`, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const waiters = new Map<string, { resolve: (m: ChildMessage) => void; reject: (e: Error) => void }>();
  child.on('message', (m: ChildMessage) => {
    waiters.get(m.event)?.resolve(m);
    waiters.delete(m.event);
  });
  child.once('exit', (code) => {
    for (const w of waiters.values()) w.reject(new Error(`the login load exited (${code})`));
    waiters.clear();
  });
  const next = (event: string) =>
    withTimeout(
      new Promise<ChildMessage>((resolve, reject) => {
        waiters.set(event, { resolve, reject });
      }),
      60_000,
      `login load "${event}"`,
    );
  await next('ready');
  return {
    async run() {
      const m = next('running');
      child.send({ cmd: 'run' });
      await m;
    },
    async pause() {
      const m = next('paused');
      child.send({ cmd: 'pause' });
      return (await m) as Extract<ChildMessage, { event: 'paused' }>;
    },
    stop() {
      if (child.connected) child.send({ cmd: 'exit' });
      else if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

export async function measurePass(
  scope: Scope,
  server: NodeService,
  url: string,
  headers: Record<string, string>,
  login: { email: string; password: string },
  log: (m: string) => void,
  label: string,
) {
  const load = await startLoginLoad(scope, server.url, login.email, login.password);
  const sample = async (ms: number, warmup = 0) =>
    (await sampleLatency(url, headers, { durationMs: ms, maxRequests: MAX_SAMPLES, warmup })).latencies;
  // Idle and loaded windows alternate, so that the noise of a shared machine falls on both sides.
  const idle: number[] = [];
  const loaded: number[] = [];
  let logins = 0;
  let failedLogins = 0;
  let loginMs = 0;
  const loginLatencies: number[] = [];
  try {
    idle.push(...(await sample(IDLE_MS, 300)));
    for (let c = 0; c < CYCLES; c++) {
      const started = Date.now();
      await load.run();
      await sleep(RAMP_MS);
      loaded.push(...(await sample(LOADED_MS)));
      const paused = await load.pause();
      loginMs += Date.now() - started;
      logins += paused.ok;
      failedLogins += paused.failed;
      loginLatencies.push(...paused.latencies);
      idle.push(...(await sample(IDLE_MS)));
    }
  } finally {
    load.stop();
  }
  if (logins === 0) throw new Error('no login succeeded during the load');
  const result = {
    idle: { n: idle.length, p50: percentile(idle, 50), p99: percentile(idle, 99) },
    loaded: { n: loaded.length, p50: percentile(loaded, 50), p99: percentile(loaded, 99) },
    logins: { perS: logins / (loginMs / 1000), failed: failedLogins, p50: percentile(loginLatencies, 50) },
    ratio: 0,
  };
  result.ratio = ratio(result.loaded.p99, result.idle.p99);
  log(
    `${label}: idle p50 ${ms(result.idle.p50)} p99 ${ms(result.idle.p99)} (${idle.length}); ` +
      `under ${LOGIN_CLIENTS} login clients (${fmt(result.logins.perS)} logins/s) p50 ${ms(result.loaded.p50)} p99 ${ms(result.loaded.p99)} (${loaded.length}) — ratio ${result.ratio}`,
  );
  return result;
}

export async function argon2({ scope, log }: BenchContext): Promise<BenchOutput> {
  const db = await freshDatabase(scope);
  const logDir = tempDir(scope, 'logs');
  const dataDir = tempDir(scope, 'data');
  const base = {
    databaseUrl: db.url,
    dataDir,
    authSecret: newAuthSecret(),
    logDir,
  };
  const env = {
    WORKER_ENABLED: 'false',
    CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000000000',
    CODERUNNER_RATE_LIMIT_LOGIN_FAILURES: '1000000000',
  };
  // The server's default (packages/api/src/config.ts), and the setting the comparison pass uses.
  const defaultCap = Math.max(1, Math.floor(os.availableParallelism() / 2));
  const otherCap = defaultCap === 1 ? 2 : 1;
  let server = await startCodeRunner(scope, { ...base, env });
  log(`server up at ${server.url} on ${db.description} (ARGON2_MAX_CONCURRENT default: ${defaultCap})`);
  const { token } = await userWithProjects(server.url, db.url, {
    email: 'reader@bench.example',
    password: 'reader bench password',
    plan: 'personal',
    projects: 20,
  });
  const login = { email: 'login@bench.example', password: 'login bench password' };
  await register(server.url, login.email, login.password);
  const headers = { authorization: `Bearer ${token}` };
  const listPath = trpcQueryPath('projects.list', { limit: 20 });

  const main = await measurePass(
    scope,
    server,
    `${server.url}${listPath}`,
    headers,
    login,
    log,
    `cap ${defaultCap}`,
  );

  // What-if, on the same server: every thread but the main (event loop) thread at nice 19, as if the
  // hashing ran at low priority (Linux: a thread's nice is set through its tid). It also lowers the
  // libuv pool's other work (jose's WebCrypto jobs, fs) and V8's helper threads.
  let niced: typeof main | undefined;
  let nicedError: string | undefined;
  const tasks = `/proc/${server.pid}/task`;
  if (process.platform === 'linux' && fs.existsSync(tasks)) {
    const renice = (priority: number) => {
      for (const tid of fs.readdirSync(tasks).map(Number)) {
        if (tid === server.pid) continue;
        try {
          os.setPriority(tid, priority);
        } catch {
          // the thread ended meanwhile
        }
      }
    };
    renice(19);
    // A what-if only: when it cannot complete (the niced pool threads also carry pg's SCRAM and jose's
    // WebCrypto jobs, which a busy machine may starve), say so and go on.
    niced = await measurePass(
      scope,
      server,
      `${server.url}${listPath}`,
      headers,
      login,
      log,
      `cap ${defaultCap}, helper threads nice 19`,
    ).catch((err: Error) => {
      nicedError = err.message.split('\n')[0]!;
      log(`what-if pass failed: ${nicedError}`);
      return undefined;
    });
    renice(0);
  }

  // The same with the other setting (a restart on the same database).
  await server.stop();
  server = await startCodeRunner(scope, {
    ...base,
    label: `coderunner-cap${otherCap}`,
    env: { ...env, ARGON2_MAX_CONCURRENT: String(otherCap) },
  });
  const other = await measurePass(
    scope,
    server,
    `${server.url}${listPath}`,
    headers,
    login,
    log,
    `cap ${otherCap}`,
  );

  const row = (label: string, p: typeof main) =>
    `| ${label} | ${ms(p.idle.p50)} / ${ms(p.idle.p99)} (${fmt(p.idle.n)}) | ${ms(p.loaded.p50)} / ${ms(p.loaded.p99)} (${fmt(p.loaded.n)}) | ${fmt(p.logins.perS, 1)} (p50 ${ms(p.logins.p50)}) | ${fmt(p.loaded.p50 / p.idle.p50, 2)} | ${p.ratio} |`;
  const line =
    `argon2: projects.list p99 ${ms(main.idle.p99)} idle, ${ms(main.loaded.p99)} while ${LOGIN_CLIENTS} clients log in ` +
    `(${fmt(main.logins.perS)} logins/s, ARGON2_MAX_CONCURRENT=${defaultCap}, the default here) — ratio ${main.ratio}`;
  const details = [
    `One client requests \`projects.list\` (20 projects) back to back, over one kept-alive connection. Windows alternate: idle ${IDLE_MS / 1000} s (after 300 warm-up requests), then ${CYCLES} × (${LOADED_MS / 1000} s while a separate process keeps ${LOGIN_CLIENTS} connections calling \`auth.login\` back to back — started ${RAMP_MS / 1000} s before the window, and left to finish its calls after it —, idle ${IDLE_MS / 1000} s). ` +
      'Correct password; argon2id with the defaults (m=19456 KiB, t=2, p=1). Rate limits raised for the bench. Goal: ratio = p99 under logins / p99 idle ≤ 2. ' +
      `Two more passes for comparison: the same server with every thread except its event-loop thread reniced to 19 (on Linux; as if the hashes ran at low priority), and a restart with ARGON2_MAX_CONCURRENT=${otherCap}.`,
    '',
    '| server | idle p50 / p99 (requests) | under logins p50 / p99 (requests) | logins/s (login p50) | ratio p50 | ratio p99 |',
    '| --- | --- | --- | --- | --- | --- |',
    row(
      `ARGON2_MAX_CONCURRENT=${defaultCap} (the default: half of ${os.availableParallelism()} cores)`,
      main,
    ),
    ...(niced ? [row('same, its non-main threads reniced to 19 (what-if)', niced)] : []),
    ...(nicedError
      ? [`| same, its non-main threads reniced to 19 (what-if) | could not complete: ${nicedError} | | | | |`]
      : []),
    row(`ARGON2_MAX_CONCURRENT=${otherCap} (restarted)`, other),
  ];
  return { line, details, database: db.description };
}
