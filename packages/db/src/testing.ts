/**
 * Test support shared by every workspace: each test file gets its own fresh database, on the server
 * named by DATABASE_URL or, when it is unset, on an embedded PostgreSQL started once per test run
 * (see `testing-global-setup.ts`).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findFreePort } from '@coderunner/embedded-postgres';
import pg from 'pg';
import type { Sequelize } from 'sequelize';
import { connect } from './connection';
import { startEmbeddedPostgres } from './embedded';
import { migrateUp } from './migrator';

/** Set by the global setup when tests run on the embedded database. */
export const EMBEDDED_ADMIN_URL_ENV = 'CODERUNNER_TEST_ADMIN_URL';

export function adminUrl(): string {
  const url = process.env[EMBEDDED_ADMIN_URL_ENV] || process.env.DATABASE_URL;
  if (!url) {
    throw new Error(
      `no test database: set DATABASE_URL, or add @coderunner/db/testing-global-setup to vitest's globalSetup`,
    );
  }
  return url;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export interface TestDatabase {
  name: string;
  url: string;
  /** Drops the database (terminating leftover connections). */
  drop(): Promise<void>;
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl() });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(prefix = 'cr_test'): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE "${name}"`);
  return {
    name,
    url: withDatabase(adminUrl(), name),
    drop: () => adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}

export interface MigratedTestDatabase extends TestDatabase {
  sequelize: Sequelize;
  /** Closes the pool and drops the database. */
  close(): Promise<void>;
}

/** A fresh database with every migration applied and the models bound to it. */
export async function createMigratedTestDatabase(): Promise<MigratedTestDatabase> {
  const db = await createTestDatabase();
  const sequelize = connect(db.url, { poolMax: 5 });
  await migrateUp(sequelize);
  return {
    ...db,
    sequelize,
    async close() {
      await sequelize.close();
      await db.drop();
    },
  };
}

/** A free TCP port on 127.0.0.1 (the workspace's one helper). */
export const freePort = () => findFreePort();

/** vitest globalSetup body: start one embedded cluster for the run when DATABASE_URL is not set. */
export async function startTestCluster(): Promise<() => Promise<void>> {
  if (process.env.DATABASE_URL) return async () => {};
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-test-pg-'));
  const cluster = await startEmbeddedPostgres({ dataDir, port: await freePort() });
  process.env[EMBEDDED_ADMIN_URL_ENV] = cluster.url('postgres');
  return async () => {
    await cluster.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
}
