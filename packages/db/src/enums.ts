/**
 * The schema's enumerations, as values. This module imports nothing, so that clients (the CLI, the
 * dashboard, through `@coderunner/api/client`) can use the same lists without any server code.
 */

export const PLAN_TYPES = ['free', 'personal', 'team'] as const;
export type PlanType = (typeof PLAN_TYPES)[number];

/** The `deployment_status` enum, in the schema's order (which is also the lifecycle's). */
export const DEPLOYMENT_STATUSES = [
  'PENDING',
  'PROVISIONING',
  'BUILDING',
  'RUNNING',
  'STOPPED',
  'FAILED',
  'DESTROYED',
] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];

/** The runtimes a deploy may ask for. */
export const RUNTIME_TYPES = ['nodejs', 'python', 'manifest'] as const;
export type RuntimeType = (typeof RUNTIME_TYPES)[number];
/** `deployments.runtime_type`: what was asked for or detected; `static` is a site of files CodeRunner serves. */
export type DeployedRuntimeType = RuntimeType | 'static';
