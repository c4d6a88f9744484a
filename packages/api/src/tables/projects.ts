/**
 * The `projects` table: the only module that reaches it, through the `Project` model for plain
 * reads and writes and raw SQL for the rest (locks, key ranges, the list with each project's current
 * deployment, the owner's plan through `users`). Queries mainly about projects that join `deployments`
 * or `users` live here too. Values go in as escaped replacements, not bind parameters.
 */
import { randomUUID } from 'node:crypto';
import { Project, QueryTypes, type Sequelize, type Transaction } from '@coderunner/db';
import { CURSOR_TS_SQL, type Cursor } from '../pagination';
import { projectIdRange, projectKey } from '../project-url';

export type ProjectRow = {
  id: string;
  name: string;
  description: string | null;
  createdAt: Date;
  updatedAt: Date;
};

/** The user's project `id` (a model instance), or null (missing, or another user's). */
export function findOwned(userId: string, id: string): Promise<Project | null> {
  return Project.findOne({ where: { id, userId } });
}

/** The id of the user's project `id`, or null (missing, or another user's). */
export async function ownedId(userId: string, id: string): Promise<string | null> {
  const project = await Project.findOne({
    where: { id, userId },
    attributes: ['id'],
  });
  return project ? project.id : null;
}

/** The user's project `id` (only its id), read in `transaction`; undefined: missing or another user's. */
export async function findOwnedId(
  sequelize: Sequelize,
  id: string,
  userId: string,
  transaction?: Transaction,
): Promise<{ id: string } | undefined> {
  const [project] = await sequelize.query<{ id: string }>(
    'SELECT id FROM projects WHERE id = :id AND user_id = :userId',
    { type: QueryTypes.SELECT, replacements: { id, userId }, transaction },
  );
  return project;
}

/** The user's project `id` locked (`FOR UPDATE`) until `transaction` ends; undefined: missing or another user's. */
export async function lockOwned(
  sequelize: Sequelize,
  id: string,
  userId: string,
  transaction: Transaction,
): Promise<{ id: string } | undefined> {
  const [row] = await sequelize.query<{ id: string }>(
    'SELECT id FROM projects WHERE id = :id AND user_id = :userId FOR UPDATE',
    { type: QueryTypes.SELECT, replacements: { id, userId }, transaction },
  );
  return row;
}

/** Project `id` locked (`FOR UPDATE`) until `transaction` ends, whoever owns it; false: no such project. */
export async function lock(sequelize: Sequelize, id: string, transaction: Transaction): Promise<boolean> {
  const rows = await sequelize.query('SELECT id FROM projects WHERE id = :id FOR UPDATE', {
    type: QueryTypes.SELECT,
    replacements: { id },
    transaction,
  });
  return rows.length > 0;
}

/** Anything with pg's `query(text, values)` (a pg client inside a transaction). */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rowCount: number | null }>;
}

/** Project `id` locked (`FOR UPDATE`) by a pg client in a transaction; false: no such project. */
export async function lockById(client: PgQueryable, id: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT id FROM projects WHERE id = $1 FOR UPDATE', [id]);
  return Boolean(rowCount);
}

/** The id of the user's project with this name, or null. */
export async function idByName(
  userId: string,
  name: string,
  transaction: Transaction,
): Promise<string | null> {
  const taken = await Project.findOne({
    where: { userId, name },
    transaction,
    attributes: ['id'],
  });
  return taken ? taken.id : null;
}

/** How many projects the user has. */
export function countOf(userId: string, transaction?: Transaction): Promise<number> {
  return Project.count({ where: { userId }, transaction });
}

/**
 * An id whose URL key (its first 10 hex digits, see project-url.ts) no project has: project URLs are
 * unique forever. A clash has odds of 1 in 2^40 per existing project; the loop is for certainty.
 */
export async function newId(sequelize: Sequelize, transaction: Transaction): Promise<string> {
  for (;;) {
    const id = randomUUID();
    const { lo, hi } = projectIdRange(projectKey(id));
    // Serialises creations that drew the same key (never in practice), so the check below holds.
    await sequelize.query('SELECT pg_advisory_xact_lock(hashtext(:key))', {
      replacements: { key: `project-key:${projectKey(id)}` },
      transaction,
    });
    const [taken] = await sequelize.query('SELECT 1 FROM projects WHERE id BETWEEN :lo AND :hi LIMIT 1', {
      type: QueryTypes.SELECT,
      replacements: { lo, hi },
      transaction,
    });
    if (!taken) return id;
  }
}

/** The ids of the projects whose URL key is `key` (at most two: more than one is ambiguous). */
export async function idsWithKey(sequelize: Sequelize, key: string): Promise<string[]> {
  const { lo, hi } = projectIdRange(key);
  const rows = await sequelize.query<{ id: string }>(
    'SELECT id FROM projects WHERE id BETWEEN :lo AND :hi LIMIT 2',
    { type: QueryTypes.SELECT, replacements: { lo, hi } },
  );
  return rows.map((r) => r.id);
}

export function create(
  values: { id: string; userId: string; name: string; description: string | null },
  transaction: Transaction,
): Promise<Project> {
  return Project.create(values, { transaction });
}

/** Changes the user's project `id`; returns it changed, or undefined when it is gone. */
export async function update(
  userId: string,
  id: string,
  changes: { name?: string; description?: string | null },
  transaction: Transaction,
): Promise<Project | undefined> {
  const [, rows] = await Project.update(changes, {
    where: { id, userId },
    returning: true,
    transaction,
  });
  return rows[0];
}

/** Deletes the user's project `id` (its deployments cascade); the number of rows deleted. */
export function destroyOwned(userId: string, id: string, transaction?: Transaction): Promise<number> {
  return Project.destroy({ where: { id, userId }, transaction });
}

/**
 * A page of the user's projects, newest first (`take` rows at most), each with the deployment its URL
 * serves now (its newest RUNNING one).
 */
export function listOwned(
  sequelize: Sequelize,
  userId: string,
  page: { cursor: Cursor | null; take: number },
): Promise<(ProjectRow & { currentDeploymentId: string | null; cursorTs: string })[]> {
  const { cursor } = page;
  return sequelize.query<ProjectRow & { currentDeploymentId: string | null; cursorTs: string }>(
    `SELECT id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", ${CURSOR_TS_SQL} AS "cursorTs",
           (SELECT d.id FROM deployments d WHERE d.project_id = projects.id AND d.status = 'RUNNING'
            ORDER BY d.created_at DESC, d.id DESC LIMIT 1) AS "currentDeploymentId"
         FROM projects
         WHERE user_id = :userId ${cursor ? 'AND (created_at, id) < (:cursorTs::timestamptz, :cursorId::uuid)' : ''}
         ORDER BY created_at DESC, id DESC
         LIMIT :take`,
    {
      type: QueryTypes.SELECT,
      replacements: {
        userId,
        cursorTs: cursor?.createdAt ?? null,
        cursorId: cursor?.id ?? null,
        take: page.take,
      },
    },
  );
}

/** The plan of project `id`'s owner (undefined: no such project). */
export async function ownerPlan(
  sequelize: Sequelize,
  id: string,
): Promise<{ plan_type: string } | undefined> {
  const [row] = await sequelize.query<{ plan_type: string }>(
    'SELECT u.plan_type FROM projects p JOIN users u ON u.id = p.user_id WHERE p.id = :id',
    { type: QueryTypes.SELECT, replacements: { id } },
  );
  return row;
}
