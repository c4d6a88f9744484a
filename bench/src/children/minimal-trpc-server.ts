/**
 * The overhead benchmark's calibration point: a minimal tRPC 11 + superjson endpoint on Express
 * (`createExpressMiddleware`, one query procedure with a zod input) doing the same work as the bare
 * baseline — jose verification, the user row and its password fingerprint, projects.list's SQL on the
 * server's own pool — and nothing else: no logging, helmet, request ids, middlewares or error mapping.
 * The gap between it and the bare baseline is what tRPC + superjson cost; the gap between it and the
 * real server is what the product adds.
 */
import { createHash } from 'node:crypto';
import { connect, QueryTypes } from '@coderunner/db';
import { initTRPC, TRPCError } from '@trpc/server';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import express from 'express';
import { jwtVerify } from 'jose';
import superjson from 'superjson';
import { z } from 'zod';

const secret = new TextEncoder().encode(process.env.CODERUNNER_AUTH_SECRET ?? '');
const sequelize = connect(process.env.DATABASE_URL ?? '');

const USER_SQL = `SELECT id, email, password_hash AS "passwordHash", plan_type AS "planType",
  created_at AS "createdAt", updated_at AS "updatedAt" FROM users WHERE id = :id`;
const PROJECTS_SQL = `SELECT id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorTs"
         FROM projects
         WHERE user_id = :userId
         ORDER BY created_at DESC, id DESC
         LIMIT :take`;

type Row = Record<string, unknown>;
const fingerprint = (hash: string) => createHash('sha256').update(hash).digest('base64url').slice(0, 22);
const encodeCursor = (createdAt: string, id: string) =>
  Buffer.from(`${createdAt}|${id}`).toString('base64url');

const t = initTRPC.context<{ token: string | null }>().create({ transformer: superjson });
const router = t.router({
  projects: t.router({
    list: t.procedure
      .input(z.strictObject({ limit: z.number().int().min(1).max(100).optional() }).optional())
      .query(async ({ ctx, input }) => {
        if (!ctx.token) throw new TRPCError({ code: 'UNAUTHORIZED' });
        let claims: { sub?: unknown; pwf?: unknown };
        try {
          ({ payload: claims } = await jwtVerify(ctx.token, secret, {
            algorithms: ['HS256'],
            issuer: 'coderunner',
          }));
        } catch {
          throw new TRPCError({ code: 'UNAUTHORIZED' });
        }
        const [user] = await sequelize.query<Row>(USER_SQL, {
          type: QueryTypes.SELECT,
          replacements: { id: claims.sub },
        });
        if (!user || fingerprint(user.passwordHash as string) !== claims.pwf)
          throw new TRPCError({ code: 'UNAUTHORIZED' });
        const limit = input?.limit ?? 20;
        const rows = await sequelize.query<Row>(PROJECTS_SQL, {
          type: QueryTypes.SELECT,
          replacements: { userId: user.id, take: limit + 1 },
        });
        const page = rows.slice(0, limit);
        const last = page[page.length - 1];
        return {
          items: page.map((p) => ({
            id: p.id as string,
            name: p.name as string,
            description: p.description as string | null,
            createdAt: p.createdAt as Date,
            updatedAt: p.updatedAt as Date,
          })),
          nextCursor:
            rows.length > limit && last ? encodeCursor(last.cursorTs as string, last.id as string) : null,
        };
      }),
  }),
});

const app = express();
app.disable('x-powered-by');
app.get('/readyz', async (_req, res) => {
  await sequelize.query('SELECT 1');
  res.json({ status: 'ready' });
});
app.use(
  '/trpc',
  createExpressMiddleware({
    router,
    createContext: ({ req }) => {
      const header = req.headers.authorization;
      return { token: header?.startsWith('Bearer ') ? header.slice(7).trim() : null };
    },
  }),
);

const server = app.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
