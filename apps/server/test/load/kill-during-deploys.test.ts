/**
 * SIGKILL during deploys: a server child process (temp data folder, 0711) builds 5 deployments of a
 * dependency-free Node app whose build takes 2 s; it is SIGKILLed while some are PROVISIONING or
 * BUILDING and some RUNNING, then started again with CODERUNNER_STUCK_AFTER_S=2 and
 * CODERUNNER_RECONCILE_INTERVAL_S=1, SIGKILLed again as soon as it rebuilds something, and started a
 * third time.
 *
 * Asserts: every deployment settles (RUNNING or FAILED) within a bound, and the RUNNING ones serve;
 * after destroying them all, no process of any sandbox ever used remains, no sandbox folder remains
 * and no stored source remains.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appFolder, curl, deployFolder, processesOfSandbox } from '../fixtures/deploy-helpers';
import { cleanupStack, type ServerProcess, sleep, startServerProcess } from './fixtures/server-process';

const DEPLOYMENTS = 5;
/** From the restart until every deployment is RUNNING or FAILED. */
const SETTLE_BOUND_MS = 90_000;
const ACTIVE = ['PENDING', 'PROVISIONING', 'BUILDING'];

const cleanup = cleanupStack();
let db: TestDatabase;
let sql: pg.Client;
let dataDir: string;
let port: number;
const servers: ServerProcess[] = [];
/** Every sandbox id seen in the database or on disk. */
const sandboxIds = new Set<string>();

function sandboxFolders(): string[] {
  try {
    // The projects' build cache lives beside the sandboxes and outlives their deployments by design
    // (kept for the next build, dropped with the project): it is no sandbox.
    return fs.readdirSync(path.join(dataDir, 'sandboxes')).filter((name) => name !== '.build-cache');
  } catch {
    return [];
  }
}

function noteSandboxes(rows: { sandbox: string | null }[] = []) {
  for (const r of rows) if (r.sandbox) sandboxIds.add(r.sandbox);
  for (const name of sandboxFolders()) {
    const id = name.replace(/^\.creating-/, '').replace(/-\d+$/, '');
    if (/^local-[0-9a-f]{12}$/.test(id)) sandboxIds.add(id);
  }
}

async function statuses(ids: string[]) {
  const { rows } = await sql.query<{
    id: string;
    status: string;
    sandbox: string | null;
    publicUrl: string | null;
  }>(
    `SELECT id, status, app_sandbox_id AS sandbox, public_url AS "publicUrl" FROM deployments WHERE id = ANY($1::uuid[])`,
    [ids],
  );
  noteSandboxes(rows);
  return rows;
}

function start(extra: Record<string, string> = {}) {
  return startServerProcess({
    port,
    env: {
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'kill-during-deploys-secret-kill-during-deploys',
      ...extra,
    },
  }).then((s) => {
    servers.push(s);
    return s;
  });
}

beforeAll(async () => {
  db = await createTestDatabase('cr_kill');
  cleanup.add('drop database', () => db.drop());
  sql = new pg.Client({ connectionString: db.url });
  sql.on('error', () => {});
  await sql.connect();
  cleanup.add('close sql', () => sql.end());
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-kill-'));
  fs.chmodSync(dataDir, 0o711); // the sandbox user must reach its folders inside
  cleanup.add('remove data dir', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  // Whatever happened, no sandbox process outlives the test (they run in their own process groups).
  cleanup.add('kill sandbox processes', () => {
    noteSandboxes();
    for (const id of sandboxIds) for (const pid of processesOfSandbox(id)) process.kill(pid, 'SIGKILL');
  });
  port = await freePort();
  cleanup.add('stop servers', async () => {
    for (const s of servers) await s.kill();
  });
}, 60_000);

afterAll(() => cleanup.run(), 60_000);

describe('SIGKILL of the server during deploys', () => {
  it('after a restart every deployment settles; destroying them leaves no process, sandbox folder or source', async () => {
    const first = await start();
    const anon = createClient({ url: first.trpc });
    const { token, user } = await anon.auth.register.mutate({
      email: 'killer@example.com',
      password: 'kill during deploys',
    });
    await sql.query(`UPDATE users SET plan_type = 'team' WHERE id = $1`, [user.id]);
    const client: CodeRunnerClient = createClient({ url: first.trpc, token });
    // A project each: deploys to one project would replace each other (the older ones stop after the drain).
    const projects = [];
    for (let i = 0; i < DEPLOYMENTS; i++)
      projects.push(await client.projects.create.mutate({ name: `slow-builds-${i}` }));
    const app = appFolder({
      'package.json': JSON.stringify({
        name: 'slow',
        scripts: { build: 'sleep 2 && echo built', start: 'node server.js' },
      }),
      'server.js':
        "require('http').createServer((q, s) => s.end('alive')).listen(process.env.PORT, '127.0.0.1');",
    });
    cleanup.add('remove app folder', () => fs.rmSync(app, { recursive: true, force: true }));
    const ids: string[] = [];
    for (const project of projects) ids.push((await deployFolder(client, project.id, app)).id);

    // Kill when some are being built and some already run (or when the time for that is over).
    const killBy = Date.now() + 60_000;
    let atKill: { status: string }[] = [];
    for (;;) {
      atKill = await statuses(ids);
      const count = (ss: string[]) => atKill.filter((r) => ss.includes(r.status)).length;
      if (count(['RUNNING']) >= 1 && count(['PROVISIONING', 'BUILDING']) >= 1) break;
      if (Date.now() > killBy || count(ACTIVE) === 0) break;
      await sleep(100);
    }
    first.child.kill('SIGKILL');
    await first.waitExit();
    noteSandboxes();
    const seenAtKill = atKill.map((r) => r.status).sort();
    console.log(`[kill-during-deploys] SIGKILL with deployments ${seenAtKill.join(', ')}`);
    expect(
      seenAtKill.some((s) => ACTIVE.includes(s)),
      'killed while deploys were in flight',
    ).toBe(true);

    // The restarted server is killed too, as soon as it rebuilds something (a crash loop), then
    // started a third time. Retries are counted in each deployment's log, across processes: with
    // three allowed, a build interrupted by both kills is still retried, so nothing may end FAILED.
    const fast = {
      CODERUNNER_STUCK_AFTER_S: '2',
      CODERUNNER_RECONCILE_INTERVAL_S: '1',
      CODERUNNER_BUILD_RETRIES: '3',
    };
    const second = await start(fast);
    const rebuildBy = Date.now() + 20_000;
    let atSecondKill: { status: string }[] = [];
    for (;;) {
      atSecondKill = await statuses(ids);
      if (atSecondKill.some((r) => ['PROVISIONING', 'BUILDING'].includes(r.status)) || Date.now() > rebuildBy)
        break;
      await sleep(100);
    }
    second.child.kill('SIGKILL');
    await second.waitExit();
    noteSandboxes();
    console.log(
      `[kill-during-deploys] second SIGKILL with deployments ${atSecondKill
        .map((r) => r.status)
        .sort()
        .join(', ')}`,
    );

    const restartedAt = Date.now();
    const third = await start(fast);
    let settled = await statuses(ids);
    while (settled.some((r) => !['RUNNING', 'FAILED'].includes(r.status))) {
      if (Date.now() - restartedAt > SETTLE_BOUND_MS) break;
      await sleep(250);
      settled = await statuses(ids);
    }
    const settleSeconds = (Date.now() - restartedAt) / 1000;
    console.log(
      `[kill-during-deploys] ${settleSeconds.toFixed(1)} s after the restart: ${settled
        .map((r) => r.status)
        .sort()
        .join(', ')}; sandboxes seen so far ${sandboxIds.size}`,
    );
    expect(
      settled.filter((r) => !['RUNNING', 'FAILED'].includes(r.status)),
      `not settled within ${SETTLE_BOUND_MS / 1000} s`,
    ).toEqual([]);

    const after = createClient({ url: third.trpc, token });
    const failedLogs: string[] = [];
    for (const r of settled.filter((x) => x.status === 'FAILED')) {
      const lines: string[] = [];
      await new Promise<void>((resolve) => {
        const sub = after.deployments.logs.subscribe(
          { id: r.id },
          {
            onData: (e) => lines.push(...e.data.lines.map((l) => l.text)),
            onError: () => resolve(),
            onComplete: () => resolve(),
          },
        );
        setTimeout(() => {
          sub.unsubscribe();
          resolve();
        }, 3_000);
      });
      failedLogs.push(`${r.id}:\n  ${lines.slice(-8).join('\n  ')}`);
    }
    if (failedLogs.length)
      console.log(`[kill-during-deploys] FAILED deployments' logs:\n${failedLogs.join('\n')}`);
    // Nothing in the product makes these builds fail: each is retried after the kill and succeeds.
    expect(
      settled.map((r) => r.status),
      failedLogs.join('\n'),
    ).toEqual(ids.map(() => 'RUNNING'));
    for (const r of settled) expect((await curl(r.publicUrl!)).body, r.id).toBe('alive');
    // Only the recorded sandbox of each deployment still has processes.
    const recorded = new Set(settled.map((r) => r.sandbox));
    noteSandboxes();
    const strays = [...sandboxIds].filter((id) => !recorded.has(id) && processesOfSandbox(id).length);
    console.log(
      `[kill-during-deploys] sandboxes with processes that no deployment records: ${strays.length}`,
    );

    for (const id of ids) expect((await after.deployments.destroy.mutate({ id })).status).toBe('DESTROYED');
    noteSandboxes();
    const leftovers = [...sandboxIds]
      .map((id) => ({ id, pids: processesOfSandbox(id) }))
      .filter((x) => x.pids.length);
    expect(leftovers, 'processes of destroyed sandboxes').toEqual([]);
    expect(sandboxFolders(), 'sandbox folders').toEqual([]);
    expect(fs.readdirSync(path.join(dataDir, 'sources')), 'stored sources').toEqual([]);
    expect(third.exited()).toBe(false);
    expect(third.errorLines(), 'error lines in the restarted server log').toEqual([]);
  }, 240_000);
});
