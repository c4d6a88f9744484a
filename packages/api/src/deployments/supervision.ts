/**
 * App supervision: the apps this process started or re-attached to, where the proxy sends their
 * traffic, when they are ready, and what happens when one exits on its own: it is started again in
 * its sandbox (its restart policy, restart-policy.ts), or the deployment goes FAILED.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  type AppExit,
  detectRuntime,
  extractTarGz,
  type Sandbox,
  SandboxNotFoundError,
} from '@coderunner/sandbox';
import * as deployments from '../tables/deployments';
import { type EngineOptions, markFailed, systemEvent, systemFailure, systemLog } from './context';
import { notReadyReason, outputDetails } from './failure-details';
import { SandboxKeeper } from './keep-alive';
import { setFields, transition } from './lifecycle';
import {
  type AppRestartPolicy,
  backoffFor,
  DEFAULT_RESTARTS,
  describeExit,
  describeWindow,
  restartPolicyOf,
  restartState,
  wantsRestart,
} from './restart-policy';

/** How an app is started: what a restart in the same sandbox needs again. */
export interface AppLaunch {
  command: string;
  port: number;
  envs: Record<string, string>;
  healthcheckPath?: string | undefined;
  policy: AppRestartPolicy;
}

/** A restart waiting for its backoff or for the restarted app to answer. */
interface Restarting {
  sandboxId: string;
  abort: AbortController;
  heartbeat: NodeJS.Timeout;
  /** The restarted app exited (before it answered, or before RUNNING was recorded). */
  exit?: AppExit;
  exited?: (exit: AppExit) => void;
}

import { staticTarget } from './static-sites';

export class AppSupervisor {
  /** Apps we started or follow: deployment id → internal URL (the local proxy's routing table). */
  private readonly apps = new Map<string, { internalUrl: string; sandboxId: string }>();
  /** Sandboxes of apps started by an earlier server process whose output this process follows. */
  private readonly followed = new Set<string>();
  /** Sandboxes whose app this process is stopping on purpose. */
  private readonly expected = new Set<string>();
  /** Cloud sandboxes this process uses (builds, apps, databases) are kept alive by it. */
  readonly keeper: SandboxKeeper;
  /** The keep-alive of each app this process started or follows: deployment id → its sandbox and release. */
  private readonly appHolds = new Map<string, { sandboxId: string; release: () => void }>();
  /** How each app this process started was started, by deployment id (for restarts in the same sandbox). */
  private readonly launches = new Map<string, AppLaunch & { sandbox: Sandbox }>();
  /** Apps followed after a restart of the server: their sandbox and port (the rest is read again from the source). */
  private readonly adopted = new Map<string, { sandbox: Sandbox; port: number }>();
  /** Sandboxes whose app's exit this process is handling now (the reconciler leaves them to it). */
  private readonly handling = new Set<string>();
  /** Deployments whose app this process is restarting. */
  private readonly restarting = new Map<string, Restarting>();

  constructor(
    private readonly opts: EngineOptions,
    /** Whether a worker of this process is building the deployment now (its readiness check reports an exit). */
    private readonly isBuilding: (id: string) => boolean,
  ) {
    this.keeper = new SandboxKeeper(opts);
  }

  /** Start the app in its sandbox, its output going to the deployment's log. */
  start(id: string, sandbox: Sandbox, launch: AppLaunch) {
    this.launches.set(id, { ...launch, sandbox });
    this.adopted.delete(id);
    return this.spawn(id, sandbox, launch);
  }

  private spawn(id: string, sandbox: Sandbox, launch: AppLaunch) {
    const out = this.opts.logs.writer(id, 'app', 'stdout');
    const err = this.opts.logs.writer(id, 'app', 'stderr');
    this.holdApp(id, sandbox);
    return sandbox.startApp({
      command: launch.command,
      port: launch.port,
      envs: launch.envs,
      onStdout: out.write,
      onStderr: err.write,
      onExit: (exit) => {
        out.flush();
        err.flush();
        this.exited(id, sandbox.id, exit);
      },
    });
  }

  /** The app answers: the proxy may send it traffic. */
  register(id: string, internalUrl: string, sandboxId: string): void {
    this.apps.set(id, { internalUrl, sandboxId });
  }

  /** The deployment stopped, failed or is gone: no traffic, no restart. */
  forget(id: string): void {
    this.apps.delete(id);
    this.releaseApp(id);
    this.cancelRestart(id);
    this.launches.delete(id);
    this.adopted.delete(id);
  }

  /** Whether this process is restarting the deployment's app (it is BUILDING meanwhile, with a heartbeat). */
  isRestarting(id: string): boolean {
    return this.restarting.has(id);
  }

  /** This process stops: restarts waiting are left to the reconciler (here after a restart, or another replica). */
  close(): void {
    for (const id of [...this.restarting.keys()]) this.cancelRestart(id);
  }

  /** Keeps the app's sandbox alive while it runs; at the service's maximum lifetime, moves it. */
  private holdApp(id: string, sandbox: Sandbox): void {
    this.releaseApp(id);
    const release = this.opts.provider.sandboxTimeoutMs
      ? this.keeper.hold(sandbox, id, 'app', () =>
          this.lifetimeEnded(id, sandbox.id).catch((e: unknown) =>
            this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot move the app to a new sandbox'),
          ),
        )
      : () => {};
    this.appHolds.set(id, { sandboxId: sandbox.id, release });
  }

  private releaseApp(id: string, sandboxId?: string): void {
    const hold = this.appHolds.get(id);
    if (!hold || (sandboxId && hold.sandboxId !== sandboxId)) return;
    hold.release();
    this.appHolds.delete(id);
  }

  /**
   * The app's sandbox cannot be kept alive any longer (the service's maximum lifetime for the plan):
   * rather than let the app vanish at its end, the deployment is built again, from its stored source,
   * in a new sandbox (the app is down meanwhile).
   */
  async lifetimeEnded(id: string, sandboxId: string): Promise<void> {
    this.releaseApp(id, sandboxId);
    const row = await deployments.statusAndApp(this.opts.sequelize, id);
    if (row?.status !== 'RUNNING' || row.app_sandbox_id !== sandboxId) return;
    this.expectExit(sandboxId);
    if (await transition(this.opts.sequelize, id, ['RUNNING'], 'PENDING', { appSandboxId: null })) {
      this.apps.delete(id);
      systemEvent(
        this.opts,
        id,
        { type: 'queued' },
        "the app's sandbox reached the longest life the sandbox service allows (its plan's limit); building the deployment again in a new sandbox",
      );
      await this.opts.provider.kill(sandboxId).catch(() => false);
    }
  }

  /** The app in `sandboxId` is being stopped on purpose (in a transaction not committed yet): its exit is no failure. */
  expectExit(sandboxId: string): void {
    this.expected.add(sandboxId);
    setTimeout(() => this.expected.delete(sandboxId), 60_000).unref();
  }

  isFollowed(sandboxId: string): boolean {
    return this.followed.has(sandboxId);
  }

  /**
   * Whether this process started or follows the app in `sandboxId`: its exit reaches us through the
   * app's own exit handler, which says how it ended (until that handler ran).
   */
  watches(id: string, sandboxId: string): boolean {
    return (
      this.apps.get(id)?.sandboxId === sandboxId ||
      this.followed.has(sandboxId) ||
      this.handling.has(sandboxId)
    );
  }

  /**
   * Re-attach to an app started by an earlier server process: its new output goes to the deployment's
   * log again, and its exit fails the deployment as for an app started here.
   */
  async follow(id: string, sandbox: Sandbox): Promise<void> {
    const port = (await sandbox.getApp().catch(() => null))?.port;
    const out = this.opts.logs.writer(id, 'app', 'stdout');
    const err = this.opts.logs.writer(id, 'app', 'stderr');
    const followed = await sandbox
      .followApp({
        onStdout: out.write,
        onStderr: err.write,
        onExit: (exit) => {
          out.flush();
          err.flush();
          this.followed.delete(sandbox.id);
          this.exited(id, sandbox.id, exit);
        },
      })
      .catch((e: unknown) => {
        this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot follow the app after a restart');
        return false;
      });
    if (!followed) return;
    this.followed.add(sandbox.id);
    this.holdApp(id, sandbox);
    if (port !== undefined) this.adopted.set(id, { sandbox, port });
    systemLog(this.opts, id, "the server restarted; following the app's output again");
  }

  /** Where the local proxy should send a request for this deployment's public URL. */
  async resolve(id: string): Promise<string | null> {
    const known = this.apps.get(id);
    if (known) return known.internalUrl;
    const row = await deployments.runningApp(this.opts.sequelize, id);
    if (row?.runtime_type === 'static') {
      // A static site: its files, served by the proxy (no sandbox behind it).
      const dir = this.opts.staticSites?.existing(id);
      if (!dir) return null;
      const target = staticTarget(dir);
      this.apps.set(id, { internalUrl: target, sandboxId: '' });
      return target;
    }
    if (!row?.app_sandbox_id) return null;
    try {
      const sandbox = await this.opts.provider.connect(row.app_sandbox_id);
      const app = await sandbox.getApp();
      if (!app) return null;
      this.apps.set(id, { internalUrl: app.internalUrl, sandboxId: sandbox.id });
      return app.internalUrl;
    } catch {
      return null;
    }
  }

  private exited(id: string, sandboxId: string, exit: AppExit): void {
    this.releaseApp(id, sandboxId);
    this.handling.add(sandboxId);
    this.appExited(id, sandboxId, exit)
      .catch((e) => this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot record that the app exited'))
      .finally(() => this.handling.delete(sandboxId));
  }

  /** The app of a RUNNING (or restarting) deployment exited on its own: restarted, or FAILED. */
  private async appExited(id: string, sandboxId: string, exit: AppExit) {
    const restart = this.restarting.get(id);
    if (restart?.sandboxId === sandboxId) {
      // A restarted app that ended before it answered: the restart in progress handles it.
      restart.exit = exit;
      restart.exited?.(exit);
      return;
    }
    const current = this.apps.get(id);
    if (current && current.sandboxId !== sandboxId) return;
    this.apps.delete(id);
    if (this.isBuilding(id) || this.expected.has(sandboxId)) return; // still starting: readiness reports it
    const row = await deployments.statusAndApp(this.opts.sequelize, id);
    if (row?.status !== 'RUNNING' || row.app_sandbox_id !== sandboxId) return;
    await this.crashed(id, sandboxId, exit, 'RUNNING');
  }

  /**
   * Restart the app after its backoff (the deployment BUILDING meanwhile: the project URL serves
   * another RUNNING deployment or answers 503 with Retry-After), or, when its policy says no or it
   * exited too often within the window, FAILED with the reason.
   */
  private async crashed(id: string, sandboxId: string, exit: AppExit, from: 'RUNNING' | 'BUILDING') {
    const how = `the app ${describeExit(exit)}`;
    const defaults = this.opts.restarts ?? DEFAULT_RESTARTS;
    let launch = this.launches.get(id);
    if (launch?.sandbox.id !== sandboxId) launch = await this.launchOfAdopted(id, sandboxId);
    const policy = launch?.policy ?? restartPolicyOf({}, defaults);
    if (!launch || !wantsRestart(policy.policy, exit)) {
      const why = launch ? '' : ' (how it was started can no longer be read, so it is not restarted)';
      await this.fail(id, sandboxId, `${how}${why}`, from);
      return;
    }
    // Its sandbox is gone (expired, killed): nothing to restart in.
    const gone = await this.opts.provider
      .connect(sandboxId)
      .then(() => false)
      .catch((err: unknown) => err instanceof SandboxNotFoundError);
    if (gone) {
      await this.fail(id, sandboxId, `${how}, and the sandbox running it no longer exists`, from);
      return;
    }
    const exits = (await restartState(this.opts.logs, id, policy.windowMs)).recent + 1;
    if (exits >= policy.maxExits) {
      const verb = wantsRestart('on-failure', exit) ? 'crashed' : 'exited';
      const times = exits === 1 ? 'once' : `${exits} times`;
      await this.fail(
        id,
        sandboxId,
        `${how}: it ${verb} ${times} in ${describeWindow(policy.windowMs)}; not restarting`,
        from,
      );
      return;
    }
    // RUNNING → BUILDING (or still BUILDING): false when it was stopped or destroyed meanwhile.
    const moved =
      from === 'RUNNING'
        ? await transition(this.opts.sequelize, id, ['RUNNING'], 'BUILDING')
        : await setFields(this.opts.sequelize, id, ['BUILDING'], {});
    if (!moved) return;
    const delayMs = backoffFor(exits, defaults.backoffMs);
    systemEvent(
      this.opts,
      id,
      {
        type: 'restart',
        n: exits,
        exitCode: exit.exitCode,
        signal: exit.signal,
        oomLimitMb: exit.outOfMemory?.limitMb ?? null,
        delayMs,
      },
      `${how}; restarting it in ${formatDelay(delayMs)} (restart ${exits}; after ${policy.maxExits} exits within ${describeWindow(policy.windowMs)} it is not restarted)`,
    );
    this.scheduleRestart(id, launch, exits, delayMs);
  }

  private scheduleRestart(id: string, launch: AppLaunch & { sandbox: Sandbox }, n: number, delayMs: number) {
    this.cancelRestart(id);
    const { sequelize, stuckAfterMs } = this.opts;
    const state: Restarting = {
      sandboxId: launch.sandbox.id,
      abort: new AbortController(),
      // Other replicas' reconcilers take a BUILDING row without a heartbeat for a dead worker's.
      heartbeat: setInterval(
        () => void setFields(sequelize, id, ['BUILDING'], {}).catch(() => {}),
        Math.max(1_000, Math.floor(stuckAfterMs / 4)),
      ),
    };
    this.restarting.set(id, state);
    const timer = setTimeout(() => {
      this.relaunch(id, launch, n, state)
        .catch((err) => this.opts.logger.warn({ err, deploymentId: id }, 'cannot restart the app'))
        .finally(() => this.endRestart(id, state));
    }, delayMs);
    state.abort.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  }

  private endRestart(id: string, state: Restarting): void {
    clearInterval(state.heartbeat);
    if (this.restarting.get(id) === state) this.restarting.delete(id);
  }

  private cancelRestart(id: string): void {
    const state = this.restarting.get(id);
    if (!state) return;
    state.abort.abort();
    this.endRestart(id, state);
  }

  /** Start the app again in its sandbox; RUNNING again once it answers. */
  private async relaunch(
    id: string,
    launch: AppLaunch & { sandbox: Sandbox },
    n: number,
    state: Restarting,
  ): Promise<void> {
    const { sandbox } = launch;
    const signal = state.abort.signal;
    const row = await deployments.statusAndApp(this.opts.sequelize, id);
    if (signal.aborted || row?.status !== 'BUILDING' || row.app_sandbox_id !== sandbox.id) return;
    const exited = new Promise<AppExit>((resolve) => {
      state.exited = resolve;
    });
    systemLog(this.opts, id, `restarting: ${launch.command} (PORT=${launch.port})`);
    let app: Awaited<ReturnType<Sandbox['startApp']>>;
    try {
      app = await this.spawn(id, sandbox, launch);
      await sandbox.waitUntilReady(app, {
        healthcheckPath: launch.healthcheckPath,
        timeoutMs: this.opts.startTimeoutMs,
        signal,
      });
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof SandboxNotFoundError) {
        this.endRestart(id, state);
        await this.fail(id, sandbox.id, 'the sandbox running the app no longer exists', 'BUILDING');
        return;
      }
      // Exited before it answered: one more exit in the window. Else it runs but does not answer.
      const exit =
        state.exit ?? (await Promise.race([exited, new Promise<null>((r) => setTimeout(r, 3_000, null))]));
      this.endRestart(id, state);
      if (exit) await this.crashed(id, sandbox.id, exit, 'BUILDING');
      else
        await this.fail(
          id,
          sandbox.id,
          await notReadyReason(this.opts.logs, id, launch.port, (e as Error).message),
          'BUILDING',
        );
      return;
    }
    this.register(id, app.internalUrl, sandbox.id);
    const moved = await transition(this.opts.sequelize, id, ['BUILDING'], 'RUNNING');
    if (!moved) {
      this.apps.delete(id);
      return; // destroyed meanwhile: its sandbox goes with it
    }
    this.endRestart(id, state);
    const url = moved.publicUrl ?? app.internalUrl;
    systemEvent(this.opts, id, { type: 'running', url }, `running again at ${url} (restart ${n})`);
    // It exited between answering and RUNNING being recorded: that exit was kept for now.
    if (state.exit) {
      this.apps.delete(id);
      this.handling.add(sandbox.id);
      await this.crashed(id, sandbox.id, state.exit, 'RUNNING').finally(() =>
        this.handling.delete(sandbox.id),
      );
    }
  }

  /**
   * How an app followed after a server restart was started, read again: its source's plan, its
   * environment snapshot and database variables (as the build gave them), the port it listened on.
   */
  private async launchOfAdopted(
    id: string,
    sandboxId: string,
  ): Promise<(AppLaunch & { sandbox: Sandbox }) | undefined> {
    const adopted = this.adopted.get(id);
    if (adopted?.sandbox.id !== sandboxId) return undefined;
    const { opts } = this;
    const scratch = fs.mkdtempSync(path.join(opts.workDir, `${id}-restart-`));
    try {
      await extractTarGz(await opts.sources.read(id), scratch);
      const plan = await detectRuntime(scratch, opts.sources.readOptions(id).runtime);
      if (!plan.start) return undefined; // a static site: no app to restart
      const start = plan.start;
      const row = await deployments.findWithCurrent(opts.sequelize, id);
      const dbEnv =
        row?.dbConnectionInfo && opts.database
          ? await opts.database.envFor({ id, dbConnectionInfo: row.dbConnectionInfo })
          : {};
      const launch = {
        sandbox: adopted.sandbox,
        command: start,
        port: adopted.port,
        envs: { ...plan.env, ...opts.sources.readEnv(id), ...dbEnv },
        healthcheckPath: plan.healthcheckPath,
        policy: restartPolicyOf(plan, opts.restarts ?? DEFAULT_RESTARTS),
      };
      this.launches.set(id, launch);
      return launch;
    } catch (err) {
      opts.logger.warn({ err, deploymentId: id }, 'cannot read how the app was started');
      return undefined;
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }

  /** FAILED, with the app's last output kept in the log and its sandbox killed. */
  private async fail(id: string, sandboxId: string, reason: string, from: 'RUNNING' | 'BUILDING') {
    systemFailure(this.opts, id, reason, await outputDetails(this.opts.logs, id, 'app'));
    await markFailed(this.opts, id, [from]);
    await this.opts.provider.kill(sandboxId).catch(() => false);
    this.launches.delete(id);
    this.adopted.delete(id);
  }
}

function formatDelay(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
