import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { freePort, type TestDatabase } from '@coderunner/db/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/server';
import {
  appFolder,
  curl,
  type DeployingServer,
  deployFolder,
  logText,
  startDeployingServer,
  waitForStatus,
} from './fixtures/deploy-helpers';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const K1 = `k1:${randomBytes(32).toString('base64')}`;
const K2 = `k2:${randomBytes(32).toString('base64')}`;

let ctx: DeployingServer;
let db: TestDatabase;
let server: RunningServer;
let dataDir: string;
let client: CodeRunnerClient;
let projectId: string;

beforeAll(async () => {
  ctx = await startDeployingServer(
    { CODERUNNER_ENCRYPTION_KEYS: K1, CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()) },
    { email: 'db-owner@example.com', project: 'with-db' },
  );
  ({ db, server, dataDir, client, projectId } = ctx);
}, 120_000);

afterAll(() => ctx?.close());

const APP = {
  'package.json': JSON.stringify({ dependencies: { pg: '8.23.1' }, scripts: { start: 'node server.js' } }),
  'server.js': `const { Pool } = require('pg');
const pool = new Pool({ connectionString: process.env.DATABASE_URL });
require('http').createServer(async (req, res) => {
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS visits (n serial primary key, at timestamptz default now())');
    await pool.query('INSERT INTO visits DEFAULT VALUES');
    const { rows } = await pool.query('SELECT count(*)::int AS n, current_user AS who FROM visits');
    res.end('visits=' + rows[0].n + ' as=' + rows[0].who + ' pghost=' + process.env.PGHOST);
  } catch (err) { res.statusCode = 500; res.end(String(err.message)); }
}).listen(process.env.PORT, '127.0.0.1');`,
};

describe('a deployment with its own database', () => {
  it('reads and writes its database; credentials are encrypted at rest and shown only to the owner', async () => {
    const d = await deployFolder(client, projectId, appFolder(APP), { database: 'postgres' });
    const running = await waitForStatus(client, d.id, ['RUNNING', 'FAILED']);
    expect(running.status, await logText(client, d.id)).toBe('RUNNING');
    expect(running.hasDatabase).toBe(true);
    expect((await curl(running.publicUrl!)).body).toMatch(/^visits=1 as=app pghost=127\.0\.0\.1$/);
    expect((await curl(running.publicUrl!)).body).toMatch(/^visits=2 /);

    const creds = await client.deployments.databaseCredentials.query({ id: d.id });
    expect(creds.url).toBe(
      `postgres://${creds.user}:${encodeURIComponent(creds.password)}@${creds.host}:${creds.port}/${creds.database}`,
    );
    expect(creds.password.length).toBeGreaterThanOrEqual(32);

    // At rest: a sealed box, no plaintext field, no password anywhere in the row.
    const [row] = (
      await server.deps.sequelize.query(
        `SELECT db_connection_info AS box, db_connection_info::text LIKE '%' || :pw || '%' AS leaks,
                row_to_json(d)::text LIKE '%' || :pw || '%' AS row_leaks
         FROM deployments d WHERE id = :id`,
        { replacements: { id: d.id, pw: creds.password } },
      )
    )[0] as { box: Record<string, unknown>; leaks: boolean; row_leaks: boolean }[];
    expect(Object.keys(row!.box).sort()).toEqual(['ct', 'iv', 'kid', 'tag', 'v']);
    expect(row!.box.kid).toBe('k1');
    expect(row!.leaks).toBe(false);
    expect(row!.row_leaks).toBe(false);

    // Nothing else the API says carries the password.
    for (const answer of [
      await client.deployments.get.query({ id: d.id }),
      await client.deployments.list.query({}),
      await logText(client, d.id),
    ]) {
      expect(JSON.stringify(answer)).not.toContain(creds.password);
    }

    // Another user cannot see them.
    const other = createClient({
      url: `${server.url}/trpc`,
      token: (
        await createClient({ url: `${server.url}/trpc` }).auth.register.mutate({
          email: 'x@example.com',
          password: 'other password',
        })
      ).token,
    });
    const err = await other.deployments.databaseCredentials.query({ id: d.id }).catch((e) => e);
    expect(err.data.code).toBe('NOT_FOUND');

    // The app's role cannot reach its cluster's other databases (its own cluster: CONNECT revoked).
    const controlPlane = new URL(creds.url);
    controlPlane.pathname = '/postgres';
    const probe = new pg.Client({ connectionString: controlPlane.toString() });
    probe.on('error', () => {});
    await expect(probe.connect().then(() => probe.query('SELECT 1'))).rejects.toThrow(
      /permission denied|not permitted|does not exist/,
    );
    await probe.end().catch(() => {});

    // The database survives stop/start.
    await client.deployments.stop.mutate({ id: d.id });
    await client.deployments.start.mutate({ id: d.id });
    expect((await waitForStatus(client, d.id, ['RUNNING', 'FAILED'])).status).toBe('RUNNING');
    expect((await curl(running.publicUrl!)).body).toMatch(/^visits=3 /);

    // Key rotation: every row re-encrypted with the new active key, still readable.
    const rotate = await run(
      process.execPath,
      ['--import', 'tsx', path.join(here, '../src/cli/rotate-keys.ts')],
      {
        env: {
          ...process.env,
          DATABASE_URL: db.url,
          CODERUNNER_DATA_DIR: dataDir,
          CODERUNNER_ENCRYPTION_KEYS: `${K2},${K1}`,
        },
      },
    );
    expect(rotate.stdout).toContain('1 rotated to key "k2"');
    const [[after]] = (await server.deps.sequelize.query(
      "SELECT db_connection_info->>'kid' AS kid FROM deployments WHERE id = :id",
      {
        replacements: { id: d.id },
      },
    )) as unknown as [{ kid: string }[]];
    expect(after!.kid).toBe('k2');
    // This server only knows k1: it says so clearly instead of returning garbage.
    const stale = await client.deployments.databaseCredentials.query({ id: d.id }).catch((e) => e);
    expect(stale.data.code).toBe('PRECONDITION_FAILED');
    expect(stale.message).toMatch(/k2/);

    // Destroying the project's only deployment keeps its database for the next one; deleting the
    // project stops its cluster and removes its folder.
    await client.deployments.destroy.mutate({ id: d.id });
    const [[holder]] = (await server.deps.sequelize.query(
      'SELECT db_sandbox_id AS id FROM deployments WHERE project_id = :projectId AND db_sandbox_id IS NOT NULL',
      { replacements: { projectId } },
    )) as unknown as [{ id: string }[]];
    const folder = path.join(dataDir, 'databases', holder!.id);
    const superPw = fs.readFileSync(path.join(folder, 'pg-superuser-password'), 'utf8').trim();
    const admin = new pg.Client({
      host: '127.0.0.1',
      port: creds.port,
      user: 'postgres',
      password: superPw,
      database: 'postgres',
    });
    admin.on('error', () => {});
    await admin.connect();
    const left = async () => [
      (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [creds.user])).rowCount,
      (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [creds.database])).rowCount,
    ];
    try {
      expect(await left()).toEqual([1, 1]);
    } finally {
      await admin.end();
    }
    await client.projects.delete.mutate({ id: projectId });
    expect(fs.existsSync(folder)).toBe(false);
  }, 400_000); // a build with an npm install, and the data folder's first database (initdb of the template)
});
