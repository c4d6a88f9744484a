/**
 * One local sandbox: a folder (see layout.ts) and the processes running in it. Every process is
 * `/bin/sh -c <command>` in a process group of its own, with a clean environment, as the sandbox
 * user when the server is root; stopping it signals the whole group.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitForApp } from '../readiness';
import {
  type AppHandle,
  type CommandOptions,
  type CommandResult,
  CommandTimeoutError,
  type FileEntry,
  type Sandbox,
  SandboxError,
  type SandboxMetadata,
  SandboxNotFoundError,
  type StartAppOptions,
} from '../types';
import { markerEntries, type ProcessKind, sandboxEnvironment } from './environment';
import {
  type AppRecord,
  readRecord,
  removeSandboxFolder,
  type SandboxPaths,
  type SandboxRecord,
  updateRecord,
} from './layout';
import { LogFollower, LogWriter } from './logs';
import { identify, isRunning, terminate } from './processes';
import type { RunAs } from './user';

/** Default limit for `run` (installs and builds can be slow; 0 means no limit). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10 * 60_000;
/** Bounded tails kept in results and errors; the whole output goes through onStdout/onStderr. */
const OUTPUT_TAIL_CHARS = 64 * 1024;
/** How often the app's log files are read for its onStdout/onStderr. */
const APP_LOG_POLL_MS = 200;
/** How often the logs of an app started by another server process are kept bounded. */
const KEEPER_POLL_MS = 2_000;
/** How often an app started by another server process is checked for having exited. */
const APP_EXIT_POLL_MS = 500;
/** How long to wait for a command's output pipes to close once its processes are gone. */
const PIPE_CLOSE_WAIT_MS = 1_000;

/** The provider's settings, shared by its sandboxes. */
export interface LocalConfig {
  runAs: RunAs | undefined;
  killGraceMs: number;
  logMaxBytes: number;
}

interface RunningApp {
  handle: AppHandle & { pid: number };
  exited: boolean;
  /** Set before we end it ourselves, so that onExit reports only exits of its own. */
  stopping: boolean;
  /** Settles once the app has exited and its last output went to the callbacks. */
  ended: Promise<void>;
}

/**
 * What this server process knows about a sandbox beyond its folder: the processes it started.
 * Shared by every LocalSandbox object for the same folder (each connect() makes a new one).
 */
interface LiveState {
  app: RunningApp | undefined;
  /** Process groups of running commands. */
  commands: Set<number>;
  killed: boolean;
  commandsLog: LogWriter;
  /** Keeps the logs of an app started by an earlier server process bounded. */
  keeper: NodeJS.Timeout | undefined;
  /** An app started by an earlier server process, followed by followApp. */
  adopted: AdoptedApp | undefined;
}

interface AdoptedApp {
  timer: NodeJS.Timeout;
  followers: LogFollower[];
  /** Set before we end it ourselves (stopApp, kill): no onExit then. */
  stopping: boolean;
}

const live = new Map<string, LiveState>();

export class LocalSandbox implements Sandbox {
  readonly id: string;
  readonly metadata: SandboxMetadata;
  private readonly envs: Record<string, string>;
  private readonly state: LiveState;

  constructor(
    private readonly config: LocalConfig,
    private readonly paths: SandboxPaths,
    record: SandboxRecord,
  ) {
    this.id = record.id;
    this.metadata = record.metadata as SandboxMetadata;
    this.envs = record.envs;
    let state = live.get(paths.root);
    if (!state) {
      state = {
        app: undefined,
        commands: new Set(),
        killed: false,
        commandsLog: new LogWriter(paths.commandsLog, config.logMaxBytes),
        keeper: undefined,
        adopted: undefined,
      };
      live.set(paths.root, state);
    }
    this.state = state;
  }

  getHost(port: number): string {
    return `127.0.0.1:${port}`;
  }

  /**
   * The server (maybe root) never writes into folders that the sandbox's code controls, where a
   * symlink planted by that code could send the write anywhere on the machine: it writes into a
   * staging folder of its own, and a process running as the sandbox user copies that into app/.
   */
  async writeFiles(files: FileEntry[]): Promise<void> {
    this.assertExists();
    const staging = await fs.promises.mkdtemp(path.join(this.paths.root, '.upload-'));
    try {
      for (const file of files) {
        const target = resolveInside(staging, file.path, 'file');
        await fs.promises.mkdir(path.dirname(target), { recursive: true });
        await fs.promises.writeFile(target, file.data);
        // No setuid bits; the owner must be able to read the file to copy it.
        await fs.promises.chmod(target, ((file.mode ?? 0o644) & 0o777) | 0o400);
      }
      if (this.config.runAs) await chownTree(staging, this.config.runAs);
      const copy = this.spawnProcess({
        file: 'cp',
        args: ['-R', '--preserve=mode,timestamps', '--', `${staging}/.`, `${this.paths.app}/`],
        kind: 'command',
        cwd: this.paths.app,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      copy.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
      });
      const { code } = await copy.exit;
      if (code !== 0)
        throw new SandboxError(`could not write files into sandbox ${this.id}: ${stderr.trim()}`);
    } finally {
      await fs.promises.rm(staging, { recursive: true, force: true });
    }
  }

  async run(command: string, opts: CommandOptions = {}): Promise<CommandResult> {
    this.assertExists();
    const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const cwd = await this.workDir(opts.cwd);
    const log = this.state.commandsLog;
    log.write(`\n$ ${command}\n`);
    const { child, exit } = this.spawnProcess({
      file: '/bin/sh',
      args: ['-c', command],
      kind: 'command',
      cwd,
      envs: opts.envs,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout = new OutputTail();
    const stderr = new OutputTail();
    for (const [stream, tail, callback] of [
      [child.stdout, stdout, opts.onStdout],
      [child.stderr, stderr, opts.onStderr],
    ] as const) {
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        tail.push(chunk);
        log.write(chunk);
        if (callback) safeCall(() => callback(chunk));
      });
    }
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));

    let timedOut: Promise<void> | undefined;
    const pgid = child.pid;
    const timer =
      timeoutMs > 0 && pgid !== undefined
        ? setTimeout(() => {
            timedOut = terminate({ groups: [pgid] }, this.config.killGraceMs);
          }, timeoutMs)
        : undefined;
    if (pgid !== undefined) this.state.commands.add(pgid);
    let result: { code: number | null; signal: NodeJS.Signals | null };
    try {
      result = await exit;
      clearTimeout(timer);
      // Background processes the command left behind would keep its output open and outlive it.
      await timedOut;
      if (pgid !== undefined) await terminate({ groups: [pgid] }, this.config.killGraceMs);
      // A process that left the group (setsid) may still hold the pipes: stop waiting for them.
      if (!(await waitFor(closed, PIPE_CLOSE_WAIT_MS))) {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }
    } finally {
      clearTimeout(timer);
      if (pgid !== undefined) this.state.commands.delete(pgid);
    }
    if (timedOut) {
      log.write(`[coderunner: killed after ${timeoutMs} ms]\n`);
      throw new CommandTimeoutError(command, timeoutMs, stdout.text, stderr.text);
    }
    if (this.state.killed) throw new SandboxNotFoundError(this.id);
    return { exitCode: exitCode(result), stdout: stdout.text, stderr: stderr.text };
  }

  /**
   * The app's stdout and stderr are files in logs/ (not pipes to this server), so that it keeps
   * running, and logging, when the server restarts; they are followed for onStdout/onStderr.
   */
  async startApp(opts: StartAppOptions): Promise<AppHandle> {
    this.assertExists();
    if (await this.isAppRunning())
      throw new SandboxError(`sandbox ${this.id} already runs an app; stop it first`);
    const cwd = await this.workDir(opts.cwd);
    const followers = [
      new LogFollower(this.paths.appStdout, this.config.logMaxBytes, opts.onStdout),
      new LogFollower(this.paths.appStderr, this.config.logMaxBytes, opts.onStderr),
    ];
    const out = await fs.promises.open(this.paths.appStdout, 'a', 0o600);
    const err = await fs.promises.open(this.paths.appStderr, 'a', 0o600);
    for (const follower of followers) follower.start(APP_LOG_POLL_MS);

    const { child, exit } = this.spawnProcess({
      file: '/bin/sh',
      args: ['-c', opts.command],
      kind: 'app',
      cwd,
      // Apps should listen on loopback only: the server's proxy is their way in.
      envs: { HOST: '127.0.0.1', ...opts.envs },
      forced: { PORT: String(opts.port) },
      stdio: ['ignore', out.fd, err.fd],
    });
    // Taken now, before Node can reap a child that exits at once (until then its pid is not reused).
    const identity = child.pid === undefined ? null : identify(child.pid);
    await out.close();
    await err.close();
    const pid = child.pid;
    if (pid === undefined) {
      await Promise.all(followers.map((f) => f.stop()));
      await exit; // rejects with the reason it could not start
      throw new SandboxError(`could not start "${opts.command}"`);
    }

    const app: RunningApp = {
      handle: { port: opts.port, internalUrl: `http://127.0.0.1:${opts.port}`, pid },
      exited: false,
      stopping: false,
      ended: Promise.resolve(),
    };
    app.ended = exit
      .then(async ({ code, signal }) => {
        app.exited = true;
        // Leftovers of its group would hold its port; its last output reaches the callbacks before onExit.
        await terminate({ groups: [pid] }, this.config.killGraceMs);
        await Promise.all(followers.map((f) => f.stop()));
        updateRecord(this.paths.root, (r) => (r.app?.pid === pid ? { ...r, app: null } : r));
        if (!app.stopping && !this.state.killed) safeCall(() => opts.onExit?.({ exitCode: code, signal }));
      })
      .catch(() => {});
    // The server may exit while the app runs on.
    child.unref();
    this.state.app = app;
    if (identity) {
      const record: AppRecord = {
        ...identity,
        port: opts.port,
        command: opts.command,
        startedAt: new Date().toISOString(),
      };
      updateRecord(this.paths.root, (r) => ({ ...r, app: record }));
    }
    return app.handle;
  }

  async isAppRunning(): Promise<boolean> {
    return (await this.getApp()) !== null;
  }

  async getApp(): Promise<AppHandle | null> {
    const app = this.state.app;
    if (app) return app.exited ? null : app.handle;
    // Started by another (earlier) server process: the record says which process it is.
    const recorded = readRecord(this.paths.root)?.app;
    if (!recorded || !isRunning(recorded)) return null;
    this.keepLogsBounded(recorded);
    return { port: recorded.port, internalUrl: `http://127.0.0.1:${recorded.port}`, pid: recorded.pid };
  }

  async followApp(opts: Pick<StartAppOptions, 'onStdout' | 'onStderr' | 'onExit'>): Promise<boolean> {
    if (this.state.app || this.state.adopted) return false;
    const recorded = readRecord(this.paths.root)?.app;
    if (!recorded || !isRunning(recorded)) return false;
    this.stopKeeper(); // the followers keep the files bounded now
    const followers = [
      new LogFollower(this.paths.appStdout, this.config.logMaxBytes, opts.onStdout),
      new LogFollower(this.paths.appStderr, this.config.logMaxBytes, opts.onStderr),
    ];
    for (const follower of followers) follower.start(APP_LOG_POLL_MS);
    const adopted: AdoptedApp = {
      followers,
      stopping: false,
      timer: setInterval(() => check(), APP_EXIT_POLL_MS),
    };
    adopted.timer.unref();
    let ending = false;
    const check = () => {
      if (ending || isRunning(recorded)) return;
      ending = true;
      clearInterval(adopted.timer);
      void (async () => {
        // Not our child: its exit status is not ours to read. Leftovers of its group would hold its port.
        await terminate({ groups: [recorded.pid] }, this.config.killGraceMs);
        await Promise.all(followers.map((f) => f.stop()));
        updateRecord(this.paths.root, (r) => (r.app?.pid === recorded.pid ? { ...r, app: null } : r));
        if (this.state.adopted === adopted) this.state.adopted = undefined;
        if (!adopted.stopping && !this.state.killed)
          safeCall(() => opts.onExit?.({ exitCode: null, signal: null }));
      })().catch(() => {});
    };
    this.state.adopted = adopted;
    return true;
  }

  async stopApp(): Promise<void> {
    const app = this.state.app;
    if (app) app.stopping = true;
    await this.stopFollowing();
    await terminate(
      { groups: this.appGroups(), env: markerEntries(this.id, 'app') },
      this.config.killGraceMs,
    );
    await app?.ended;
    this.stopKeeper();
    updateRecord(this.paths.root, (r) => ({ ...r, app: null }));
    if (this.state.app === app) this.state.app = undefined;
  }

  async waitUntilReady(
    app: AppHandle,
    opts: { healthcheckPath?: string | undefined; timeoutMs: number; signal?: AbortSignal },
  ): Promise<void> {
    const url = new URL(app.internalUrl);
    await waitForApp({
      host: url.hostname,
      port: Number(url.port || app.port),
      healthcheckPath: opts.healthcheckPath,
      timeoutMs: opts.timeoutMs,
      isAlive: () => this.isAppRunning(),
      signal: opts.signal,
    });
  }

  async keepAlive(_ms: number): Promise<void> {
    // Local sandboxes do not expire.
  }

  async kill(): Promise<void> {
    const state = this.state;
    state.killed = true;
    if (state.app) state.app.stopping = true;
    this.stopKeeper();
    await this.stopFollowing();
    await terminate(
      { groups: [...this.appGroups(), ...state.commands], env: markerEntries(this.id) },
      this.config.killGraceMs,
    );
    await state.app?.ended;
    await state.commandsLog.flush();
    await removeSandboxFolder(this.paths.root);
    live.delete(this.paths.root);
  }

  /** The app's process group: ours if this process started it, else the recorded one if still running. */
  private appGroups(): number[] {
    const app = this.state.app;
    if (app) return app.exited ? [] : [app.handle.pid];
    const recorded = readRecord(this.paths.root)?.app;
    return recorded && isRunning(recorded) ? [recorded.pid] : [];
  }

  private keepLogsBounded(recorded: AppRecord): void {
    if (this.state.keeper || this.state.adopted) return;
    const keepers = [this.paths.appStdout, this.paths.appStderr].map(
      (file) => new LogFollower(file, this.config.logMaxBytes),
    );
    const timer = setInterval(() => {
      if (isRunning(recorded)) for (const keeper of keepers) void keeper.poll();
      else this.stopKeeper();
    }, KEEPER_POLL_MS);
    timer.unref();
    this.state.keeper = timer;
  }

  /** Stop following an adopted app (we end it ourselves), after handing over its output so far. */
  private async stopFollowing(): Promise<void> {
    const adopted = this.state.adopted;
    if (!adopted) return;
    adopted.stopping = true;
    clearInterval(adopted.timer);
    this.state.adopted = undefined;
    await Promise.all(adopted.followers.map((f) => f.stop()));
  }

  private stopKeeper(): void {
    clearInterval(this.state.keeper);
    this.state.keeper = undefined;
  }

  private assertExists(): void {
    if (this.state.killed || !fs.existsSync(this.paths.root)) throw new SandboxNotFoundError(this.id);
  }

  private async workDir(cwd: string | undefined): Promise<string> {
    const dir = cwd ? resolveInside(this.paths.app, cwd, 'working directory', true) : this.paths.app;
    const stat = await fs.promises.stat(dir).catch(() => null);
    if (!stat?.isDirectory())
      throw new SandboxError(`working directory ${cwd} does not exist in sandbox ${this.id}`);
    return dir;
  }

  private spawnProcess(opts: {
    file: string;
    args: string[];
    kind: ProcessKind;
    cwd: string;
    envs?: Record<string, string>;
    forced?: Record<string, string>;
    stdio: StdioOptions;
  }): { child: ChildProcess; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
    const runAs = this.config.runAs;
    const env = sandboxEnvironment({
      sandboxId: this.id,
      kind: opts.kind,
      home: this.paths.home,
      user: runAs?.name,
      layers: [this.envs, opts.envs],
      forced: opts.forced,
    });
    const child = spawn(opts.file, opts.args, {
      cwd: opts.cwd,
      env,
      stdio: opts.stdio,
      // Its own process group (and session), so that it and everything it starts can be signalled at once.
      detached: true,
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => {
        if (child.pid === undefined)
          reject(new SandboxError(`could not start "${opts.file}": ${err.message}`));
      });
    });
    // Later errors (e.g. a failed kill) must not crash the server.
    child.on('error', () => {});
    return { child, exit };
  }
}

/** The last OUTPUT_TAIL_CHARS characters of a stream. */
class OutputTail {
  private value = '';

  push(chunk: string): void {
    this.value += chunk;
    if (this.value.length > 2 * OUTPUT_TAIL_CHARS) this.value = this.value.slice(-OUTPUT_TAIL_CHARS);
  }

  get text(): string {
    return this.value.length > OUTPUT_TAIL_CHARS ? this.value.slice(-OUTPUT_TAIL_CHARS) : this.value;
  }
}

/** Absolute path of `relative` inside `base`; refuses paths that would leave it. */
function resolveInside(base: string, relative: string, what: string, allowBase = false): string {
  const resolved = path.resolve(base, relative);
  if ((resolved === base && allowBase) || resolved.startsWith(`${base}${path.sep}`)) return resolved;
  throw new SandboxError(`${what} ${relative} is outside the sandbox's app folder`);
}

async function chownTree(dir: string, user: RunAs): Promise<void> {
  await fs.promises.lchown(dir, user.uid, user.gid);
  for (const entry of await fs.promises.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(full, user);
    else await fs.promises.lchown(full, user.uid, user.gid);
  }
}

/** The shell's convention: 128 + the signal's number for a process ended by a signal. */
function exitCode({ code, signal }: { code: number | null; signal: NodeJS.Signals | null }): number {
  if (code !== null) return code;
  return 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
}

function safeCall(fn: () => void): void {
  try {
    fn();
  } catch {
    // A throwing callback must not take the server down.
  }
}

async function waitFor(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
