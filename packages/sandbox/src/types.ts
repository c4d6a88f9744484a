/**
 * The sandbox abstraction. Shaped after the E2B 1.x SDK (which AgentSphere forks) so that a cloud
 * adapter maps onto it call for call, while a local adapter implements it with folders and child
 * processes. Nothing here knows about tRPC, Sequelize or deployments' state.
 */

/** Labels stored with a sandbox; `list` filters on them. Values are strings, as in E2B. */
export interface SandboxMetadata {
  deploymentId: string;
  projectId: string;
  /** `app` or `db`. */
  role: string;
  [key: string]: string;
}

export interface CreateSandboxOptions {
  metadata: SandboxMetadata;
  /** Provider template (AgentSphere template id); the local provider ignores it. */
  template?: string;
  /** Environment given to every command run in the sandbox. */
  envs?: Record<string, string>;
  /** How long the sandbox lives without a keep-alive (cloud providers); default 5 minutes. */
  timeoutMs?: number;
  /**
   * A folder of this machine holding a Node.js build (bin/node), put first on PATH for every command
   * and the app (local provider: mounted read-only when isolated). Cloud providers ignore it.
   */
  node?: string;
}

export interface CommandOptions {
  /** Working directory relative to the sandbox's app folder (default: the app folder itself). */
  cwd?: string;
  envs?: Record<string, string>;
  /** Kill the command (its whole process group) after this many ms; 0 = no limit. */
  timeoutMs?: number;
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
}

export interface CommandResult {
  exitCode: number;
  /** Bounded tails of the output (the whole output goes through onStdout/onStderr). */
  stdout: string;
  stderr: string;
}

export interface StartAppOptions extends Omit<CommandOptions, 'timeoutMs'> {
  command: string;
  /** Port the app must listen on; it also receives it as PORT. */
  port: number;
  /** Called once when the app process exits on its own (not when stopApp/kill ended it). */
  onExit?: (info: AppExit) => void;
}

/** How an app ended on its own. */
export interface AppExit {
  exitCode: number | null;
  signal: string | null;
  /** Killed for using more memory than its limit (when the provider can tell). */
  outOfMemory?: { limitMb: number };
}

export interface AppHandle {
  port: number;
  /** Where the control plane can reach the app, e.g. http://127.0.0.1:41234 or https://8080-id.domain */
  internalUrl: string;
  pid?: number;
}

export interface FileEntry {
  /** Relative to the sandbox's app folder. */
  path: string;
  data: Uint8Array | string;
  /** POSIX mode bits (e.g. 0o755 for scripts). */
  mode?: number;
}

/** Everything needed to reach a deployment's database (what db_connection_info holds, sealed). */
export interface DatabaseConnectionInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** `postgres://user:password@host:port/database` */
  url: string;
}

/**
 * What a sandbox's code uses now, and its limits, as its provider measures them (the local one: its
 * cgroup). A figure the provider cannot tell is null.
 */
export interface SandboxUsage {
  /** Memory in use now, bytes (the cgroup's count: the processes' memory and the page cache they use). */
  memoryBytes: number;
  /** The most memory in use at once since the app started, bytes. */
  memoryPeakBytes: number | null;
  /** CPU time used so far by the sandbox's processes, seconds (cumulative). */
  cpuSeconds: number | null;
  /** The memory limit in force now, bytes (read at each call: it may change between build and run). */
  memoryLimitBytes: number | null;
  /** The CPU limit in force now, in CPUs (0.5 = half a core). */
  cpus: number | null;
}

/** A folder kept between a project's builds (see Sandbox.buildCache). */
export interface CachedFolder {
  /** Its name in the project's cache (letters, digits, `._-`), e.g. `npm` or `node_modules-<key>`. */
  name: string;
  /** Where it goes in the sandbox: `app/<path>` or `home/<path>`. */
  at: string;
  /** Copied in, so that the cache keeps it (node_modules: the app runs with it); else moved in and out. */
  keep?: boolean;
}

export interface CacheSaveResult {
  /** Folders now in the cache. */
  saved: string[];
  /** Folders dropped (least recently used first) to keep the project's cache within its cap. */
  evicted: string[];
  /** What the project's cache holds now, bytes. */
  bytes: number;
}

/**
 * A project's build cache as one sandbox sees it: used only while none of the sandbox's code runs
 * (before its install, after its build); never shared between projects.
 */
export interface BuildCache {
  /** Put the cached folders in place (those the sandbox does not have already); the names restored. */
  restore(folders: CachedFolder[]): Promise<string[]>;
  /** Take the folders back (those that exist), then keep the project's cache within `capMb`. */
  save(folders: CachedFolder[], capMb: number): Promise<CacheSaveResult>;
  /** Names of the folders cached now. */
  names(): Promise<string[]>;
  /** Forget everything cached for the project. */
  drop(): Promise<void>;
}

export interface SandboxInfo {
  id: string;
  metadata: SandboxMetadata;
  startedAt?: Date;
}

export interface Sandbox {
  readonly id: string;
  readonly metadata: SandboxMetadata;
  writeFiles(files: FileEntry[]): Promise<void>;
  /** Run to completion; resolves with a non-zero exitCode instead of throwing; rejects on timeout. */
  run(command: string, opts?: CommandOptions): Promise<CommandResult>;
  /** Start a long-running app in the background (no timeout). One app per sandbox. */
  startApp(opts: StartAppOptions): Promise<AppHandle>;
  /**
   * A hint, as early as it is known: an app will be started on `port` with `envs`. A provider may set
   * up what the app needs meanwhile (the local provider: its network helper). Optional; never needed.
   */
  prepareApp?(opts: { port: number; envs?: Record<string, string> }): Promise<void>;
  /**
   * The build is over: from now on the sandbox has its run limits (it may have built with more
   * memory and CPU). startApp does it too. Optional: providers without build limits need none.
   */
  endBuild?(): Promise<void>;
  /** The build cache of `key` (a project id) for this sandbox; optional (providers without one). */
  buildCache?(key: string): BuildCache;
  /** Is the app started by startApp still running? */
  isAppRunning(): Promise<boolean>;
  /**
   * The running app's handle, also from a Sandbox obtained by `connect` in a process that did not
   * start it (a restarted server routing requests to apps that kept running); null when none runs.
   */
  getApp(): Promise<AppHandle | null>;
  /**
   * Follow an app that an earlier server process started (this one restarted meanwhile): its output
   * from now on, and its exit (exitCode and signal may be unknown: null). Resolves false when no app
   * runs, or when this process started it (startApp's callbacks already follow it), or when it is
   * already followed.
   */
  followApp(opts: Pick<StartAppOptions, 'onStdout' | 'onStderr' | 'onExit'>): Promise<boolean>;
  /** Stop the app (its whole process group); idempotent. */
  stopApp(): Promise<void>;
  /** Host (no scheme) where `port` of this sandbox is reachable from outside. */
  /**
   * Resolves once the started app accepts connections on its port (or answers `healthcheckPath` with
   * 2xx/3xx); rejects with the reason when it exits first or the time runs out. Each provider probes
   * where the app really is (a local app directly, a cloud app from inside its sandbox).
   */
  waitUntilReady(
    app: AppHandle,
    opts: { healthcheckPath?: string | undefined; timeoutMs: number; signal?: AbortSignal },
  ): Promise<void>;
  getHost(port: number): string;
  /**
   * What the sandbox uses now (memory, CPU time) and its limits; null when the provider cannot tell.
   * Cheap (a few small reads): callers may sample it every few seconds. Optional.
   */
  usage?(): Promise<SandboxUsage | null>;
  /**
   * Copy the folder `dir` (relative to the app folder) onto this machine at `dest`: folders and
   * regular files only, never following links; bounded by `limits`. Providers that cannot
   * (cloud sandboxes) leave it out.
   */
  copyOut?(
    dir: string,
    dest: string,
    limits: { maxBytes: number; maxFiles: number },
  ): Promise<{ files: number; bytes: number; skipped: string[] }>;
  /** Extend the sandbox's life by `ms` from now (no-op for the local provider). */
  keepAlive(ms: number): Promise<void>;
  /** Kill everything and free the sandbox; idempotent. */
  kill(): Promise<void>;
}

export interface SandboxProvider {
  readonly name: 'local' | 'agentsphere';
  /**
   * Sandboxes run on the server's own machine: they vanish with it, so after a restart a RUNNING
   * deployment whose app is gone is rebuilt from its source rather than FAILED.
   */
  readonly sandboxesOnThisHost: boolean;
  create(opts: CreateSandboxOptions): Promise<Sandbox>;
  /** Re-attach to an existing sandbox; rejects with SandboxNotFoundError when it is gone. */
  connect(id: string): Promise<Sandbox>;
  /** Kill by id; true when it existed, false when it was already gone (never throws for that). */
  kill(id: string): Promise<boolean>;
  /** Sandboxes whose metadata contains every given key/value. */
  list(filter?: { metadata?: Partial<SandboxMetadata> }): Promise<SandboxInfo[]>;
  /**
   * How long a sandbox lives without `keepAlive` (cloud providers): whoever still needs one extends it
   * well before that. Undefined: sandboxes do not expire (local).
   */
  readonly sandboxTimeoutMs?: number;
  /** Forget the build cache of `key` (a project id: the project is deleted); optional. */
  dropBuildCache?(key: string): Promise<void>;
}

export class SandboxError extends Error {
  override name = 'SandboxError';
}

export class SandboxNotFoundError extends SandboxError {
  override name = 'SandboxNotFoundError';
  constructor(readonly sandboxId: string) {
    super(`sandbox ${sandboxId} no longer exists`);
  }
}

export class CommandTimeoutError extends SandboxError {
  override name = 'CommandTimeoutError';
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
    readonly stdout = '',
    readonly stderr = '',
  ) {
    super(`command timed out after ${Math.round(timeoutMs / 1000)} s: ${command}`);
  }
}

/**
 * The sandbox reached the service's maximum lifetime (its plan's limit): it cannot be kept alive any
 * longer and ends at its current end time. Whoever needs it must move to a new sandbox.
 */
export class SandboxLifetimeExceededError extends SandboxError {
  override name = 'SandboxLifetimeExceededError';
}

/**
 * The provider refused for a reason retrying does not fix soon: a quota (concurrent sandboxes, credits),
 * a rate limit that persisted, or an account the service blocked. The message carries the service's own.
 */
export class ProviderQuotaError extends SandboxError {
  override name = 'ProviderQuotaError';
}

/** A transient provider failure (network, 429, 5xx) after retries; the message says what to do. */
export class ProviderUnavailableError extends SandboxError {
  override name = 'ProviderUnavailableError';
}
