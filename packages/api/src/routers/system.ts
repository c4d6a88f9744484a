import { publicProcedure, router } from '../trpc';

export const systemRouter = router({
  /**
   * How this server runs deployed apps and who may sign up; the CLI warns before deploying and the
   * dashboard shows a banner when apps are not isolated.
   */
  info: publicProcedure.query(({ ctx }) => ({
    isolation: ctx.deps.system?.isolation ?? ('none' as const),
    signup: ctx.deps.system?.signup ?? ('open' as const),
  })),
});
