import { Project, QueryTypes, type Transaction, User } from '@coderunner/db';
import { z } from 'zod';
import { lockUser } from '../accounts';
import { type ProjectDto, toProjectDto } from '../dto';
import { CURSOR_TS_SQL, pageInput, toPage } from '../pagination';
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
          { userId: user.id, name: input.name, description: input.description ?? null },
          { transaction },
        );
        return toProjectDto(project);
      }),
    ),

  list: protectedProcedure
    .input(z.strictObject(pageInput).optional())
    .query(async ({ ctx, input }): Promise<{ items: ProjectDto[]; nextCursor: string | null }> => {
      const limit = input?.limit ?? 20;
      const cursor = input?.cursor ?? null;
      const rows = await ctx.deps.sequelize.query<ProjectDto & { cursorTs: string }>(
        `SELECT id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", ${CURSOR_TS_SQL} AS "cursorTs"
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
      return toPage(rows, limit, toProjectDto);
    }),

  get: ownedProjectProcedure.query(({ ctx }) => toProjectDto(ctx.project)),

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
        if (!Object.keys(changes).length) return toProjectDto(ctx.project);
        const [, rows] = await Project.update(changes, {
          where: { id: ctx.project.id, userId: ctx.user.id },
          returning: true,
          transaction,
        });
        const updated = rows[0];
        if (!updated) throw projectNotFound(); // deleted meanwhile
        return toProjectDto(updated);
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
