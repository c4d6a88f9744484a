import type { DeploymentStatus, Sequelize } from '@coderunner/db';
import type { BuildPlan, NodeVersions, Sandbox, SandboxProvider } from '@coderunner/sandbox';
import { transition } from './lifecycle';
import type { LogEvent } from './log-events';
import type { LogStore } from './log-store';
import type { RestartDefaults } from './restart-policy';
import type { SourceStore } from './source-store';
import type { StaticSites } from './static-sites';

export interface EngineLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** What the engine needs to give a deployment a database. */
export interface DatabaseHooks {
  /** Provision during PROVISIONING; returns the id to record, the sealed box, and the app's env. */
  provision(d: { id: string; projectId: string }): Promise<{
    dbSandboxId: string;
    sealed: Record<string, unknown>;
    env: Record<string, string>;
  }>;
  /** The app's env for an existing database (start after stop, restore). */
  envFor(d: { id: string; dbConnectionInfo: Record<string, unknown> }): Promise<Record<string, string>>;
  /** The connection info of `from` (a deployment's sealed box), sealed for deployment `to` instead. */
  handOver(
    from: { id: string; dbConnectionInfo: Record<string, unknown> },
    to: string,
  ): Record<string, unknown>;
  /** Drops the database (`id`: a deployment holding it). */
  destroy(d: { id: string; dbSandboxId: string }): Promise<void>;
  /** Empties the database: dropped and created again, its connection info unchanged. */
  reset(d: { id: string; dbSandboxId: string; dbConnectionInfo: Record<string, unknown> }): Promise<void>;
  /**
   * Backs the project's database up now (its own cluster); resolves undefined when the project's
   * database has no backups (the shared cluster's, or this provider's). Absent: no backups here.
   */
  backup?(
    projectId: string,
    reason: 'release' | 'before-reset',
  ): Promise<{ id: string; sizeBytes: number } | undefined>;
}

/** What a project's builds may use, by its owner's plan. */
export interface BuildPolicy {
  plan: string;
  /** Install and build together, from when the build has its slot. */
  timeLimitMs: number;
  /** The project's build cache cap (0: none kept). */
  cacheMb: number;
}

/** The machine's build queue (see the local provider's build-slots.ts). */
export interface BuildQueue {
  readonly slots: number;
  acquire(opts: {
    label: string;
    signal?: AbortSignal;
    onWait?: (wait: { ahead: number; slots: number }) => void;
  }): Promise<() => Promise<void>>;
}

/** The engine's settings and collaborators, shared read-only by its parts (worker, build, apps, reconciler). */
export interface EngineOptions {
  sequelize: Sequelize;
  provider: SandboxProvider;
  logs: LogStore;
  sources: SourceStore;
  /** Scratch space for unpacking sources. */
  workDir: string;
  /** Where static sites' files are kept and served from; unset: static sites are refused. */
  staticSites?: StaticSites;
  /** The Node.js versions apps ask for (fetched and cached); unset: the host's Node for every app. */
  nodeVersions?: NodeVersions;
  /** The public URL recorded for a RUNNING deployment. */
  publicUrlFor(id: string, sandbox: Sandbox, port: number): string;
  /** A project's stable URL, from its slug (see ../project-url.ts). */
  projectUrlFor(slug: string): string;
  /** How long a deployment replaced by a newer one keeps running (requests in flight finish). */
  redeployDrainMs: number;
  /** The port the app is told to listen on. */
  appPort(plan: BuildPlan): Promise<number>;
  /** Deployments built at once by this process. */
  concurrency: number;
  installTimeoutMs: number;
  buildTimeoutMs: number;
  startTimeoutMs: number;
  /** A PROVISIONING/BUILDING row whose heartbeat is older than this belongs to a dead worker. */
  stuckAfterMs: number;
  /** How many times a deployment whose worker died is retried before it is FAILED. */
  maxRetries: number;
  reconcileIntervalMs: number;
  /** A sandbox younger than this is never swept as an orphan (its row may not be written yet). Default 60 s. */
  orphanGraceMs?: number;
  database?: DatabaseHooks;
  /** Builds wait for a slot of this queue; unset: they never wait. */
  buildQueue?: BuildQueue;
  /** A project's build time limit and cache cap; unset: the install and build timeouts, a 1 GB cache. */
  buildPolicy?: (projectId: string) => Promise<BuildPolicy>;
  logger: EngineLogger;
  /** When apps that exit on their own are started again (default: DEFAULT_RESTARTS in restart-policy.ts). */
  restarts?: RestartDefaults;
  /** URL for a dedicated LISTEN connection (not from the pool) that wakes the workers; unset: poll only. */
  listenUrl?: string;
}

/** A line in the deployment's own log, from the platform (not the app). */
export function systemLog(opts: EngineOptions, id: string, text: string): void {
  opts.logs.append(id, 'system', 'info', text);
}

/**
 * A system line that code reads: `text` for people, `event` for the CLI, the reconciler and the
 * dashboard (which never read the wording). The one way the engine writes a typed event.
 */
export function systemEvent(opts: EngineOptions, id: string, event: LogEvent, text: string): void {
  opts.logs.append(id, 'system', 'info', text, event);
}

/**
 * The line that says why a deployment failed: "FAILED: <reason>" for people; the `failed` event
 * carries the reason and, on the lines after it, `details` (the output that explains it).
 */
export function systemFailure(opts: EngineOptions, id: string, reason: string, details: string[] = []): void {
  const full = details.length ? `${reason}\n${details.join('\n')}` : reason;
  systemEvent(opts, id, { type: 'failed', reason: full }, `FAILED: ${reason}`);
}

/** → FAILED (the reason is already in the log); a lost race means someone else moved it first. */
export async function markFailed(
  opts: EngineOptions,
  id: string,
  from: readonly DeploymentStatus[],
): Promise<void> {
  await transition(opts.sequelize, id, from, 'FAILED', { appSandboxId: null }).catch((err) =>
    opts.logger.error({ err, deploymentId: id }, 'cannot record FAILED'),
  );
}
