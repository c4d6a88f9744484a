/**
 * Repairs what dead workers and restarts leave behind:
 * - PROVISIONING/BUILDING rows without a heartbeat: sandbox killed, retried (or FAILED after retries);
 * - RUNNING rows whose sandbox or app is gone: after a restart, rebuilt from the stored source;
 *   later, FAILED (the app died while no process of ours watched it);
 * - RUNNING apps started by an earlier server process: followed again;
 * - sandboxes whose deployment does not want them: killed;
 * - RUNNING sandboxes of cloud providers: kept alive (also those of other replicas' apps);
 * - cloud database sandboxes a deployment holds: kept alive; those none holds: killed.
 */
import type { DeploymentStatus } from '@coderunner/db';
import {
  type Sandbox,
  type SandboxInfo,
  SandboxLifetimeExceededError,
  SandboxNotFoundError,
} from '@coderunner/sandbox';
import * as deployments from '../tables/deployments';
import { type EngineOptions, systemEvent, systemFailure, systemLog } from './context';
import { ACTIVE_STATUSES, transition } from './lifecycle';
import type { Releases } from './releases';
import type { AppSupervisor } from './supervision';

/** Logged when a build whose worker died is queued again (with a `retry` event: where retries are counted). */
export const rebuildLine = (retry: number, of: number) =>
  `the worker building this deployment stopped; building it again (retry ${retry} of ${of})`;

/**
 * How many times the current series of builds of `id` was interrupted by a dead worker, read from
 * the deployment's log (shared by every replica through the data folder, and kept across restarts),
 * so "retried once" means once, whichever process noticed. Each retry's `retry` event carries its
 * number, so only the newest one is needed, however much output came after it; a `queued`, `start`
 * or `running` event starts a new series. `null` when the bounded log no
 * longer reaches back to the series' start or to a retry (more output than it keeps): unknown.
 */
export async function buildInterruptions(opts: EngineOptions, id: string): Promise<number | null> {
  const lines = await opts.logs.read(id, null, Number.MAX_SAFE_INTEGER);
  for (let i = lines.length - 1; i >= 0; i--) {
    const event = lines[i]!.event;
    if (event?.type === 'retry') return event.n;
    if (event?.type === 'queued' || event?.type === 'start' || event?.type === 'running') return 0;
  }
  return lines.length && lines[0]!.id > 1 ? null : 0;
}

export class Reconciler {
  private firstPass = true;

  constructor(
    private readonly opts: EngineOptions,
    private readonly apps: AppSupervisor,
    private readonly releases: Releases,
    private readonly isBuilding: (id: string) => boolean,
  ) {}

  async reconcile(): Promise<void> {
    const first = this.firstPass;
    this.firstPass = false;
    await this.requeueStuck();
    await this.releases.retireReplaced();
    await this.checkRunning(first);
    await this.sweepOrphans();
  }

  private async requeueStuck(): Promise<void> {
    const { sequelize, provider } = this.opts;
    const stuck = await deployments.stuck(sequelize, this.opts.stuckAfterMs / 1000);
    for (const row of stuck) {
      if (this.isBuilding(row.id)) continue;
      if (row.appSandboxId) await provider.kill(row.appSandboxId).catch(() => false);
      const done = await buildInterruptions(this.opts, row.id);
      const retry = done === null ? null : done + 1;
      if (retry !== null && retry <= this.opts.maxRetries) {
        if (await transition(sequelize, row.id, [row.status], 'PENDING', { appSandboxId: null })) {
          systemEvent(
            this.opts,
            row.id,
            { type: 'retry', n: retry, of: this.opts.maxRetries },
            rebuildLine(retry, this.opts.maxRetries),
          );
        }
      } else if (await transition(sequelize, row.id, [row.status], 'FAILED', { appSandboxId: null })) {
        systemFailure(
          this.opts,
          row.id,
          retry === null
            ? 'the worker building this deployment stopped, and its log no longer shows how often that happened (more output than it keeps), so it is not retried; redeploy it (`coderunner redeploy <deployment>`) to build it again'
            : this.opts.maxRetries
              ? 'the worker building this deployment stopped, repeatedly'
              : 'the worker building this deployment stopped (CODERUNNER_BUILD_RETRIES is 0)',
        );
      }
    }
  }

  private async checkRunning(firstPass: boolean): Promise<void> {
    const { sequelize, provider } = this.opts;
    const running = await deployments.running(sequelize);
    for (const row of running) {
      if (this.isBuilding(row.id) || !row.appSandboxId) continue;
      // Replaced by a newer deployment: it is stopped when its drain ends, not brought back.
      if (this.releases.isRetiring(row.id)) continue;
      let alive = false;
      let sandbox: Sandbox | undefined;
      try {
        sandbox = await provider.connect(row.appSandboxId);
        alive = await sandbox.isAppRunning();
      } catch (err) {
        if (!(err instanceof SandboxNotFoundError)) continue; // provider unreachable: try again later
        sandbox = undefined; // a cached connect that turned out gone: the sandbox, not just the app
      }
      // An app whose exit handler is ours reports its own end, with its exit code: leave it to that.
      if (!alive && this.apps.watches(row.id, sandbox?.id ?? row.appSandboxId)) continue;
      if (alive) {
        // Cloud sandboxes expire without it; an app this process runs is kept alive by its keeper already.
        const timeoutMs = provider.sandboxTimeoutMs;
        if (sandbox && timeoutMs && !this.apps.keeper.holds(sandbox.id)) {
          const kept = sandbox;
          await kept.keepAlive(timeoutMs).catch(async (err: unknown) => {
            this.opts.logger.warn(
              { err, deploymentId: row.id, sandboxId: kept.id },
              'cannot keep the app sandbox alive',
            );
            if (err instanceof SandboxLifetimeExceededError) await this.apps.lifetimeEnded(row.id, kept.id);
          });
        }
        // An app that kept running while this server restarted: its output and exit reach us again.
        if (sandbox && !this.apps.isFollowed(sandbox.id)) await this.apps.follow(row.id, sandbox);
        continue;
      }
      if (firstPass && provider.sandboxesOnThisHost) {
        // After a restart (or a host reboot) local apps are gone: bring them back from their source.
        await provider.kill(row.appSandboxId).catch(() => false);
        if (await transition(sequelize, row.id, ['RUNNING'], 'PENDING', { appSandboxId: null })) {
          systemEvent(
            this.opts,
            row.id,
            { type: 'queued' },
            'the app was not running after a restart; starting it again from its source',
          );
        }
      } else {
        const tail = (await this.opts.logs.read(row.id, null, 5)).map((l) => l.text);
        await provider.kill(row.appSandboxId).catch(() => false);
        if (await transition(sequelize, row.id, ['RUNNING'], 'FAILED', { appSandboxId: null })) {
          systemFailure(
            this.opts,
            row.id,
            sandbox ? 'the app is no longer running' : 'the sandbox running the app no longer exists',
            tail.length ? [`last output: ${tail.join(' | ')}`] : [],
          );
          if (tail.length) systemLog(this.opts, row.id, `last output: ${tail.join(' | ')}`);
        }
      }
    }
  }

  /** Kill sandboxes whose deployment is gone, settled, or recorded with another sandbox. */
  private async sweepOrphans(): Promise<void> {
    const { sequelize, provider } = this.opts;
    const sandboxes = await provider.list().catch(() => []);
    const graceMs = this.opts.orphanGraceMs ?? 60_000;
    if (provider.sandboxTimeoutMs) await this.keepDatabases(sandboxes, graceMs);
    for (const s of sandboxes) {
      if (s.metadata.role !== 'app') continue;
      const deploymentId = s.metadata.deploymentId;
      if (deploymentId && this.isBuilding(deploymentId)) continue;
      if (s.startedAt && Date.now() - s.startedAt.getTime() < graceMs) continue;
      const row = await deployments.statusAndAppOfAnyId(sequelize, deploymentId ?? '');
      const wanted =
        row && ACTIVE_STATUSES.includes(row.status as DeploymentStatus) && row.appSandboxId === s.id;
      if (!wanted) {
        await provider.kill(s.id).catch(() => false);
        this.opts.logger.info({ sandboxId: s.id, deploymentId }, 'killed an orphan sandbox');
      }
    }
  }

  /**
   * Cloud database sandboxes: one a deployment holds (db_sandbox_id; a destroyed deployment may hold
   * its project's database) is kept alive, also while its deployments are STOPPED; one none holds
   * (a provisioning that failed half-way, a project dropped while the kill failed) is killed.
   */
  private async keepDatabases(sandboxes: SandboxInfo[], graceMs: number): Promise<void> {
    const { sequelize, provider, logger } = this.opts;
    const keeper = this.apps.keeper;
    const seen = new Set<string>();
    for (const s of sandboxes) {
      if (s.metadata.role !== 'db') continue;
      seen.add(s.id);
      const holder = await deployments.holderOfDatabase(sequelize, s.id);
      if (holder) {
        if (keeper.holds(s.id, 'db')) continue;
        try {
          keeper.hold(await provider.connect(s.id), holder, 'db');
        } catch (err) {
          logger.warn(
            { err, sandboxId: s.id, deploymentId: holder },
            'cannot keep the database sandbox alive',
          );
        }
        continue;
      }
      keeper.release(s.id, 'db');
      const deploymentId = s.metadata.deploymentId;
      if (deploymentId && this.isBuilding(deploymentId)) continue; // provisioning it now
      if (s.startedAt && Date.now() - s.startedAt.getTime() < graceMs) continue;
      await provider.kill(s.id).catch(() => false);
      logger.info({ sandboxId: s.id, deploymentId }, 'killed an orphan database sandbox');
    }
    // Gone from the list (killed, expired): nothing left to keep alive.
    for (const id of keeper.heldFor('db')) if (!seen.has(id)) keeper.release(id, 'db');
  }
}
