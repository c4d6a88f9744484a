/**
 * The deployment engine: one object per process that composes its parts — the worker (queue and
 * builds), the app supervisor (running apps and the proxy's routing) and the reconciler — and offers
 * what the service and the server need. Status changes go through `transition()` in lifecycle.ts.
 */
import type { SandboxProvider } from '@coderunner/sandbox';
import { LRUCache } from 'lru-cache';
import { projectSlug } from '../project-url';
import { type EngineOptions, systemLog } from './context';
import { transition } from './lifecycle';
import { Reconciler } from './reconciler';
import { Releases } from './releases';
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
    this.reconciler = new Reconciler(opts, this.apps, this.releases, isBuilding);
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
    systemLog(this.opts, row.id, 'stopped');
    return true;
  }

  /** Any → DESTROYED: sandboxes, database, stored source and log removed. Idempotent. */
  async destroyDeployment(row: DeploymentRow): Promise<void> {
    const { provider, database, sequelize } = this.opts;
    const moved = await transition(
      sequelize,
      row.id,
      ['PENDING', 'PROVISIONING', 'BUILDING', 'RUNNING', 'STOPPED', 'FAILED'],
      'DESTROYED',
      { appSandboxId: null, dbSandboxId: null, dbConnectionInfo: null },
    );
    this.worker.abort(row.id);
    this.apps.forget(row.id);
    if (row.appSandboxId) await provider.kill(row.appSandboxId);
    // A sandbox created but not yet recorded: found by its metadata.
    for (const s of await provider.list({ metadata: { deploymentId: row.id } }).catch(() => [])) {
      await provider.kill(s.id);
    }
    if (row.dbSandboxId && database) await database.destroy({ id: row.id, dbSandboxId: row.dbSandboxId });
    this.opts.sources.remove(row.id);
    if (moved) await this.opts.logs.remove(row.id);
  }
}
