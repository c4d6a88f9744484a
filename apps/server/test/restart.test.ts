import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UNISOLATED_OPEN_SIGNUP_ACCEPTANCE } from '@coderunner/api';
import { createClient } from '@coderunner/api/client';
import { QueryTypes } from '@coderunner/db';
import { createMigratedTestDatabase, freePort, type MigratedTestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  curl,
  deployFolder,
  logText,
  processesOfSandbox,
  waitForStatus,
} from './fixtures/deploy-helpers';

const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.ts');
let db: MigratedTestDatabase;
let dataDir: string;
let port: number;
const children: ChildProcess[] = [];

function startServerProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', main], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      PORT: String(port),
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'restart-test-secret-restart-test-secret',
      CODERUNNER_STUCK_AFTER_S: '2',
      CODERUNNER_RECONCILE_INTERVAL_S: '1',
      LOG_LEVEL: 'info',
      // Two tests register on this database; unisolated, sign-up would close after the first account.
      CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('CodeRunner is listening')) resolve(child);
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${out}`)));
  });
}

beforeAll(async () => {
  db = await createMigratedTestDatabase();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-restart-'));
  fs.chmodSync(dataDir, 0o711);
  port = await freePort();
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await db.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('a server killed mid-build', () => {
  it('after SIGKILL during BUILDING and a restart, the deployment ends RUNNING and no orphan process remains', async () => {
    const first = await startServerProcess();
    const url = `http://127.0.0.1:${port}/trpc`;
    const { token } = await createClient({ url }).auth.register.mutate({
      email: 'kill@example.com',
      password: 'kill password',
    });
    const client = createClient({ url, token });
    const project = await client.projects.create.mutate({ name: 'slow' });
    const d = await deployFolder(
      client,
      project.id,
      appFolder({
        'package.json': JSON.stringify({
          scripts: { build: 'sleep 4 && echo built', start: 'node server.js' },
        }),
        'server.js':
          "require('http').createServer((q, s) => s.end('survived')).listen(process.env.PORT, '127.0.0.1');",
      }),
    );
    await waitForStatus(client, d.id, ['BUILDING'], 30_000);
    await new Promise((r) => setTimeout(r, 500)); // the build command is running
    const [{ sandbox }] = (await db.sequelize.query(
      'SELECT app_sandbox_id AS sandbox FROM deployments WHERE id = :id',
      {
        type: QueryTypes.SELECT,
        replacements: { id: d.id },
      },
    )) as [{ sandbox: string }];
    // The build command is running (isolated sandboxes take a moment longer to start it).
    await eventually(async () => processesOfSandbox(sandbox).length > 0, 10_000, 'the build to run');

    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    await startServerProcess();
    const settled = await waitForStatus(client, d.id, ['RUNNING', 'FAILED'], 60_000);
    expect(settled.status).toBe('RUNNING');
    expect((await curl(settled.publicUrl!)).body).toBe('survived');
    expect(processesOfSandbox(sandbox)).toEqual([]); // the build the dead server left was killed
    expect(fs.existsSync(path.join(dataDir, 'sandboxes', sandbox))).toBe(false);

    // A restart leaves running apps alone: the new server routes to the app that kept running.
    children.at(-1)!.kill('SIGKILL');
    await new Promise((r) => children.at(-1)!.once('exit', r));
    await startServerProcess();
    expect((await curl(settled.publicUrl!)).body).toBe('survived');

    // A host reboot kills the apps too: the restarted server brings them back from the stored source.
    const [{ current }] = (await db.sequelize.query(
      'SELECT app_sandbox_id AS current FROM deployments WHERE id = :id',
      {
        type: QueryTypes.SELECT,
        replacements: { id: d.id },
      },
    )) as [{ current: string }];
    children.at(-1)!.kill('SIGKILL');
    await new Promise((r) => children.at(-1)!.once('exit', r));
    for (const pid of processesOfSandbox(current)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already: killing an isolated sandbox's namespace init takes every process in it along.
      }
    }
    await startServerProcess();
    await waitForStatus(client, d.id, ['PENDING', 'PROVISIONING', 'BUILDING'], 30_000).catch(() => null);
    const restored = await waitForStatus(client, d.id, ['RUNNING', 'FAILED'], 60_000);
    expect(restored.status).toBe('RUNNING');
    expect(restored.publicUrl).toBe(settled.publicUrl);
    expect((await curl(restored.publicUrl!)).body).toBe('survived');
    await client.deployments.destroy.mutate({ id: d.id });
  }, 180_000); // three server starts and up to three builds, isolated, on a loaded 2-core machine
});

async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('an app that keeps running through a server restart', () => {
  it('its new output reaches the deployment log again, and its exit fails the deployment (restart: never)', async () => {
    for (const c of children.filter((c) => c.exitCode === null && c.signalCode === null)) {
      c.kill('SIGKILL'); // the previous test's server holds the port
      await new Promise((r) => c.once('exit', r));
    }
    const first = await startServerProcess();
    const url = `http://127.0.0.1:${port}/trpc`;
    const { token } = await createClient({ url }).auth.register.mutate({
      email: 'adopted@example.com',
      password: 'adopted password',
    });
    const client = createClient({ url, token });
    const project = await client.projects.create.mutate({ name: 'adopted' });
    const d = await deployFolder(
      client,
      project.id,
      appFolder({
        'coderunner.json': JSON.stringify({ start: 'node server.js', restart: 'never' }),
        'server.js': `require('http').createServer((q, s) => {
  console.log('hit ' + q.url);
  s.end('ok');
  if (q.url === '/exit') setTimeout(() => process.exit(3), 50);
}).listen(process.env.PORT, '127.0.0.1');`,
      }),
    );
    const running = await waitForStatus(client, d.id, ['RUNNING', 'FAILED'], 60_000);
    expect(running.status).toBe('RUNNING');
    const app = running.publicUrl!;
    expect((await curl(`${app}before`)).body).toBe('ok');
    await eventually(
      async () => (await logText(client, d.id)).includes('hit /before'),
      10_000,
      'hit /before',
    );

    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    await startServerProcess();
    await eventually(
      async () => (await logText(client, d.id)).includes("following the app's output again"),
      15_000,
      'the restarted server to follow the app',
    );
    expect((await curl(`${app}after`)).body).toBe('ok');
    await eventually(
      async () => (await logText(client, d.id)).includes('hit /after'),
      10_000,
      'hit /after in the log',
    );

    // The app ends on its own: the restarted server notices and says so.
    await curl(`${app}exit`);
    const failed = await waitForStatus(client, d.id, ['FAILED'], 15_000);
    expect(failed.status).toBe('FAILED');
    const finalLog = await logText(client, d.id);
    expect(finalLog, finalLog).toMatch(/FAILED: the app exited/);
    await client.deployments.destroy.mutate({ id: d.id });
  });
});

describe('the restart count across a server restart', () => {
  it('a new server process counts the exits the old one restarted, from the log, and restarts in the same sandbox itself', async () => {
    for (const c of children.filter((c) => c.exitCode === null && c.signalCode === null)) {
      c.kill('SIGKILL'); // the previous test's server holds the port
      await new Promise((r) => c.once('exit', r));
    }
    const first = await startServerProcess();
    const url = `http://127.0.0.1:${port}/trpc`;
    const { token } = await createClient({ url }).auth.register.mutate({
      email: 'counted@example.com',
      password: 'counted password',
    });
    const client = createClient({ url, token });
    const project = await client.projects.create.mutate({ name: 'counted' });
    const d = await deployFolder(
      client,
      project.id,
      appFolder({
        'coderunner.json': JSON.stringify({
          start: 'node server.js',
          restartLimit: { exits: 3, withinMinutes: 10 },
        }),
        'server.js': `const fs = require('fs');
fs.appendFileSync('starts.txt', 'x');
const starts = fs.readFileSync('starts.txt', 'utf8').length;
require('http').createServer((q, s) => {
  s.end('starts=' + starts);
  if (q.url === '/crash') setTimeout(() => process.exit(3), 50);
}).listen(process.env.PORT, '127.0.0.1');`,
      }),
    );
    const running = await waitForStatus(client, d.id, ['RUNNING', 'FAILED'], 60_000);
    expect(running.status).toBe('RUNNING');
    const app = running.publicUrl!;
    await curl(`${app}crash`);
    await eventually(async () => (await curl(app)).body === 'starts=2', 20_000, 'the first restart');

    first.kill('SIGTERM'); // the app keeps running; the next process follows it
    await new Promise((r) => first.once('exit', r));
    await startServerProcess();
    await eventually(
      async () => (await logText(client, d.id)).includes("following the app's output again"),
      15_000,
      'the restarted server to follow the app',
    );
    // Restarted by the new process in the same sandbox (its file of starts kept): the 2nd restart.
    await curl(`${app}crash`);
    await eventually(async () => (await curl(app)).body === 'starts=3', 20_000, 'the second restart');
    expect(await logText(client, d.id)).toMatch(/the app exited; restarting it in 2 s \(restart 2;/);
    // The 3rd exit within the window, of which this process saw two: FAILED.
    await curl(`${app}crash`);
    const failed = await waitForStatus(client, d.id, ['FAILED'], 20_000);
    expect(failed.failureReason).toMatch(
      /^the app exited with code 3: it crashed 3 times in 10 minutes; not restarting/,
    );
    await client.deployments.destroy.mutate({ id: d.id });
  }, 180_000);
});
