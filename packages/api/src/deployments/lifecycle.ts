import { type DeploymentStatus, QueryTypes, type Sequelize, type Transaction } from '@coderunner/db';

/**
 * Allowed transitions (../shared/docs/DESIGN.md). `start` re-queues a STOPPED deployment as PENDING
 * so that whichever worker is free rebuilds it from its stored source; the reconciler also sends a
 * deployment back to PENDING when its worker died or its local app vanished with a host reboot.
 */
export const TRANSITIONS: Record<DeploymentStatus, readonly DeploymentStatus[]> = {
  PENDING: ['PROVISIONING', 'FAILED', 'DESTROYED'],
  PROVISIONING: ['BUILDING', 'PENDING', 'FAILED', 'DESTROYED'],
  BUILDING: ['RUNNING', 'PENDING', 'FAILED', 'DESTROYED'],
  RUNNING: ['STOPPED', 'PENDING', 'FAILED', 'DESTROYED'],
  STOPPED: ['PENDING', 'DESTROYED'],
  FAILED: ['DESTROYED'],
  DESTROYED: [],
};

/** Statuses whose deployment holds (or is about to hold) a sandbox: these count against the quota. */
export const ACTIVE_STATUSES: readonly DeploymentStatus[] = [
  'PENDING',
  'PROVISIONING',
  'BUILDING',
  'RUNNING',
];

/** How many of a user's deployments hold a sandbox now (what the plan's deployment quota counts). */
export async function countActiveDeployments(
  sequelize: Sequelize,
  userId: string,
  transaction?: Transaction,
): Promise<number> {
  const [row] = await sequelize.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM deployments d JOIN projects p ON p.id = d.project_id
     WHERE p.user_id = :userId AND d.status = ANY(ARRAY[:active]::deployment_status[])`,
    { type: QueryTypes.SELECT, replacements: { userId, active: ACTIVE_STATUSES }, transaction },
  );
  return row?.n ?? 0;
}

export function canTransition(from: DeploymentStatus, to: DeploymentStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Every status from which `to` may be reached. */
export function sourcesOf(to: DeploymentStatus): DeploymentStatus[] {
  return (Object.keys(TRANSITIONS) as DeploymentStatus[]).filter((from) => canTransition(from, to));
}

export const STATUS_CHANNEL = 'coderunner_deployment_status';

export interface TransitionFields {
  appSandboxId?: string | null;
  publicUrl?: string;
  dbSandboxId?: string | null;
  dbConnectionInfo?: Record<string, unknown> | null;
  runtimeType?: string | null;
}

const COLUMNS: Record<keyof TransitionFields, string> = {
  appSandboxId: 'app_sandbox_id',
  publicUrl: 'public_url',
  dbSandboxId: 'db_sandbox_id',
  dbConnectionInfo: 'db_connection_info',
  runtimeType: 'runtime_type',
};

function addSets(fields: TransitionFields, sets: string[], replacements: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const column = COLUMNS[key as keyof TransitionFields];
    if (key === 'publicUrl') {
      sets.push(`${column} = COALESCE(${column}, :${key})`); // a public URL, once given, is the deployment's forever
    } else {
      sets.push(`${column} = :${key}${key === 'dbConnectionInfo' ? '::jsonb' : ''}`);
    }
    replacements[key] = key === 'dbConnectionInfo' && value !== null ? JSON.stringify(value) : value;
  }
}

/**
 * Update columns of `id` only while its status is one of `whileIn` (no status change). With no
 * fields it only bumps updated_at (through the trigger): the worker's heartbeat.
 */
export async function setFields(
  sequelize: Sequelize,
  id: string,
  whileIn: readonly DeploymentStatus[],
  fields: TransitionFields,
): Promise<boolean> {
  const sets = ['status = status'];
  const replacements: Record<string, unknown> = { id, whileIn };
  addSets(fields, sets, replacements);
  const [, count] = (await sequelize.query(
    `UPDATE deployments SET ${sets.join(', ')} WHERE id = :id AND status = ANY(ARRAY[:whileIn]::deployment_status[])`,
    { replacements, type: QueryTypes.UPDATE },
  )) as [unknown, number];
  return count === 1;
}

/**
 * One conditional UPDATE: moves `id` to `to` only if its status is one of `from` (intersected with
 * the statuses allowed to reach `to`). Returns the new row's status, or null when the transition lost
 * a race (the row moved meanwhile or is gone): the caller reports it and never forces it.
 * Notifies STATUS_CHANNEL so watchers and other replicas learn at once.
 */
export async function transition(
  sequelize: Sequelize,
  id: string,
  from: readonly DeploymentStatus[],
  to: DeploymentStatus,
  fields: TransitionFields = {},
  transaction?: Transaction,
): Promise<boolean> {
  const allowed = from.filter((s) => canTransition(s, to));
  if (!allowed.length) return false;
  const sets = ['status = :to'];
  const replacements: Record<string, unknown> = { id, to, allowed };
  addSets(fields, sets, replacements);
  const rows = await sequelize.query<{ id: string }>(
    `WITH moved AS (
       UPDATE deployments SET ${sets.join(', ')}
       WHERE id = :id AND status = ANY(ARRAY[:allowed]::deployment_status[])
       RETURNING id, project_id
     )
     SELECT moved.id, pg_notify('${STATUS_CHANNEL}', moved.id || ':' || :to || ':' || moved.project_id) FROM moved`,
    { type: QueryTypes.SELECT, replacements, transaction },
  );
  return rows.length === 1;
}
