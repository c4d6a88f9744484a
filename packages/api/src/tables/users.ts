/**
 * The `users` table: the only module that reaches it, through the `User` model, and raw SQL for the
 * per-request lookup of the caller. (The plan of a project's owner is read in tables/projects.ts.)
 */
import { type PlanType, QueryTypes, type Sequelize, type Transaction, User } from '@coderunner/db';

/** The caller as loaded for a request (password hash included for re-verification, never output). */
export interface AuthedUser {
  id: string;
  email: string;
  passwordHash: string;
  planType: string;
  createdAt: Date;
  updatedAt: Date;
}

const USER_BY_ID = `SELECT id, email, password_hash AS "passwordHash", plan_type AS "planType",
  created_at AS "createdAt", updated_at AS "updatedAt" FROM users WHERE id = :id`;

/** User `id` as a request's caller, or undefined. */
export async function findForRequest(sequelize: Sequelize, id: string): Promise<AuthedUser | undefined> {
  const [user] = await sequelize.query<AuthedUser>(USER_BY_ID, {
    type: QueryTypes.SELECT,
    // Inlined (escaped) by Sequelize: one simple-protocol round trip, where a bind parameter costs a
    // parse/bind/execute exchange with the server on every request.
    replacements: { id },
  });
  return user;
}

/** User `id` read with its row locked (`SELECT ... FOR UPDATE`) until `transaction` ends; null: gone. */
export function lock(userId: string, transaction: Transaction): Promise<User | null> {
  return User.findByPk(userId, { transaction, lock: transaction.LOCK.UPDATE });
}

/** Inserts a user (a taken email fails with the model's unique-constraint error). */
export function create(values: { email: string; passwordHash: string }): Promise<User> {
  return User.create(values);
}

/** True when at least one account exists. */
export async function anyExists(): Promise<boolean> {
  return (await User.findOne({ attributes: ['id'] })) !== null;
}

/**
 * Inserts a user only while there is none (null when one exists). Concurrent calls serialise on an
 * advisory lock: two first sign-ups at once cannot both see an empty table.
 */
export function createIfNone(values: { email: string; passwordHash: string }): Promise<User | null> {
  const sequelize = User.sequelize!;
  return sequelize.transaction(async (transaction) => {
    await sequelize.query("SELECT pg_advisory_xact_lock(hashtext('users:first-account'))", { transaction });
    if (await User.findOne({ attributes: ['id'], transaction })) return null;
    return User.create(values, { transaction });
  });
}

export function findByEmail(email: string): Promise<User | null> {
  return User.findOne({ where: { email } });
}

/**
 * Replaces the password hash only while it is still `oldHash` (two concurrent changes cannot both
 * win); returns the user changed, or undefined when it was not.
 */
export async function replacePasswordHash(
  id: string,
  oldHash: string,
  passwordHash: string,
): Promise<User | undefined> {
  const [, rows] = await User.update(
    { passwordHash },
    { where: { id, passwordHash: oldHash }, returning: true },
  );
  return rows[0];
}

/** Sets the plan of the user with this (normalised) email; the number of users changed (0 or 1). */
export async function setPlan(email: string, plan: PlanType): Promise<number> {
  const [count] = await User.update({ planType: plan }, { where: { email } });
  return count;
}
