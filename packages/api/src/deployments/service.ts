/**
 * What a user can do to deployments: create (upload), start, stop, destroy. The router's handlers
 * call these with a row whose ownership the procedure already checked.
 */
import type { EventEmitter } from 'node:events';
import type { Sequelize, Transaction } from '@coderunner/db';
import { TRPCError } from '@trpc/server';
import { lockUser } from '../accounts';
import type { ProjectDatabaseDto } from '../dto';
import type { ProjectEnvStore } from '../env-store';
import { quotaFor } from '../quotas';
import type { Keyring } from '../secrets';
import * as deployments from '../tables/deployments';
import * as projects from '../tables/projects';
import { DatabaseBackupError, type DatabaseBackups } from './database-backups';
import { databaseRefusal } from './database-hooks';
import type { DeploymentEngine } from './engine';
import { countActiveDeployments, insertPending, transition } from './lifecycle';
import type { LogStore } from './log-store';
import type { DeploymentRow } from './row';
import type { SourceStore } from './source-store';
import { inspectArchive, readUpload, type UploadForm, type UploadLimits } from './upload';
import type { UsageSampler } from './usage';

export interface DeploymentServiceDeps {
  sequelize: Sequelize;
  engine: DeploymentEngine;
  sources: SourceStore;
  logs: LogStore;
  /** Emits `<deploymentId>` when its status changes (fed by LISTEN on the status channel). */
  events: EventEmitter;
  /** Decrypts db_connection_info for deployments.databaseCredentials (absent: no databases here). */
  keyring?: Keyring;
  limits: UploadLimits;
  /** Projects' environment variables (a new deployment takes a snapshot of them). */
  projectEnv: ProjectEnvStore;
  /** Logs an unexpected error with the request id the client was told. */
  logError?: (err: unknown, meta: { requestId?: string; path?: string }) => void;
  /** What running apps use (absent or null: not known here). */
  usage?: UsageSampler | null;
  /** Backups of projects' own databases: one is taken before a reset. */
  backups?: DatabaseBackups | null;
  /** The project's database: where it runs, its size and limits (null: the project has none). */
  databaseOf?: (projectId: string) => Promise<Omit<ProjectDatabaseDto, 'lastBackup' | 'backups'> | null>;
}

const conflict = (message: string) => new TRPCError({ code: 'CONFLICT', message });

export class DeploymentService {
  readonly engine: DeploymentEngine;
  readonly sources: SourceStore;
  readonly logs: LogStore;
  readonly events: EventEmitter;
  readonly keyring: Keyring | undefined;
  readonly limits: UploadLimits;
  readonly projectEnv: ProjectEnvStore;
  readonly usage: UsageSampler | null;

  constructor(private readonly deps: DeploymentServiceDeps) {
    this.usage = deps.usage ?? null;
    this.engine = deps.engine;
    this.sources = deps.sources;
    this.logs = deps.logs;
    this.events = deps.events;
    this.keyring = deps.keyring;
    this.limits = deps.limits;
    this.projectEnv = deps.projectEnv;
  }

  /** Store the upload and queue a PENDING deployment of the caller's project; returns at once. */
  async create(userId: string, form: UploadForm, requestId?: string): Promise<DeploymentRow> {
    const { sequelize } = this.deps;
    const upload = await readUpload(form, this.limits);
    // Ownership and quota first (checked again below, in the transaction): unpacking an upload costs
    // this server time and disk, and is not owed to a caller who may not deploy there.
    await sequelize.transaction((transaction) => this.assertMayDeploy(userId, upload.projectId, transaction));
    const plan = await inspectArchive(upload.archive, this.limits, upload.runtime);
    if (upload.database === 'postgres' || plan.database === 'postgres') {
      const refusal = databaseRefusal(this.engine.provider);
      if (refusal) throw new TRPCError({ code: 'PRECONDITION_FAILED', message: refusal });
    }
    const row = await sequelize.transaction(async (transaction) => {
      const projectId = await this.assertMayDeploy(userId, upload.projectId, transaction);
      // The project's variables as they are now, with this deploy's overrides: the deployment keeps them.
      const envSnapshot = this.projectEnv.snapshot(projectId, upload.env);
      const created = await insertPending(sequelize, { projectId, runtimeType: plan.runtime }, transaction);
      this.storeSource(
        created.id,
        upload.archive,
        { runtime: upload.runtime, database: upload.database, ...(upload.noCache ? { noCache: true } : {}) },
        requestId,
        envSnapshot,
      );
      return created;
    });
    this.logs.append(
      row.id,
      'system',
      'info',
      `queued (${(upload.archive.length / 1024).toFixed(1)} KiB upload)`,
      { type: 'queued' },
    );
    this.engine.poke();
    return row;
  }

  /**
   * STOPPED or FAILED → PENDING: rebuilt from the stored source by whichever worker is free, with its
   * environment snapshot and the project's database. Its restart count starts over (a `start` event).
   */
  async start(userId: string, row: DeploymentRow): Promise<DeploymentRow> {
    if (!this.sources.exists(row.id))
      throw conflict('the stored source of this deployment is gone; deploy again');
    const moved = await this.deps.sequelize.transaction(async (transaction) => {
      await this.assertQuota(userId, transaction, row.projectId);
      const newer = await deployments.newerRunning(this.deps.sequelize, row.projectId, row.id, transaction);
      // Started, it would only be replaced again by the newer one: the project serves one version.
      if (newer)
        throw conflict(
          `deployment ${newer.id} is newer and running; to serve this version again, roll back to it (coderunner rollback ${row.id})`,
        );
      const pending = await transition(
        this.deps.sequelize,
        row.id,
        ['STOPPED', 'FAILED'],
        'PENDING',
        { appSandboxId: null },
        transaction,
      );
      if (!pending) {
        const now = await deployments.statusOf(this.deps.sequelize, row.id);
        throw conflict(
          `only a STOPPED or FAILED deployment can be started; this one is ${now?.status ?? row.status}`,
        );
      }
      return pending;
    });
    // `start` (not `queued`): also where the restart policy's count starts over.
    this.logs.append(
      row.id,
      'system',
      'info',
      `starting again from the stored source (it was ${row.status}); restarts are counted afresh`,
      { type: 'start' },
    );
    this.engine.poke();
    return moved;
  }

  /**
   * A new deployment of `row`'s project from `row`'s stored source: `rollback` also with the
   * environment `row` ran with; `redeploy` with the project's variables as they are now. It becomes
   * the project's current deployment once RUNNING (the one it replaces drains, then stops).
   */
  async release(
    userId: string,
    row: DeploymentRow,
    kind: 'rollback' | 'redeploy',
    requestId?: string,
    options: { noCache?: boolean } = {},
  ): Promise<DeploymentRow> {
    const { sequelize } = this.deps;
    if (!this.sources.exists(row.id))
      throw conflict(
        `the stored source of deployment ${row.id} is gone (${row.status === 'DESTROYED' ? 'it was destroyed' : 'it was removed'}); deploy the folder again`,
      );
    const created = await sequelize.transaction(async (transaction) => {
      await this.assertQuota(userId, transaction, row.projectId);
      const pending = await insertPending(
        sequelize,
        { projectId: row.projectId, runtimeType: row.runtimeType },
        transaction,
      );
      try {
        // Rollback: the environment `row` ran with; redeploy: the project's variables now.
        const env = kind === 'redeploy' ? this.projectEnv.snapshot(row.projectId) : undefined;
        this.sources.copy(row.id, pending.id, env, options.noCache ? { noCache: true } : {});
      } catch (err) {
        if (err instanceof TRPCError) throw err;
        if ((err as NodeJS.ErrnoException).code === 'ENOENT')
          throw conflict(`the stored source of deployment ${row.id} is gone; deploy the folder again`);
        this.storeFailed(err, requestId, `deployments.${kind}`);
      }
      return pending;
    });
    this.logs.append(
      created.id,
      'system',
      'info',
      kind === 'rollback'
        ? `queued: rollback to deployment ${row.id} (its source and environment)`
        : `queued: redeploy of deployment ${row.id} (its source, the project's variables now)`,
      { type: 'queued' },
    );
    this.engine.poke();
    return created;
  }

  /** The project's stable URL (it serves the project's current deployment). */
  projectUrl(project: { id: string; name: string }): string {
    return this.engine.projectUrl(project);
  }

  /** RUNNING → STOPPED. */
  async stop(row: DeploymentRow): Promise<void> {
    if (row.status !== 'RUNNING' || !(await this.engine.stopDeployment(row))) {
      const now = await deployments.statusOf(this.deps.sequelize, row.id);
      throw conflict(`only a RUNNING deployment can be stopped; this one is ${now?.status ?? 'DESTROYED'}`);
    }
  }

  /** Any → DESTROYED (idempotent). */
  async destroy(row: DeploymentRow): Promise<void> {
    if (row.status !== 'DESTROYED') await this.engine.destroyDeployment(row);
  }

  /**
   * Deletes the user's project after destroying each of its deployments (apps and builds stopped,
   * databases dropped, sources and logs removed): the rows alone would cascade away and leave all of
   * that running, uncounted by the quota. The project's row is locked while it is checked that none
   * is left, so a deployment created meanwhile waits for it, then finds the project gone. False: no
   * such project.
   */
  async deleteProject(userId: string, projectId: string): Promise<boolean> {
    const { sequelize } = this.deps;
    for (;;) {
      for (const row of await deployments.liveOfProject(sequelize, projectId)) await this.destroy(row);
      // The project's database outlives its deployments, not the project: a last backup of it is
      // kept for DELETED_PROJECT_BACKUPS_DAYS (for the operator: the project is gone from the API).
      await this.backupBeforeDelete(projectId);
      await this.engine.dropProjectDatabases(projectId);
      const outcome = await sequelize.transaction(async (transaction) => {
        if (!(await projects.lockOwned(sequelize, projectId, userId, transaction))) return 'gone';
        if ((await deployments.liveOfProject(sequelize, projectId, transaction)).length) return 'again';
        return (await projects.destroyOwned(userId, projectId, transaction)) ? 'deleted' : 'gone';
      });
      if (outcome === 'deleted')
        await this.engine.provider
          .dropBuildCache?.(projectId)
          .catch((err: unknown) => this.deps.logError?.(err, {}));
      if (outcome !== 'again') return outcome === 'deleted';
    }
  }

  /**
   * Empties the project's database (a new, empty one with the same credentials); the deployment the
   * project URL serves is built again on it. There is no backup to come back to.
   */
  private async backupBeforeDelete(projectId: string): Promise<void> {
    if (!this.deps.backups) return;
    try {
      await this.deps.backups.backup(projectId, 'before-delete');
    } catch (err) {
      // A database that cannot be backed up (its cluster broken) does not keep its project alive.
      if (!(err instanceof DatabaseBackupError && err.code === 'NO_DATABASE')) this.deps.logError?.(err, {});
    }
  }

  /** The project's database with its newest backup, or null when it has none. */
  async database(projectId: string): Promise<ProjectDatabaseDto | null> {
    const db = await this.deps.databaseOf?.(projectId);
    if (!db) return null;
    const backups = db.kind === 'own' && this.deps.backups ? this.deps.backups.list(projectId) : [];
    const newest = backups[0];
    return {
      ...db,
      lastBackup: newest
        ? { id: newest.id, createdAt: newest.createdAt, reason: newest.reason, sizeBytes: newest.sizeBytes }
        : null,
      backups: backups.length,
    };
  }

  async resetDatabase(
    projectId: string,
  ): Promise<{ restarted: string | null; backup: { id: string; sizeBytes: number } | null }> {
    // A backup of what is about to be emptied (a project's own cluster): `db restore` brings it back.
    // No reset without it: a failed backup refuses the reset.
    let backup: { id: string; sizeBytes: number } | null = null;
    if (this.deps.backups) {
      try {
        backup = await this.deps.backups.backup(projectId, 'before-reset');
      } catch (err) {
        if (!(err instanceof DatabaseBackupError && err.code === 'NO_DATABASE')) {
          throw new TRPCError({
            code: 'INTERNAL_SERVER_ERROR',
            message: `the database was not reset: the backup before the reset failed (${(err as Error).message})`,
          });
        }
      }
    }
    const done = await this.engine.resetProjectDatabase(projectId);
    if (!done) {
      throw new TRPCError({
        code: 'PRECONDITION_FAILED',
        message: 'this project has no database; deploy with --database postgres to give it one',
      });
    }
    return { ...done, backup: backup && { id: backup.id, sizeBytes: backup.sizeBytes } };
  }

  /** The user's project `projectId` (NOT_FOUND otherwise), with room in the user's quota. */
  private async assertMayDeploy(
    userId: string,
    projectId: string,
    transaction: Transaction,
  ): Promise<string> {
    const project = await projects.findOwnedId(this.deps.sequelize, projectId, userId, transaction);
    if (!project) throw new TRPCError({ code: 'NOT_FOUND', message: 'project not found' });
    await this.assertQuota(userId, transaction, project.id);
    return project.id;
  }

  /** Serialises the user's quota-checked writes, then counts the deployments holding a sandbox. */
  private async assertQuota(userId: string, transaction: Transaction, replacing: string): Promise<void> {
    const user = await lockUser(userId, transaction);
    const n = await countActiveDeployments(this.deps.sequelize, userId, transaction, replacing);
    const limit = quotaFor(user.planType).activeDeployments;
    if (n >= limit) {
      throw new TRPCError({
        code: 'FORBIDDEN',
        message: `the ${user.planType} plan allows ${limit} running deployment${limit === 1 ? '' : 's'}; stop or destroy one, or upgrade your plan`,
      });
    }
  }

  /** Full or read-only disk: the client is told to come back later (and the operator sees it in the log). */
  private storeSource(
    id: string,
    archive: Buffer,
    options: Parameters<SourceStore['save']>[2],
    requestId: string | undefined,
    env?: Record<string, string>,
  ): void {
    try {
      this.sources.save(id, archive, options, env);
    } catch (err) {
      this.storeFailed(err, requestId, 'deployments.create');
    }
  }

  private storeFailed(err: unknown, requestId: string | undefined, path: string): never {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EROFS' || code === 'EACCES' || code === 'EDQUOT') {
      this.deps.logError?.(err, { requestId, path });
      throw new TRPCError({
        code: 'SERVICE_UNAVAILABLE',
        message: `the server cannot store uploads right now (${code === 'ENOSPC' || code === 'EDQUOT' ? 'its disk is full' : 'its data folder is read-only'}); try again later`,
        cause: err,
      });
    }
    throw err;
  }
}
