import { publicProcedure, router } from '../trpc';

export const systemRouter = router({
  /** How this server runs deployed apps; the CLI warns before deploying when they are not isolated. */
  info: publicProcedure.query(({ ctx }) => ({
    isolation: ctx.deps.system?.isolation ?? ('none' as const),
  })),
});
