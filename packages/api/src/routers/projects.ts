import { randomUUID } from 'node:crypto';
import { Project, QueryTypes, type Sequelize, type Transaction } from '@coderunner/db';
import { z } from 'zod';
import { lockUser } from '../accounts';
import type { Context } from '../context';
import { currentDeploymentOf } from '../deployments/releases';
import { type ProjectDto, toProjectDto } from '../dto';
import { CURSOR_TS_SQL, pageInput, toPage } from '../pagination';
import { projectIdRange, projectKey } from '../project-url';
import { quotaFor } from '../quotas';
import { protectedProcedure, router, TRPCError } from '../trpc';

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
    const project = await Project.findOne({ where: { id: input.id, userId: ctx.user.id } });
    if (!project) throw projectNotFound();
    return next({ ctx: { project } });
  });

type ProjectRow = { id: string; name: string; description: string | null; createdAt: Date; updatedAt: Date };

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
        : await currentDeploymentOf(ctx.deps.sequelize, p.id),
  });
}

/**
 * An id whose URL key (its first 10 hex digits, see project-url.ts) no project has: project URLs are
 * unique forever. A clash has odds of 1 in 2^40 per existing project; the loop is for certainty.
 */
async function newProjectId(sequelize: Sequelize, transaction: Transaction): Promise<string> {
  for (;;) {
    const id = randomUUID();
    const { lo, hi } = projectIdRange(projectKey(id));
    // Serialises creations that drew the same key (never in practice), so the check below holds.
    await sequelize.query('SELECT pg_advisory_xact_lock(hashtext(:key))', {
      replacements: { key: `project-key:${projectKey(id)}` },
      transaction,
    });
    const [taken] = await sequelize.query('SELECT 1 FROM projects WHERE id BETWEEN :lo AND :hi LIMIT 1', {
      type: QueryTypes.SELECT,
      replacements: { lo, hi },
      transaction,
    });
    if (!taken) return id;
  }
}

async function assertNameFree(
  userId: string,
  projectName: string,
  transaction: Transaction,
  exceptId?: string,
) {
  const taken = await Project.findOne({
    where: { userId, name: projectName },
    transaction,
    attributes: ['id'],
  });
  if (taken && taken.id !== exceptId) {
    throw new TRPCError({ code: 'CONFLICT', message: `you already have a project named "${projectName}"` });
  }
}

export const projectsRouter = router({
  create: protectedProcedure
    .input(z.strictObject({ name, description: description.optional() }))
    .mutation(async ({ ctx, input }) =>
      ctx.deps.sequelize.transaction(async (transaction) => {
        const user = await lockUser(ctx.user.id, transaction);
        const limit = quotaFor(user.planType).projects;
        if ((await Project.count({ where: { userId: user.id }, transaction })) >= limit) {
          throw new TRPCError({
            code: 'FORBIDDEN',
            message: `the ${user.planType} plan allows ${limit} projects; delete one or upgrade your plan`,
          });
        }
        await assertNameFree(user.id, input.name, transaction);
        const project = await Project.create(
          {
            id: await newProjectId(ctx.deps.sequelize, transaction),
            userId: user.id,
            name: input.name,
            description: input.description ?? null,
          },
          { transaction },
        );
        return projectDto(ctx, project, null);
      }),
    ),

  list: protectedProcedure
    .input(z.strictObject(pageInput).optional())
    .query(async ({ ctx, input }): Promise<{ items: ProjectDto[]; nextCursor: string | null }> => {
      const limit = input?.limit ?? 20;
      const cursor = input?.cursor ?? null;
      const rows = await ctx.deps.sequelize.query<
        ProjectRow & { currentDeploymentId: string | null; cursorTs: string }
      >(
        `SELECT id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", ${CURSOR_TS_SQL} AS "cursorTs",
           (SELECT d.id FROM deployments d WHERE d.project_id = projects.id AND d.status = 'RUNNING'
            ORDER BY d.created_at DESC, d.id DESC LIMIT 1) AS "currentDeploymentId"
         FROM projects
         WHERE user_id = :userId ${cursor ? 'AND (created_at, id) < (:cursorTs::timestamptz, :cursorId::uuid)' : ''}
         ORDER BY created_at DESC, id DESC
         LIMIT :take`,
        {
          type: QueryTypes.SELECT,
          replacements: {
            userId: ctx.user.id,
            cursorTs: cursor?.createdAt ?? null,
            cursorId: cursor?.id ?? null,
            take: limit + 1,
          },
        },
      );
      const url = (p: ProjectRow) => ctx.deps.deployments?.projectUrl(p) ?? null;
      return toPage(rows, limit, (p) =>
        toProjectDto(p, { url: url(p), currentDeploymentId: p.currentDeploymentId }),
      );
    }),

  get: ownedProjectProcedure.query(({ ctx }) => projectDto(ctx, ctx.project)),

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
        const [, rows] = await Project.update(changes, {
          where: { id: ctx.project.id, userId: ctx.user.id },
          returning: true,
          transaction,
        });
        const updated = rows[0];
        if (!updated) throw projectNotFound(); // deleted meanwhile
        return projectDto(ctx, updated);
      }),
    ),

  delete: ownedProjectProcedure.mutation(async ({ ctx }): Promise<{ id: string; deleted: true }> => {
    const removed = await Project.destroy({ where: { id: ctx.project.id, userId: ctx.user.id } });
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
