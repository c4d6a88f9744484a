import { type PlanType, type Transaction, User } from '@coderunner/db';
import { TRPCError } from '@trpc/server';

/** What each plan may hold at once. The one place these numbers live. */
export const PLAN_QUOTAS: Record<PlanType, { projects: number; activeDeployments: number }> = {
  free: { projects: 3, activeDeployments: 1 },
  personal: { projects: 20, activeDeployments: 5 },
  team: { projects: 100, activeDeployments: 50 },
};

/** Unknown plan names (edited by hand in the database) get the free plan's limits. */
export function quotaFor(plan: string) {
  return PLAN_QUOTAS[plan as PlanType] ?? PLAN_QUOTAS.free;
}

/**
 * Name uniqueness per user and the plan quotas have no constraint in the schema, so writes that can
 * break them serialise on the user's row (SELECT ... FOR UPDATE) inside their transaction.
 */
export async function lockUser(userId: string, transaction: Transaction): Promise<User> {
  const user = await User.findByPk(userId, { transaction, lock: transaction.LOCK.UPDATE });
  if (!user) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'the account no longer exists' });
  return user;
}
