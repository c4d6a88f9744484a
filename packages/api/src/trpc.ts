import { initTRPC, TRPCError } from '@trpc/server';
import superjson from 'superjson';
import { ZodError } from 'zod';
import type { Context } from './context';

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
      return {
        ...shape,
        message: `internal error (request id ${requestId})`,
        data: { ...data, requestId },
      };
    }
    if (error.cause instanceof ZodError) {
      return {
        ...shape,
        message: describeZodError(error.cause),
        data: {
          ...data,
          issues: error.cause.issues.map((i) => ({ path: i.path.map(String), message: i.message })),
        },
      };
    }
    return { ...shape, data };
  },
});

export const router = t.router;
export const middleware = t.middleware;
export const publicProcedure = t.procedure;
export const createCallerFactory = t.createCallerFactory;
export { TRPCError };
