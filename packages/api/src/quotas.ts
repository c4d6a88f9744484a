import type { PlanType } from '@coderunner/db/enums';

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
