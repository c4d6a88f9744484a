import { QueryTypes } from '@coderunner/db';
import { publicProcedure } from '../trpc';

/** `{ status: 'ok', database: true, time }` when the database answers. */
export const healthProcedure = publicProcedure.query(async ({ ctx }) => {
  await ctx.deps.sequelize.query('SELECT 1', { type: QueryTypes.SELECT });
  return { status: 'ok' as const, database: true, time: new Date() };
});
