import { authRouter } from './routers/auth';
import { deploymentsRouter } from './routers/deployments';
import { envRouter } from './routers/env';
import { healthProcedure } from './routers/health';
import { projectsRouter } from './routers/projects';
import { systemRouter } from './routers/system';
import { router } from './trpc';

export const appRouter = router({
  health: healthProcedure,
  auth: authRouter,
  projects: projectsRouter,
  deployments: deploymentsRouter,
  env: envRouter,
  system: systemRouter,
});

export type AppRouter = typeof appRouter;
