/**
 * Backups of a project's database, which runs in a PostgreSQL cluster of its own: taken on demand,
 * before releases, daily and before a restore or reset; listed, restored, downloaded; kept by the
 * owner's plan. Stored under `<data dir>/backups/<project id>/` as `<id>.tar.gz` with `<id>.json`
 * beside it (no table: the schema is fixed). One operation per project at a time.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Sequelize } from '@coderunner/db';
import { PLAN_TYPES, type PlanType } from '@coderunner/db/enums';
import {
  BackupError,
  backupCluster,
  listBackups,
  pruneBackups,
  restoreCluster,
  type StoredBackup,
} from '@coderunner/embedded-postgres';
import { ownerPlan } from '../tables/projects';

/** The project's cluster as the backups need it (what the per-project database runtime provides). */
export interface BackupTarget {
  /** The PostgreSQL data folder (the one holding PG_VERSION). */
  dataDir: string;
  superuserUrl: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** The project's cluster, or undefined when the project has no database. */
export type ClusterOf = (projectId: string) => Promise<BackupTarget | undefined>;

export const BACKUP_REASONS = [
  'manual',
  'release',
  'daily',
  'before-restore',
  'before-reset',
  'before-delete',
] as const;
export type BackupReason = (typeof BACKUP_REASONS)[number];

export const DEFAULT_BACKUPS_KEPT: Record<PlanType, number> = { free: 3, personal: 7, team: 30 };

/** `CODERUNNER_DB_BACKUPS_KEEP_FREE` / `_PERSONAL` / `_TEAM`: backups kept per project for each plan. */
export function backupsKeptFromEnv(env: NodeJS.ProcessEnv): Record<PlanType, number> {
  const kept = { ...DEFAULT_BACKUPS_KEPT };
  for (const plan of PLAN_TYPES) {
    const name = `CODERUNNER_DB_BACKUPS_KEEP_${plan.toUpperCase()}`;
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number ≥ 1 (got "${raw}")`);
    kept[plan] = n;
  }
  return kept;
}

export type DatabaseBackupErrorCode = 'NO_DATABASE' | 'NOT_FOUND' | 'FAILED';

export class DatabaseBackupError extends Error {
  override name = 'DatabaseBackupError';
  readonly code: DatabaseBackupErrorCode;
  constructor(code: DatabaseBackupErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** A backup as the API shows it. */
export interface DatabaseBackup {
  id: string;
  createdAt: Date;
  reason: BackupReason | 'unknown';
  sizeBytes: number;
  postgresVersion: string;
  databases: string[];
  sha256: string;
}

function toDto(b: StoredBackup): DatabaseBackup {
  const reason = b.extra?.reason;
  return {
    id: b.id,
    createdAt: new Date(b.createdAt),
    reason: BACKUP_REASONS.includes(reason as BackupReason) ? (reason as BackupReason) : 'unknown',
    sizeBytes: b.sizeBytes,
    postgresVersion: b.postgresVersion,
    databases: b.databases,
    sha256: b.sha256,
  };
}

/** What a backup id looks like: nothing that could name another folder. */
export const BACKUP_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export interface DatabaseBackupsOptions {
  /** The server's data folder; backups go to `<dataDir>/backups/<project id>/`. */
  dataDir: string;
  clusterOf: ClusterOf;
  /** Reads the owner's plan (retention). */
  sequelize: Sequelize;
  /** Backups kept per project for each plan (default free 3, personal 7, team 30). */
  kept?: Record<PlanType, number>;
}

export class DatabaseBackups {
  private readonly root: string;
  private readonly kept: Record<PlanType, number>;
  private readonly busy = new Map<string, Promise<unknown>>();
  private readonly opts: DatabaseBackupsOptions;

  constructor(opts: DatabaseBackupsOptions) {
    this.opts = opts;
    this.root = path.join(opts.dataDir, 'backups');
    this.kept = opts.kept ?? DEFAULT_BACKUPS_KEPT;
  }

  /** Where project `projectId`'s backups are. */
  folderOf(projectId: string): string {
    return path.join(this.root, projectId);
  }

  /** Projects that have a backup folder (deleted ones included, until `removeAll`). */
  projectIds(): string[] {
    try {
      return fs.readdirSync(this.root).filter((name) => /^[0-9a-f-]{36}$/.test(name));
    } catch {
      return [];
    }
  }

  /** Deletes every backup of a project (one deleted long enough ago). */
  removeAll(projectId: string): void {
    fs.rmSync(this.folderOf(projectId), { recursive: true, force: true });
  }

  list(projectId: string): DatabaseBackup[] {
    return listBackups(this.folderOf(projectId)).map(toDto);
  }

  /** Takes a backup of the project's database now, then drops the oldest beyond the plan's count. */
  backup(projectId: string, reason: BackupReason): Promise<DatabaseBackup> {
    return this.exclusive(projectId, async () => {
      const target = await this.targetOf(projectId);
      const taken = await this.take(projectId, target, reason);
      await this.prune(projectId);
      return toDto(taken);
    });
  }

  /**
   * Puts the project's database back as it was at backup `backupId`: a backup of the current state
   * first (`before-restore`), the cluster stopped, the backup's data folder swapped in, the cluster
   * started. When the restored cluster does not start, the previous data folder is put back and
   * started again, and the error says so.
   */
  restore(
    projectId: string,
    backupId: string,
  ): Promise<{ restored: DatabaseBackup; safetyBackup: DatabaseBackup }> {
    return this.exclusive(projectId, async () => {
      const target = await this.targetOf(projectId);
      const chosen = this.find(projectId, backupId);
      const safety = await this.take(projectId, target, 'before-restore');
      await target.stop();
      let restored: Awaited<ReturnType<typeof restoreCluster>>;
      try {
        restored = await restoreCluster({ clusterDir: target.dataDir, archive: chosen.archive });
      } catch (err) {
        await target.start(); // nothing was changed: the current database serves again
        throw failed(err);
      }
      try {
        await target.start();
      } catch (startErr) {
        await target.stop().catch(() => {});
        await restored.rollback();
        try {
          await target.start();
        } catch (again) {
          throw new DatabaseBackupError(
            'FAILED',
            `backup ${backupId} did not start (${(startErr as Error).message}); the previous data was put back but did not start either (${(again as Error).message})`,
          );
        }
        throw new DatabaseBackupError(
          'FAILED',
          `backup ${backupId} did not start (${(startErr as Error).message}); the database was put back as it was before the restore`,
        );
      }
      await restored.commit();
      await this.prune(projectId);
      return { restored: toDto(chosen), safetyBackup: toDto(safety) };
    });
  }

  /** The backup's archive, to stream to its owner. */
  download(
    projectId: string,
    backupId: string,
  ): { backup: DatabaseBackup; filename: string; sizeBytes: number; open(): fs.ReadStream } {
    const found = this.find(projectId, backupId);
    return {
      backup: toDto(found),
      filename: `coderunner-db-${projectId.slice(0, 8)}-${found.id}.tar.gz`,
      sizeBytes: found.sizeBytes,
      open: () => fs.createReadStream(found.archive),
    };
  }

  private find(projectId: string, backupId: string): StoredBackup {
    const found = BACKUP_ID_PATTERN.test(backupId)
      ? listBackups(this.folderOf(projectId)).find((b) => b.id === backupId)
      : undefined;
    if (!found) {
      throw new DatabaseBackupError(
        'NOT_FOUND',
        `this project has no backup "${backupId}"; list its backups with \`coderunner db backups <project>\``,
      );
    }
    return found;
  }

  private async targetOf(projectId: string): Promise<BackupTarget> {
    const target = await this.opts.clusterOf(projectId);
    if (!target) {
      throw new DatabaseBackupError(
        'NO_DATABASE',
        'this project has no database to back up: deploy it with `--database postgres` first',
      );
    }
    return target;
  }

  private async take(projectId: string, target: BackupTarget, reason: BackupReason): Promise<StoredBackup> {
    const dir = this.folderOf(projectId);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stamp = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z');
    let id = `${stamp}-${reason}`;
    for (let n = 2; fs.existsSync(path.join(dir, `${id}.json`)); n++) id = `${stamp}-${reason}-${n}`;
    try {
      return await backupCluster({
        superuserUrl: target.superuserUrl,
        clusterDir: target.dataDir,
        destFile: path.join(dir, `${id}.tar.gz`),
        label: `coderunner ${projectId} ${reason}`,
        extra: { reason, projectId },
      });
    } catch (err) {
      throw failed(err);
    }
  }

  private async prune(projectId: string): Promise<void> {
    const plan = (await ownerPlan(this.opts.sequelize, projectId))?.plan_type;
    const keep = this.kept[plan as PlanType] ?? this.kept.free;
    pruneBackups(this.folderOf(projectId), keep);
  }

  private exclusive<T>(projectId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.busy.get(projectId) ?? Promise.resolve();
    const run = previous.catch(() => {}).then(fn);
    const tail = run.catch(() => {});
    this.busy.set(projectId, tail);
    void tail.then(() => {
      if (this.busy.get(projectId) === tail) this.busy.delete(projectId);
    });
    return run;
  }
}

function failed(err: unknown): DatabaseBackupError {
  if (err instanceof DatabaseBackupError) return err;
  const message =
    err instanceof BackupError ? err.message : `the database backup failed: ${(err as Error).message}`;
  return new DatabaseBackupError('FAILED', message);
}
