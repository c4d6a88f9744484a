import { healthProcedure } from './routers/health';
import { router } from './trpc';

export const appRouter = router({
  health: healthProcedure,
});

export type AppRouter = typeof appRouter;
