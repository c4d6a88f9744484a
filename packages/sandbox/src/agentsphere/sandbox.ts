/** One AgentSphere sandbox behind the `Sandbox` interface of ../types. */
import { posix } from 'node:path';
import type { CommandHandle, ProcessInfo, Sandbox as SdkSandbox } from 'agentsphere-sandbox-base';
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
import { type AgentSphereClient, sleep } from './client';
import { classifyFailure, isCommandExit } from './errors';

/** The app folder: files and the `cwd` of commands are relative to it. */
export const APP_DIR = '/home/user/app';
/** Default limit for `run` (installs and builds can be slow; 0 still means no limit). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10 * 60_000;
/** Upload batches: one multipart request each. */
export const MAX_FILES_PER_BATCH = 50;
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** Bounded tails kept in results and errors; the whole output goes through onStdout/onStderr. */
const OUTPUT_TAIL_CHARS = 64 * 1024;
/** Set in the app's environment so that a re-attached sandbox can find the app among its processes. */
const APP_MARKER_ENV = 'CODERUNNER_APP';
/** How long stopApp waits for the app to be gone after killing it. */
const STOP_WAIT_MS = 5_000;
/**
 * After the app's output stream broke, how long we keep trying to re-attach while envd or the API
 * does not answer, before reporting the app as ended (its sandbox's own timeout is longer).
 */
const REATTACH_WINDOW_MS = 2 * 60_000;
const REATTACH_MAX_DELAY_MS = 5_000;

type FollowOptions = Pick<StartAppOptions, 'onStdout' | 'onStderr' | 'onExit'>;

interface RunningApp {
  /** The current stream of the app's process (replaced when a broken stream is re-attached). */
  handle: CommandHandle;
  port: number;
  /** Settles when the app's process ends, whatever the reason. */
  ended: Promise<void>;
  exited: boolean;
  /** Set before we kill it ourselves, so that onExit reports only exits of its own. */
  stopping: boolean;
}

/** When the sandbox ends unless kept alive, as far as we know (shared with the provider's connect cache). */
export interface Lease {
  endsAt: number;
}

export class AgentSphereSandbox implements Sandbox {
  private app: RunningApp | undefined;

  constructor(
    private readonly sdk: SdkSandbox,
    readonly metadata: SandboxMetadata,
    private readonly client: AgentSphereClient,
    private readonly lease: Lease = { endsAt: Number.POSITIVE_INFINITY },
  ) {}

  get id(): string {
    return this.sdk.sandboxId;
  }

  getHost(port: number): string {
    return this.sdk.getHost(port);
  }

  /** Called right after create: commands run in the app folder, so it must exist before any file does. */
  async prepareAppFolder(): Promise<void> {
    await this.call('create the app folder', () => this.sdk.files.makeDir(APP_DIR, this.requestOpts), true);
  }

  async writeFiles(files: FileEntry[]): Promise<void> {
    for (const batch of batchFiles(files)) {
      const entries = batch.map((file) => ({ path: appPath(file.path), data: new Blob([file.data]) }));
      await this.call(
        `upload ${entries.length} files`,
        () => this.sdk.files.write(entries, this.requestOpts),
        true,
      );
    }
    await this.applyModes(files);
  }

  /**
   * Runs a command to its end. A stream that breaks meanwhile (the service's edge restarting during a
   * ten-minute build) is re-attached like an app's (see follow): the command goes on, and so does its
   * output; only its end or its disappearance ends the wait.
   */
  async run(command: string, opts: CommandOptions = {}): Promise<CommandResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Number.POSITIVE_INFINITY;
    let handle = await this.start(command, { ...opts, timeoutMs });
    // Output of the streams before the current one.
    let stdout = '';
    let stderr = '';
    let quickBreaks = 0;
    for (;;) {
      const since = Date.now();
      const remaining = Number.isFinite(deadline) ? Math.max(1, deadline - Date.now()) : 0;
      const outcome = await waitFor(handle, remaining);
      if (outcome.kind === 'done') {
        return { exitCode: 0, stdout: tail(stdout + handle.stdout), stderr: tail(stderr + handle.stderr) };
      }
      if (outcome.kind === 'timeout' || classifyFailure(outcome.error).kind === 'deadline') {
        await this.killGroup(handle.pid).catch(() => undefined);
        throw new CommandTimeoutError(
          command,
          timeoutMs,
          tail(stdout + handle.stdout),
          tail(stderr + handle.stderr),
        );
      }
      const err = outcome.error;
      if (isCommandExit(err)) {
        return {
          exitCode: err.exitCode,
          stdout: tail(stdout + err.stdout),
          stderr: tail(stderr + err.stderr),
        };
      }
      quickBreaks = Date.now() - since < 30_000 ? quickBreaks + 1 : 0;
      const again = await this.reattach(handle.pid, opts, quickBreaks, () => Date.now() > deadline);
      if (!again)
        throw await this.client.translate(err, classifyFailure(err), `run "${command}"`, 1, this.id);
      stdout += handle.stdout;
      stderr += handle.stderr;
      handle = again;
    }
  }

  async startApp(opts: StartAppOptions): Promise<AppHandle> {
    if (await this.getApp()) throw new SandboxError(`sandbox ${this.id} already runs an app`);
    const envs = { ...opts.envs, PORT: String(opts.port), [APP_MARKER_ENV]: '1' };
    // timeoutMs 0: the SDK's default of 60 s would end a server after a minute.
    const handle = await this.start(opts.command, { ...opts, envs, timeoutMs: 0 });
    const app: RunningApp = {
      handle,
      port: opts.port,
      ended: Promise.resolve(),
      exited: false,
      stopping: false,
    };
    app.ended = this.follow(app, opts);
    this.app = app;
    return this.appHandle(opts.port, handle.pid);
  }

  async isAppRunning(): Promise<boolean> {
    return (await this.getApp()) !== null;
  }

  /** From this object's own startApp, else (a sandbox re-attached by connect) from envd's process list. */
  async getApp(): Promise<AppHandle | null> {
    if (this.app && !this.app.exited) return this.appHandle(this.app.port, this.app.handle.pid);
    const [found] = await this.findAppProcesses();
    return found ? this.appHandle(Number(found.envs.PORT), found.pid) : null;
  }

  /** Re-attaches to the app process (envd's Connect) for its output from now on and its exit. */
  async followApp(opts: FollowOptions): Promise<boolean> {
    if (this.app) return false;
    const [found] = await this.findAppProcesses();
    if (!found) return false;
    const handle = await this.call(
      'follow the app',
      () =>
        this.sdk.commands.connect(found.pid, {
          onStdout: opts.onStdout,
          onStderr: opts.onStderr,
          timeoutMs: 0,
          requestTimeoutMs: this.client.requestTimeoutMs,
        }),
      true,
    );
    const app: RunningApp = {
      handle,
      port: Number(found.envs.PORT),
      ended: Promise.resolve(),
      exited: false,
      stopping: false,
    };
    app.ended = this.follow(app, opts);
    this.app = app;
    return true;
  }

  async stopApp(): Promise<void> {
    const app = this.app;
    if (app) app.stopping = true;
    try {
      const pids = app && !app.exited ? [app.handle.pid] : (await this.findAppProcesses()).map((p) => p.pid);
      for (const pid of pids) await this.killGroup(pid);
      // Wait (bounded) until the app is really gone, so that its port is free afterwards.
      if (app && !app.exited) await Promise.race([app.ended, sleep(STOP_WAIT_MS)]);
      else if (pids.length > 0) await this.waitUntilAppGone(Date.now() + STOP_WAIT_MS);
    } catch (err) {
      // A sandbox that is gone runs no app: stopping is done.
      if (!(err instanceof SandboxNotFoundError)) throw err;
    }
    this.app = undefined;
  }

  /**
   * The public host always accepts connections (the ingress does): without a healthcheck the probe
   * runs inside the sandbox; a healthcheck goes through the public host.
   */
  async waitUntilReady(
    app: AppHandle,
    opts: { healthcheckPath?: string | undefined; timeoutMs: number; signal?: AbortSignal },
  ): Promise<void> {
    const { healthcheckPath, timeoutMs, signal } = opts;
    const { port } = app;
    const notReady = () =>
      new SandboxError(
        `the app did not ${healthcheckPath ? `answer ${healthcheckPath}` : `listen on port ${port}`} within ${Math.round(timeoutMs / 1000)} s`,
      );
    if (!healthcheckPath) {
      const tries = Math.max(1, Math.ceil(timeoutMs / 200));
      const probe = `for i in $(seq 1 ${tries}); do (echo > /dev/tcp/127.0.0.1/${port}) 2>/dev/null && exit 0; sleep 0.2; done; exit 1`;
      const result = await this.run(`bash -c '${probe}'`, { timeoutMs: timeoutMs + 5_000 });
      if (result.exitCode !== 0) throw notReady();
      return;
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !signal?.aborted) {
      if (!(await this.isAppRunning()))
        throw new SandboxError(`the app exited before listening on port ${port}`);
      const res = await fetch(new URL(healthcheckPath, app.internalUrl), {
        redirect: 'manual',
        signal: AbortSignal.timeout(5_000),
      }).catch(() => null);
      if (res && res.status >= 200 && res.status < 400) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw notReady();
  }

  async keepAlive(ms: number): Promise<void> {
    await this.call(
      'extend the sandbox timeout',
      () => this.client.SandboxClass.setTimeout(this.id, ms, this.client.connection),
      true,
    );
    this.lease.endsAt = Date.now() + ms;
  }

  async kill(): Promise<void> {
    if (this.app) this.app.stopping = true;
    this.lease.endsAt = 0;
    try {
      await this.call(
        'kill the sandbox',
        () => this.client.SandboxClass.kill(this.id, this.client.connection),
        true,
      );
    } catch (err) {
      if (!(err instanceof SandboxNotFoundError)) throw err;
    }
    this.app = undefined;
  }

  /**
   * Kills a command and everything it started. envd's SendSignal signals only the pid (the shell), which
   * would leave the app's own processes (say `npm start`'s node) running with the port taken: the whole
   * process group goes first (envd starts each command as a group leader), then whatever descendants are
   * left elsewhere, then the pid through envd.
   */
  private async killGroup(pid: number): Promise<void> {
    const script =
      `kill -KILL -- -${pid} 2>/dev/null; ` +
      'tree() { for c in $(cat /proc/$1/task/*/children 2>/dev/null); do tree $c; done; kill -KILL $1 2>/dev/null; }; ' +
      `tree ${pid}; exit 0`;
    // Not in the app folder: it may be gone, and the kill must not depend on it.
    await this.call(
      'stop the app',
      () =>
        this.sdk.commands.run(script, {
          cwd: '/',
          timeoutMs: 30_000,
          requestTimeoutMs: this.client.requestTimeoutMs,
        }),
      true,
    ).catch((err: unknown) => {
      if (err instanceof SandboxNotFoundError) throw err;
    });
    await this.call('stop the app', () => this.sdk.commands.kill(pid, this.requestOpts), true);
  }

  private get requestOpts(): { requestTimeoutMs: number } {
    return { requestTimeoutMs: this.client.requestTimeoutMs };
  }

  private async call<T>(what: string, fn: () => Promise<T>, retry: boolean): Promise<T> {
    try {
      return await this.client.call(what, fn, { retry, sandboxId: this.id });
    } catch (err) {
      // Gone: the provider's connect must not hand out this sandbox again.
      if (err instanceof SandboxNotFoundError) this.lease.endsAt = 0;
      throw err;
    }
  }

  /** Starts a command in the background and returns its handle; never retried (it is not idempotent). */
  private start(command: string, opts: CommandOptions & { timeoutMs: number }): Promise<CommandHandle> {
    return this.call(
      `start "${command}"`,
      () =>
        this.sdk.commands.run(command, {
          background: true,
          cwd: appPath(opts.cwd ?? '.'),
          envs: opts.envs,
          onStdout: opts.onStdout,
          onStderr: opts.onStderr,
          // The SDK's deadline is a backstop; waitFor's own timer fires first and kills the process.
          timeoutMs: opts.timeoutMs > 0 ? opts.timeoutMs + 5_000 : 0,
          requestTimeoutMs: this.client.requestTimeoutMs,
        }),
      false,
    );
  }

  private appHandle(port: number, pid: number): AppHandle {
    return { port, internalUrl: `https://${this.getHost(port)}`, pid };
  }

  /**
   * Follows the app until its process is gone. A stream that breaks (the service's edge restarting, a
   * network blip) is not an exit: envd still runs the process, so re-attach (envd's Connect) and go on.
   * Only an end event (exit code or signal) or a process missing from envd's list is an exit.
   */
  private async follow(app: RunningApp, opts: FollowOptions): Promise<void> {
    let quickBreaks = 0;
    for (;;) {
      const since = Date.now();
      let error: unknown;
      try {
        await app.handle.wait();
        return this.appEnded(app, exitInfo(undefined), opts.onExit);
      } catch (err) {
        error = err;
      }
      if (isCommandExit(error) || app.stopping) return this.appEnded(app, exitInfo(error), opts.onExit);
      quickBreaks = Date.now() - since < 30_000 ? quickBreaks + 1 : 0;
      const handle = await this.reattach(app.handle.pid, opts, quickBreaks, () => app.stopping);
      if (!handle) return this.appEnded(app, exitInfo(error), opts.onExit);
      app.handle = handle;
    }
  }

  /** A new stream of the app's process, or undefined when the process (or its sandbox) is gone. */
  private async reattach(
    pid: number,
    opts: Pick<StartAppOptions, 'onStdout' | 'onStderr'>,
    quickBreaks: number,
    stopped: () => boolean,
  ): Promise<CommandHandle | undefined> {
    const giveUpAt = Date.now() + REATTACH_WINDOW_MS;
    // A stream that breaks again at once is not retried in a tight loop.
    let delay = Math.min(REATTACH_MAX_DELAY_MS, 100 * 2 ** Math.max(0, quickBreaks - 1));
    for (;;) {
      await sleep(delay);
      if (stopped()) return undefined;
      try {
        const processes = await this.call(
          'list processes',
          () => this.sdk.commands.list(this.requestOpts),
          true,
        );
        if (!processes.some((p) => p.pid === pid)) return undefined;
        return await this.call(
          'follow the app again',
          () =>
            this.sdk.commands.connect(pid, {
              onStdout: opts.onStdout,
              onStderr: opts.onStderr,
              timeoutMs: 0,
              requestTimeoutMs: this.client.requestTimeoutMs,
            }),
          true,
        );
      } catch (err) {
        if (err instanceof SandboxNotFoundError || Date.now() > giveUpAt) return undefined;
        // envd or the API did not answer: the process may well still run; ask again.
      }
      delay = Math.min(REATTACH_MAX_DELAY_MS, delay * 2);
    }
  }

  private appEnded(app: RunningApp, info: AppExit, onExit: StartAppOptions['onExit']): void {
    app.exited = true;
    if (!app.stopping) onExit?.(info);
  }

  private async waitUntilAppGone(deadline: number): Promise<void> {
    while (Date.now() < deadline && (await this.findAppProcesses()).length > 0) await sleep(100);
  }

  private async findAppProcesses(): Promise<ProcessInfo[]> {
    const processes = await this.call('list processes', () => this.sdk.commands.list(this.requestOpts), true);
    return processes.filter((p) => p.envs?.[APP_MARKER_ENV] === '1');
  }

  /** The upload API cannot set modes: chmod afterwards, one command per distinct mode. */
  private async applyModes(files: FileEntry[]): Promise<void> {
    const byMode = new Map<number, string[]>();
    for (const file of files) {
      if (file.mode === undefined) continue;
      // Relative to the command's cwd (the app folder), like every path in a command.
      const path = posix.relative(APP_DIR, appPath(file.path));
      byMode.set(file.mode, [...(byMode.get(file.mode) ?? []), path]);
    }
    for (const [mode, paths] of byMode) {
      const command = `chmod ${(mode & 0o7777).toString(8)} -- ${paths.map(shellQuote).join(' ')}`;
      const result = await this.run(command, { timeoutMs: 60_000 });
      if (result.exitCode !== 0) throw new SandboxError(`could not set file modes: ${result.stderr.trim()}`);
    }
  }
}

type WaitOutcome = { kind: 'done' } | { kind: 'failed'; error: unknown } | { kind: 'timeout' };

function waitFor(handle: CommandHandle, timeoutMs: number): Promise<WaitOutcome> {
  const finished = handle.wait().then(
    (): WaitOutcome => ({ kind: 'done' }),
    (error: unknown): WaitOutcome => ({ kind: 'failed', error }),
  );
  if (timeoutMs <= 0) return finished;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<WaitOutcome>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs);
  });
  return Promise.race([finished, expired]).finally(() => clearTimeout(timer));
}

const SIGNALS: Record<string, string> = { killed: 'SIGKILL', terminated: 'SIGTERM', interrupt: 'SIGINT' };

type AppExit = Parameters<NonNullable<StartAppOptions['onExit']>>[0];

/** envd reports a process ended by a signal as exit code -1 with error "signal: killed". */
function exitInfo(err: unknown): AppExit {
  if (err === undefined) return { exitCode: 0, signal: null };
  if (!isCommandExit(err)) return { exitCode: null, signal: null };
  const signal = /signal: (\w+)/.exec(err.error ?? '')?.[1];
  if (signal) return { exitCode: null, signal: SIGNALS[signal] ?? signal };
  return { exitCode: err.exitCode, signal: null };
}

/** Absolute path inside the app folder; refuses paths that would leave it. */
export function appPath(relative: string): string {
  const resolved = posix.resolve(APP_DIR, relative);
  if (resolved !== APP_DIR && !resolved.startsWith(`${APP_DIR}/`)) {
    throw new SandboxError(`path leaves the app folder: ${relative}`);
  }
  return resolved;
}

export function batchFiles(files: FileEntry[]): FileEntry[][] {
  const batches: FileEntry[][] = [];
  let current: FileEntry[] = [];
  let bytes = 0;
  for (const file of files) {
    const size = typeof file.data === 'string' ? Buffer.byteLength(file.data) : file.data.byteLength;
    if (current.length > 0 && (current.length >= MAX_FILES_PER_BATCH || bytes + size > MAX_BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function tail(text: string): string {
  return text.length > OUTPUT_TAIL_CHARS ? text.slice(-OUTPUT_TAIL_CHARS) : text;
}
