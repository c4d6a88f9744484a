import {
  ConnectionError,
  DomainError,
  EmailTakenError,
  InvalidValueError,
  ReferenceMissingError,
  TimeoutError,
  UniqueViolationError,
} from '@coderunner/db';
import { initTRPC, TRPCError } from '@trpc/server';
import superjson from 'superjson';
import { ZodError } from 'zod';
import { PasswordCheckBusyError } from './auth/password';
import type { Context } from './context';
import { type CodeRunnerErrorData, UNAVAILABLE_RETRY_SECONDS } from './errors';
import { RateLimitedError } from './rate-limit';
import type { AuthedUser } from './tables/users';
import * as users from './tables/users';

/** "name: Too big: expected string to have <=255 characters; id: Invalid UUID" */
function describeZodError(err: ZodError): string {
  return err.issues
    .map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : 'input';
      return `${where}: ${issue.message}`;
    })
    .join('; ');
}

/**
 * Outputs handed to many subscribers (a log batch fanned out to every follower of a deployment) are
 * serialized by superjson once, not once per subscriber. Only objects marked here are cached: they
 * must not change once sent.
 */
const serializedOutputs = new WeakMap<object, ReturnType<typeof superjson.serialize> | null>();
export function serializedOnce<T extends object>(value: T): T {
  if (!serializedOutputs.has(value)) serializedOutputs.set(value, null);
  return value;
}
const transformer = {
  input: superjson,
  output: {
    serialize(value: unknown) {
      if (typeof value !== 'object' || value === null || !serializedOutputs.has(value))
        return superjson.serialize(value);
      let out = serializedOutputs.get(value);
      if (!out) {
        out = superjson.serialize(value);
        serializedOutputs.set(value, out);
      }
      return out;
    },
    deserialize: (value: unknown) => superjson.deserialize(value as ReturnType<typeof superjson.serialize>),
  },
};

/** An output as the API sends it (superjson), cached for objects marked by `serializedOnce`. */
export const serializeOutput = (value: unknown): unknown => transformer.output.serialize(value);

const t = initTRPC.context<Context>().create({
  transformer,
  errorFormatter({ shape, error, ctx, path }) {
    const { stack: _stack, ...base } = shape.data; // never send stack traces
    const data: CodeRunnerErrorData = base;
    let message = shape.message;
    if (error.code === 'INTERNAL_SERVER_ERROR') {
      // Unknown failures keep their details in the server log, under the id the client sees.
      const requestId = ctx?.requestId ?? 'unknown';
      ctx?.deps.logError?.(error.cause ?? error, { requestId, path });
      message = `internal error (request id ${requestId})`;
      data.requestId = requestId;
    } else if (error.cause instanceof ZodError) {
      data.issues = error.cause.issues.map((i) => ({ path: i.path.map(String), message: i.message }));
    } else if (error.cause instanceof RateLimitedError) {
      data.retryAfterSeconds = error.cause.retryAfterSeconds;
    } else if (error.code === 'SERVICE_UNAVAILABLE') {
      data.retryAfterSeconds = UNAVAILABLE_RETRY_SECONDS;
    }
    return { message, code: shape.code, data };
  },
});

/**
 * Input validation failures get a message naming each field; domain errors from the database layer
 * become the tRPC code a client can act on.
 */
function toTrpcError(err: TRPCError): TRPCError {
  const cause = err.cause;
  if (isDatabaseUnavailable(cause)) {
    return new TRPCError({
      code: 'SERVICE_UNAVAILABLE',
      message: 'the database is unavailable; try again shortly',
      cause,
    });
  }
  if (cause instanceof PasswordCheckBusyError)
    return new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: cause.message, cause });
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

const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);
/** pg and pg-pool raise these without a SQLSTATE when the server goes away or cannot be reached. */
const UNAVAILABLE_MESSAGE =
  /Connection terminated|query read timeout|timeout exceeded when trying to connect|not queryable|Connection ended unexpectedly|the database system is (shutting down|starting up|in recovery mode)/i;

/**
 * Connection refused/lost/timed out, or PostgreSQL shutting down or starting (classes 08, 57P0x).
 * Looks through the whole chain (Sequelize's `parent`/`original`, `cause`), because the same outage
 * reaches us wrapped differently depending on where in a query or transaction it struck.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const seen = new Set<unknown>();
  let current: unknown = err;
  while (current && typeof current === 'object' && !seen.has(current)) {
    seen.add(current);
    if (current instanceof ConnectionError || current instanceof TimeoutError) return true;
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (
      typeof code === 'string' &&
      (code.startsWith('08') || /^57P0[1-4]$/.test(code) || UNAVAILABLE_ERRNO.has(code))
    )
      return true;
    if (typeof message === 'string' && UNAVAILABLE_MESSAGE.test(message)) return true;
    const next = current as { parent?: unknown; original?: unknown; cause?: unknown };
    current = next.parent ?? next.original ?? next.cause;
  }
  return false;
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

export const INVALID_TOKEN = 'invalid or expired token: log in again';

/** The caller as loaded for this request (see tables/users.ts). */
export type { AuthedUser };

/** The caller for this request's token, or null. */
async function authenticate(ctx: Context): Promise<AuthedUser | null> {
  if (!ctx.token) return null;
  const claims = await ctx.deps.tokens.verify(ctx.token);
  if (!claims) return null;
  const user = await users.findForRequest(ctx.deps.sequelize, claims.userId);
  if (!user || ctx.deps.tokens.fingerprint(user.passwordHash) !== claims.passwordFingerprint) return null;
  return user;
}

/**
 * Requires a valid bearer token whose user still exists with the password it was issued for.
 * The check runs once per HTTP request: every call of a batch shares it.
 */
export const protectedProcedure = publicProcedure.use(async ({ ctx, next }) => {
  if (!ctx.token) {
    throw new TRPCError({
      code: 'UNAUTHORIZED',
      message: 'not logged in',
    });
  }
  ctx.auth.user ??= authenticate(ctx);
  const user = await ctx.auth.user;
  if (!user) throw new TRPCError({ code: 'UNAUTHORIZED', message: INVALID_TOKEN });
  return next({ ctx: { user } });
});

export { TRPCError };
