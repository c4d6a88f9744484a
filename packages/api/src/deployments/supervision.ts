/**
 * App supervision: the apps this process started or re-attached to, where the proxy sends their
 * traffic, when they are ready, and what happens when one exits on its own.
 */
import type { Sandbox } from '@coderunner/sandbox';
import * as deployments from '../tables/deployments';
import { type EngineOptions, markFailed, systemFailure, systemLog } from './context';
import { outputDetails } from './failure-details';
import { staticTarget } from './static-sites';

export class AppSupervisor {
  /** Apps we started or follow: deployment id → internal URL (the local proxy's routing table). */
  private readonly apps = new Map<string, { internalUrl: string; sandboxId: string }>();
  /** Sandboxes of apps started by an earlier server process whose output this process follows. */
  private readonly followed = new Set<string>();
  /** Sandboxes whose app this process is stopping on purpose. */
  private readonly expected = new Set<string>();

  constructor(
    private readonly opts: EngineOptions,
    /** Whether a worker of this process is building the deployment now (its readiness check reports an exit). */
    private readonly isBuilding: (id: string) => boolean,
  ) {}

  /** Start the app in its sandbox, its output going to the deployment's log. */
  start(id: string, sandbox: Sandbox, command: string, port: number, envs: Record<string, string>) {
    const out = this.opts.logs.writer(id, 'app', 'stdout');
    const err = this.opts.logs.writer(id, 'app', 'stderr');
    return sandbox.startApp({
      command,
      port,
      envs,
      onStdout: out.write,
      onStderr: err.write,
      onExit: ({ exitCode, signal }) => {
        out.flush();
        err.flush();
        this.exited(id, sandbox.id, exitCode, signal);
      },
    });
  }

  /** The app answers: the proxy may send it traffic. */
  register(id: string, internalUrl: string, sandboxId: string): void {
    this.apps.set(id, { internalUrl, sandboxId });
  }

  forget(id: string): void {
    this.apps.delete(id);
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
    return this.apps.get(id)?.sandboxId === sandboxId || this.followed.has(sandboxId);
  }

  /**
   * Re-attach to an app started by an earlier server process: its new output goes to the deployment's
   * log again, and its exit fails the deployment as for an app started here.
   */
  async follow(id: string, sandbox: Sandbox): Promise<void> {
    const out = this.opts.logs.writer(id, 'app', 'stdout');
    const err = this.opts.logs.writer(id, 'app', 'stderr');
    const followed = await sandbox
      .followApp({
        onStdout: out.write,
        onStderr: err.write,
        onExit: ({ exitCode, signal }) => {
          out.flush();
          err.flush();
          this.followed.delete(sandbox.id);
          this.exited(id, sandbox.id, exitCode, signal);
        },
      })
      .catch((e: unknown) => {
        this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot follow the app after a restart');
        return false;
      });
    if (!followed) return;
    this.followed.add(sandbox.id);
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

  private exited(id: string, sandboxId: string, exitCode: number | null, signal: string | null): void {
    this.appExited(id, sandboxId, exitCode, signal).catch((e) =>
      this.opts.logger.warn({ err: e, deploymentId: id }, 'cannot record that the app exited'),
    );
  }

  /** The app of a RUNNING (or still starting) deployment exited on its own: FAILED, with its last output kept in the log. */
  private async appExited(id: string, sandboxId: string, exitCode: number | null, signal: string | null) {
    const how = signal
      ? `was killed by ${signal}`
      : exitCode === null
        ? 'exited'
        : `exited with code ${exitCode}`;
    const current = this.apps.get(id);
    if (current && current.sandboxId !== sandboxId) return;
    this.apps.delete(id);
    if (this.isBuilding(id) || this.expected.has(sandboxId)) return; // still starting: readiness reports it
    const row = await deployments.statusAndApp(this.opts.sequelize, id);
    if (row?.status !== 'RUNNING' || row.app_sandbox_id !== sandboxId) return;
    systemFailure(this.opts, id, `the app ${how}`, await outputDetails(this.opts.logs, id, 'app'));
    await this.opts.provider.kill(sandboxId).catch(() => false);
    await markFailed(this.opts, id, ['RUNNING']);
  }
}
