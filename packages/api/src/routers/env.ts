/**
 * A project's environment variables: list (values masked unless `reveal`), set, unset. Owner only:
 * another user's project answers NOT_FOUND exactly like a missing one. Changes apply to deployments
 * created afterwards (each deployment keeps the snapshot it was created with).
 */
import { z } from 'zod';
import type { Context } from '../context';
import { type EnvVars, type ProjectEnvStore, readForUser } from '../env-store';
import { ENV_NAME_PATTERN, envNameProblem, envSetProblem, maskEnvValue } from '../env-vars';
import * as projects from '../tables/projects';
import { protectedProcedure, router, TRPCError } from '../trpc';
import { projectNotFound } from './projects';

export interface EnvItem {
  name: string;
  value: string;
}

function store(ctx: Context): ProjectEnvStore {
  const d = ctx.deps.deployments;
  if (!d)
    throw new TRPCError({ code: 'PRECONDITION_FAILED', message: 'this server does not run deployments' });
  return d.projectEnv;
}

const projectId = z.uuid('must be a project id (UUID)');

/** The caller's project named by `input.projectId`, scoped to the caller in SQL. */
const ownedEnvProcedure = protectedProcedure
  .input(z.object({ projectId }))
  .use(async ({ ctx, input, next }) => {
    const id = await projects.ownedId(ctx.user.id, input.projectId);
    if (!id) throw projectNotFound();
    return next({ ctx: { projectId: id } });
  });

function items(vars: EnvVars, reveal = false): EnvItem[] {
  return Object.keys(vars)
    .sort()
    .map((name) => ({ name, value: reveal ? vars[name]! : maskEnvValue(vars[name]!) }));
}

/**
 * Read-modify-write of the project's file with its row locked (`FOR UPDATE`), so that two calls on
 * two replicas never lose an update; the file is replaced before the lock is released.
 */
async function update(
  ctx: Context & { user: { id: string } },
  id: string,
  change: (vars: Map<string, string>) => void,
): Promise<EnvVars> {
  return ctx.deps.sequelize.transaction(async (transaction) => {
    const row = await projects.lockOwned(ctx.deps.sequelize, id, ctx.user.id, transaction);
    if (!row) throw projectNotFound(); // deleted meanwhile
    const envStore = store(ctx);
    const vars = new Map(Object.entries(readForUser(envStore, row.id)));
    change(vars);
    const next = Object.fromEntries(vars) as EnvVars;
    const problem = envSetProblem(next);
    if (problem) throw new TRPCError({ code: 'BAD_REQUEST', message: problem });
    envStore.write(row.id, next);
    return next;
  });
}

export const envRouter = router({
  /** `{ items: [{ name, value }] }` by name; every value reads `••••••` unless `reveal`. */
  list: ownedEnvProcedure
    .input(z.strictObject({ projectId, reveal: z.boolean().optional() }))
    .query(({ ctx, input }): { items: EnvItem[] } => ({
      items: items(readForUser(store(ctx), ctx.projectId), input.reveal),
    })),

  /** Adds or replaces variables; answers the whole list, masked. */
  set: ownedEnvProcedure
    .input(z.strictObject({ projectId, vars: z.record(z.string(), z.string()) }))
    .mutation(async ({ ctx, input }): Promise<{ items: EnvItem[] }> => {
      const entries = Object.entries(input.vars);
      if (!entries.length)
        throw new TRPCError({ code: 'BAD_REQUEST', message: 'vars: give at least one variable' });
      // Each pair on its own first (the message names it), then the whole set against the limits.
      const problem = envSetProblem(Object.fromEntries(entries));
      if (problem) throw new TRPCError({ code: 'BAD_REQUEST', message: problem });
      const vars = await update(ctx, ctx.projectId, (current) => {
        for (const [name, value] of entries) current.set(name, value);
      });
      return { items: items(vars) };
    }),

  /** Removes variables; names that are not set are ignored and reported in `notSet`. */
  unset: ownedEnvProcedure
    .input(
      z.strictObject({ projectId, names: z.array(z.string()).min(1, 'give at least one name').max(1000) }),
    )
    .mutation(async ({ ctx, input }): Promise<{ items: EnvItem[]; removed: string[]; notSet: string[] }> => {
      for (const name of input.names) {
        if (!ENV_NAME_PATTERN.test(name))
          throw new TRPCError({ code: 'BAD_REQUEST', message: envNameProblem(name)! });
      }
      const removed: string[] = [];
      const notSet: string[] = [];
      const vars = await update(ctx, ctx.projectId, (current) => {
        for (const name of new Set(input.names)) (current.delete(name) ? removed : notSet).push(name);
      });
      return { items: items(vars), removed, notSet };
    }),
});
