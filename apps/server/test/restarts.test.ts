import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { restartState, UNISOLATED_OPEN_SIGNUP_ACCEPTANCE } from '@coderunner/api';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { User } from '@coderunner/db';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { detectIsolation } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { type RunningServer, startServer } from '../src/server';
import { appFolder, deployFolder, getViaProxy, logText, waitForStatus } from './fixtures/deploy-helpers';

// Real server, real sandboxes, the default backoff (1 s, 2 s, 4 s …): the restart policy as users get it.
// The count across a server restart (server processes): restart.test.ts.
let db: TestDatabase;
let dataDir: string;
let port: number;
let server: RunningServer;
let client: CodeRunnerClient;

async function startOne(): Promise<RunningServer> {
  return startServer(
    loadConfig({
      DATABASE_URL: db.url,
      PORT: String(port),
      LOG_LEVEL: 'silent',
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
      CODERUNNER_START_TIMEOUT_S: '6',
      CODERUNNER_RECONCILE_INTERVAL_S: '1',
    }),
    createLogger('silent'),
  );
}

beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-restarts-'));
  fs.chmodSync(dataDir, 0o711);
  port = await freePort();
  server = await startOne();
  const anon = createClient({ url: `${server.url}/trpc` });
  const { token, user } = await anon.auth.register.mutate({
    email: 'restarts@example.com',
    password: 'restart password',
  });
  await User.update({ planType: 'team' }, { where: { id: user.id } });
  client = createClient({ url: `${server.url}/trpc`, token });
});

afterAll(async () => {
  await server?.close();
  const provider = server?.deps.deployments?.engine.provider;
  for (const s of (await provider?.list().catch(() => [])) ?? []) await provider!.kill(s.id);
  await db?.drop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

/**
 * An app that counts its starts in a file of its sandbox (a restart in the same sandbox keeps it; a
 * rebuild starts over), and exits with code 3 on GET /crash.
 */
function crashingApp(manifest: Record<string, unknown> = {}): string {
  return appFolder({
    'coderunner.json': JSON.stringify({
      install: 'echo installed',
      start: 'node server.js',
      ...manifest,
    }),
    'server.js': `const fs = require('fs');
fs.appendFileSync('starts.txt', 'x');
const starts = fs.readFileSync('starts.txt', 'utf8').length;
require('http').createServer((req, res) => {
  if (req.url === '/crash') { res.end('bye'); setTimeout(() => process.exit(3), 20); return; }
  res.end('starts=' + starts);
}).listen(process.env.PORT, '127.0.0.1');`,
  });
}

async function deployRunning(dir: string, project: string) {
  const { id: projectId } = await client.projects.create.mutate({ name: project });
  const created = await deployFolder(client, projectId, dir);
  const d = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
  expect(d.status, await logText(client, d.id)).toBe('RUNNING');
  const project_ = await client.projects.get.query({ id: projectId });
  return { d, projectUrl: project_.url as string };
}

/** GET until it answers `body` (the app started again: its count of starts) or the time runs out. */
async function untilAnswers(url: string, body: string, timeoutMs = 20_000): Promise<{ at: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await getViaProxy(url, port);
    if (r.status === 200 && r.body === body) return { at: Date.now() };
    if (Date.now() > deadline) {
      const id = /^http:\/\/([0-9a-f-]{36})\./.exec(url)?.[1];
      const lines = id ? await logs().read(id, null, 1000) : [];
      const text = lines.map((l) => `${l.time.toISOString()} ${l.source} ${l.text}`).join('\n');
      throw new Error(`${url} did not answer again: ${r.status} ${r.body}\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const logs = () => server.deps.deployments!.logs;

describe('the restart policy', () => {
  it('restarts a crashed app in its sandbox within seconds, answers 503 with Retry-After meanwhile, and gives up after the limit; start of the FAILED deployment starts it again', async () => {
    const { d, projectUrl } = await deployRunning(
      crashingApp({ restartLimit: { exits: 3, withinMinutes: 10 } }),
      'crashy',
    );
    expect((await getViaProxy(d.publicUrl!, port)).body).toBe('starts=1');

    // 1st crash: answering again within 5 s of it, in the same sandbox (its file kept), not rebuilt.
    const crashedAt = Date.now();
    expect((await getViaProxy(`${d.publicUrl}crash`, port)).body).toBe('bye');
    const back = await untilAnswers(d.publicUrl!, 'starts=2');
    const timeline = (await logs().read(d.id, null, 1000))
      .map((l) => `${l.time.toISOString()} ${l.source} ${l.text}`)
      .join('\n');
    // About 3 s on a quiet machine (1 s backoff, then node's start in its sandbox); generous here, as
    // other tests share the machine.
    expect(back.at - crashedAt, `crashed at ${new Date(crashedAt).toISOString()}\n${timeline}`).toBeLessThan(
      15_000,
    );
    console.log(`restarts: answering again ${back.at - crashedAt} ms after the crash`);
    const text = await logText(client, d.id);
    expect(text.match(/^install: /gm)).toHaveLength(1);
    expect(text).toContain('the app exited with code 3; restarting it in 1 s (restart 1;');
    const afterFirst = await restartState(logs(), d.id, 600_000);
    expect(afterFirst).toEqual({ recent: 1, pending: null });
    expect((await client.deployments.get.query({ id: d.id })).status).toBe('RUNNING');

    // 2nd crash (2 s backoff): no other RUNNING deployment, so the project URL answers 503 and when to retry.
    await getViaProxy(`${d.publicUrl}crash`, port);
    let seen: { status: number; body: string; retryAfter: number } | undefined;
    const deadline = Date.now() + 2_000;
    while (!seen && Date.now() < deadline) {
      const r = await fetchWithHeaders(projectUrl);
      // Until the exit is handled (a few ms), the project has no app to route to and answers the
      // plain 503; then the restart's own, with when to try again.
      if (r.status === 503 && r.retryAfter && /restarting/.test(r.body)) seen = r;
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen, 'a 503 with Retry-After while restarting').toBeDefined();
    expect(seen!.body).toMatch(/restarting/);
    expect(seen!.retryAfter).toBeGreaterThanOrEqual(1);
    expect(seen!.retryAfter).toBeLessThanOrEqual(2);
    expect((await client.deployments.get.query({ id: d.id })).status).toBe('BUILDING');
    await untilAnswers(projectUrl, 'starts=3');
    const second = (await logs().read(d.id, null, 1000)).filter((l) => l.event?.type === 'restart');
    expect(second.map((l) => l.event)).toEqual([
      { type: 'restart', n: 1, exitCode: 3, signal: null, oomLimitMb: null, delayMs: 1000 },
      { type: 'restart', n: 2, exitCode: 3, signal: null, oomLimitMb: null, delayMs: 2000 },
    ]);

    // 3rd exit within the window: FAILED, and why, where the user looks.
    await getViaProxy(`${d.publicUrl}crash`, port);
    const failed = await waitForStatus(client, d.id, ['FAILED'], 20_000);
    expect(failed.failureReason).toMatch(
      /^the app exited with code 3: it crashed 3 times in 10 minutes; not restarting/,
    );
    const after = await fetchWithHeaders(projectUrl);
    expect(after.status).toBe(503);
    expect(after.body).toBe('no deployment of this project is running\n');

    // start of a FAILED deployment: built again from its source, its restart count afresh.
    const started = await client.deployments.start.mutate({ id: d.id });
    expect(['PENDING', 'PROVISIONING']).toContain(started.status); // a worker may have claimed it already
    const running = await waitForStatus(client, d.id, ['RUNNING', 'FAILED']);
    expect(running.status, await logText(client, d.id)).toBe('RUNNING');
    expect(running.failureReason).toBeNull();
    expect((await restartState(logs(), d.id, 600_000)).recent).toBe(0);
    await getViaProxy(`${d.publicUrl}crash`, port);
    await untilAnswers(d.publicUrl!, 'starts=2');
    expect((await restartState(logs(), d.id, 600_000)).recent).toBe(1);
    await client.deployments.destroy.mutate({ id: d.id });
  });

  it('restart: "never" fails the deployment at the first exit, as before', async () => {
    const { d } = await deployRunning(crashingApp({ restart: 'never' }), 'never');
    await getViaProxy(`${d.publicUrl}crash`, port);
    const failed = await waitForStatus(client, d.id, ['FAILED'], 20_000);
    expect(failed.failureReason).toMatch(/^the app exited with code 3/);
    expect((await restartState(logs(), d.id, 600_000)).recent).toBe(0);
    await client.deployments.destroy.mutate({ id: d.id });
  });

  it('an app that listens on its own port instead of PORT fails with where it listened', async () => {
    const { id: projectId } = await client.projects.create.mutate({ name: 'wrong-port' });
    const created = await deployFolder(
      client,
      projectId,
      appFolder({
        'coderunner.json': JSON.stringify({ start: 'node server.js' }),
        'server.js': `require('http').createServer((q, s) => s.end('hi')).listen(5173, '127.0.0.1', () =>
  console.log('  \\x1b[32m➜\\x1b[39m  Local:   \\x1b[36mhttp://localhost:\\x1b[1m5173\\x1b[22m/\\x1b[39m'));`,
      }),
    );
    const failed = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
    expect(failed.status).toBe('FAILED');
    expect(failed.failureReason).toMatch(
      /^listened on 5173, not on \$PORT \(\d+\): make it listen on the PORT variable/,
    );
    await client.deployments.destroy.mutate({ id: created.id });
  });

  it.skipIf(detectIsolation('auto').mode !== 'sandbox')(
    'an isolated app that says nothing: where it listens is read from its sandbox’s socket table',
    async () => {
      const { id: projectId } = await client.projects.create.mutate({ name: 'quiet-port' });
      const created = await deployFolder(
        client,
        projectId,
        appFolder({
          'coderunner.json': JSON.stringify({ start: 'node server.js' }),
          'server.js': `require('http').createServer((q, s) => s.end('hi')).listen(4173, '127.0.0.1');`,
        }),
      );
      const failed = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
      expect(failed.status).toBe('FAILED');
      expect(failed.failureReason).toMatch(
        /^listened on 4173, not on \$PORT \(\d+\): make it listen on the PORT variable/,
      );
      await client.deployments.destroy.mutate({ id: created.id });
    },
  );
});

/** GET through this server's proxy, with the Retry-After header. */
async function fetchWithHeaders(url: string): Promise<{ status: number; body: string; retryAfter: number }> {
  const u = new URL(url);
  const http = await import('node:http');
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: u.pathname, headers: { host: `${u.hostname}:${port}` }, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, retryAfter: Number(res.headers['retry-after'] ?? 0) }),
        );
      },
    );
    req.setTimeout(5_000, () => req.destroy());
    req.on('error', (err) => resolve({ status: 0, body: err.message, retryAfter: 0 }));
  });
}
