/**
 * The `deployments` table: the only module that writes SQL for it. Queries mainly about deployments
 * that join `projects` (ownership, the quota count) live here too. Raw SQL, not the `Deployment`
 * model: conditional UPDATEs, CTEs and pg_notify. Values go in as escaped replacements (one
 * simple-protocol round trip), not bind parameters.
 *
 * The state machine (which status may follow which) is in deployments/lifecycle.ts, whose
 * `transition()` is the one way to change a status; it calls {@link moveStatus}.
 */
import { type DeploymentStatus, QueryTypes, type Sequelize, type Transaction } from '@coderunner/db';
import type { DeploymentRow } from '../deployments/row';
import { CURSOR_TS_SQL, type Cursor } from '../pagination';
import { type SqlQueryable, sqlSealedColumn } from '../secrets';

/** The select list for a DeploymentRow, columns qualified by `alias` (e.g. 'd') when given. */
export function deploymentColumns(alias?: string): string {
  const t = alias ? `${alias}.` : '';
  return `${t}id, ${t}project_id AS "projectId", ${t}status, ${t}app_sandbox_id AS "appSandboxId",
  ${t}public_url AS "publicUrl", ${t}db_sandbox_id AS "dbSandboxId", ${t}db_connection_info AS "dbConnectionInfo",
  ${t}runtime_type AS "runtimeType", ${t}created_at AS "createdAt", ${t}updated_at AS "updatedAt"`;
}

const ROW_COLUMNS = deploymentColumns();

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

/** A DeploymentRow with `current` (whether the project URL serves it now), as the API returns it. */
const WITH_CURRENT = `${deploymentColumns('d')}, ${isCurrentSql('d')} AS current`;

// ---- Notifications ----

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

// ---- Writes ----

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
  transaction?: Transaction,
): Promise<boolean> {
  const sets = ['status = status'];
  const replacements: Record<string, unknown> = { id, whileIn };
  addSets(fields, sets, replacements);
  const [, count] = (await sequelize.query(
    `UPDATE deployments SET ${sets.join(', ')} WHERE id = :id AND status = ANY(ARRAY[:whileIn]::deployment_status[])`,
    { replacements, type: QueryTypes.UPDATE, transaction },
  )) as [unknown, number];
  return count === 1;
}

/** Which row a transition moves: one by id, or the oldest in an allowed status that no one else holds (a claim). */
export type TransitionTarget = string | { oldest: true };

/**
 * The status write behind lifecycle.ts's `transition()` (call that: it checks the state machine and
 * passes the statuses allowed to reach `to`). One conditional UPDATE: moves the target to `to` only
 * if its status is one of `allowed`. Returns the moved row, or null when it lost a race.
 *
 * In the same statement it notifies STATUS_CHANNEL (watchers and other replicas learn at once) and,
 * for PENDING, PENDING_CHANNEL (workers wake up). In a transaction, both are delivered at commit.
 */
export async function moveStatus(
  sequelize: Sequelize,
  target: TransitionTarget,
  allowed: readonly DeploymentStatus[],
  to: DeploymentStatus,
  fields: TransitionFields,
  transaction?: Transaction,
): Promise<DeploymentRow | null> {
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

/** `fetchBatch` and a conditional `update` over db_connection_info, for `rotateSealedColumn`. */
export function sealedConnectionInfo(db: SqlQueryable): ReturnType<typeof sqlSealedColumn> {
  return sqlSealedColumn(db, { table: 'deployments', column: 'db_connection_info' });
}

// ---- Reads ----

/**
 * How many of a user's deployments in one of the `active` statuses hold a sandbox now (what the
 * plan's deployment quota counts). A RUNNING deployment that a newer one replaced (draining) does not
 * count, nor, with `replacing`, the RUNNING deployment of that project: the deployment about to be
 * queued there will replace it.
 */
export async function countActive(
  sequelize: Sequelize,
  userId: string,
  active: readonly DeploymentStatus[],
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
      replacements: { userId, active, replacing: replacing ?? null },
      transaction,
    },
  );
  return row?.n ?? 0;
}

/** The user's deployment `id` (with `current`), scoped through its project's owner; null for others'. */
export async function findOwned(
  sequelize: Sequelize,
  id: string,
  userId: string,
): Promise<DeploymentRow | null> {
  const [row] = await sequelize.query<DeploymentRow>(
    `SELECT ${WITH_CURRENT} FROM deployments d JOIN projects p ON p.id = d.project_id
     WHERE d.id = :id AND p.user_id = :userId`,
    { type: QueryTypes.SELECT, replacements: { id, userId } },
  );
  return row ?? null;
}

/** Deployment `id` (with `current`), whoever owns it. */
export async function findWithCurrent(sequelize: Sequelize, id: string): Promise<DeploymentRow | null> {
  const [row] = await sequelize.query<DeploymentRow>(
    `SELECT ${WITH_CURRENT} FROM deployments d WHERE d.id = :id`,
    {
      type: QueryTypes.SELECT,
      replacements: { id },
    },
  );
  return row ?? null;
}

/** A page of the user's deployments (with `current`), newest first; `take` rows at most. */
export async function listOwned(
  sequelize: Sequelize,
  userId: string,
  filter: {
    projectId?: string;
    status?: DeploymentStatus;
    cursor: Cursor | null;
    take: number;
  },
): Promise<(DeploymentRow & { cursorTs: string })[]> {
  const { cursor } = filter;
  const where = ['p.user_id = :userId'];
  if (filter.projectId) where.push('d.project_id = :projectId');
  if (filter.status) where.push('d.status = :status');
  if (cursor) where.push('(d.created_at, d.id) < (:cursorTs::timestamptz, :cursorId::uuid)');
  return sequelize.query<DeploymentRow & { cursorTs: string }>(
    `SELECT ${WITH_CURRENT}, ${CURSOR_TS_SQL.replace('created_at', 'd.created_at')} AS "cursorTs"
     FROM deployments d JOIN projects p ON p.id = d.project_id
     WHERE ${where.join(' AND ')}
     ORDER BY d.created_at DESC, d.id DESC LIMIT :take`,
    {
      type: QueryTypes.SELECT,
      replacements: {
        userId,
        projectId: filter.projectId ?? null,
        status: filter.status ?? null,
        cursorTs: cursor?.createdAt ?? null,
        cursorId: cursor?.id ?? null,
        take: filter.take,
      },
    },
  );
}

/** The deployment a project serves now (its newest RUNNING one), or null. */
export async function currentOf(
  sequelize: Sequelize,
  projectId: string,
  transaction?: Transaction,
): Promise<string | null> {
  const [row] = await sequelize.query<{ id: string }>(
    `SELECT id FROM deployments WHERE project_id = :projectId AND status = 'RUNNING'
     ORDER BY created_at DESC, id DESC LIMIT 1`,
    { type: QueryTypes.SELECT, replacements: { projectId }, transaction },
  );
  return row?.id ?? null;
}

/** The project's newest deployment whose app is being (re)started (BUILDING), or null. */
export async function newestBuildingOf(sequelize: Sequelize, projectId: string): Promise<string | null> {
  const [row] = await sequelize.query<{ id: string }>(
    `SELECT id FROM deployments WHERE project_id = :projectId AND status = 'BUILDING'
     ORDER BY created_at DESC, id DESC LIMIT 1`,
    { type: QueryTypes.SELECT, replacements: { projectId } },
  );
  return row?.id ?? null;
}

/** A RUNNING deployment of the project newer than deployment `id`, if any. */
export async function newerRunning(
  sequelize: Sequelize,
  projectId: string,
  id: string,
  transaction?: Transaction,
): Promise<{ id: string } | undefined> {
  const [newer] = await sequelize.query<{ id: string }>(
    `SELECT id FROM deployments WHERE project_id = :projectId AND status = 'RUNNING'
           AND (created_at, id) > (SELECT created_at, id FROM deployments WHERE id = :id) LIMIT 1`,
    {
      type: QueryTypes.SELECT,
      replacements: { projectId, id },
      transaction,
    },
  );
  return newer;
}

/** Deployment `id`'s status now (undefined: gone). */
export async function statusOf(sequelize: Sequelize, id: string): Promise<{ status: string } | undefined> {
  const [now] = await sequelize.query<{ status: string }>('SELECT status FROM deployments WHERE id = :id', {
    type: QueryTypes.SELECT,
    replacements: { id },
  });
  return now;
}

/** Deployment `id`'s status and app sandbox (snake-cased; undefined: gone). */
export async function statusAndApp(
  sequelize: Sequelize,
  id: string,
): Promise<{ app_sandbox_id: string | null; status: string } | undefined> {
  const [row] = await sequelize.query<{ app_sandbox_id: string | null; status: string }>(
    'SELECT status, app_sandbox_id FROM deployments WHERE id = :id',
    { type: QueryTypes.SELECT, replacements: { id } },
  );
  return row;
}

/**
 * Status and app sandbox of the deployment named by a sandbox's metadata: `id` may be any string
 * (compared as text), so a sandbox with a malformed or missing id finds nothing.
 */
export async function statusAndAppOfAnyId(
  sequelize: Sequelize,
  id: string,
): Promise<{ status: string; appSandboxId: string | null } | undefined> {
  const [row] = await sequelize.query<{ status: string; appSandboxId: string | null }>(
    `SELECT status, app_sandbox_id AS "appSandboxId" FROM deployments WHERE id::text = :id`,
    { type: QueryTypes.SELECT, replacements: { id } },
  );
  return row;
}

/** The app sandbox of deployment `id` while it is RUNNING (snake-cased; undefined: not running). */
export async function runningApp(
  sequelize: Sequelize,
  id: string,
  transaction?: Transaction,
): Promise<{ app_sandbox_id: string | null; runtime_type: string | null } | undefined> {
  const [row] = await sequelize.query<{ app_sandbox_id: string | null; runtime_type: string | null }>(
    `SELECT app_sandbox_id, runtime_type FROM deployments WHERE id = :id AND status = 'RUNNING'`,
    { type: QueryTypes.SELECT, replacements: { id }, transaction },
  );
  return row;
}

/** PROVISIONING/BUILDING deployments whose worker has not beaten for `secs` seconds. */
export async function stuck(sequelize: Sequelize, secs: number): Promise<DeploymentRow[]> {
  return sequelize.query<DeploymentRow>(
    `SELECT ${ROW_COLUMNS} FROM deployments
       WHERE status IN ('PROVISIONING', 'BUILDING') AND updated_at < now() - make_interval(secs => :secs)`,
    { type: QueryTypes.SELECT, replacements: { secs } },
  );
}

/** The project's deployments that are not DESTROYED (what deleting the project must tear down). */
export async function liveOfProject(
  sequelize: Sequelize,
  projectId: string,
  transaction?: Transaction,
): Promise<DeploymentRow[]> {
  return sequelize.query<DeploymentRow>(
    `SELECT ${ROW_COLUMNS} FROM deployments WHERE project_id = :projectId AND status <> 'DESTROYED'`,
    { type: QueryTypes.SELECT, replacements: { projectId }, transaction },
  );
}

/** Every RUNNING deployment. */
export async function running(sequelize: Sequelize): Promise<DeploymentRow[]> {
  return sequelize.query<DeploymentRow>(`SELECT ${ROW_COLUMNS} FROM deployments WHERE status = 'RUNNING'`, {
    type: QueryTypes.SELECT,
  });
}

/** Every RUNNING deployment with its app's sandbox (what the usage sampler reads). */
export async function runningSandboxes(
  sequelize: Sequelize,
): Promise<{ id: string; appSandboxId: string }[]> {
  return sequelize.query<{ id: string; appSandboxId: string }>(
    `SELECT id, app_sandbox_id AS "appSandboxId" FROM deployments
       WHERE status = 'RUNNING' AND app_sandbox_id IS NOT NULL`,
    { type: QueryTypes.SELECT },
  );
}

/** A RUNNING deployment that a newer RUNNING one of its project replaced. */
export interface Replaced {
  id: string;
  projectId: string;
  currentId: string;
}

/** The RUNNING deployments a newer RUNNING one replaced (of one project, or of all). */
export async function replaced(sequelize: Sequelize, projectId?: string): Promise<Replaced[]> {
  return sequelize.query<Replaced>(
    `SELECT d.id, d.project_id AS "projectId",
              (SELECT c.id FROM deployments c WHERE c.project_id = d.project_id AND c.status = 'RUNNING'
               ORDER BY c.created_at DESC, c.id DESC LIMIT 1) AS "currentId"
       FROM deployments d
       WHERE d.status = 'RUNNING' AND NOT ${isCurrentSql('d')}
         ${projectId ? 'AND d.project_id = :projectId' : ''}`,
    { type: QueryTypes.SELECT, replacements: { projectId: projectId ?? null } },
  );
}

/** RUNNING deployment `id`'s app sandbox and whether it is current (undefined: not RUNNING). */
export async function runningWithCurrent(
  sequelize: Sequelize,
  id: string,
): Promise<{ appSandboxId: string | null; current: boolean } | undefined> {
  const [row] = await sequelize.query<{ appSandboxId: string | null; current: boolean }>(
    `SELECT app_sandbox_id AS "appSandboxId", ${isCurrentSql('d')} AS current
         FROM deployments d WHERE d.id = :id AND d.status = 'RUNNING'`,
    { type: QueryTypes.SELECT, replacements: { id } },
  );
  return row;
}

// ---- The project's database ----
// A project has at most one database; the schema records it per deployment: db_sandbox_id (unique)
// on the one deployment that holds it, and db_connection_info sealed for each deployment that uses
// it. Each release moves db_sandbox_id onto its own row; the deployment it replaces keeps its
// credentials (its app still uses them while it drains). A destroyed deployment that holds it keeps
// it, so the database outlives its deployments. Callers lock the project's row (projects.lock)
// around reads that decide and the writes that follow.

/** The project's database: the deployment that holds it (undefined: the project has none). */
export async function projectDatabase(
  sequelize: Sequelize,
  projectId: string,
  transaction?: Transaction,
): Promise<{ id: string; dbSandboxId: string; dbConnectionInfo: Record<string, unknown> } | undefined> {
  const [row] = await sequelize.query<{
    id: string;
    dbSandboxId: string;
    dbConnectionInfo: Record<string, unknown>;
  }>(
    `SELECT id, db_sandbox_id AS "dbSandboxId", db_connection_info AS "dbConnectionInfo" FROM deployments
     WHERE project_id = :projectId AND db_sandbox_id IS NOT NULL AND db_connection_info IS NOT NULL
     ORDER BY created_at DESC, id DESC LIMIT 1`,
    { type: QueryTypes.SELECT, replacements: { projectId }, transaction },
  );
  return row;
}

/** The deployment that holds database `dbSandboxId` (whatever its status), or undefined. */
export async function holderOfDatabase(
  sequelize: Sequelize,
  dbSandboxId: string,
): Promise<string | undefined> {
  const [row] = await sequelize.query<{ id: string }>(
    'SELECT id FROM deployments WHERE db_sandbox_id = :dbSandboxId LIMIT 1',
    { type: QueryTypes.SELECT, replacements: { dbSandboxId } },
  );
  return row?.id;
}

/** Database `dbSandboxId` moves from deployment `from` to `to` (with `sealed`, its credentials sealed for `to`). */
export async function handOverDatabase(
  sequelize: Sequelize,
  move: { from: string; to: string; dbSandboxId: string; sealed: Record<string, unknown> },
  whileIn: readonly DeploymentStatus[],
  transaction: Transaction,
): Promise<boolean> {
  // db_sandbox_id is unique: the holder lets go first.
  await sequelize.query('UPDATE deployments SET db_sandbox_id = NULL WHERE id = :from', {
    type: QueryTypes.UPDATE,
    replacements: { from: move.from },
    transaction,
  });
  return setFields(
    sequelize,
    move.to,
    whileIn,
    { dbSandboxId: move.dbSandboxId, dbConnectionInfo: move.sealed },
    transaction,
  );
}

/** A destroyed deployment that does not hold the project's database forgets its credentials. */
export async function forgetDatabaseCredentials(
  sequelize: Sequelize,
  id: string,
  transaction?: Transaction,
): Promise<void> {
  await sequelize.query(
    'UPDATE deployments SET db_connection_info = NULL WHERE id = :id AND db_sandbox_id IS NULL',
    { type: QueryTypes.UPDATE, replacements: { id }, transaction },
  );
}

/** Whether deployment `id` uses a database (it holds one, or was handed it and keeps its credentials). */
export async function usesDatabase(
  sequelize: Sequelize,
  id: string,
  transaction?: Transaction,
): Promise<boolean> {
  const rows = await sequelize.query(
    'SELECT 1 FROM deployments WHERE id = :id AND db_connection_info IS NOT NULL',
    { type: QueryTypes.SELECT, replacements: { id }, transaction },
  );
  return rows.length > 0;
}

/** No deployment of the project uses database `dbSandboxId` any more (it was dropped with the project). */
export async function clearDatabaseOf(
  sequelize: Sequelize,
  projectId: string,
  dbSandboxId: string,
): Promise<void> {
  await sequelize.query(
    `UPDATE deployments SET db_sandbox_id = NULL, db_connection_info = NULL
     WHERE project_id = :projectId AND (db_sandbox_id = :dbSandboxId OR db_sandbox_id IS NULL)`,
    { type: QueryTypes.UPDATE, replacements: { projectId, dbSandboxId } },
  );
}

/** The databases the project's deployments hold, each with the deployment holding it. */
export async function databasesOfProject(
  sequelize: Sequelize,
  projectId: string,
  transaction?: Transaction,
): Promise<{ id: string; dbSandboxId: string }[]> {
  return sequelize.query<{ id: string; dbSandboxId: string }>(
    `SELECT id, db_sandbox_id AS "dbSandboxId" FROM deployments
     WHERE project_id = :projectId AND db_sandbox_id IS NOT NULL`,
    { type: QueryTypes.SELECT, replacements: { projectId }, transaction },
  );
}

/** The databases (ids starting with `prefix`) of projects where a deployment that is not DESTROYED uses one. */
export async function liveDatabaseIds(sequelize: Sequelize, prefix: string): Promise<string[]> {
  const rows = await sequelize.query<{ id: string }>(
    `SELECT DISTINCT h.db_sandbox_id AS id FROM deployments h
      WHERE starts_with(h.db_sandbox_id, :prefix)
        AND EXISTS (SELECT 1 FROM deployments d WHERE d.project_id = h.project_id
                    AND d.status <> 'DESTROYED' AND d.db_connection_info IS NOT NULL)`,
    { type: QueryTypes.SELECT, replacements: { prefix } },
  );
  return rows.map((r) => r.id);
}

/** Projects whose own database (`localpg-…`) a deployment that is not DESTROYED uses: those backed up daily. */
export async function projectsWithLiveDatabase(sequelize: Sequelize): Promise<string[]> {
  const rows = await sequelize.query<{ id: string }>(
    `SELECT DISTINCT h.project_id AS id FROM deployments h
      WHERE starts_with(h.db_sandbox_id, 'localpg-')
        AND EXISTS (SELECT 1 FROM deployments d WHERE d.project_id = h.project_id
                    AND d.status <> 'DESTROYED' AND d.db_connection_info IS NOT NULL)`,
    { type: QueryTypes.SELECT },
  );
  return rows.map((r) => r.id);
}

/** Whether a deployment that is not DESTROYED uses a database (`prefix`: of that provider's ids). */
export async function anyLiveHoldsDatabase(sequelize: Sequelize, prefix: string): Promise<boolean> {
  const rows = await sequelize.query(
    `SELECT 1 FROM deployments d WHERE d.status <> 'DESTROYED' AND d.db_connection_info IS NOT NULL
       AND EXISTS (SELECT 1 FROM deployments h WHERE h.project_id = d.project_id
                   AND starts_with(h.db_sandbox_id, :prefix))
     LIMIT 1`,
    { type: QueryTypes.SELECT, replacements: { prefix } },
  );
  return rows.length > 0;
}
