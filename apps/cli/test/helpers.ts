/**
 * Test support: a real server (real HTTP, a fresh database) started in-process on a random port, and
 * the CLI run as a real child process exactly as `pnpm coderunner` runs it.
 */
import { type ChildProcess, type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UNISOLATED_OPEN_SIGNUP_ACCEPTANCE } from '@coderunner/api';
import { User } from '@coderunner/db';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { stopProjectClusters } from '@coderunner/sandbox';
import {
  createLogger,
  loadConfig,
  type RunningServer,
  type ServerOptions,
  startServer,
} from '@coderunner/server';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../../..');
export const CLI_ROOT = path.resolve(import.meta.dirname, '..');
export const MAIN = path.join(CLI_ROOT, 'src/main.ts');
export const PASSWORD = 'correct horse battery staple';

export interface TestServer {
  /** e.g. http://127.0.0.1:40123 */
  url: string;
  db: TestDatabase;
  server: RunningServer;
  close(): Promise<void>;
}

export async function startTestServer(
  env: Record<string, string> = {},
  options: ServerOptions = {},
): Promise<TestServer> {
  const db = await createTestDatabase('cr_cli');
  const dataDir = tempDir('coderunner-cli-server-');
  let server: RunningServer;
  try {
    server = await startServer(
      loadConfig({
        NODE_ENV: 'test',
        DATABASE_URL: db.url,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'silent',
        CODERUNNER_DATA_DIR: dataDir,
        CODERUNNER_NODE_CACHE: path.join(os.tmpdir(), 'coderunner-test-node-cache'),
        CODERUNNER_AUTH_SECRET: 'a-cli-test-secret-that-is-long-enough!!',
        CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '100000',
        CODERUNNER_RATE_LIMIT_LOGIN_FAILURES: '1000',
        WORKER_ENABLED: 'false',
        // Tests register many users; on a machine that cannot isolate apps, sign-up would close after one.
        CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
        ...env,
      }),
      createLogger('silent'),
      options,
    );
  } catch (err) {
    await db.drop();
    throw err;
  }
  return {
    url: server.url,
    db,
    server,
    async close() {
      await server.close();
      await db.drop();
    },
  };
}

const tempDirs: string[] = [];
export function tempDir(prefix = 'coderunner-cli-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** CLI processes started by this test file and not known to have ended. */
const children = new Set<ChildProcess>();
function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** Kills every CLI process still running (a follow, a test that failed midway). */
export function killChildren(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}

/**
 * Removes this file's temporary folders. CLI processes still running are killed first: one writing
 * its config after the removal would leave a folder behind again.
 */
export function removeTempDirs(): void {
  killChildren();
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

// Also when a file ends without its afterAll (a crash, a timeout in a hook).
process.once('exit', () => {
  try {
    removeTempDirs();
  } catch {
    // nothing more to do while exiting
  }
});

/** A folder for the CLI's config that does not exist yet (the CLI must create it, 0700). */
export function freshConfigDir(): string {
  return path.join(tempDir('coderunner-cli-home-'), 'coderunner');
}

export function readConfig(configDir: string): Record<string, string> {
  return JSON.parse(fs.readFileSync(path.join(configDir, 'config.json'), 'utf8'));
}

export function writeConfig(configDir: string, config: Record<string, string>): void {
  fs.mkdirSync(configDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(configDir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
}

export const uniqueEmail = (tag = 'user') => `${tag}-${randomBytes(5).toString('hex')}@example.com`;

/** A port nothing listens on (bound once, then released). */
export const closedPort = freePort;

export interface CliOptions {
  /** CODERUNNER_CONFIG_DIR */
  configDir: string;
  /** CODERUNNER_API_URL; null leaves it unset. */
  apiUrl: string | null;
  /** Extra environment (undefined removes a variable). */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed (stdin is always a pipe: not a terminal). */
  input?: string;
  /** The program to run instead of the sources (e.g. the built bundle). */
  command?: string[];
  /** Killed (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** The working folder; default the repository's root. */
  cwd?: string;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as the one JSON document it must be. */
  // biome-ignore lint/suspicious/noExplicitAny: tests index into parsed JSON freely
  json<T = any>(): T;
}

/** The environment of the test run without anything that would steer the CLI. */
export function cliEnv(opts: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('CODERUNNER_') || ['NO_COLOR', 'FORCE_COLOR', 'XDG_CONFIG_HOME'].includes(k)) continue;
    env[k] = v;
  }
  env.CODERUNNER_CONFIG_DIR = opts.configDir;
  if (opts.apiUrl) env.CODERUNNER_API_URL = opts.apiUrl;
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** tsx by its full address, so the CLI also runs with another working folder (a folder to deploy). */
const TSX = import.meta.resolve('tsx');
export const sourceCommand = () => [process.execPath, '--import', TSX, MAIN];

/** The CLI as a child process (tracked for cleanup), its stdin given `opts.input` and closed. */
function spawnCli(args: string[], opts: CliOptions): ChildProcessWithoutNullStreams {
  const [bin, ...pre] = opts.command ?? sourceCommand();
  const child = spawn(bin!, [...pre, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: cliEnv(opts),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child);
  child.stdin.end(opts.input ?? '');
  return child;
}

export function runCli(args: string[], opts: CliOptions): Promise<CliResult> {
  return collect(spawnCli(args, opts), opts.timeoutMs);
}

/** A CLI process that runs on while the test goes on (a follow): read its output as it comes. */
export interface LiveCli {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves once the output passes `test` (rejects when the process ends first, or after timeoutMs). */
  waitFor(test: (out: { stdout: string; stderr: string }) => boolean, timeoutMs?: number): Promise<void>;
  /** The process's end, with everything it printed. */
  result: Promise<CliResult>;
}

export function startCli(args: string[], opts: CliOptions): LiveCli {
  const child = spawnCli(args, opts);
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const l of listeners) l();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    for (const l of listeners) l();
  });
  const result = collect(child, opts.timeoutMs ?? 120_000, false);
  let ended = false;
  void result.then(() => {
    ended = true;
    for (const l of listeners) l();
  });
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    result: result.then((r) => ({
      code: r.code,
      stdout,
      stderr,
      json() {
        return JSON.parse(stdout);
      },
    })),
    waitFor(test, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`the output never matched; stdout:\n${stdout}\nstderr:\n${stderr}`));
        }, timeoutMs);
        const check = () => {
          if (test({ stdout, stderr })) {
            clearTimeout(timer);
            listeners.delete(check);
            resolve();
          } else if (ended) {
            clearTimeout(timer);
            listeners.delete(check);
            reject(new Error(`the CLI exited first; stdout:\n${stdout}\nstderr:\n${stderr}`));
          }
        };
        listeners.add(check);
        check();
      });
    },
  };
}

function collect(child: ChildProcess, timeoutMs = 30_000, read = true): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  if (read) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({
        code,
        stdout,
        stderr,
        json() {
          try {
            return JSON.parse(stdout);
          } catch {
            throw new Error(`stdout is not one JSON document:\n${stdout}\nstderr:\n${stderr}`);
          }
        },
      });
    });
  });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface PtySession {
  /** Resolves once the terminal has shown `text` (anywhere in the output so far). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Types into the terminal. */
  type(text: string): void;
  /** Everything the terminal showed: prompts, echo, results (stdout and stderr both). */
  readonly output: string;
  exit: Promise<number | null>;
}

/**
 * Runs the CLI on a pseudo-terminal with util-linux `script` (Debian's bsdutils, an Essential package:
 * present on every Debian machine), so stdin and stdout are TTYs exactly as for a person.
 */
export function runInPty(args: string[], opts: CliOptions): PtySession {
  // exec: the CLI replaces the shell, so Ctrl-C (SIGINT to the terminal's process group) reaches the
  // CLI alone, as in an interactive shell, and its exit code is the session's.
  const command = `exec ${[...(opts.command ?? sourceCommand()), ...args].map(shellQuote).join(' ')}`;
  // By its full path: a test may give the CLI a PATH without it.
  const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p)) ?? 'script';
  const child = spawn(script, ['-qfec', command, '/dev/null'], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...cliEnv(opts), SHELL: '/bin/sh', TERM: 'xterm' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  track(child);
  let output = '';
  const listeners = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    output += d;
    for (const l of listeners) l();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  const exit = collect(child, opts.timeoutMs, false).then((r) => r.code);
  return {
    get output() {
      return output;
    },
    type: (text) => child.stdin.write(text),
    exit,
    waitFor(text, timeoutMs = 20_000) {
      const seen = () => (typeof text === 'string' ? output.includes(text) : text.test(output));
      if (seen()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`terminal never showed ${String(text)}; it showed:\n${output}`));
        }, timeoutMs);
        const check = () => {
          if (!seen()) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve();
        };
        listeners.add(check);
        void exit.then(() => {
          if (!seen()) {
            clearTimeout(timer);
            listeners.delete(check);
            reject(new Error(`the CLI exited before showing ${String(text)}; it showed:\n${output}`));
          }
        });
      });
    },
  };
}

/** Registers a fresh account through the CLI (non-interactive); returns its email. */
export async function registerViaCli(
  server: TestServer,
  configDir: string,
  email = uniqueEmail(),
): Promise<string> {
  const r = await runCli(['register', '--email', email, '--password-stdin'], {
    configDir,
    apiUrl: server.url,
    input: `${PASSWORD}\n`,
  });
  if (r.code !== 0) throw new Error(`register failed (${r.code}): ${r.stderr}`);
  return email;
}

/** A server that runs deployments (local sandboxes), restartable on the same port, database and data. */
export interface DeployServer {
  readonly url: string;
  readonly port: number;
  readonly server: RunningServer;
  db: TestDatabase;
  dataDir: string;
  /**
   * Stop the server (running apps keep running) and start a new one on the same port; `whileDown`
   * runs in between.
   */
  restart(whileDown?: () => void | Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export async function startDeployServer(env: Record<string, string> = {}): Promise<DeployServer> {
  const db = await createTestDatabase('cr_cli_deploy');
  const dataDir = tempDir('coderunner-cli-data-');
  fs.chmodSync(dataDir, 0o711); // sandboxes run as another user and need to pass through
  const base = {
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    CODERUNNER_DATA_DIR: dataDir,
    CODERUNNER_NODE_CACHE: path.join(os.tmpdir(), 'coderunner-test-node-cache'),
    CODERUNNER_AUTH_SECRET: 'a-cli-deploy-test-secret-long-enough!!',
    CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '100000',
    CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()),
    CODERUNNER_START_TIMEOUT_S: '15',
    WORKER_CONCURRENCY: '4',
    // Open streams (log follows) are cut at once on close, as a crash would.
    SHUTDOWN_TIMEOUT_MS: '100',
    // Tests register many users; on a machine that cannot isolate apps, sign-up would close after one.
    CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
    ...env,
  };
  const start = (port: number) =>
    startServer(loadConfig({ ...base, PORT: String(port) }), createLogger('silent'));
  let server: RunningServer;
  try {
    server = await start(0);
  } catch (err) {
    await db.drop();
    throw err;
  }
  const port = server.port;
  const killSandboxes = async () => {
    const provider = server.deps.deployments?.engine.provider;
    for (const s of (await provider?.list().catch(() => [])) ?? [])
      await provider!.kill(s.id).catch(() => {});
  };
  return {
    get url() {
      return server.url;
    },
    port,
    get server() {
      return server;
    },
    db,
    dataDir,
    async restart(whileDown) {
      await server.close();
      await whileDown?.();
      server = await start(port);
    },
    async close() {
      await killSandboxes();
      await server.close();
      // Project databases outlive their server by design: end this test's.
      await stopProjectClusters(dataDir);
      await db.drop();
    },
  };
}

/** Registers an account through the CLI and gives it the team plan (several running deployments). */
export async function registerTeamAccount(server: { url: string }, configDir: string): Promise<string> {
  const email = await registerViaCli(server as TestServer, configDir);
  await User.update({ planType: 'team' }, { where: { email } });
  return email;
}

/** Writes `files` into a fresh temporary folder and returns it. */
export function appFolder(files: Record<string, string>): string {
  const dir = tempDir('coderunner-cli-app-');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

/** curl, as a user would: it resolves *.localhost to loopback by itself. */
export function curl(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '--max-time', '5', '-w', '\n%{http_code}', url], (err, stdout) => {
      if (err && !stdout) return resolve({ status: 0, body: '' });
      const cut = stdout.lastIndexOf('\n');
      resolve({ status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) });
    });
  });
}
