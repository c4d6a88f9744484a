/**
 * Releases: a project serves one deployment at its stable URL, its *current* one — the newest RUNNING
 * deployment (a rollback or redeploy creates a new, newest deployment). A newer deployment becoming
 * RUNNING takes the project URL over at once; the ones it replaced keep running for a drain period
 * (requests in flight finish) and are then stopped. Everything here is derived from the deployments
 * table, so every replica agrees, and a restart in the middle of a drain only restarts the drain.
 */
import { LRUCache } from 'lru-cache';
import * as deployments from '../tables/deployments';
import * as projects from '../tables/projects';
import { type EngineOptions, systemLog } from './context';
import type { AppSupervisor } from './supervision';

export class Releases {
  /** project key → project id (null: no such project), for the proxy. */
  private readonly projects = new LRUCache<string, { id: string | null }>({ max: 10_000, ttl: 60_000 });
  /** project id → its current deployment; dropped on every status change of the project (and after 5 s). */
  private readonly current = new LRUCache<string, { id: string | null }>({ max: 10_000, ttl: 5_000 });
  /** Bumped by every change: a lookup that started before a change does not cache its (stale) answer. */
  private generation = 0;
  /** Replaced deployments waiting for their drain to end, by id. */
  private readonly retiring = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly opts: EngineOptions,
    private readonly apps: AppSupervisor,
    private readonly stop: (row: { id: string; appSandboxId: string | null }) => Promise<boolean>,
  ) {}

  /** A deployment of the project changed status (here or, through LISTEN, on another replica). */
  changed(projectId: string): void {
    this.generation++;
    this.current.delete(projectId);
  }

  /** Where the proxy sends a request for the project URL with this key: its current deployment's app. */
  async resolveProject(key: string): Promise<string | null> {
    const projectId = await this.projectOfKey(key);
    if (!projectId) return null;
    const cached = this.current.get(projectId);
    const deploymentId = cached ? cached.id : await this.lookUpCurrent(projectId);
    if (!deploymentId) return null;
    const target = await this.apps.resolve(deploymentId);
    if (target || !cached) return target;
    // Cached, but no longer running (a change we have not heard of yet): ask the database once more.
    this.changed(projectId);
    const fresh = await this.lookUpCurrent(projectId);
    return fresh && fresh !== deploymentId ? this.apps.resolve(fresh) : null;
  }

  private async lookUpCurrent(projectId: string): Promise<string | null> {
    const generation = this.generation;
    const id = await deployments.currentOf(this.opts.sequelize, projectId);
    if (generation === this.generation) this.current.set(projectId, { id });
    return id;
  }

  async projectOfKey(key: string): Promise<string | null> {
    const known = this.projects.get(key);
    if (known) return known.id;
    const ids = await projects.idsWithKey(this.opts.sequelize, key);
    // Two projects with one key (only possible for projects created before keys were checked): neither.
    const id = ids.length === 1 ? ids[0]! : null;
    this.projects.set(key, { id });
    return id;
  }

  /**
   * A deployment of `projectId` became RUNNING (or the reconciler looks at every project): each RUNNING
   * deployment that a newer RUNNING one replaced is stopped once the drain period has passed.
   */
  async retireReplaced(projectId?: string): Promise<void> {
    if (projectId) this.changed(projectId);
    const replaced = await deployments.replaced(this.opts.sequelize, projectId);
    for (const row of replaced) this.retire(row);
  }

  /** Whether this deployment is being drained (replaced; stopped when its drain ends). */
  isRetiring(id: string): boolean {
    return this.retiring.has(id);
  }

  private retire(row: deployments.Replaced): void {
    if (this.retiring.has(row.id)) return;
    const drainMs = this.opts.redeployDrainMs;
    systemLog(
      this.opts,
      row.id,
      `replaced by deployment ${row.currentId}: stopping after a ${(drainMs / 1000).toFixed(0)} s drain`,
    );
    const timer = setTimeout(() => {
      this.finishRetiring(row.id).catch((err) =>
        this.opts.logger.warn({ err, deploymentId: row.id }, 'cannot stop a replaced deployment'),
      );
    }, drainMs);
    timer.unref();
    this.retiring.set(row.id, timer);
  }

  private async finishRetiring(id: string): Promise<void> {
    try {
      const row = await deployments.runningWithCurrent(this.opts.sequelize, id);
      // Gone, stopped by its owner, or current again (the newer one failed or was stopped meanwhile).
      if (!row || row.current) return;
      await this.stop({ id, appSandboxId: row.appSandboxId });
    } finally {
      this.retiring.delete(id);
    }
  }

  /** This process stops: drains in progress are finished by the next reconciler (here or elsewhere). */
  close(): void {
    for (const timer of this.retiring.values()) clearTimeout(timer);
    this.retiring.clear();
  }
}
