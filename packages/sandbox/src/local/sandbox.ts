/**
 * One local sandbox: a folder (see layout.ts) and the processes running in it. Every process is
 * `/bin/sh -c <command>` in a process group of its own, with a clean environment, as the sandbox
 * user when the server is root; stopping it signals the whole group.
 */
import { type ChildProcess, execFile, type StdioOptions, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { AppNotReadyError, waitForApp } from '../readiness';
import {
  type AppHandle,
  type BuildCache,
  type CommandOptions,
  type CommandResult,
  CommandTimeoutError,
  type FileEntry,
  type Sandbox,
  SandboxError,
  type SandboxMetadata,
  SandboxNotFoundError,
  type SandboxUsage,
  type StartAppOptions,
} from '../types';
import { LocalBuildCache } from './build-cache';
import { type ResourceLimits, SandboxCgroup } from './cgroups';
import { type CopyOutLimits, type CopyOutResult, copyTreeOut } from './copy-out';
import { markerEntries, type ProcessKind, SANDBOX_PATH, sandboxEnvironment } from './environment';
import {
  bwrapArgs,
  ENV_FD,
  envScript,
  INSIDE_APP,
  INSIDE_HOME,
  type IsolationTools,
  isolatedCommand,
  NODE_INSIDE,
} from './isolation';
import {
  type AppRecord,
  type IsolationRecord,
  readRecord,
  removeSandboxFolder,
  type SandboxPaths,
  type SandboxRecord,
  updateRecord,
} from './layout';
import { LogFollower, LogWriter, OutputBudget, type OutputRate, trimLog } from './logs';
import {
  APPS_ADDRESS,
  databasePorts,
  deleteNetns,
  inboundPortOf,
  inboundSpec,
  listenWatch,
  netnsPath,
  networkSpec,
  type PastaProcess,
  portsListeningInside,
  startPasta,
  stopPasta,
} from './network';
import { processesCpuSeconds, processTreeUsage } from './proc-usage';
import { identify, isRunning, terminate, waitUntilEnded } from './processes';
import { removeIsolatedFolder } from './removal';
import { SECCOMP_FD } from './seccomp';
import type { UidAllocator } from './uids';
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

/** How often an isolated app is checked for its limits. */
const ISOLATED_WATCH_MS = 50;
/** How often an isolated app's namespace is checked for its listening socket while waiting for it. */
const LISTEN_POLL_MS = 5;
/** After a failed attempt to bring back an adopted app's network helper (getApp), none for this long. */
const NETWORK_RESTORE_MS = 5_000;
/** How often an isolated sandbox's folder size is measured against its disk cap. */
const DISK_CHECK_MS = 5_000;
/** Install and build write fast: their disk is checked more often. */
const COMMAND_DISK_CHECK_MS = 2_000;

/** Isolation settings (see isolation.ts), null when sandboxes are not isolated. */
export interface IsolatedConfig {
  tools: IsolationTools;
  uids: UidAllocator;
  databasePorts: (metadata: SandboxMetadata) => number[] | Promise<number[]>;
}

/** The provider's settings, shared by its sandboxes. */
export interface LocalConfig {
  runAs: RunAs | undefined;
  isolation: IsolatedConfig | null;
  killGraceMs: number;
  logMaxBytes: number;
  /** How fast a command's or app's output is read (see OutputBudget). */
  outputRate: OutputRate;
  /** Where projects' build caches are kept. */
  buildCacheDir: string;
}

interface RunningApp {
  handle: AppHandle & { pid: number };
  exited: boolean;
  /** Set before we end it ourselves, so that onExit reports only exits of its own. */
  stopping: boolean;
  /** Settles once the app has exited and its last output went to the callbacks. */
  ended: Promise<void>;
  /** Follow its stdout and stderr files for onStdout/onStderr. */
  followers: LogFollower[];
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
  /** Serialises changes to an isolated sandbox's network helpers. */
  network: Promise<unknown>;
  /** Numbers the cgroup leaves of commands. */
  commandCount: number;
  /** Processes this server spawned that have not exited yet. */
  children: Set<ChildProcess>;
  /** When getApp last tried to bring back an adopted app's network helper (ms since epoch). */
  networkRestoredAt: number;
}

interface AdoptedApp {
  timer: NodeJS.Timeout;
  unwatch?: () => void;
  /** Notices its exit now (rather than at the next poll) and resolves once onExit was called. */
  check?: () => Promise<void>;
  followers: LogFollower[];
  /** Set before we end it ourselves (stopApp, kill): no onExit then. */
  stopping: boolean;
}

const live = new Map<string, LiveState>();

export class LocalSandbox implements Sandbox {
  readonly id: string;
  readonly metadata: SandboxMetadata;
  private readonly envs: Record<string, string>;
  /** A Node.js folder of this machine, first on PATH (isolated: mounted at NODE_INSIDE). */
  private readonly node: string | undefined;
  private readonly state: LiveState;
  /** Set for an isolated sandbox. */
  private readonly iso:
    | {
        config: IsolatedConfig;
        record: IsolationRecord;
        cgroup: SandboxCgroup;
        /** The run limits (its plan's). */
        limits: ResourceLimits;
        /** While it builds: the build's memory and CPUs, in force instead of the run limits'. */
        build: { memoryMb: number; cpus: number } | null;
      }
    | undefined;

  constructor(
    private readonly config: LocalConfig,
    private readonly paths: SandboxPaths,
    record: SandboxRecord,
  ) {
    this.id = record.id;
    this.metadata = record.metadata as SandboxMetadata;
    this.envs = record.envs;
    this.node = record.node;
    let state = live.get(paths.root);
    if (!state) {
      state = {
        app: undefined,
        commands: new Set(),
        killed: false,
        commandsLog: new LogWriter(paths.commandsLog, config.logMaxBytes),
        keeper: undefined,
        adopted: undefined,
        network: Promise.resolve(),
        commandCount: 0,
        children: new Set(),
        networkRestoredAt: 0,
      };
      live.set(paths.root, state);
    }
    this.state = state;
    if (record.isolation) {
      if (!config.isolation)
        throw new SandboxError(
          `sandbox ${record.id} is isolated, but isolation is not available to this server`,
        );
      this.iso = {
        config: config.isolation,
        record: record.isolation,
        cgroup: new SandboxCgroup(config.isolation.tools.cgroups, record.id),
        limits: record.isolation.limits,
        build: record.isolation.build ?? null,
      };
    }
  }

  /**
   * Where this server reaches the app's port: isolated, APPS_ADDRESS (where pasta publishes it, never
   * the dashboard's address); unisolated, 127.0.0.1 (the app binds where it likes).
   */
  getHost(port: number): string {
    return `${this.iso ? APPS_ADDRESS : '127.0.0.1'}:${port}`;
  }

  /**
   * The server (maybe root) never writes into folders that the sandbox's code controls, where a
   * symlink planted by that code could send the write anywhere on the machine: it writes into a
   * staging folder of its own, and a process running as the sandbox user copies that into app/.
   */
  async writeFiles(files: FileEntry[]): Promise<void> {
    this.assertExists();
    if (this.iso && (await this.pristine())) {
      await this.writePristine(files, this.iso.record.uid);
      return;
    }
    const staging = await fs.promises.mkdtemp(path.join(this.paths.root, '.upload-'));
    try {
      for (const file of files) {
        const target = resolveInside(staging, file.path, 'file');
        await fs.promises.mkdir(path.dirname(target), { recursive: true });
        await fs.promises.writeFile(target, file.data);
        // No setuid bits; the owner must be able to read the file to copy it.
        await fs.promises.chmod(target, ((file.mode ?? 0o644) & 0o777) | 0o400);
      }
      const owner = this.iso
        ? { name: 'app', uid: this.iso.record.uid, gid: this.iso.record.uid }
        : this.config.runAs;
      if (owner) await chownTree(staging, owner);
      const leaf = this.iso ? this.nextLeaf() : undefined;
      const copy = this.spawnProcess({
        file: 'cp',
        args: this.iso
          ? ['-R', '--preserve=mode,timestamps', '--', '/sandbox/upload/.', `${INSIDE_APP}/`]
          : ['-R', '--preserve=mode,timestamps', '--', `${staging}/.`, `${this.paths.app}/`],
        kind: 'command',
        cwd: this.paths.app,
        stdio: ['ignore', 'ignore', 'pipe'],
        leaf,
        readOnly: [[staging, '/sandbox/upload']],
      });
      let stderr = '';
      copy.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
      });
      const { code } = await copy.exit;
      if (leaf) await this.endLeaf(leaf);
      if (code !== 0)
        throw new SandboxError(`could not write files into sandbox ${this.id}: ${stderr.trim()}`);
    } finally {
      await fs.promises.rm(staging, { recursive: true, force: true });
    }
  }

  /**
   * Nothing of the sandbox's code runs (its cgroup is empty, no process of ours is starting) and its
   * app folder is empty: no link of its code can be there, nor appear while we write.
   */
  private async pristine(): Promise<boolean> {
    if (this.state.children.size > 0 || this.iso!.cgroup.members().length > 0) return false;
    const stat = await fs.promises.lstat(this.paths.app).catch(() => null);
    if (!stat?.isDirectory()) return false;
    return (await fs.promises.readdir(this.paths.app)).length === 0;
  }

  /** Files written straight into a pristine app folder, owned by the sandbox's uid from the start. */
  private async writePristine(files: FileEntry[], uid: number): Promise<void> {
    const made = new Set<string>([this.paths.app]);
    try {
      for (const file of files) {
        const target = resolveInside(this.paths.app, file.path, 'file');
        const parents: string[] = [];
        for (let dir = path.dirname(target); !made.has(dir); dir = path.dirname(dir)) parents.unshift(dir);
        for (const dir of parents) {
          await fs.promises.mkdir(dir).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'EEXIST') throw err;
          });
          const stat = await fs.promises.lstat(dir);
          if (!stat.isDirectory()) throw new Error(`${path.relative(this.paths.app, dir)} is not a folder`);
          await fs.promises.lchown(dir, uid, uid);
          made.add(dir);
        }
        // No setuid bits; the owner can read it.
        const mode = ((file.mode ?? 0o644) & 0o777) | 0o400;
        await fs.promises.writeFile(target, file.data, { mode });
        await fs.promises.chmod(target, mode);
        await fs.promises.lchown(target, uid, uid);
      }
    } catch (err) {
      throw new SandboxError(`could not write files into sandbox ${this.id}: ${(err as Error).message}`);
    }
  }

  async run(command: string, opts: CommandOptions = {}): Promise<CommandResult> {
    this.assertExists();
    const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const cwd = await this.workDir(opts.cwd);
    const log = this.state.commandsLog;
    log.write(`\n$ ${command}\n`);
    const leaf = this.iso ? this.nextLeaf() : undefined;
    // The network comes up while bubblewrap starts; the command itself waits for it (the gate).
    const network = this.iso ? this.ensureNetwork({ ...this.envs, ...opts.envs }) : undefined;
    network?.catch(() => {});
    const before = this.iso ? this.limitCounters() : undefined;
    const { child, exit } = this.spawnProcess({
      file: '/bin/sh',
      args: ['-c', command],
      kind: 'command',
      cwd,
      envs: opts.envs,
      stdio: ['ignore', 'pipe', 'pipe'],
      leaf,
      gate: network,
    });
    const stdout = new OutputTail();
    const stderr = new OutputTail();
    // Output past the budget pauses both pipes until it is paid for: the command then blocks on its
    // writes, so a flooding build runs slower instead of costing this server a core.
    const budget = new OutputBudget(this.config.outputRate);
    let paused = false;
    let exited = false;
    const streams = [child.stdout, child.stderr];
    // Once the command has ended, what its pipes still hold (a pipe's buffer each) is read at once.
    void exit.then(
      () => {
        exited = true;
        for (const s of streams) s?.resume();
      },
      () => {},
    );
    for (const [stream, tail, callback] of [
      [child.stdout, stdout, opts.onStdout],
      [child.stderr, stderr, opts.onStderr],
    ] as const) {
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        tail.push(chunk);
        log.write(chunk);
        if (callback) safeCall(() => callback(chunk));
        budget.take(Buffer.byteLength(chunk));
        const wait = budget.waitMs();
        if (wait > 0 && !paused && !exited) {
          paused = true;
          for (const s of streams) s?.pause();
          setTimeout(() => {
            paused = false;
            if (!exited) for (const s of streams) s?.resume();
          }, wait).unref();
        }
      });
    }
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));

    let timedOut: Promise<void> | undefined;
    const pgid = child.pid;
    const timer =
      timeoutMs > 0 && pgid !== undefined
        ? setTimeout(() => {
            timedOut = leaf
              ? this.terminateLeaf(leaf).then(() => {})
              : terminate({ groups: [pgid] }, this.config.killGraceMs);
          }, timeoutMs)
        : undefined;
    if (pgid !== undefined) this.state.commands.add(pgid);
    // Isolated: over its disk cap (checked as for apps), the command is ended and says why.
    let diskOver: string | undefined;
    const diskWatch =
      leaf && this.iso
        ? this.watchDisk(() => {
            diskOver ??= 'the command was stopped';
            void this.terminateLeaf(leaf);
          })
        : undefined;
    let result: { code: number | null; signal: NodeJS.Signals | null };
    try {
      result = await exit;
      clearTimeout(timer);
      diskWatch?.stop();
      // Background processes the command left behind would keep its output open and outlive it.
      await timedOut;
      if (leaf) await this.endLeaf(leaf);
      else if (pgid !== undefined) await terminate({ groups: [pgid] }, this.config.killGraceMs);
      // A process that left the group (setsid) may still hold the pipes: stop waiting for them.
      if (!(await waitFor(closed, PIPE_CLOSE_WAIT_MS))) {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }
    } finally {
      clearTimeout(timer);
      diskWatch?.stop();
      if (pgid !== undefined) this.state.commands.delete(pgid);
    }
    // Without its network the command never ran: say why.
    await network;
    if (before) {
      const lines = this.limitLines(before);
      if (diskOver) lines.push(this.diskLine(diskOver));
      for (const line of lines) {
        log.write(line);
        stderr.push(line);
        if (opts.onStderr) safeCall(() => opts.onStderr!(line));
      }
    }
    if (timedOut) {
      log.write(`[coderunner: killed after ${timeoutMs} ms]\n`);
      throw new CommandTimeoutError(command, timeoutMs, stdout.text, stderr.text);
    }
    // The whole output is in commands.log when the command returns.
    await log.flush();
    if (this.state.killed) throw new SandboxNotFoundError(this.id);
    return { exitCode: exitCode(result), stdout: stdout.text, stderr: stderr.text };
  }

  async endBuild(): Promise<void> {
    const iso = this.iso;
    if (!iso?.build) return;
    // The kernel reclaims what the build left (page cache) to fit; dirty pages may need a moment.
    for (let attempt = 1; ; attempt++) {
      try {
        iso.cgroup.setLimits(iso.limits);
        break;
      } catch (err) {
        if (attempt < 5) {
          await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
          continue;
        }
        const used = Math.round(iso.cgroup.memoryUsage() / 1024 / 1024);
        throw new SandboxError(
          `cannot lower sandbox ${this.id} to its memory limit of ${iso.limits.memoryMb} MB after the build (it holds ${used} MB): ${(err as Error).message}`,
        );
      }
    }
    iso.build = null;
    updateRecord(this.paths.root, (r) =>
      r.isolation ? { ...r, isolation: { ...r.isolation, build: null } } : r,
    );
  }

  buildCache(key: string): BuildCache {
    return new LocalBuildCache(this.config.buildCacheDir, key, {
      app: this.paths.app,
      home: this.paths.home,
      owner: this.iso
        ? { uid: this.iso.record.uid, gid: this.iso.record.uid }
        : this.config.runAs
          ? { uid: this.config.runAs.uid, gid: this.config.runAs.gid }
          : undefined,
      assertIdle: () => {
        this.assertExists();
        const running = this.state.children.size > 0 || (this.iso?.cgroup.members().length ?? 0) > 0;
        if (running || this.state.app)
          throw new SandboxError(
            `sandbox ${this.id} runs processes: its build cache is used only between them`,
          );
      },
    });
  }

  /**
   * Isolated: the network helper the app will need (its database port out, its port in) comes up
   * now, while the files are written and the install runs; startApp then finds it ready.
   */
  async prepareApp(opts: { port: number; envs?: Record<string, string> }): Promise<void> {
    this.assertExists();
    if (this.iso) await this.ensureNetwork({ ...this.envs, ...opts.envs }, opts.port);
  }

  /**
   * The app's stdout and stderr are files in logs/ (not pipes to this server), so that it keeps
   * running, and logging, when the server restarts; they are followed for onStdout/onStderr.
   */
  async startApp(opts: StartAppOptions): Promise<AppHandle> {
    this.assertExists();
    if (await this.isAppRunning())
      throw new SandboxError(`sandbox ${this.id} already runs an app; stop it first`);
    await this.endBuild();
    const cwd = await this.workDir(opts.cwd);
    const budget = new OutputBudget(this.config.outputRate);
    const followers = [
      new LogFollower(this.paths.appStdout, this.config.logMaxBytes, opts.onStdout, budget),
      new LogFollower(this.paths.appStderr, this.config.logMaxBytes, opts.onStderr, budget),
    ];
    const out = await fs.promises.open(this.paths.appStdout, 'a', 0o600);
    const err = await fs.promises.open(this.paths.appStderr, 'a', 0o600);
    for (const follower of followers) follower.start(APP_LOG_POLL_MS);

    let network: Promise<void> | undefined;
    if (this.iso) {
      await this.iso.cgroup.kill('app');
      // The peak it reports is the app's, not the install's or build's before it.
      this.iso.cgroup.resetMemoryPeak();
      // Outbound for the app and its port forwarded from the host, up while bubblewrap starts.
      network = this.ensureNetwork({ ...this.envs, ...opts.envs }, opts.port);
      network.catch(() => {});
    }
    const before = this.iso ? this.limitCounters() : undefined;
    const { child, exit } = this.spawnProcess({
      file: '/bin/sh',
      args: ['-c', opts.command],
      kind: 'app',
      cwd,
      // Apps should listen on loopback only: the server's proxy is their way in.
      envs: { HOST: '127.0.0.1', ...opts.envs },
      forced: { PORT: String(opts.port) },
      stdio: ['ignore', out.fd, err.fd],
      leaf: this.iso ? 'app' : undefined,
      gate: network,
    });
    // Taken now, before Node can reap a child that exits at once (until then its pid is not reused).
    const identity = child.pid === undefined ? null : identify(child.pid);
    await out.close();
    await err.close();
    const pid = child.pid;
    if (pid === undefined) {
      await Promise.all(followers.map((f) => f.stop()));
      await network?.catch(() => {});
      await exit; // rejects with the reason it could not start
      throw new SandboxError(`could not start "${opts.command}"`);
    }

    const app: RunningApp = {
      handle: { port: opts.port, internalUrl: `http://${this.getHost(opts.port)}`, pid },
      exited: false,
      stopping: false,
      ended: Promise.resolve(),
      followers,
    };
    const watch = this.iso && before ? this.watchApp(before) : undefined;
    app.ended = exit
      .then(async ({ code, signal }) => {
        app.exited = true;
        let outOfMemory: { limitMb: number } | undefined;
        // Leftovers of its group would hold its port; its last output reaches the callbacks before onExit.
        if (this.iso) {
          watch?.stop();
          await this.endLeaf('app');
          await this.releaseInbound();
          if (before) {
            if (this.limitCounters().oom > before.oom) outOfMemory = { limitMb: this.iso.limits.memoryMb };
            await this.appendAppLines(this.limitLines(before));
          }
        } else {
          await terminate({ groups: [pid] }, this.config.killGraceMs);
        }
        await Promise.all(followers.map((f) => f.stop()));
        updateRecord(this.paths.root, (r) => (r.app?.pid === pid ? { ...r, app: null } : r));
        if (!app.stopping && !this.state.killed)
          safeCall(() => opts.onExit?.({ exitCode: code, signal, ...(outOfMemory && { outOfMemory }) }));
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
    if (network) {
      try {
        await network;
      } catch (err) {
        // The gate closed: the app exits without having run.
        app.stopping = true;
        await app.ended;
        throw err;
      }
    }
    return app.handle;
  }

  async isAppRunning(): Promise<boolean> {
    return (await this.getApp()) !== null;
  }

  async getApp(): Promise<AppHandle | null> {
    const app = this.state.app;
    if (app) return app.exited ? null : app.handle;
    // A followed app that has just exited: its exit is reported (onExit) before anyone hears "gone".
    await this.state.adopted?.check?.();
    // Started by another (earlier) server process: the record says which process it is.
    const record = readRecord(this.paths.root);
    const recorded = record?.app;
    if (!recorded || !isRunning(recorded)) return null;
    this.keepLogsBounded(recorded);
    // Its network helper ended meanwhile (it outlives server restarts, but could crash): start it again.
    const helper = record.isolation?.outbound;
    if (
      this.iso &&
      !(helper && isRunning(helper) && helper.spec.endsWith(` ${inboundSpec(recorded.port)}`)) &&
      Date.now() - this.state.networkRestoredAt > NETWORK_RESTORE_MS
    ) {
      const ports = (/^out:([\d,]*)/.exec(helper?.spec ?? '')?.[1] ?? '').split(',').filter(Boolean);
      await this.ensureNetwork({}, recorded.port, ports.map(Number)).catch(() => {
        this.state.networkRestoredAt = Date.now(); // failed: not again for a while
      });
    }
    return { port: recorded.port, internalUrl: `http://${this.getHost(recorded.port)}`, pid: recorded.pid };
  }

  async followApp(opts: Pick<StartAppOptions, 'onStdout' | 'onStderr' | 'onExit'>): Promise<boolean> {
    if (this.state.app || this.state.adopted) return false;
    const recorded = readRecord(this.paths.root)?.app;
    if (!recorded || !isRunning(recorded)) return false;
    this.stopKeeper(); // the followers keep the files bounded now
    const counters = this.iso ? this.limitCounters() : undefined;
    const budget = new OutputBudget(this.config.outputRate);
    const followers = [
      new LogFollower(this.paths.appStdout, this.config.logMaxBytes, opts.onStdout, budget),
      new LogFollower(this.paths.appStderr, this.config.logMaxBytes, opts.onStderr, budget),
    ];
    for (const follower of followers) follower.start(APP_LOG_POLL_MS);
    const adopted: AdoptedApp = {
      followers,
      stopping: false,
      timer: setInterval(() => void check(), APP_EXIT_POLL_MS),
    };
    adopted.timer.unref();
    let ending = false;
    let ended: Promise<void> = Promise.resolve();
    const check = (): Promise<void> => {
      if (ending || isRunning(recorded)) return ended;
      ending = true;
      clearInterval(adopted.timer);
      adopted.unwatch?.();
      ended = (async () => {
        // Not our child: its exit status is not ours to read. Leftovers of its group would hold its port.
        let outOfMemory: { limitMb: number } | undefined;
        if (this.iso) {
          if (this.limitCounters().oom > counters!.oom) outOfMemory = { limitMb: this.iso.limits.memoryMb };
          await this.endLeaf('app');
          await this.releaseInbound();
        } else {
          await terminate({ groups: [recorded.pid] }, this.config.killGraceMs);
        }
        await Promise.all(followers.map((f) => f.stop()));
        updateRecord(this.paths.root, (r) => (r.app?.pid === recorded.pid ? { ...r, app: null } : r));
        if (this.state.adopted === adopted) this.state.adopted = undefined;
        if (!adopted.stopping && !this.state.killed)
          safeCall(() =>
            opts.onExit?.({ exitCode: null, signal: null, ...(outOfMemory && { outOfMemory }) }),
          );
      })().catch(() => {});
      return ended;
    };
    adopted.check = check;
    this.state.adopted = adopted;
    // After a restart, the limit counters are read from now on (earlier hits were reported already).
    const watch = this.iso && counters ? this.watchApp(counters) : undefined;
    adopted.unwatch = () => watch?.stop();
    return true;
  }

  async stopApp(): Promise<void> {
    const app = this.state.app;
    if (app) app.stopping = true;
    const recorded = readRecord(this.paths.root)?.app;
    await this.stopFollowing();
    if (this.iso) {
      await this.terminateLeaf('app');
      // The app's outer process (bubblewrap's monitor, outside the leaf) ends once its namespace is
      // empty: stopped means that one is gone too, whoever started it.
      if (recorded) await waitUntilEnded(recorded, this.config.killGraceMs);
      await this.releaseInbound();
    } else {
      await terminate(
        { groups: this.appGroups(), env: markerEntries(this.id, 'app') },
        this.config.killGraceMs,
      );
    }
    await app?.ended;
    this.stopKeeper();
    // What the app wrote between the followers' last pass and its end, unread by anyone: cut to the cap.
    await this.reclaimAppLogs();
    updateRecord(this.paths.root, (r) => ({ ...r, app: null }));
    if (this.state.app === app) this.state.app = undefined;
  }

  async waitUntilReady(
    app: AppHandle,
    opts: { healthcheckPath?: string | undefined; timeoutMs: number; signal?: AbortSignal },
  ): Promise<void> {
    const url = new URL(app.internalUrl);
    const iso = this.iso;
    // Isolated: the host port is pasta's from the app's start; whether the app listens is read in its
    // namespace (a health check then goes through the host port, as visitors do).
    const pid = (app as Partial<RunningApp['handle']>).pid ?? readRecord(this.paths.root)?.app?.pid;
    await waitForApp({
      host: url.hostname,
      port: Number(url.port || app.port),
      healthcheckPath: opts.healthcheckPath,
      timeoutMs: opts.timeoutMs,
      isAlive: () => this.isAppRunning(),
      signal: opts.signal,
      ...(iso && pid !== undefined
        ? {
            listening: listenWatch(pid, app.port, iso.record.netns),
            listenIntervalMs: LISTEN_POLL_MS,
          }
        : {}),
    }).catch((err: unknown) => {
      // Isolated: its namespace's socket table says where it listens instead (a dev server's own port).
      if (!(err instanceof AppNotReadyError) || !iso || pid === undefined) throw err;
      if (!/did not listen on port/.test(err.message)) throw err;
      // Ports the network helper forwards out of the namespace (the database's) listen there too.
      const spec = readRecord(this.paths.root)?.isolation?.outbound?.spec ?? '';
      const helper = new Set((/^out:([\d,]*)/.exec(spec)?.[1] ?? '').split(',').filter(Boolean).map(Number));
      const listening = portsListeningInside(pid, iso.record.netns).filter((p) => !helper.has(p));
      const other = listening.filter((p) => p !== app.port);
      if (!other.length || listening.includes(app.port)) throw err;
      throw new AppNotReadyError(
        `listened on ${other.join(', ')}, not on $PORT (${app.port}): make it listen on the PORT variable`,
      );
    });
    // What the app printed until now (e.g. "listening on …") reaches onStdout/onStderr before its
    // readiness is reported, rather than at the followers' next poll.
    const followers = this.state.app?.followers ?? this.state.adopted?.followers ?? [];
    await Promise.all(
      followers.map(async (f) => {
        await f.poll(); // a pass under way may have read before the last write:
        await f.poll(); // one more after it
      }),
    );
  }

  /**
   * Isolated: the sandbox's cgroup (memory now and at its peak since the app started, CPU time, the
   * limits in force). Unisolated: the app's process tree from /proc (no peak, no limits); null when
   * no app runs.
   */
  async usage(): Promise<SandboxUsage | null> {
    if (!fs.existsSync(this.paths.root)) return null;
    if (this.iso) {
      const usage = this.iso.cgroup.usage();
      if (usage.cpuSeconds === null) usage.cpuSeconds = processesCpuSeconds(this.iso.cgroup.members());
      return usage;
    }
    const app = this.state.app;
    let pid = app && !app.exited ? app.handle.pid : undefined;
    if (pid === undefined) {
      const recorded = readRecord(this.paths.root)?.app;
      if (recorded && isRunning(recorded)) pid = recorded.pid;
    }
    const tree = pid === undefined ? null : processTreeUsage(pid);
    return tree && { ...tree, memoryPeakBytes: null, memoryLimitBytes: null, cpus: null };
  }

  async keepAlive(_ms: number): Promise<void> {
    // Local sandboxes do not expire.
  }

  /** Only once nothing of the sandbox runs (after the build; see copy-out.ts). */
  async copyOut(dir: string, dest: string, limits: CopyOutLimits): Promise<CopyOutResult> {
    this.assertExists();
    if (this.state.app && !this.state.app.exited)
      throw new SandboxError(`sandbox ${this.id} runs an app: its files may change while they are copied`);
    return copyTreeOut(resolveInside(this.paths.app, dir, 'folder'), dest, limits);
  }

  async kill(): Promise<void> {
    const state = this.state;
    state.killed = true;
    if (state.app) state.app.stopping = true;
    this.stopKeeper();
    await this.stopFollowing();
    if (this.iso) {
      await this.killIsolated();
      await state.app?.ended;
      await state.commandsLog.flush();
      await removeIsolatedFolder(
        this.paths.root,
        this.iso.record.uid,
        this.iso.config.tools,
        this.iso.config.uids,
      );
      live.delete(this.paths.root);
      return;
    }
    await terminate(
      { groups: [...this.appGroups(), ...state.commands], env: markerEntries(this.id) },
      this.config.killGraceMs,
    );
    await state.app?.ended;
    await state.commandsLog.flush();
    await removeSandboxFolder(this.paths.root);
    live.delete(this.paths.root);
  }

  /**
   * Every process of the sandbox gone (SIGTERM, then SIGKILL through the cgroup: nothing escapes
   * it), its network helpers and namespace too, its cgroup removed. Throws when a process survived.
   */
  private async killIsolated(): Promise<void> {
    const iso = this.iso!;
    let graceful = await this.terminateLeaf(undefined);
    // A process spawned just before kill() joins its cgroup a moment later: sweep until all are gone.
    for (
      let i = 0;
      i < 250 && [...this.state.children].some((c) => c.exitCode === null && c.signalCode === null);
      i++
    ) {
      graceful = (await iso.cgroup.kill()) && graceful;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // A network helper being started (prepareApp, a command) is recorded before we look.
    await this.state.network;
    const record = readRecord(this.paths.root)?.isolation ?? iso.record;
    await stopPasta(record.inbound); // a second helper, recorded by earlier versions
    await stopPasta(record.outbound);
    await deleteNetns(iso.config.tools, iso.record.netns);
    iso.cgroup.remove();
    if (!graceful)
      throw new SandboxError(
        `sandbox ${this.id}: some of its processes could not be killed; its folder is kept`,
      );
  }

  /** The next cgroup leaf for a command. */
  private nextLeaf(): string {
    this.state.commandCount += 1;
    return `cmd-${process.pid}-${this.state.commandCount}`;
  }

  /**
   * SIGTERM to every process of a leaf (or of the whole sandbox), then SIGKILL through the cgroup
   * to whatever is left after the grace period. True once none is left.
   */
  private async terminateLeaf(leaf: string | undefined): Promise<boolean> {
    const cgroup = this.iso!.cgroup;
    if (cgroup.signal(leaf, 'SIGTERM') === 0) return true;
    const deadline = Date.now() + this.config.killGraceMs;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      if (cgroup.members(leaf).length === 0) return true;
    }
    return cgroup.kill(leaf);
  }

  /** A command's leaf once its shell has exited: what it left behind is killed, the leaf removed. */
  private async endLeaf(leaf: string): Promise<void> {
    const cgroup = this.iso!.cgroup;
    if (cgroup.members(leaf).length > 0) await cgroup.kill(leaf);
    cgroup.remove(leaf);
  }

  private limitCounters(): { oom: number; pids: number } {
    const cgroup = this.iso!.cgroup;
    return { oom: cgroup.oomKills(), pids: cgroup.pidsLimitHits() };
  }

  /** Log lines for limits hit since `before`. */
  private limitLines(before: { oom: number; pids: number }): string[] {
    const now = this.limitCounters();
    const limits = { ...this.iso!.limits, ...this.iso!.build };
    const lines: string[] = [];
    if (now.oom > before.oom)
      lines.push(`[coderunner: out of memory (limit ${limits.memoryMb} MB): the process was killed]\n`);
    if (now.pids > before.pids)
      lines.push(
        `[coderunner: process limit reached (limit ${limits.pids} processes): new processes were refused]\n`,
      );
    return lines;
  }

  private async appendAppLines(lines: string[]): Promise<void> {
    for (const line of lines) await fs.promises.appendFile(this.paths.appStderr, line).catch(() => {});
  }

  /** Used at the last disk check (for the message). */
  private diskUsed = 0;

  /**
   * Whether the sandbox uses more than its disk cap: its folders (blocks, and a minimum per entry),
   * its logs (an app may preallocate blocks in its own log file without growing it), and files its
   * processes deleted but still hold open.
   */
  private async diskOverCap(): Promise<boolean> {
    const [folders, held] = await Promise.all([
      folderBytes([this.paths.app, this.paths.home, this.paths.logs]),
      deletedOpenBytes(this.iso!.cgroup.members()),
    ]);
    this.diskUsed = folders + held;
    return this.diskUsed > this.iso!.limits.diskMb * 1024 * 1024;
  }

  /** After the app ended: its logs cut to the cap, and blocks preallocated past their end given back. */
  private async reclaimAppLogs(): Promise<void> {
    await Promise.all(
      [this.paths.appStdout, this.paths.appStderr].map(async (file) => {
        await trimLog(file, this.config.logMaxBytes).catch(() => null);
        await releasePreallocated(file).catch(() => {});
      }),
    );
  }

  private diskLine(what: string): string {
    return `[coderunner: disk quota exceeded (${Math.round(this.diskUsed / 1024 / 1024)} MB used, limit ${this.iso!.limits.diskMb} MB): ${what}]\n`;
  }

  /** While an isolated command runs: `over()` once its folders pass the disk cap. */
  private watchDisk(over: () => void): { stop(): void } {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.diskOverCap()
        .then((isOver) => {
          if (isOver) over();
        })
        .catch(() => {})
        .finally(() => {
          busy = false;
        });
    }, COMMAND_DISK_CHECK_MS);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  /** While an isolated app runs: report the process limit when hit, and stop it when over its disk cap. */
  private watchApp(before: { oom: number; pids: number }): { stop(): void } {
    let stopped = false;
    let pidsReported = before.pids;
    let lastDiskCheck = Date.now();
    let busy = false;
    const timer = setInterval(() => {
      if (busy || stopped) return;
      busy = true;
      void (async () => {
        const hits = this.iso!.cgroup.pidsLimitHits();
        if (hits > pidsReported) {
          pidsReported = hits;
          await this.appendAppLines([
            `[coderunner: process limit reached (limit ${this.iso!.limits.pids} processes): new processes were refused]\n`,
          ]);
        }
        if (Date.now() - lastDiskCheck >= DISK_CHECK_MS) {
          lastDiskCheck = Date.now();
          if ((await this.diskOverCap()) && !stopped) {
            await this.appendAppLines([this.diskLine('the app was stopped')]);
            await this.iso!.cgroup.kill('app');
            await this.reclaimAppLogs();
          }
        }
      })()
        .catch(() => {})
        .finally(() => {
          busy = false;
        });
    }, ISOLATED_WATCH_MS);
    timer.unref();
    return {
      stop: () => {
        stopped = true;
        clearInterval(timer);
      },
    };
  }

  /**
   * The sandbox's network helper (one pasta): outbound with the app's own database port, and, for an
   * app, its port forwarded from the host (`inbound`). Restarted only when what it forwards changes;
   * a command run while the app runs keeps the app's forward.
   */
  private ensureNetwork(envs: Record<string, string>, inbound?: number, recorded?: number[]): Promise<void> {
    const iso = this.iso!;
    const step = this.state.network.then(async () => {
      // Only ports the server says are this sandbox's database: a URL the tenant set itself opens nothing.
      const allowed = new Set(await iso.config.databasePorts(this.metadata));
      const ports = [...new Set([...databasePorts(envs), ...(recorded ?? [])])]
        .filter((p) => allowed.has(p))
        .sort((a, b) => a - b);
      const record = readRecord(this.paths.root)?.isolation;
      const current = record?.outbound;
      const running = current && isRunning(current) ? current : null;
      const port = inbound ?? (running ? inboundPortOf(running.spec) : undefined);
      if (running && running.spec === networkSpec(ports, port)) return;
      await stopPasta(current);
      // An inbound helper recorded by an earlier version would hold the port.
      if (port !== undefined) await stopPasta(record?.inbound);
      if (this.state.killed) throw new SandboxNotFoundError(this.id);
      const pasta = await startPasta(iso.config.tools, iso.record.netns, this.paths.root, {
        outbound: ports,
        inbound: port,
      });
      this.updateIsolation({ outbound: pasta, ...(port !== undefined ? { inbound: null } : {}) });
    });
    this.state.network = step.catch(() => {});
    return step;
  }

  /**
   * The app is gone: its port is no longer forwarded (nothing answers there). The helper goes
   * unless a command still runs, which keeps its outbound network (the next start replaces it).
   */
  private releaseInbound(): Promise<void> {
    const step = this.state.network.then(async () => {
      const record = readRecord(this.paths.root)?.isolation;
      await stopPasta(record?.inbound);
      const current = record?.outbound;
      const forwards = current ? inboundPortOf(current.spec) !== undefined : false;
      if (forwards && this.state.commands.size === 0) {
        await stopPasta(current);
        this.updateIsolation({ outbound: null, inbound: null });
      } else {
        this.updateIsolation({ inbound: null });
      }
    });
    this.state.network = step.catch(() => {});
    return step;
  }

  private updateIsolation(change: { outbound?: PastaProcess | null; inbound?: PastaProcess | null }): void {
    updateRecord(this.paths.root, (r) =>
      r.isolation ? { ...r, isolation: { ...r.isolation, ...change } } : r,
    );
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
    /** Isolated sandboxes: the cgroup leaf the process runs in. */
    leaf?: string;
    /** Isolated sandboxes: extra read-only mounts [host path, path inside]. */
    readOnly?: [string, string][];
    /** Isolated sandboxes: the command waits for this to resolve (it does not run if it rejects). */
    gate?: Promise<unknown> | undefined;
  }): { child: ChildProcess; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
    const runAs = this.config.runAs;
    const iso = this.iso;
    const nodeBin = this.node ? path.join(iso ? NODE_INSIDE : this.node, 'bin') : undefined;
    const env = sandboxEnvironment({
      sandboxId: this.id,
      kind: opts.kind,
      home: iso ? INSIDE_HOME : this.paths.home,
      user: iso ? 'app' : runAs?.name,
      layers: [nodeBin ? nodeEnvironment(nodeBin) : undefined, this.envs, opts.envs],
      forced: opts.forced,
    });
    const readOnly = [
      ...(opts.readOnly ?? []),
      ...(iso && this.node ? [[this.node, NODE_INSIDE] as [string, string]] : []),
    ];
    let file = opts.file;
    let args = opts.args;
    let spawnEnv = env;
    let stdio = opts.stdio;
    let script = '';
    const gated = iso !== undefined && opts.gate !== undefined;
    if (iso) {
      if (!Array.isArray(stdio)) throw new SandboxError('an isolated command needs its stdio as an array');
      // The root stages get only the server's fixed variables (the markers that find the processes
      // included); the command gets the whole environment on ENV_FD once it runs as the sandbox's uid.
      spawnEnv = sandboxEnvironment({
        sandboxId: this.id,
        kind: opts.kind,
        home: INSIDE_HOME,
        user: 'app',
        layers: [],
      });
      stdio = [...stdio.slice(0, 3), gated ? 'pipe' : 'ignore', 'pipe', 'pipe'];
      script = envScript(env);
      // kill() has begun: nothing new may start (it would escape the sweep of the sandbox's cgroup).
      if (this.state.killed) throw new SandboxNotFoundError(this.id);
      const procs = iso.cgroup.leaf(opts.leaf ?? this.nextLeaf());
      const inside = INSIDE_APP + opts.cwd.slice(this.paths.app.length);
      const command = isolatedCommand(
        iso.config.tools,
        procs,
        netnsPath(iso.record.netns),
        bwrapArgs({
          uid: iso.record.uid,
          gid: iso.record.uid,
          app: this.paths.app,
          home: this.paths.home,
          passwd: this.paths.passwd,
          group: this.paths.group,
          tmpBytes: iso.limits.tmpMb * 1024 * 1024,
          readOnly,
        }),
        iso.record.uid,
        inside,
        opts.file,
        opts.args,
        gated,
      );
      file = command.file;
      args = command.args;
    }
    const child = spawn(file, args, {
      cwd: iso ? '/' : opts.cwd,
      env: spawnEnv,
      stdio,
      // Its own process group (and session), so that it and everything it starts can be signalled at once.
      detached: true,
      ...(runAs && !iso ? { uid: runAs.uid, gid: runAs.gid } : {}),
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
    if (iso) {
      // The environment on ENV_FD, and bubblewrap's seccomp filter on SECCOMP_FD (it reads to the end).
      const inputs: [number, string | Buffer][] = [
        [ENV_FD, script],
        [SECCOMP_FD, iso.config.tools.seccomp],
      ];
      for (const [fd, data] of inputs) {
        const pipe = (child.stdio as unknown[])[fd] as (Writable & { unref?: () => void }) | null | undefined;
        if (!pipe) continue;
        pipe.on('error', () => {}); // the command ended before reading it (e.g. a cgroup not joined)
        pipe.unref?.();
        pipe.end(data);
      }
    }
    if (gated) {
      // fd 3 of the command: a line once the gate opens; closed without one when it fails.
      const pipe = child.stdio[3] as (Writable & { unref?: () => void }) | null | undefined;
      if (pipe) {
        pipe.on('error', () => {});
        pipe.unref?.();
        opts.gate!.then(
          () => pipe.write('go\n', () => pipe.destroy()),
          () => pipe.destroy(),
        );
      }
    }
    this.state.children.add(child);
    child.once('exit', () => this.state.children.delete(child));
    child.once('error', () => {
      if (child.pid === undefined) this.state.children.delete(child);
    });
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
/** The system's CA bundle (mounted read-only in every sandbox). */
const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * A Node.js of the registry's (not the system's) first on PATH. Such a build trusts only the CAs
 * compiled into it, where Debian's node trusts the system's: without the system bundle, npm fails
 * behind a TLS-inspecting proxy (SELF_SIGNED_CERT_IN_CHAIN) where the host's Node succeeds.
 */
function nodeEnvironment(nodeBin: string): Record<string, string> {
  return {
    PATH: `${nodeBin}:${SANDBOX_PATH}`,
    ...(fs.existsSync(SYSTEM_CA_BUNDLE) ? { NODE_EXTRA_CA_CERTS: SYSTEM_CA_BUNDLE } : {}),
  };
}

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

/**
 * Space charged for what lies under these folders (not following links): the blocks they use, and
 * MIN_ENTRY_BYTES for each entry (an empty file or a link uses no block but an inode: a million of
 * them are not free). Counted by `du` (as root, reading only): a tenant's node_modules of 16,000
 * entries costs it ~70 ms of system time, where walking it from here took a second of this
 * server's CPU.
 */
const MIN_ENTRY_BYTES = 1024;
const runFile = promisify(execFile);
async function folderBytes(dirs: string[]): Promise<number> {
  const total = async (args: string[]) => {
    const { stdout } = await runFile('du', ['-s', '-c', '-x', ...args, '--', ...dirs], {
      env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
      maxBuffer: 1024 * 1024,
    }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' })); // a file gone meanwhile
    const last = stdout.trimEnd().split('\n').at(-1) ?? '';
    return Number.parseInt(last, 10) || 0;
  };
  const [bytes, entries] = await Promise.all([total(['-B1']), total(['--inodes'])]);
  return bytes + entries * MIN_ENTRY_BYTES;
}

/**
 * Blocks of files that these processes deleted but still hold open (invisible to du, yet on the
 * disk until closed): read through /proc/<pid>/fd, each file counted once.
 */
async function deletedOpenBytes(pids: number[]): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  for (const pid of pids) {
    const dir = `/proc/${pid}/fd`;
    const fds = await fs.promises.readdir(dir).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await fs.promises.readlink(path.join(dir, fd)).catch(() => '');
      if (!target.startsWith('/') || !target.endsWith(' (deleted)')) continue;
      const stat = await fs.promises.stat(path.join(dir, fd)).catch(() => null);
      if (!stat?.isFile()) continue;
      const key = `${stat.dev}:${stat.ino}`;
      if (seen.has(key)) continue;
      seen.add(key);
      total += stat.blocks * 512;
    }
  }
  return total;
}

/**
 * A log file whose blocks go well past its end (the app preallocated them on its own stdout, which
 * truncation to the same size does not always give back): rewritten, so only its content keeps
 * space. Only once the app has ended (nothing else writes it).
 */
async function releasePreallocated(file: string): Promise<void> {
  const stat = await fs.promises.stat(file);
  // (A file still over 64 MB was not cut: left as it is rather than read whole.)
  if (stat.blocks * 512 <= stat.size + 1024 * 1024 || stat.size > 64 * 1024 * 1024) return;
  const content = await fs.promises.readFile(file);
  const handle = await fs.promises.open(file, 'r+');
  try {
    await handle.truncate(0);
    await handle.write(content, 0, content.length, 0);
  } finally {
    await handle.close();
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
