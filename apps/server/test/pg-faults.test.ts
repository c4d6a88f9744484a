/**
 * The server process survives what PostgreSQL does when it restarts or fails over, and serves again
 * afterwards without a restart of its own:
 * - connections whose start-up ends with ReadyForQuery and a FATAL 57P01 in one read: pg emits
 *   `error` before Sequelize's connection manager listens for it, which is an uncaught exception
 *   unless the client has a listener from construction (packages/db/src/pg.ts);
 * - PostgreSQL stopped and started again, many times, while requests arrive and both LISTEN loops
 *   (new deployments, status changes) reconnect.
 * The server runs as a child process: a crash is an exit, not a test-runner warning.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@coderunner/api/client';
import {
  type EmbeddedPostgres,
  ensureDatabaseExists,
  GuardedClient,
  startEmbeddedPostgres,
} from '@coderunner/db';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { type PausableProxy, startPausableProxy } from '@coderunner/db/testing-proxy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupStack, type ServerProcess, sleep, startServerProcess } from './load/fixtures/server-process';

const PASSWORD = 'a pg fault test passphrase';

async function sql<T>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new GuardedClient({ connectionString: url });
  try {
    await c.connect();
    return (await c.query(text, values)).rows as T[];
  } finally {
    await c.end().catch(() => {});
  }
}

/** The channels the server LISTENs on right now (both loops must be back after a fault). */
async function listening(adminUrl: string, database: string): Promise<string[]> {
  const rows = await sql<{ query: string }>(
    adminUrl,
    `SELECT query FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN %' ORDER BY query`,
    [database],
  );
  return rows.map((r) => r.query);
}

const EXPECTED_LISTENS = [
  'LISTEN "coderunner_deployment_status"',
  'LISTEN "coderunner_deployments_pending"',
].sort();

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The HTTP status of a `projects.list` call. */
function statusOf(api: ReturnType<typeof createClient>): Promise<number> {
  return api.projects.list.query({}).then(
    () => 200,
    (err: { data?: { httpStatus?: number } }) => err.data?.httpStatus ?? 0,
  );
}

function expectNoCrash(server: ServerProcess): void {
  expect(server.exited()).toBe(false);
  const out = server.output();
  expect(out).not.toMatch(/Unhandled 'error' event|crashed \(|uncaught exception/i);
}

async function startServer(databaseUrl: string, cleanup: ReturnType<typeof cleanupStack>) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-pgfault-data-'));
  cleanup.add('remove data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  const server = await startServerProcess({
    port: await freePort(),
    env: {
      DATABASE_URL: databaseUrl,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'pg-fault-test-secret-pg-fault-test-secret',
      CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000000',
    },
  });
  cleanup.add('stop server', () => server.stop());
  const anon = createClient({ url: server.trpc });
  const { token } = await anon.auth.register.mutate({
    email: `pgfault-${server.port}@example.com`,
    password: PASSWORD,
  });
  const api = createClient({ url: server.trpc, token });
  await api.projects.create.mutate({ name: 'survivor' });
  return { server, api };
}

describe('connections that end with a FATAL error in the start-up read', () => {
  const cleanup = cleanupStack();
  let db: TestDatabase;
  let proxy: PausableProxy;
  let server: ServerProcess;
  let api: ReturnType<typeof createClient>;

  beforeAll(async () => {
    db = await createTestDatabase();
    cleanup.add('drop database', () => db.drop());
    const target = new URL(db.url);
    proxy = await startPausableProxy(Number(target.port || 5432), target.hostname);
    cleanup.add('close proxy', () => proxy.close());
    const via = new URL(db.url);
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    ({ server, api } = await startServer(via.toString(), cleanup));
    await waitFor('both LISTEN loops', async () => (await listening(db.url, db.name)).length === 2);
  }, 120_000);
  afterAll(() => cleanup.run(), 60_000);

  it('the server process survives dozens of them, then serves and LISTENs again', async () => {
    expect((await api.projects.list.query({})).items).toHaveLength(1);
    proxy.poisonStartups(true);
    // Every connection the server holds goes; each new one (pool or LISTEN) is poisoned.
    await sql(
      db.url,
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [db.name],
    );
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      statuses.push(await statusOf(api));
      expect(server.exited()).toBe(false);
    }
    await sleep(2_500); // the LISTEN loops retry (and are poisoned) meanwhile
    expect(proxy.poisoned).toBeGreaterThanOrEqual(30);
    expect(new Set(statuses)).toEqual(new Set([503]));
    expectNoCrash(server);

    proxy.poisonStartups(false);
    await waitFor('/readyz 200', async () => (await fetch(`${server.url}/readyz`)).status === 200);
    expect((await api.projects.list.query({})).items).toHaveLength(1);
    await waitFor('both LISTEN loops back', async () => {
      return JSON.stringify(await listening(db.url, db.name)) === JSON.stringify(EXPECTED_LISTENS);
    });
    expectNoCrash(server);
  });
});

describe('PostgreSQL restarted again and again under a running server', () => {
  const cleanup = cleanupStack();
  let pgDir: string;
  let pgPort: number;
  let cluster: EmbeddedPostgres | undefined;
  let server: ServerProcess;
  let api: ReturnType<typeof createClient>;

  beforeAll(async () => {
    pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-pgfault-pg-'));
    cleanup.add('remove cluster folder', () => fs.rmSync(pgDir, { recursive: true, force: true }));
    pgPort = await freePort();
    cluster = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
    cleanup.add('stop cluster', () => cluster?.stop());
    await ensureDatabaseExists(cluster.url('postgres'), 'coderunner');
    ({ server, api } = await startServer(cluster.url('coderunner'), cleanup));
  }, 120_000);
  afterAll(() => cleanup.run(), 60_000);

  it('10 restarts while requests arrive: no crash, ready again each time, both LISTEN loops back', async () => {
    let stop = false;
    const seen = new Map<number, number>();
    // A steady trickle of calls, so that the pool reconnects at every moment of each restart.
    const traffic = (async () => {
      while (!stop) {
        const status = await statusOf(api);
        seen.set(status, (seen.get(status) ?? 0) + 1);
        await sleep(20);
      }
    })();
    try {
      for (let round = 0; round < 10; round++) {
        await cluster!.stop();
        await sleep(50 + ((round * 97) % 400));
        cluster = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
        // Vary how far the server's reconnection gets before the next restart (LISTEN being set up).
        await sleep((round * 137) % 700);
        expect(server.exited()).toBe(false);
      }
      await waitFor('/readyz 200', async () => (await fetch(`${server.url}/readyz`)).status === 200);
      await waitFor('both LISTEN loops back', async () => {
        return (
          JSON.stringify(await listening(cluster!.url('postgres'), 'coderunner')) ===
          JSON.stringify(EXPECTED_LISTENS)
        );
      });
    } finally {
      stop = true;
      await traffic;
    }
    expect(await statusOf(api)).toBe(200);
    // Calls made while the database was down were answered 503, never 500.
    expect([...seen.keys()].filter((s) => s !== 200 && s !== 503)).toEqual([]);
    expect(seen.get(503) ?? 0).toBeGreaterThan(0);
    expectNoCrash(server);
  });
});
