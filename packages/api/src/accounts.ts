import type { Transaction, User } from '@coderunner/db';
import { TRPCError } from '@trpc/server';
import * as users from './tables/users';

/**
 * Name uniqueness per user and the plan quotas have no constraint in the schema, so writes that can
 * break them serialise on the user's row (SELECT ... FOR UPDATE) inside their transaction.
 */
export async function lockUser(userId: string, transaction: Transaction): Promise<User> {
  const user = await users.lock(userId, transaction);
  if (!user) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'the account no longer exists' });
  return user;
}
