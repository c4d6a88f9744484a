import { withDomainErrors } from '@coderunner/db';
import { z } from 'zod';
import { PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS, PasswordCheckBusyError } from '../auth/password';
import type { Context } from '../context';
import { countActiveDeployments } from '../deployments/lifecycle';
import { toUserDto } from '../dto';
import { quotaFor } from '../quotas';
import { RateLimitedError } from '../rate-limit';
import { signupClosed } from '../signup';
import * as projects from '../tables/projects';
import * as users from '../tables/users';
import { protectedProcedure, publicProcedure, router, TRPCError } from '../trpc';

/** Trimmed and lower-cased before storing and lookup: `A@x.com` and `a@x.com` are one account. */
const email = z
  .string()
  .trim()
  .toLowerCase()
  .max(255, 'must be at most 255 characters')
  .pipe(z.email('must be an email address'));

/** At least 8 characters, at most 1024 bytes of UTF-8: refused beyond, never silently truncated. */
const newPassword = z
  .string()
  .min(PASSWORD_MIN_CHARS, `must be at least ${PASSWORD_MIN_CHARS} characters`)
  .refine(
    (p) => Buffer.byteLength(p, 'utf8') <= PASSWORD_MAX_BYTES,
    `must be at most ${PASSWORD_MAX_BYTES} bytes`,
  );

/** Login accepts any non-empty password up to the same bound (policy may have changed since). */
const anyPassword = z
  .string()
  .min(1, 'is required')
  .refine(
    (p) => Buffer.byteLength(p, 'utf8') <= PASSWORD_MAX_BYTES,
    `must be at most ${PASSWORD_MAX_BYTES} bytes`,
  );

const credentials = z.strictObject({ email, password: newPassword });
const loginInput = z.strictObject({ email, password: anyPassword });

const INVALID_CREDENTIALS = 'invalid email or password';

function tooMany(what: string, resetAt: number): never {
  const seconds = Math.max(1, Math.ceil((resetAt - Date.now()) / 1000));
  throw new TRPCError({
    code: 'TOO_MANY_REQUESTS',
    message: `too many ${what}; try again in ${seconds} s`,
    cause: new RateLimitedError(`too many ${what}`, seconds),
  });
}

/** Counts every register/login call against the caller's IP (each call of a batch counts). */
async function limitByIp(ctx: Context): Promise<void> {
  const { windowMs, authPerIp } = ctx.deps.rateLimits;
  const hit = await ctx.deps.rateLimitStore.hit(`auth:ip:${ctx.ip}`, windowMs);
  if (hit.count > authPerIp) tooMany('sign-in attempts from this address', hit.resetAt);
}

const failureKey = (address: string) => `auth:email:${address}`;

/**
 * Run `attempt` counted as a failure for `address` in advance, and take the count back when it
 * succeeds. Counting first keeps concurrent attempts (a batch of 50 logins) from all passing the
 * check before any failure is recorded.
 */
async function withFailureBudget<T>(
  ctx: Context,
  address: string,
  attempt: () => Promise<T>,
  key = failureKey(address),
): Promise<T> {
  const hit = await ctx.deps.rateLimitStore.hit(key, ctx.deps.rateLimits.windowMs);
  if (hit.count > ctx.deps.rateLimits.failuresPerEmail) {
    await ctx.deps.rateLimitStore.undo(key); // a refused call is not an attempt
    tooMany('failed attempts for this email', hit.resetAt);
  }
  let counts = true;
  try {
    const result = await attempt();
    counts = false;
    return result;
  } catch (err) {
    // The server was too busy to check the password: no answer was given, so nothing was tried.
    if (err instanceof PasswordCheckBusyError) counts = false;
    throw err;
  } finally {
    if (!counts) await ctx.deps.rateLimitStore.undo(key);
  }
}

/**
 * A fresh token for `user`: in the body, or, when the caller asked for a browser session, in the
 * HttpOnly cookie only (the body's token is then empty, so no page script ever holds it).
 */
async function startSession(ctx: Context, user: { id: string; passwordHash: string }): Promise<string> {
  const token = await ctx.deps.tokens.issue(user);
  if (!ctx.cookieSession?.wanted) return token;
  ctx.cookieSession.set(token, ctx.deps.tokens.ttlSeconds);
  return '';
}

export const authRouter = router({
  register: publicProcedure.input(credentials).mutation(async ({ ctx, input }) => {
    await limitByIp(ctx);
    // Refused before any email lookup: a closed sign-up says nothing about which emails exist.
    const firstOnly = ctx.deps.system?.signup === 'first-account-only';
    if (firstOnly && (await users.anyExists())) signupClosed();
    // Probing for registered emails counts against the email like failed logins do.
    const user = await withFailureBudget(ctx, input.email, async () => {
      const passwordHash = await ctx.deps.passwords.hash(input.password);
      const values = { email: input.email, passwordHash };
      if (!firstOnly) return withDomainErrors(users.create(values));
      return (await withDomainErrors(users.createIfNone(values))) ?? signupClosed();
    });
    return { user: toUserDto(user), token: await startSession(ctx, user) };
  }),

  login: publicProcedure.input(loginInput).mutation(async ({ ctx, input }) => {
    await limitByIp(ctx);
    const user = await withFailureBudget(ctx, input.email, async () => {
      const found = await users.findByEmail(input.email);
      // An unknown email costs the same argon2 work as a wrong password: the timing says nothing.
      const ok = found
        ? await ctx.deps.passwords.verify(found.passwordHash, input.password)
        : await ctx.deps.passwords.verifyDummy(input.password);
      if (!found || !ok) throw new TRPCError({ code: 'UNAUTHORIZED', message: INVALID_CREDENTIALS });
      return found;
    });
    return { user: toUserDto(user), token: await startSession(ctx, user) };
  }),

  /** Ends a browser session (clears its cookie). Bearer tokens are stateless: a client just forgets them. */
  logout: publicProcedure.mutation(({ ctx }) => {
    ctx.cookieSession?.clear();
    return { ok: true as const };
  }),

  me: protectedProcedure.query(({ ctx }) => toUserDto(ctx.user)),

  /** The caller's plan, what it allows, and what the caller holds now. */
  usage: protectedProcedure.query(async ({ ctx }) => {
    const [projectCount, activeDeployments] = await Promise.all([
      projects.countOf(ctx.user.id),
      countActiveDeployments(ctx.deps.sequelize, ctx.user.id),
    ]);
    return {
      plan: ctx.user.planType,
      limits: quotaFor(ctx.user.planType),
      used: { projects: projectCount, activeDeployments },
    };
  }),

  changePassword: protectedProcedure
    .input(z.strictObject({ currentPassword: anyPassword, newPassword }))
    .mutation(async ({ ctx, input }) => {
      // A budget of the session's user, not the email's: anyone can spend an email's budget with
      // failed logins, and that must not stop the owner, signed in, from changing the password.
      await withFailureBudget(
        ctx,
        ctx.user.email,
        async () => {
          if (!(await ctx.deps.passwords.verify(ctx.user.passwordHash, input.currentPassword))) {
            throw new TRPCError({ code: 'UNAUTHORIZED', message: 'current password is wrong' });
          }
        },
        `auth:user:${ctx.user.id}`,
      );
      const passwordHash = await ctx.deps.passwords.hash(input.newPassword);
      // Conditional on the hash we verified against: two concurrent changes cannot both win.
      const updated = await users.replacePasswordHash(ctx.user.id, ctx.user.passwordHash, passwordHash);
      if (!updated)
        throw new TRPCError({
          code: 'CONFLICT',
          message: 'the password was changed meanwhile; log in again',
        });
      return { token: await startSession(ctx, updated) };
    }),
});
