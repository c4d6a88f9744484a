/**
 * growth: do the list endpoints stay fast as the tables grow? First-page latency of projects.list and
 * deployments.list for one user with a typical account (5 projects, 100 deployments spread over a
 * year) among 10,000 users, with 1,000 and then 1,000,000 deployments in the table. Rows are generated
 * with INSERT … SELECT generate_series (only the measured user is registered through the API).
 */
import { deployments } from '@coderunner/api/tables';
import type pg from 'pg';
import type { BenchContext, BenchOutput } from '../lib/context';
import { register, sampleLatency, trpcQueryPath, withPg } from '../lib/http';
import { freshDatabase, newAuthSecret, startCodeRunner, tempDir } from '../lib/services';
import { fmt, ms, percentile, ratio, seconds } from '../lib/stats';

const USERS = 10_000;
const PROJECTS_PER_USER = 5;
const USER_DEPLOYMENTS = 100;
const SIZES = [1_000, 1_000_000] as const;
const ROUNDS = 3;
const ROUND_MS = 1_500;
const MAX_PER_ROUND = 3_000;

/** projects.list's SQL (packages/api/src/tables/projects.ts), first page, as Sequelize sends it (values inlined). */
const projectsSql = (
  userId: string,
) => `SELECT id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorTs",
           (SELECT d.id FROM deployments d WHERE d.project_id = projects.id AND d.status = 'RUNNING'
            ORDER BY d.created_at DESC, d.id DESC LIMIT 1) AS "currentDeploymentId"
         FROM projects
         WHERE user_id = '${userId}' 
         ORDER BY created_at DESC, id DESC
         LIMIT 21`;

/** deployments.list's SQL (packages/api/src/tables/deployments.ts), first page, no filters. */
const deploymentsSql = (
  userId: string,
) => `SELECT d.id, d.project_id AS "projectId", d.status, d.app_sandbox_id AS "appSandboxId",
  d.public_url AS "publicUrl", d.db_sandbox_id AS "dbSandboxId", d.db_connection_info AS "dbConnectionInfo",
  d.runtime_type AS "runtimeType", d.created_at AS "createdAt", d.updated_at AS "updatedAt", ${deployments.isCurrentSql('d')} AS current, to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorTs"
         FROM deployments d JOIN projects p ON p.id = d.project_id
         WHERE p.user_id = '${userId}'
         ORDER BY d.created_at DESC, d.id DESC LIMIT 21`;

/** Skip FK triggers while generating (the rows are consistent by construction); needs a superuser. */
async function fastInserts(c: pg.Client): Promise<boolean> {
  try {
    await c.query('SET session_replication_role = replica');
    return true;
  } catch {
    return false;
  }
}

async function generateAccounts(c: pg.Client, measuredUserId: string): Promise<void> {
  await c.query(
    `INSERT INTO users (email, password_hash, plan_type, created_at, updated_at)
     SELECT 'user' || g || '@bench.example', 'generated: not a password hash',
            CASE WHEN g % 10 = 0 THEN 'personal' ELSE 'free' END,
            now() - interval '400 days' + g * interval '1 minute', now() - interval '400 days' + g * interval '1 minute'
     FROM generate_series(1, $1::int) g`,
    [USERS - 1],
  );
  await c.query(
    `INSERT INTO projects (user_id, name, description, created_at, updated_at)
     SELECT u.id, 'project ' || k, 'generated project ' || k, u.created_at + k * interval '1 hour', u.created_at + k * interval '1 hour'
     FROM users u CROSS JOIN generate_series(1, $1::int) k`,
    [PROJECTS_PER_USER],
  );
  await c.query(`CREATE TEMP TABLE other_projects AS
    SELECT row_number() OVER (ORDER BY id) AS rn, id FROM projects WHERE user_id <> '${measuredUserId}'`);
  await c.query('CREATE INDEX ON other_projects (rn)');
  await c.query(`CREATE TEMP TABLE my_projects AS
    SELECT row_number() OVER (ORDER BY id) - 1 AS rn, id FROM projects WHERE user_id = '${measuredUserId}'`);
  await c.query('ANALYZE other_projects; ANALYZE my_projects');
}

/**
 * `total` deployments created over the past year in time order; every (total / 100)th row belongs to the
 * measured user (so its 100 are spread through the table like anyone's), the rest to other projects.
 * Status mix: 60% DESTROYED, 25% STOPPED, 12% FAILED, 3% RUNNING.
 */
async function generateDeployments(c: pg.Client, total: number): Promise<void> {
  const stride = total / USER_DEPLOYMENTS;
  const others = Number((await c.query('SELECT count(*) AS n FROM other_projects')).rows[0].n);
  await c.query(
    `INSERT INTO deployments (id, project_id, status, app_sandbox_id, public_url, runtime_type, created_at, updated_at)
     SELECT s.id, s.project_id, s.status::deployment_status,
            CASE WHEN s.status = 'RUNNING' THEN 'bench-' || s.g END,
            CASE WHEN s.status <> 'FAILED' THEN 'http://' || s.id || '.localhost:8080/' END,
            'nodejs', s.created_at, s.created_at + interval '3 minutes'
     FROM (
       SELECT g, gen_random_uuid() AS id,
              CASE WHEN g % ${stride} = 0
                   THEN (SELECT id FROM my_projects WHERE rn = (g / ${stride}) % ${PROJECTS_PER_USER})
                   ELSE op.id END AS project_id,
              CASE WHEN g % 100 < 60 THEN 'DESTROYED' WHEN g % 100 < 85 THEN 'STOPPED'
                   WHEN g % 100 < 97 THEN 'FAILED' ELSE 'RUNNING' END AS status,
              now() - interval '365 days' * (1 - g::float8 / ${total}) AS created_at
       FROM generate_series(1, ${total}) g
       JOIN other_projects op ON op.rn = 1 + (g::bigint * 7919) % ${others}
     ) s`,
  );
}

interface SizeFigures {
  total: number;
  genMs: number;
  projects: number[];
  deployments: number[];
  explain: { projects: string; deployments: string; projectsExecMs: number; deploymentsExecMs: number };
}

async function explain(c: pg.Client, sql: string): Promise<{ text: string; execMs: number }> {
  // Twice: the first warms the cache like the HTTP samples before it did; the second is reported.
  await c.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`);
  const rows = (await c.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`)).rows as { 'QUERY PLAN': string }[];
  const text = rows.map((r) => r['QUERY PLAN']).join('\n');
  const execMs = Number(/Execution Time: ([\d.]+) ms/.exec(text)?.[1] ?? Number.NaN);
  return { text, execMs };
}

export async function growth({ scope, log }: BenchContext): Promise<BenchOutput> {
  const db = await freshDatabase(scope);
  const logDir = tempDir(scope, 'logs');
  const dataDir = tempDir(scope, 'data');
  const server = await startCodeRunner(scope, {
    databaseUrl: db.url,
    dataDir,
    authSecret: newAuthSecret(),
    logDir,
    env: { WORKER_ENABLED: 'false' },
  });
  log(`server up at ${server.url} on ${db.description}`);
  const { token, userId } = await register(server.url, 'growth@bench.example', 'growth bench password');
  const headers = { authorization: `Bearer ${token}` };
  const urls = {
    projects: `${server.url}${trpcQueryPath('projects.list', { limit: 20 })}`,
    deployments: `${server.url}${trpcQueryPath('deployments.list', { limit: 20 })}`,
  };

  const figures: SizeFigures[] = [];
  await withPg(db.url, async (c) => {
    const fast = await fastInserts(c);
    let t = Date.now();
    await generateAccounts(c, userId);
    await c.query("UPDATE users SET plan_type = 'personal' WHERE id = $1", [userId]);
    log(
      `${fmt(USERS)} users, ${fmt(USERS * PROJECTS_PER_USER)} projects in ${seconds(Date.now() - t)}${fast ? '' : ' (FK checks on: not a superuser)'}`,
    );

    for (const total of SIZES) {
      t = Date.now();
      await c.query('TRUNCATE deployments');
      await generateDeployments(c, total);
      await c.query('VACUUM ANALYZE users, projects, deployments');
      const genMs = Date.now() - t;
      const [{ n, mine }] = (
        await c.query(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE p.user_id = $1)::int AS mine
           FROM deployments d JOIN projects p ON p.id = d.project_id`,
          [userId],
        )
      ).rows as [{ n: number; mine: number }];
      if (n !== total || mine !== USER_DEPLOYMENTS)
        throw new Error(`generated ${n} deployments, ${mine} of them the user's`);
      log(`${fmt(total)} deployments generated + VACUUM ANALYZE in ${seconds(genMs)}`);

      // Warm up (JIT, caches), then alternate the two lists in short rounds.
      for (const url of Object.values(urls))
        await sampleLatency(url, headers, { durationMs: 3_000, maxRequests: 800 });
      const lat = { projects: [] as number[], deployments: [] as number[] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const key of ['projects', 'deployments'] as const) {
          const s = await sampleLatency(urls[key], headers, {
            durationMs: ROUND_MS,
            maxRequests: MAX_PER_ROUND,
          });
          lat[key].push(...s.latencies);
        }
      }
      const ep = await explain(c, projectsSql(userId));
      const ed = await explain(c, deploymentsSql(userId));
      figures.push({
        total,
        genMs,
        projects: lat.projects,
        deployments: lat.deployments,
        explain: {
          projects: ep.text,
          deployments: ed.text,
          projectsExecMs: ep.execMs,
          deploymentsExecMs: ed.execMs,
        },
      });
      log(
        `${fmt(total)}: projects.list p50 ${ms(percentile(lat.projects, 50))} p99 ${ms(percentile(lat.projects, 99))} (SQL ${ms(ep.execMs)}); ` +
          `deployments.list p50 ${ms(percentile(lat.deployments, 50))} p99 ${ms(percentile(lat.deployments, 99))} (SQL ${ms(ed.execMs)})`,
      );
    }
  });

  const [small, big] = figures as [SizeFigures, SizeFigures];
  const p50 = (xs: number[]) => percentile(xs, 50);
  const rp = ratio(p50(big.projects), p50(small.projects));
  const rd = ratio(p50(big.deployments), p50(small.deployments));
  const line =
    `growth: p50 with 1k → 1M deployments: projects.list ${ms(p50(small.projects))} → ${ms(p50(big.projects))} (ratio ${rp}), ` +
    `deployments.list ${ms(p50(small.deployments))} → ${ms(p50(big.deployments))} (ratio ${rd}); worse of the two — ratio ${Math.max(rp, rd)}`;
  const row = (f: SizeFigures) =>
    `| ${fmt(f.total)} | ${seconds(f.genMs)} | ${ms(p50(f.projects))} / ${ms(percentile(f.projects, 99))} (${fmt(f.projects.length)}) | ${ms(f.explain.projectsExecMs)} | ${ms(p50(f.deployments))} / ${ms(percentile(f.deployments, 99))} (${fmt(f.deployments.length)}) | ${ms(f.explain.deploymentsExecMs)} |`;
  const details = [
    `${fmt(USERS)} users (only the measured one registered through the API), ${PROJECTS_PER_USER} projects each; the measured user has ${PROJECTS_PER_USER} projects and ${USER_DEPLOYMENTS} deployments, spread through the table in time order like everyone's. ` +
      `One client, requests back to back through the real server (first page, limit 20), ${ROUNDS} alternating rounds of ${ROUND_MS / 1000} s per list after a warm-up. Generation: INSERT … SELECT generate_series, then VACUUM ANALYZE. Goal: ratio ≤ 1.5.`,
    '',
    '| deployments in table | generated in | projects.list p50 / p99 (requests) | its SQL (EXPLAIN ANALYZE) | deployments.list p50 / p99 (requests) | its SQL (EXPLAIN ANALYZE) |',
    '| --- | --- | --- | --- | --- | --- |',
    row(small),
    row(big),
    '',
    `- ratio p50(1M) / p50(1k): projects.list **${rp}**, deployments.list **${rd}**.`,
    '',
    `### EXPLAIN (ANALYZE, BUFFERS) at ${fmt(big.total)} deployments`,
    '',
    'projects.list:',
    '',
    '```',
    big.explain.projects,
    '```',
    '',
    'deployments.list:',
    '',
    '```',
    big.explain.deployments,
    '```',
  ];
  console.log(
    `\nprojects.list plan at 1M:\n${big.explain.projects}\n\ndeployments.list plan at 1M:\n${big.explain.deployments}\n`,
  );
  return { line, details, database: db.description };
}
