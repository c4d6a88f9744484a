/**
 * The overhead benchmark's baseline: a bare Express handler doing what `projects.list` does — verify
 * the bearer token (jose HS256, same secret, issuer and claims), load the user and check the token's
 * password fingerprint, run projects.list's SQL (copied from packages/api/src/routers/projects.ts),
 * and answer JSON. No tRPC, superjson, zod, pino-http, helmet.
 *
 * BASELINE_POOL=sequelize uses the server's own pool (`connect()` of @coderunner/db: Sequelize over pg,
 * max 10) with raw queries; BASELINE_POOL=pg uses a plain pg.Pool of the same size.
 */
import { createHash } from 'node:crypto';
import { connect, QueryTypes } from '@coderunner/db';
import express from 'express';
import { jwtVerify } from 'jose';
import pg from 'pg';

const mode = process.env.BASELINE_POOL === 'pg' ? 'pg' : 'sequelize';
const secret = new TextEncoder().encode(process.env.CODERUNNER_AUTH_SECRET ?? '');
const databaseUrl = process.env.DATABASE_URL ?? '';

const USER_SQL = `SELECT id, email, password_hash AS "passwordHash", plan_type AS "planType",
  created_at AS "createdAt", updated_at AS "updatedAt" FROM users WHERE id = $1`;
// projects.list's query, first page (no cursor), as the router writes it.
const PROJECTS_SQL = `SELECT id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorTs"
         FROM projects
         WHERE user_id = $1 
         ORDER BY created_at DESC, id DESC
         LIMIT $2`;

type Row = Record<string, unknown>;
let query: (sql: string, params: unknown[]) => Promise<Row[]>;
if (mode === 'pg') {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10, idleTimeoutMillis: 10_000 });
  pool.on('error', () => {});
  query = async (sql, params) => (await pool.query(sql, params)).rows;
} else {
  const sequelize = connect(databaseUrl);
  // Like the router: Sequelize replacements (:name), which it inlines into the SQL text it sends.
  query = (sql, params) => {
    const replacements: Record<string, unknown> = {};
    params.forEach((v, i) => {
      replacements[`p${i + 1}`] = v;
    });
    return sequelize.query<Row>(sql.replace(/\$(\d)/g, ':p$1'), { type: QueryTypes.SELECT, replacements });
  };
}

const fingerprint = (hash: string) => createHash('sha256').update(hash).digest('base64url').slice(0, 22);
const encodeCursor = (createdAt: string, id: string) =>
  Buffer.from(`${createdAt}|${id}`).toString('base64url');

const app = express();
app.disable('x-powered-by');
app.get('/readyz', async (_req, res) => {
  await query('SELECT 1', []);
  res.json({ status: 'ready' });
});
app.get('/projects', async (req, res) => {
  const header = req.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : null;
  if (!token) {
    res.status(401).json({ error: 'not logged in' });
    return;
  }
  let claims: { sub?: unknown; pwf?: unknown };
  try {
    ({ payload: claims } = await jwtVerify(token, secret, { algorithms: ['HS256'], issuer: 'coderunner' }));
  } catch {
    res.status(401).json({ error: 'invalid token' });
    return;
  }
  if (typeof claims.sub !== 'string' || typeof claims.pwf !== 'string') {
    res.status(401).json({ error: 'invalid token' });
    return;
  }
  const [user] = await query(USER_SQL, [claims.sub]);
  if (!user || fingerprint(user.passwordHash as string) !== claims.pwf) {
    res.status(401).json({ error: 'invalid token' });
    return;
  }
  const limit = 20;
  const rows = await query(PROJECTS_SQL, [user.id, limit + 1]);
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  res.json({
    items: page.map((p) => ({
      id: p.id,
      name: p.name,
      description: p.description,
      createdAt: p.createdAt,
      updatedAt: p.updatedAt,
    })),
    nextCursor: rows.length > limit && last ? encodeCursor(last.cursorTs as string, last.id as string) : null,
  });
});

const server = app.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
