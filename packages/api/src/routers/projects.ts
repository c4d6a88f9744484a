import type { Transaction } from '@coderunner/db';
import { z } from 'zod';
import { lockUser } from '../accounts';
import type { Context } from '../context';
import {
  BACKUP_ID_PATTERN,
  type DatabaseBackup,
  DatabaseBackupError,
  type DatabaseBackups,
} from '../deployments/database-backups';
import { type ProjectDetailDto, type ProjectDto, toProjectDto } from '../dto';
import { pageInput, toPage } from '../pagination';
import { quotaFor } from '../quotas';
import * as deployments from '../tables/deployments';
import type { ProjectRow } from '../tables/projects';
import * as projects from '../tables/projects';
import { createCallerFactory, protectedProcedure, router, TRPCError } from '../trpc';

const name = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters')
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  .refine((n) => !/[\u0000-\u001f\u007f]/.test(n), 'must not contain control characters');
const description = z.string().max(10_000, 'must be at most 10000 characters').nullable();

export const projectNotFound = () => new TRPCError({ code: 'NOT_FOUND', message: 'project not found' });

/**
 * Loads the caller's project named by `input.id`, scoped to the caller in SQL. Another user's project
 * answers exactly like a missing one. Handlers get `ctx.project` and cannot forget the check.
 */
export const ownedProjectProcedure = protectedProcedure
  .input(z.object({ id: z.uuid('must be a project id (UUID)') }))
  .use(async ({ ctx, input, next }) => {
    const project = await projects.findOwned(ctx.user.id, input.id);
    if (!project) throw projectNotFound();
    return next({ ctx: { project } });
  });

/** The project as the API returns it: with its URL and the deployment that URL serves now. */
async function projectDto(
  ctx: Context,
  p: ProjectRow,
  currentDeploymentId?: string | null,
): Promise<ProjectDto> {
  const service = ctx.deps.deployments;
  return toProjectDto(p, {
    url: service ? service.projectUrl(p) : null,
    currentDeploymentId:
      currentDeploymentId !== undefined
        ? currentDeploymentId
        : await deployments.currentOf(ctx.deps.sequelize, p.id),
  });
}

async function assertNameFree(
  userId: string,
  projectName: string,
  transaction: Transaction,
  exceptId?: string,
) {
  const taken = await projects.idByName(userId, projectName, transaction);
  if (taken && taken !== exceptId) {
    throw new TRPCError({ code: 'CONFLICT', message: `you already have a project named "${projectName}"` });
  }
}

/** The server's backups of projects' databases; a server without them says so. */
function backupsOf(ctx: Context): DatabaseBackups {
  const backups = ctx.deps.databaseBackups;
  if (!backups) {
    throw new TRPCError({
      code: 'PRECONDITION_FAILED',
      message: 'this server keeps no database backups (its projects do not run databases of their own)',
    });
  }
  return backups;
}

/** The service's errors as the API answers them (an unexpected one stays INTERNAL_SERVER_ERROR). */
async function answeringBackupErrors<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof DatabaseBackupError)) throw err;
    const code =
      err.code === 'NOT_FOUND'
        ? 'NOT_FOUND'
        : err.code === 'NO_DATABASE'
          ? 'PRECONDITION_FAILED'
          : 'INTERNAL_SERVER_ERROR';
    throw new TRPCError({ code, message: err.message, cause: err });
  }
}

export const backupIdInput = z
  .string()
  .regex(BACKUP_ID_PATTERN, 'must be a backup id as `coderunner db backups <project>` lists them');

export const projectsRouter = router({
  create: protectedProcedure
    .input(z.strictObject({ name, description: description.optional() }))
    .mutation(async ({ ctx, input }) =>
      ctx.deps.sequelize.transaction(async (transaction) => {
        const user = await lockUser(ctx.user.id, transaction);
        const limit = quotaFor(user.planType).projects;
        if ((await projects.countOf(user.id, transaction)) >= limit) {
          throw new TRPCError({
            code: 'FORBIDDEN',
            message: `the ${user.planType} plan allows ${limit} projects; delete one or upgrade your plan`,
          });
        }
        await assertNameFree(user.id, input.name, transaction);
        const project = await projects.create(
          {
            id: await projects.newId(ctx.deps.sequelize, transaction),
            userId: user.id,
            name: input.name,
            description: input.description ?? null,
          },
          transaction,
        );
        return projectDto(ctx, project, null);
      }),
    ),

  list: protectedProcedure
    .input(z.strictObject(pageInput).optional())
    .query(async ({ ctx, input }): Promise<{ items: ProjectDto[]; nextCursor: string | null }> => {
      const limit = input?.limit ?? 20;
      const rows = await projects.listOwned(ctx.deps.sequelize, ctx.user.id, {
        cursor: input?.cursor ?? null,
        take: limit + 1,
      });
      const url = (p: ProjectRow) => ctx.deps.deployments?.projectUrl(p) ?? null;
      return toPage(rows, limit, (p) =>
        toProjectDto(p, { url: url(p), currentDeploymentId: p.currentDeploymentId }),
      );
    }),

  /** The project, with its database (where it runs, its size, limits and newest backup) or null. */
  get: ownedProjectProcedure.query(
    async ({ ctx }): Promise<ProjectDetailDto> => ({
      ...(await projectDto(ctx, ctx.project)),
      database: (await ctx.deps.deployments?.database(ctx.project.id)) ?? null,
    }),
  ),

  update: ownedProjectProcedure
    .input(z.strictObject({ id: z.uuid(), name: name.optional(), description: description.optional() }))
    .mutation(async ({ ctx, input }) =>
      ctx.deps.sequelize.transaction(async (transaction) => {
        const changes: { name?: string; description?: string | null } = {};
        if (input.name !== undefined && input.name !== ctx.project.name) {
          await lockUser(ctx.user.id, transaction);
          await assertNameFree(ctx.user.id, input.name, transaction, ctx.project.id);
          changes.name = input.name;
        }
        if (input.description !== undefined) changes.description = input.description;
        if (!Object.keys(changes).length) return projectDto(ctx, ctx.project);
        const updated = await projects.update(ctx.user.id, ctx.project.id, changes, transaction);
        if (!updated) throw projectNotFound(); // deleted meanwhile
        return projectDto(ctx, updated);
      }),
    ),

  /**
   * Drops the project's database and gives it a new, empty one (same credentials); the deployment the
   * project URL serves is built again on it. A project's own database is backed up first
   * (`backupId`; `db restore` brings it back); one on the shared cluster has no backups (null).
   */
  resetDatabase: ownedProjectProcedure.mutation(
    async ({
      ctx,
    }): Promise<{
      id: string;
      reset: true;
      restartedDeploymentId: string | null;
      backupId: string | null;
    }> => {
      const service = ctx.deps.deployments;
      if (!service)
        throw new TRPCError({ code: 'PRECONDITION_FAILED', message: 'this server runs no deployments' });
      const { restarted, backup } = await service.resetDatabase(ctx.project.id);
      return {
        id: ctx.project.id,
        reset: true,
        restartedDeploymentId: restarted,
        backupId: backup?.id ?? null,
      };
    },
  ),

  /** The backups of the project's database, newest first. */
  databaseBackups: ownedProjectProcedure.query(
    ({ ctx }): Promise<{ id: string; items: DatabaseBackup[] }> =>
      answeringBackupErrors(() => ({ id: ctx.project.id, items: backupsOf(ctx).list(ctx.project.id) })),
  ),

  /** Takes a backup of the project's database now (older ones beyond the plan's count are dropped). */
  backupDatabase: ownedProjectProcedure.mutation(
    ({ ctx }): Promise<DatabaseBackup> =>
      answeringBackupErrors(() => backupsOf(ctx).backup(ctx.project.id, 'manual')),
  ),

  /**
   * Puts the project's database back as it was at a backup, after taking a backup of its current
   * state. Apps connected to it lose their connections while it restarts.
   */
  restoreDatabase: ownedProjectProcedure
    .input(z.strictObject({ id: z.uuid(), backupId: backupIdInput }))
    .mutation(
      ({ ctx, input }): Promise<{ id: string; restored: DatabaseBackup; safetyBackup: DatabaseBackup }> =>
        answeringBackupErrors(async () => ({
          id: ctx.project.id,
          ...(await backupsOf(ctx).restore(ctx.project.id, input.backupId)),
        })),
    ),

  delete: ownedProjectProcedure.mutation(async ({ ctx }): Promise<{ id: string; deleted: true }> => {
    const service = ctx.deps.deployments;
    const removed = service
      ? await service.deleteProject(ctx.user.id, ctx.project.id)
      : await projects.destroyOwned(ctx.user.id, ctx.project.id); // an API without deployments (tests)
    if (!removed) throw projectNotFound();
    // Its environment variables go with it (best effort: a file left behind is sealed and unused).
    try {
      ctx.deps.deployments?.projectEnv.remove(ctx.project.id);
    } catch (err) {
      ctx.deps.logError?.(err, { requestId: ctx.requestId, path: 'projects.delete' });
    }
    return { id: ctx.project.id, deleted: true };
  }),
});

/**
 * The checks of a backup download (the caller's token, the project being the caller's, a server with
 * backups, a backup of that project), for the HTTP route that streams the archive
 * (database-backup-http.ts): the same procedure chain, so the same refusals. Not part of the API.
 */
const backupDownloadRouter = router({
  open: ownedProjectProcedure
    .input(z.strictObject({ id: z.uuid(), backupId: backupIdInput }))
    .query(({ ctx, input }) =>
      answeringBackupErrors(() => backupsOf(ctx).download(ctx.project.id, input.backupId)),
    ),
});
export const createBackupDownloadCaller = createCallerFactory(backupDownloadRouter);
