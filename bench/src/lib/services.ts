/**
 * What every benchmark starts: a fresh database (on DATABASE_URL's server, else an embedded
 * PostgreSQL in a temp folder), the real CodeRunner server as a child process, and other Node child
 * processes (the Express baseline, load generators). Everything is registered with the Scope.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UNISOLATED_OPEN_SIGNUP_ACCEPTANCE } from '@coderunner/api';
import { startEmbeddedPostgres } from '@coderunner/db';
import pg from 'pg';
import { type Scope, sleep } from './scope';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BENCH_DIR = path.join(REPO_ROOT, 'bench');

import { freePort } from '@coderunner/db/testing';

export { freePort };

/** A temp folder removed at the end of the scope. */
export function tempDir(scope: Scope, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cr-bench-${prefix}-`));
  scope.defer(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface BenchDatabase {
  /** URL of the fresh database. */
  url: string;
  name: string;
  /** "embedded PostgreSQL 17.x" or "PostgreSQL 15.x at DATABASE_URL" */
  description: string;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export async function adminQuery(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** `bench_<random>` on DATABASE_URL's server, or on an embedded cluster started for this scope. */
export async function freshDatabase(scope: Scope): Promise<BenchDatabase> {
  let adminUrl = process.env.DATABASE_URL;
  let where = 'at DATABASE_URL';
  if (!adminUrl) {
    const dataDir = tempDir(scope, 'pg');
    const cluster = await startEmbeddedPostgres({ dataDir, port: await freePort() });
    scope.defer('stop the embedded PostgreSQL', () => cluster.stop());
    adminUrl = cluster.url('postgres');
    where = 'embedded';
  }
  const name = `bench_${randomBytes(5).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE "${name}"`);
  const admin = adminUrl;
  scope.defer(`drop database ${name}`, async () => {
    await adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });
  const version = (await adminQuery(admin, 'SHOW server_version')).rows[0]?.server_version as string;
  return {
    url: withDatabase(adminUrl, name),
    name,
    description: `PostgreSQL ${version.split(' ')[0]} (${where})`,
  };
}

export interface NodeService {
  url: string;
  port: number;
  pid: number;
  logFile: string;
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
  exited: Promise<number | null>;
}

/** The errors (pino level ≥ 50, or non-JSON lines) near the end of a service's log, for a failure report. */
export function logProblems(file: string, max = 8): string[] {
  let lines: string[];
  try {
    lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-2_000);
  } catch {
    return [];
  }
  return lines
    .filter((l) => !l.startsWith('{') || /"level":(5|6)0/.test(l))
    .slice(-max)
    .map((l) => l.slice(0, 600));
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * `node [nodeArgs] --import tsx <script>` from the repo root, stdout+stderr to a log file; ready when
 * GET <readyPath> answers 200. Registered with the scope (stopped at its end).
 */
export async function startNodeService(
  scope: Scope,
  opts: {
    label: string;
    script: string;
    env: Record<string, string>;
    logDir: string;
    nodeArgs?: string[];
    readyPath?: string;
    readyTimeoutMs?: number;
  },
): Promise<NodeService> {
  const port = Number(opts.env.PORT) || (await freePort());
  const logFile = path.join(opts.logDir, `${opts.label}-${port}.log`);
  const logFd = fs.openSync(logFile, 'w');
  scope.logFiles.push(logFile);
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', opts.script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env, PORT: String(port) },
    stdio: ['ignore', logFd, logFd],
  });
  fs.closeSync(logFd);
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(-1));
  });
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 20_000) => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };
  scope.defer(`stop ${opts.label} (pid ${child.pid})`, () => stop());

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  for (;;) {
    if (gone) throw new Error(`${opts.label} exited during start:\n${tail(logFile)}`);
    try {
      const res = await fetch(`${url}${opts.readyPath ?? '/readyz'}`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${opts.label} was not ready in time:\n${tail(logFile)}`);
    await sleep(100);
  }
  return { url, port, pid: child.pid!, logFile, child, stop, exited };
}

/** The real server: `node --import tsx apps/server/src/main.ts`, as the Dockerfile runs it. */
export function startCodeRunner(
  scope: Scope,
  opts: {
    label?: string;
    databaseUrl: string;
    dataDir: string;
    authSecret: string;
    logDir: string;
    env?: Record<string, string>;
    nodeArgs?: string[];
  },
): Promise<NodeService> {
  return startNodeService(scope, {
    label: opts.label ?? 'coderunner',
    script: 'apps/server/src/main.ts',
    logDir: opts.logDir,
    nodeArgs: opts.nodeArgs,
    env: {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      DATABASE_URL: opts.databaseUrl,
      CODERUNNER_DATA_DIR: opts.dataDir,
      CODERUNNER_AUTH_SECRET: opts.authSecret,
      // Benches register many users; on a machine that cannot isolate apps, sign-up would close after one.
      CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
      ...opts.env,
    },
  });
}

export const newAuthSecret = () => randomBytes(32).toString('base64url');
