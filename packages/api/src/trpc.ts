import {
  DomainError,
  EmailTakenError,
  InvalidValueError,
  ReferenceMissingError,
  UniqueViolationError,
  User,
} from '@coderunner/db';
import { initTRPC, TRPCError } from '@trpc/server';
import superjson from 'superjson';
import { ZodError } from 'zod';
import type { Context } from './context';
import { RateLimitedError } from './rate-limit';

/** "name: Too big: expected string to have <=255 characters; id: Invalid UUID" */
function describeZodError(err: ZodError): string {
  return err.issues
    .map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : 'input';
      return `${where}: ${issue.message}`;
    })
    .join('; ');
}

const t = initTRPC.context<Context>().create({
  transformer: superjson,
  errorFormatter({ shape, error, ctx, path }) {
    const { stack: _stack, ...data } = shape.data; // never send stack traces
    if (error.code === 'INTERNAL_SERVER_ERROR') {
      // Unknown failures keep their details in the server log, under the id the client sees.
      const requestId = ctx?.requestId ?? 'unknown';
      ctx?.deps.logError?.(error.cause ?? error, { requestId, path });
      return { ...shape, message: `internal error (request id ${requestId})`, data: { ...data, requestId } };
    }
    if (error.cause instanceof ZodError) {
      return {
        ...shape,
        data: {
          ...data,
          issues: error.cause.issues.map((i) => ({ path: i.path.map(String), message: i.message })),
        },
      };
    }
    if (error.cause instanceof RateLimitedError) {
      return { ...shape, data: { ...data, retryAfterSeconds: error.cause.retryAfterSeconds } };
    }
    return { ...shape, data };
  },
});

/**
 * Input validation failures get a message naming each field; domain errors from the database layer
 * become the tRPC code a client can act on.
 */
function toTrpcError(err: TRPCError): TRPCError {
  const cause = err.cause;
  if (cause instanceof ZodError)
    return new TRPCError({ code: 'BAD_REQUEST', message: describeZodError(cause), cause });
  if (!(cause instanceof DomainError)) return err;
  if (cause instanceof EmailTakenError)
    return new TRPCError({ code: 'CONFLICT', message: cause.message, cause });
  if (cause instanceof UniqueViolationError)
    return new TRPCError({ code: 'CONFLICT', message: `${cause.field} already exists`, cause });
  if (cause instanceof ReferenceMissingError)
    return new TRPCError({ code: 'NOT_FOUND', message: 'not found', cause });
  if (cause instanceof InvalidValueError)
    return new TRPCError({ code: 'BAD_REQUEST', message: 'invalid value', cause });
  return err;
}

const mapDomainErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok) throw toTrpcError(result.error);
  return result;
});

export const router = t.router;
export const middleware = t.middleware;
export const publicProcedure = t.procedure.use(mapDomainErrors);
export const createCallerFactory = t.createCallerFactory;

export const INVALID_TOKEN = 'invalid or expired token: run `coderunner login` again';

/** The caller as loaded for this request (password hash included for re-verification, never output). */
export interface AuthedUser {
  id: string;
  email: string;
  passwordHash: string;
  planType: string;
  createdAt: Date;
  updatedAt: Date;
}

/** Requires a valid bearer token whose user still exists with the password it was issued for. */
export const protectedProcedure = publicProcedure.use(async ({ ctx, next }) => {
  if (!ctx.token) {
    throw new TRPCError({
      code: 'UNAUTHORIZED',
      message: 'not logged in: send Authorization: Bearer <token>',
    });
  }
  const claims = await ctx.deps.tokens.verify(ctx.token);
  if (!claims) throw new TRPCError({ code: 'UNAUTHORIZED', message: INVALID_TOKEN });
  const user = (await User.findByPk(claims.userId, { raw: true })) as AuthedUser | null;
  if (!user || ctx.deps.tokens.fingerprint(user.passwordHash) !== claims.passwordFingerprint) {
    throw new TRPCError({ code: 'UNAUTHORIZED', message: INVALID_TOKEN });
  }
  return next({ ctx: { user } });
});

export { TRPCError };
