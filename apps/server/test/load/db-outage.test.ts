/**
 * PostgreSQL stopped for 10 s under light load. A PRIVATE embedded cluster (temp folder, free port;
 * never the shared one) serves a server child process; 10 users create projects and list them while
 * the cluster is stopped (fast shutdown) and, 10 s later, started again on the same folder and port.
 *
 * Asserts: during the outage every request is answered, as an error, within a bound (no hang);
 * /readyz answers 503 with a reason; afterwards everything works again without restarting the server;
 * every project whose creation was acknowledged exists (checked in SQL).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@coderunner/api/client';
import { type EmbeddedPostgres, ensureDatabaseExists, startEmbeddedPostgres } from '@coderunner/db';
import { freePort } from '@coderunner/db/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appFolder, curl, deployFolder, processesOfSandbox, waitForStatus } from '../fixtures/deploy-helpers';
import { type CallResult, percentile, trpcCall } from './fixtures/http';
import { cleanupStack, type ServerProcess, sleep, startServerProcess } from './fixtures/server-process';
import { startStallProxy } from './fixtures/stall-proxy';

const CLIENTS = 10;
const BEFORE_MS = 5_000;
const OUTAGE_MS = 10_000;
/** A request made while the database is down must be answered within this. */
const FAIL_FAST_MS = 12_000;
/** After the database is back, requests must succeed again within this. */
const RECOVERY_MS = 10_000;
const AFTER_MS = 12_000;
const PASSWORD = 'an outage test passphrase';

const cleanup = cleanupStack();
let pgDir: string;
let pgPort: number;
let cluster: EmbeddedPostgres | undefined;
let dbUrl: string;
let server: ServerProcess;

beforeAll(async () => {
  pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-outage-pg-'));
  cleanup.add('remove cluster folder', () => fs.rmSync(pgDir, { recursive: true, force: true }));
  pgPort = await freePort();
  cluster = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
  cleanup.add('stop cluster', () => cluster?.stop());
  await ensureDatabaseExists(cluster.url('postgres'), 'coderunner');
  dbUrl = cluster.url('coderunner');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-outage-data-'));
  fs.chmodSync(dataDir, 0o711); // the sandbox user must reach its folders inside
  cleanup.add('remove data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  cleanup.add('kill sandbox processes', () => {
    const dir = path.join(dataDir, 'sandboxes');
    const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    for (const name of names)
      for (const pid of processesOfSandbox(name.replace(/^\.creating-/, '').replace(/-\d+$/, '')))
        process.kill(pid, 'SIGKILL');
  });
  server = await startServerProcess({
    port: await freePort(),
    env: {
      DATABASE_URL: dbUrl,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'db-outage-test-secret-db-outage-test-secret',
      CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000000',
    },
  });
  cleanup.add('stop server', () => server.stop());
}, 120_000);

afterAll(() => cleanup.run(), 60_000);

async function sqlQuery<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: dbUrl });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

interface Timed extends CallResult {
  op: string;
}

describe('PostgreSQL stopped for 10 s during load', () => {
  it('requests fail fast, /readyz says 503 with a reason, the server recovers by itself, no acknowledged write is lost', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const email = `outage-${i}@example.com`;
      const r = await trpcCall(server.trpc, 'mutation', 'auth.register', { email, password: PASSWORD });
      expect(r.status, r.message).toBe(200);
      tokens.push(r.data.token);
    }
    await sqlQuery(`UPDATE users SET plan_type = 'team'`);

    const results: Timed[] = [];
    const acknowledged: string[] = [];
    let stopLoad = false;
    const client = async (i: number) => {
      let n = 0;
      while (!stopLoad && n < 95) {
        const opts = { token: tokens[i], timeoutMs: 30_000 };
        const name = `c${i}-p${n++}`;
        const created = await trpcCall(server.trpc, 'mutation', 'projects.create', { name }, opts);
        results.push({ ...created, op: 'projects.create' });
        if (created.status === 200) acknowledged.push(created.data.id);
        const listed = await trpcCall(server.trpc, 'query', 'projects.list', { limit: 5 }, opts);
        results.push({ ...listed, op: 'projects.list' });
        await sleep(created.status === 200 ? 150 : 300);
      }
    };
    const readyz: { at: number; status: number; ms: number; body: string }[] = [];
    const pollReady = async () => {
      while (!stopLoad) {
        const at = Date.now();
        const started = performance.now();
        try {
          const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(15_000) });
          readyz.push({ at, status: res.status, ms: performance.now() - started, body: await res.text() });
        } catch (err) {
          readyz.push({ at, status: 0, ms: performance.now() - started, body: String(err) });
        }
        await sleep(500);
      }
    };

    const t0 = Date.now();
    const load = Promise.all([...Array.from({ length: CLIENTS }, (_, i) => client(i)), pollReady()]);
    let outageStart = 0;
    let outageEnd = 0;
    try {
      await sleep(BEFORE_MS);
      outageStart = Date.now();
      await cluster!.stop();
      const stoppedAt = Date.now();
      await sleep(Math.max(0, OUTAGE_MS - (stoppedAt - outageStart)));
      cluster = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
      outageEnd = Date.now();
      await sleep(AFTER_MS);
    } finally {
      stopLoad = true;
      await load;
    }

    const rel = (t: number) => ((t - t0) / 1000).toFixed(1);
    const during = results.filter((r) => r.at >= outageStart && r.at < outageEnd);
    const failedDuring = during.filter((r) => r.status !== 200);
    const okAfter = results.filter((r) => r.at >= outageEnd && r.status === 200).sort((a, b) => a.at - b.at);
    const firstOkAfter = okAfter[0];
    const recoveredAt = firstOkAfter ? firstOkAfter.at + firstOkAfter.ms : Number.POSITIVE_INFINITY;
    const failedLate = results.filter((r) => r.at > recoveredAt + 1_000 && r.status !== 200);
    const statusCount = (rs: Timed[]) =>
      Object.entries(
        rs.reduce<Record<string, number>>((acc, r) => {
          const k = r.status ? `${r.status} ${r.code ?? ''}`.trim() : `no answer (${r.failure})`;
          acc[k] = (acc[k] ?? 0) + 1;
          return acc;
        }, {}),
      )
        .map(([k, v]) => `${k}×${v}`)
        .join(', ');
    const lat = (rs: Timed[]) => rs.map((r) => r.ms).sort((a, b) => a - b);
    const failLat = lat(failedDuring);
    const messages = [
      ...new Set(failedDuring.map((r) => (r.message ?? r.failure ?? '').replace(/[0-9a-f-]{36}/g, '<id>'))),
    ];
    const readyDuring = readyz.filter((r) => r.at >= outageStart && r.at < outageEnd);
    console.log(
      `[db-outage] cluster stopped at t+${rel(outageStart)} s, started again at t+${rel(outageEnd)} s; ` +
        `${results.length} calls, ${acknowledged.length} projects acknowledged\n` +
        `  during the outage: ${during.length} calls [${statusCount(during)}]; failures answered in ` +
        `p50 ${percentile(failLat, 50).toFixed(0)} ms, p99 ${percentile(failLat, 99).toFixed(0)} ms, max ${(failLat.at(-1) ?? 0).toFixed(0)} ms\n` +
        `  failure messages: ${JSON.stringify(messages.slice(0, 5))}\n` +
        `  /readyz during the outage: ${readyDuring.map((r) => `${r.status} in ${r.ms.toFixed(0)} ms`).join(', ')}; ` +
        `bodies ${JSON.stringify([...new Set(readyDuring.map((r) => r.body))].slice(0, 3))}\n` +
        `  first success after the restart: ${firstOkAfter ? `${((recoveredAt - outageEnd) / 1000).toFixed(2)} s after it` : 'none'}; ` +
        `failures later than 1 s after that: ${failedLate.length} [${statusCount(failedLate)}]\n` +
        `  server: alive ${!server.exited()}, error log lines ${server.errorLines().length}` +
        ` (capped at 500), warnings ${JSON.stringify([...new Set(server.warnLines().map((l) => JSON.parse(l).msg))])}`,
    );

    // The server rode it out: same process, still serving.
    expect(server.exited(), server.output().slice(-3000)).toBe(false);
    // Before the outage everything worked.
    const before = results.filter((r) => r.at + r.ms < outageStart);
    expect(before.length).toBeGreaterThan(CLIENTS);
    expect(before.filter((r) => r.status !== 200)).toEqual([]);
    // During: every request answered, as an error, quickly; no request without an answer.
    expect(failedDuring.length).toBeGreaterThan(0);
    expect(
      results.filter((r) => r.status === 0).map((r) => ({ op: r.op, ms: r.ms, failure: r.failure })),
    ).toEqual([]);
    expect(Math.max(...during.map((r) => r.ms)), 'slowest answer during the outage').toBeLessThan(
      FAIL_FAST_MS,
    );
    for (const r of failedDuring) {
      expect(r.status, JSON.stringify(r)).toBeGreaterThanOrEqual(500);
      expect(r.code, JSON.stringify(r)).toBeDefined(); // a tRPC error, not a dropped connection
    }
    // /readyz: 503 with the reason while down, quickly; 200 again afterwards.
    const down = readyDuring.filter((r) => r.status === 503);
    expect(down.length, JSON.stringify(readyDuring)).toBeGreaterThan(0);
    for (const r of down) {
      expect(JSON.parse(r.body)).toEqual({
        status: 'unavailable',
        reason: expect.stringMatching(/database unreachable/),
      });
      expect(r.ms).toBeLessThan(3_000);
    }
    expect(readyz.at(-1)?.status).toBe(200);
    // Recovery without a restart, within a bound; nothing fails after it.
    expect(recoveredAt - outageEnd, 'time to the first success after the database came back').toBeLessThan(
      RECOVERY_MS,
    );
    expect(failedLate.map((r) => ({ op: r.op, status: r.status, message: r.message }))).toEqual([]);
    // No acknowledged write lost.
    const stored = await sqlQuery<{ id: string }>('SELECT id FROM projects WHERE id = ANY($1::uuid[])', [
      acknowledged,
    ]);
    expect(new Set(stored.map((r) => r.id))).toEqual(new Set(acknowledged));

    // The deployment engine came through too: a deployment queued now is built and served.
    const api = createClient({ url: server.trpc, token: tokens[0] });
    const project = await api.projects.create.mutate({ name: 'after-the-outage' });
    const app = appFolder({
      'coderunner.json': JSON.stringify({ start: 'node server.js' }),
      'server.js':
        "require('http').createServer((q, s) => s.end('back')).listen(process.env.PORT, '127.0.0.1');",
    });
    cleanup.add('remove app folder', () => fs.rmSync(app, { recursive: true, force: true }));
    const d = await deployFolder(api, project.id, app);
    const running = await waitForStatus(api, d.id, ['RUNNING', 'FAILED'], 30_000);
    expect(running.status).toBe('RUNNING');
    expect((await curl(running.publicUrl!)).body).toBe('back');
    expect((await api.deployments.destroy.mutate({ id: d.id })).status).toBe('DESTROYED');

    // While the database was down every call answered 503 SERVICE_UNAVAILABLE with Retry-After, not
    // 500: a client (the CLI) can tell "retry later" from "report a bug" (packages/api/src/trpc.ts).
    expect(failedDuring.length).toBeGreaterThan(0);
    for (const r of failedDuring) {
      expect({ status: r.status, code: r.code }).toEqual({ status: 503, code: 'SERVICE_UNAVAILABLE' });
      expect(r.message).toMatch(/database/i);
    }

    // Both LISTEN loops are back (packages/db/src/listen.ts reconnects): this replica learns of other
    // replicas' deployments and status changes at once.
    const listens = (
      await sqlQuery<{ query: string }>(
        `SELECT query FROM pg_stat_activity WHERE datname = 'coderunner' AND query ILIKE 'LISTEN %'`,
      )
    ).map((r) => r.query);
    console.log(`[db-outage] LISTEN connections after the outage: ${JSON.stringify(listens)}`);
    expect(listens).toContain('LISTEN "coderunner_deployments_pending"');
    expect(listens).toContain('LISTEN "coderunner_deployment_status"');
  }, 120_000);
});

describe('PostgreSQL stalled (network partition: packets held, nothing refused) for 15 s', () => {
  const STALL_MS = 15_000;

  it('/readyz says 503 within 3 s while stalled; afterwards the server serves again and keeps acknowledged writes', async () => {
    // A second server whose database connections go through a proxy that can hold every byte.
    const proxy = await startStallProxy(pgPort);
    cleanup.add('close proxy', () => proxy.close());
    const u = new URL(dbUrl);
    u.port = String(proxy.port);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-stall-data-'));
    cleanup.add('remove stall data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
    const stalled = await startServerProcess({
      port: await freePort(),
      env: {
        DATABASE_URL: u.toString(),
        CODERUNNER_DATA_DIR: dataDir,
        CODERUNNER_AUTH_SECRET: 'db-outage-test-secret-db-outage-test-secret',
        CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '1000000',
      },
    });
    cleanup.add('stop stall server', () => stalled.stop());
    const reg = await trpcCall(stalled.trpc, 'mutation', 'auth.register', {
      email: 'stall@example.com',
      password: PASSWORD,
    });
    expect(reg.status, reg.message).toBe(200);
    const token = reg.data.token as string;
    await sqlQuery(`UPDATE users SET plan_type = 'team' WHERE email = 'stall@example.com'`);

    const results: Timed[] = [];
    const acknowledged: string[] = [];
    let stop = false;
    let n = 0;
    const client = async () => {
      while (!stop && n < 400) {
        const opts = { token, timeoutMs: 40_000 };
        if (n++ % 4 === 0) {
          const created = await trpcCall(
            stalled.trpc,
            'mutation',
            'projects.create',
            { name: `s-${n}` },
            opts,
          );
          results.push({ ...created, op: 'projects.create' });
          if (created.status === 200) acknowledged.push(created.data.id);
        }
        const listed = await trpcCall(stalled.trpc, 'query', 'projects.list', { limit: 5 }, opts);
        results.push({ ...listed, op: 'projects.list' });
        await sleep(200);
      }
    };
    const readyz: { at: number; status: number; ms: number }[] = [];
    const pollReady = async () => {
      while (!stop) {
        const at = Date.now();
        const started = performance.now();
        const res = await fetch(`${stalled.url}/readyz`, { signal: AbortSignal.timeout(15_000) }).catch(
          () => null,
        );
        readyz.push({ at, status: res?.status ?? 0, ms: performance.now() - started });
        await res?.text();
        await sleep(1_000);
      }
    };
    const t0 = Date.now();
    const load = Promise.all([client(), client(), client(), pollReady()]);
    let stallStart = 0;
    let stallEnd = 0;
    try {
      await sleep(2_000);
      stallStart = Date.now();
      proxy.stall();
      await sleep(STALL_MS);
      proxy.release();
      stallEnd = Date.now();
      await sleep(5_000);
    } finally {
      proxy.release();
      stop = true;
      await load;
    }
    // Writes acknowledged around the stall are kept (a create after the load, through the same pool).
    const after = await trpcCall(
      stalled.trpc,
      'mutation',
      'projects.create',
      { name: 'after-stall' },
      { token },
    );
    expect(after.status, `${after.message}\n${stalled.errorLines().slice(-3).join('\n')}`).toBe(200);
    acknowledged.push(after.data.id);

    const during = results.filter((r) => r.at >= stallStart && r.at < stallEnd);
    const rel = (t: number) => ((t - t0) / 1000).toFixed(1);
    // Probes answered while the stall lasted (one started just before the release may see 200).
    const readyDuring = readyz.filter((r) => r.at >= stallStart && r.at + r.ms < stallEnd);
    console.log(
      `[db-stall] proxy paused at t+${rel(stallStart)} s for ${STALL_MS / 1000} s; calls started during the stall: ` +
        `${during.map((r) => `${r.op} ${r.status || r.failure} in ${(r.ms / 1000).toFixed(1)} s`).join(', ')}\n` +
        `  /readyz during the stall: ${readyDuring.map((r) => `${r.status} in ${r.ms.toFixed(0)} ms`).join(', ')}; ` +
        `last /readyz ${readyz.at(-1)?.status}; server alive ${!stalled.exited()}`,
    );

    expect(stalled.exited()).toBe(false);
    expect(readyDuring.length).toBeGreaterThan(0);
    for (const r of readyDuring) {
      expect(r.status).toBe(503);
      expect(r.ms).toBeLessThan(3_000);
    }
    expect(readyz.at(-1)?.status).toBe(200);
    const late = results.filter((r) => r.at > stallEnd + 2_000);
    expect(late.length).toBeGreaterThan(0);
    expect(late.filter((r) => r.status === 0 || r.status >= 500)).toEqual([]);
    const stored = await sqlQuery<{ id: string }>('SELECT id FROM projects WHERE id = ANY($1::uuid[])', [
      acknowledged,
    ]);
    expect(stored).toHaveLength(acknowledged.length);

    // A query on a connection whose peer stopped answering is given up on the client side (pg's
    // query_timeout, set in packages/db/src/connection.ts): every call started during the stall is
    // answered within a bound, failures as 503, and the pool refills once the database is back.
    expect(during.length).toBeGreaterThan(0);
    for (const r of during) {
      expect(r.ms, `${r.op}: ${r.status || r.failure}`).toBeLessThan(FAIL_FAST_MS);
      if (r.status !== 200)
        expect({ op: r.op, status: r.status, code: r.code }).toMatchObject({ status: 503 });
    }
  }, 120_000);
});
