import { type DeploymentStatus, QueryTypes, type Sequelize, type Transaction } from '@coderunner/db';
import { type DeploymentRow, deploymentColumns } from './row';

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

/**
 * SQL, true when deployment `alias` is its project's current one (RUNNING, and no newer one is): the
 * deployment the project URL serves (see releases.ts).
 */
export function isCurrentSql(alias: string): string {
  return `(${alias}.status = 'RUNNING' AND NOT EXISTS (
    SELECT 1 FROM deployments newer
    WHERE newer.project_id = ${alias}.project_id AND newer.status = 'RUNNING'
      AND (newer.created_at, newer.id) > (${alias}.created_at, ${alias}.id)))`;
}

/**
 * How many of a user's deployments hold a sandbox now (what the plan's deployment quota counts). A
 * RUNNING deployment that a newer one replaced (draining) does not count, nor, with `replacing`, the
 * RUNNING deployment of that project: the deployment about to be queued there will replace it.
 */
export async function countActiveDeployments(
  sequelize: Sequelize,
  userId: string,
  transaction?: Transaction,
  replacing?: string,
): Promise<number> {
  const [row] = await sequelize.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM deployments d JOIN projects p ON p.id = d.project_id
     WHERE p.user_id = :userId AND d.status = ANY(ARRAY[:active]::deployment_status[])
       AND NOT (d.status = 'RUNNING' AND (d.project_id IS NOT DISTINCT FROM CAST(:replacing AS uuid)
                                          OR NOT ${isCurrentSql('d')}))`,
    {
      type: QueryTypes.SELECT,
      replacements: { userId, active: ACTIVE_STATUSES, replacing: replacing ?? null },
      transaction,
    },
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

/** Every status change, as `<id>:<status>:<project id>` (see {@link parseStatusNotification}). */
export const STATUS_CHANNEL = 'coderunner_deployment_status';
/** A deployment became PENDING: workers of every replica wake up and try to claim it. */
export const PENDING_CHANNEL = 'coderunner_deployments_pending';

export interface StatusNotification {
  id: string;
  status: DeploymentStatus;
  projectId: string;
}

/**
 * The select list that announces rows of `alias` (columns as in DeploymentRow): a STATUS_CHANNEL
 * notification `<id>:<status>:<project id>`, and a PENDING_CHANNEL one when the rows are PENDING.
 * The encoder of the payload; {@link parseStatusNotification} is its decoder.
 */
function announce(alias: string, pending: boolean): string {
  const status = `pg_notify('${STATUS_CHANNEL}', ${alias}.id || ':' || ${alias}.status || ':' || ${alias}."projectId") AS "_notified"`;
  return pending ? `${status}, pg_notify('${PENDING_CHANNEL}', ${alias}.id::text) AS "_woke"` : status;
}

/** A row announced by {@link announce}, without the notification columns. */
function withoutAnnouncement(row: DeploymentRow & { _notified?: unknown; _woke?: unknown }): DeploymentRow {
  const { _notified, _woke, ...plain } = row;
  return plain;
}

/** The payload of a STATUS_CHANNEL notification, built by {@link announce}. */
export function parseStatusNotification(payload: string): StatusNotification | null {
  const [id, status, projectId] = payload.split(':');
  if (!id || !status || !projectId) return null;
  return { id, status: status as DeploymentStatus, projectId };
}

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

/** Which row a transition moves: one by id, or the oldest in an allowed status that no one else holds (a claim). */
export type TransitionTarget = string | { oldest: true };

/**
 * The one place a deployment's status is written. One conditional UPDATE: moves the target to `to`
 * only if its status is one of `from` (intersected with the statuses allowed to reach `to`). Returns
 * the moved row, or null when the transition lost a race (the row moved meanwhile or is gone): the
 * caller reports it and never forces it.
 *
 * In the same statement it notifies STATUS_CHANNEL (watchers and other replicas learn at once) and,
 * for PENDING, PENDING_CHANNEL (workers wake up). In a transaction, both are delivered at commit.
 */
export async function transition(
  sequelize: Sequelize,
  target: TransitionTarget,
  from: readonly DeploymentStatus[],
  to: DeploymentStatus,
  fields: TransitionFields = {},
  transaction?: Transaction,
): Promise<DeploymentRow | null> {
  const allowed = from.filter((s) => canTransition(s, to));
  if (!allowed.length) return null;
  const sets = ['status = :to'];
  const replacements: Record<string, unknown> = { to, allowed };
  addSets(fields, sets, replacements);
  const which =
    typeof target === 'string'
      ? 'd.id = :id'
      : `d.id = (SELECT id FROM deployments WHERE status = ANY(ARRAY[:allowed]::deployment_status[])
                 ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)`;
  if (typeof target === 'string') replacements.id = target;
  const rows = await sequelize.query<DeploymentRow>(
    `WITH moved AS (
       UPDATE deployments d SET ${sets.join(', ')}
       WHERE ${which} AND d.status = ANY(ARRAY[:allowed]::deployment_status[])
       RETURNING ${deploymentColumns('d')}
     )
     SELECT moved.*, ${announce('moved', to === 'PENDING')} FROM moved`,
    { type: QueryTypes.SELECT, replacements, transaction },
  );
  return rows[0] ? withoutAnnouncement(rows[0]) : null;
}

/**
 * A new deployment, PENDING from the start: inserted and announced (STATUS_CHANNEL, PENDING_CHANNEL)
 * in one statement. In a transaction, the notifications are delivered at commit.
 */
export async function insertPending(
  sequelize: Sequelize,
  values: { projectId: string; runtimeType: string | null },
  transaction?: Transaction,
): Promise<DeploymentRow> {
  const [row] = await sequelize.query<DeploymentRow>(
    `WITH created AS (
       INSERT INTO deployments AS d (project_id, runtime_type) VALUES (:projectId, :runtimeType)
       RETURNING ${deploymentColumns('d')}
     )
     SELECT created.*, ${announce('created', true)} FROM created`,
    { type: QueryTypes.SELECT, replacements: values, transaction },
  );
  return withoutAnnouncement(row!);
}
