import { authRouter } from './routers/auth';
import { healthProcedure } from './routers/health';
import { projectsRouter } from './routers/projects';
import { router } from './trpc';

export const appRouter = router({
  health: healthProcedure,
  auth: authRouter,
  projects: projectsRouter,
});

export type AppRouter = typeof appRouter;
