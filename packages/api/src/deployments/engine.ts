/**
 * The deployment engine: one object per process that composes its parts — the worker (queue and
 * builds), the app supervisor (running apps and the proxy's routing) and the reconciler — and offers
 * what the service and the server need. Status changes go through `transition()` in lifecycle.ts.
 */
import type { SandboxProvider } from '@coderunner/sandbox';
import { LRUCache } from 'lru-cache';
import { projectSlug } from '../project-url';
import * as deployments from '../tables/deployments';
import * as projects from '../tables/projects';
import { type EngineOptions, systemEvent } from './context';
import { transition } from './lifecycle';
import { Reconciler } from './reconciler';
import { Releases } from './releases';
import { restartState } from './restart-policy';
import type { DeploymentRow } from './row';
import { AppSupervisor } from './supervision';
import { Worker } from './worker';

export type { DatabaseHooks, EngineLogger, EngineOptions } from './context';

export class DeploymentEngine {
  private readonly worker: Worker;
  private readonly apps: AppSupervisor;
  private readonly reconciler: Reconciler;
  private readonly releases: Releases;
  private readonly projectSlugs = new LRUCache<string, string>({ max: 10_000 });
  private timer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(private readonly opts: EngineOptions) {
    const isBuilding = (id: string) => this.worker.isBuilding(id);
    this.apps = new AppSupervisor(opts, isBuilding);
    this.releases = new Releases(opts, this.apps, (row) => this.stopDeployment(row));
    this.worker = new Worker(opts, this.apps, this.releases);
    // A BUILDING row is this process's while it builds it or restarts its app.
    this.reconciler = new Reconciler(
      opts,
      this.apps,
      this.releases,
      (id) => isBuilding(id) || this.apps.isRestarting(id),
    );
  }

  get provider(): SandboxProvider {
    return this.opts.provider;
  }

  /** Start the workers, the LISTEN wake-ups and the reconciler. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.worker.start();
    await this.reconcile().catch((err) => this.opts.logger.error({ err }, 'reconcile failed'));
    this.timer = setInterval(() => {
      this.reconcile().catch((err) => this.opts.logger.error({ err }, 'reconcile failed'));
    }, this.opts.reconcileIntervalMs);
  }

  /** Stop claiming work; deployments in flight are abandoned to the reconciler (of this or another replica). */
  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.timer);
    this.releases.close();
    this.apps.close();
    await this.worker.stop();
  }

  /** Wake idle workers (a deployment was queued). */
  poke(): void {
    this.worker.poke();
  }

  claim(): Promise<DeploymentRow | null> {
    return this.worker.claim();
  }

  process(row: DeploymentRow): Promise<void> {
    return this.worker.process(row);
  }

  async reconcile(): Promise<void> {
    await this.reconciler.reconcile();
    this.worker.poke(); // what it queued again
  }

  waitIdle(): Promise<void> {
    return this.worker.waitIdle();
  }

  /** Where the local proxy should send a request for this deployment's public URL. */
  resolveApp(id: string): Promise<string | null> {
    return this.apps.resolve(id);
  }

  /**
   * Whether the app behind a deployment's or a project's URL (`key`) is being restarted after it
   * exited, and in how many seconds it is tried again (for the proxy's 503 and Retry-After); null: not.
   */
  async restartingIn(route: { kind: 'deployment' | 'project'; name: string }): Promise<number | null> {
    const { sequelize, logs } = this.opts;
    let id: string | null = route.name;
    if (route.kind === 'project') {
      const projectId = await this.releases.projectOfKey(route.name);
      id = projectId ? await deployments.newestBuildingOf(sequelize, projectId) : null;
    } else if ((await deployments.statusOf(sequelize, route.name))?.status !== 'BUILDING') id = null;
    if (!id) return null;
    const { pending } = await restartState(logs, id, Number.POSITIVE_INFINITY);
    if (!pending) return null;
    return Math.max(1, Math.ceil((pending.at.getTime() + pending.delayMs - Date.now()) / 1000));
  }

  /** The project's stable URL (its slug remembered by id and name: projects.list asks for a page of them per call). */
  projectUrl(project: { id: string; name: string }): string {
    const key = `${project.id}/${project.name}`;
    let slug = this.projectSlugs.get(key);
    if (slug === undefined) {
      slug = projectSlug(project);
      this.projectSlugs.set(key, slug);
    }
    return this.opts.projectUrlFor(slug);
  }

  /** Where the proxy should send a request for a project's URL (`key`: see ../project-url.ts). */
  resolveProject(key: string): Promise<string | null> {
    return this.releases.resolveProject(key);
  }

  /**
   * A deployment's status changed, here or on another replica (the status LISTEN): the project's
   * routing is looked up again, and an app that ended is no longer a proxy target.
   */
  statusChanged(change: { id: string; status: string; projectId: string }): void {
    this.releases.changed(change.projectId);
    if (change.status === 'STOPPED' || change.status === 'FAILED' || change.status === 'DESTROYED')
      this.apps.forget(change.id);
  }

  /** RUNNING → STOPPED: the app and its sandbox go; source and database stay for `start`. */
  async stopDeployment(row: { id: string; appSandboxId: string | null }): Promise<boolean> {
    if (!(await transition(this.opts.sequelize, row.id, ['RUNNING'], 'STOPPED', { appSandboxId: null })))
      return false;
    this.apps.forget(row.id);
    if (row.appSandboxId) await this.opts.provider.kill(row.appSandboxId);
    systemEvent(this.opts, row.id, { type: 'stopped' }, 'stopped');
    return true;
  }

  /**
   * Any → DESTROYED: sandboxes, stored source and log removed. Idempotent. The project's database is
   * never dropped here (deleting the project does that; `db reset` empties it).
   */
  async destroyDeployment(row: DeploymentRow): Promise<void> {
    const { provider, sequelize } = this.opts;
    const moved = await transition(
      sequelize,
      row.id,
      ['PENDING', 'PROVISIONING', 'BUILDING', 'RUNNING', 'STOPPED', 'FAILED'],
      'DESTROYED',
      { appSandboxId: null },
    );
    this.worker.abort(row.id);
    this.apps.forget(row.id);
    if (row.appSandboxId) await provider.kill(row.appSandboxId);
    // A sandbox created but not yet recorded: found by its metadata. A database sandbox carries the
    // id of the deployment that created it, but belongs to the project: it stays.
    for (const s of await provider.list({ metadata: { deploymentId: row.id } }).catch(() => [])) {
      if (s.metadata.role !== 'db') await provider.kill(s.id);
    }
    await this.releaseDatabase(row.id);
    this.opts.sources.remove(row.id);
    this.opts.staticSites?.remove(row.id);
    if (moved) await this.opts.logs.remove(row.id);
  }

  /**
   * A destroyed deployment that holds the project's database keeps it (for the project's next
   * deployment); one that was handed it on forgets the credentials it kept.
   */
  private async releaseDatabase(id: string): Promise<void> {
    await deployments.forgetDatabaseCredentials(this.opts.sequelize, id);
  }

  /**
   * Empties the project's database (dropped and created again; same connection info). The app the
   * project URL serves stops first and is then built again from its source, so that it starts on the
   * empty database instead of failing on connections cut under it. Null: the project has no database.
   */
  async resetProjectDatabase(projectId: string): Promise<{ restarted: string | null } | null> {
    const { sequelize, database, provider } = this.opts;
    let requeued: DeploymentRow | null = null;
    try {
      return await sequelize.transaction(async (transaction) => {
        // Builds of the project wait here (they take the project's database under this lock).
        if (!(await projects.lock(sequelize, projectId, transaction))) return null;
        const held = await deployments.projectDatabase(sequelize, projectId, transaction);
        if (!held) return null;
        if (!database) throw new Error('this server has no database provider configured');
        const current = await deployments.currentOf(sequelize, projectId, transaction);
        const app = current ? await deployments.runningApp(sequelize, current, transaction) : undefined;
        if (current && (await deployments.usesDatabase(sequelize, current, transaction))) {
          requeued = await transition(
            sequelize,
            current,
            ['RUNNING'],
            'PENDING',
            { appSandboxId: null },
            transaction,
          );
          this.apps.forget(current);
          if (app?.app_sandbox_id) {
            this.apps.expectExit(app.app_sandbox_id);
            await provider.kill(app.app_sandbox_id).catch(() => false);
          }
        }
        await database.reset(held);
        if (requeued)
          systemEvent(
            this.opts,
            requeued.id,
            { type: 'queued' },
            "the project's database was reset; starting the app again on the empty database",
          );
        return { restarted: requeued ? (requeued as DeploymentRow).id : null };
      });
    } catch (err) {
      // Its app is gone already: build it again rather than leave it RUNNING with nothing behind it.
      if (requeued) {
        const id = (requeued as DeploymentRow).id;
        if (await transition(sequelize, id, ['RUNNING'], 'PENDING', { appSandboxId: null }).catch(() => null))
          systemEvent(
            this.opts,
            id,
            { type: 'queued' },
            'the app was stopped for a database reset that failed; starting it again',
          );
      }
      throw err;
    } finally {
      this.worker.poke();
    }
  }

  /**
   * Drops every database the project's deployments hold (deleting the project). Each is dropped
   * before the rows let go of it, so a failure leaves it recorded, and found again by the next try.
   */
  async dropProjectDatabases(projectId: string): Promise<void> {
    const { sequelize, database } = this.opts;
    const held = await deployments.databasesOfProject(sequelize, projectId);
    if (!held.length) return;
    if (!database) throw new Error('this server has no database provider configured');
    for (const { id, dbSandboxId } of held) {
      await database.destroy({ id, dbSandboxId });
      await deployments.clearDatabaseOf(sequelize, projectId, dbSandboxId);
    }
  }
}
