/**
 * Tenant isolation through the whole server (issue #10): a victim app with its own database and an
 * attacker app of another user, deployed through the API. Runs the attacks from the attacker's HTTP
 * handler. Isolation needs root, bubblewrap and pasta (CI has them); elsewhere the tenant tests are
 * skipped and the server says `none`.
 */
import { createClient } from '@coderunner/api/client';
import { freePort } from '@coderunner/db/testing';
import { detectIsolation } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  curl,
  type DeployingServer,
  deployFolder,
  logText,
  startDeployingServer,
  waitForStatus,
} from './fixtures/deploy-helpers';

const isolated = detectIsolation('auto').mode === 'sandbox';
let ctx: DeployingServer;

beforeAll(async () => {
  ctx = await startDeployingServer(
    {
      CODERUNNER_START_TIMEOUT_S: '20',
      CODERUNNER_RATE_LIMIT_AUTH_PER_IP: '5',
      CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()),
    },
    { email: 'victim@example.com', project: 'victim' },
  );
});

afterAll(() => ctx?.close());

const VICTIM_APP = {
  'coderunner.json': JSON.stringify({ start: 'node server.js' }),
  'server.js': `require('http').createServer((q, r) => r.end('victim ' + (process.env.DATABASE_URL ? 'has a database' : 'has none')))
  .listen(process.env.PORT, '127.0.0.1');`,
};

/** Answers GET /probe?ports=a,b&secret=s with what it could reach, GET /kill with kill -9 -1, GET /hog by eating memory. */
const ATTACKER_APP = {
  'coderunner.json': JSON.stringify({ start: 'node server.js' }),
  'server.js': `const fs = require('fs'), net = require('net'), http = require('http'), { execSync } = require('child_process');
const tryConnect = (port) => new Promise((resolve) => {
  const s = net.connect({ host: '127.0.0.1', port });
  const done = (ok) => { s.destroy(); resolve(ok); };
  s.setTimeout(3000, () => done(false)); s.once('connect', () => done(true)); s.once('error', () => done(false));
});
http.createServer(async (q, r) => {
  const url = new URL(q.url, 'http://x');
  if (url.pathname === '/probe') {
    const secret = url.searchParams.get('secret');
    let environ = 0;
    for (const pid of fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n))) {
      try { if (fs.readFileSync('/proc/' + pid + '/environ', 'utf8').includes(secret)) environ++; } catch {}
    }
    const ports = {};
    for (const p of url.searchParams.get('ports').split(',')) ports[p] = await tryConnect(Number(p));
    return r.end(JSON.stringify({ environ, ports }));
  }
  if (url.pathname === '/kill') { try { execSync('kill -9 -1'); } catch {} return r.end('killed'); }
  if (url.pathname === '/hog') { r.end('eating'); const a = []; setInterval(() => a.push(Buffer.alloc(32 << 20).fill(1)), 10); return; }
  r.end('attacker');
}).listen(process.env.PORT, '127.0.0.1');`,
};

describe('isolation reported', () => {
  it('/readyz and system.info say which isolation is in force', async () => {
    const expected = isolated ? 'sandbox' : 'none';
    const ready = await fetch(`${ctx.server.url}/readyz`);
    expect(await ready.json()).toMatchObject({ status: 'ready', isolation: expected });
    // Open either way: the test fixture opts in (isolated, sign-up is open regardless).
    expect(await createClient({ url: `${ctx.server.url}/trpc` }).system.info.query()).toEqual({
      isolation: expected,
      signup: 'open',
    });
  });
});

describe.skipIf(!isolated)('hostile tenants through the server', () => {
  it("another user's app reaches neither the victim's secrets nor any port here, and cannot kill it", async () => {
    const { client, projectId, server } = ctx;
    const victim = await deployFolder(client, projectId, appFolder(VICTIM_APP), { database: 'postgres' });
    const victimRunning = await waitForStatus(client, victim.id, ['RUNNING', 'FAILED'], 120_000);
    expect(victimRunning.status, await logText(client, victim.id)).toBe('RUNNING');
    expect((await curl(victimRunning.publicUrl!)).body).toBe('victim has a database');
    const credentials = await client.deployments.databaseCredentials.query({ id: victim.id });
    const dbUrl = new URL(credentials.url);

    // The attacker: another user (free plan), another project.
    const anon = createClient({ url: `${server.url}/trpc` });
    const { token } = await anon.auth.register.mutate({
      email: 'attacker@example.com',
      password: 'attack password',
    });
    const attackerClient = createClient({ url: `${server.url}/trpc`, token });
    const attackerProject = (await attackerClient.projects.create.mutate({ name: 'evil' })).id;
    // Its manifest names the apps' cluster as its own database: that opens nothing (not the server's grant).
    const attacker = await deployFolder(
      attackerClient,
      attackerProject,
      appFolder({
        ...ATTACKER_APP,
        'coderunner.json': JSON.stringify({
          start: 'node server.js',
          env: { DATABASE_URL: `postgres://x:y@127.0.0.1:${dbUrl.port}/x` },
        }),
      }),
    );
    const attackerRunning = await waitForStatus(attackerClient, attacker.id, ['RUNNING', 'FAILED'], 120_000);
    expect(attackerRunning.status, await logText(attackerClient, attacker.id)).toBe('RUNNING');

    const engine = server.deps.deployments!.engine;
    const victimInternal = new URL((await engine.resolveApp(victim.id))!);
    const ports = [5432, server.port, Number(dbUrl.port), Number(victimInternal.port)];
    const probe = JSON.parse(
      (
        await curl(
          `${attackerRunning.publicUrl}probe?ports=${ports.join(',')}&secret=${encodeURIComponent(credentials.password)}`,
        )
      ).body,
    );
    expect(probe).toEqual({ environ: 0, ports: Object.fromEntries(ports.map((p) => [String(p), false])) });

    // kill -9 -1 from the attacker's app: the victim stays RUNNING and answering at its URL.
    await curl(`${attackerRunning.publicUrl}kill`).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await client.deployments.get.query({ id: victim.id })).status).toBe('RUNNING');
    expect((await curl(victimRunning.publicUrl!)).body).toBe('victim has a database');
  }, 300_000); // two builds, and the data folder's first database (initdb of its template)

  it('an app over its plan memory is killed with "out of memory (limit 256 MB)" in its log, and restarted as after a crash', async () => {
    const { server } = ctx;
    const anon = createClient({ url: `${server.url}/trpc` });
    const { token } = await anon.auth.register.mutate({ email: 'hog@example.com', password: 'hog password' });
    const hogClient = createClient({ url: `${server.url}/trpc`, token });
    const project = (await hogClient.projects.create.mutate({ name: 'hog' })).id;
    const hog = await deployFolder(hogClient, project, appFolder(ATTACKER_APP));
    const running = await waitForStatus(hogClient, hog.id, ['RUNNING', 'FAILED'], 120_000);
    expect(running.status, await logText(hogClient, hog.id)).toBe('RUNNING');
    await curl(`${running.publicUrl}hog`);
    const restarted =
      'the app ran out of memory (limit 256 MB) and was killed; restarting it in 1 s (restart 1;';
    const deadline = Date.now() + 60_000;
    let logs = await logText(hogClient, hog.id);
    while (!logs.includes(restarted) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      logs = await logText(hogClient, hog.id);
    }
    expect(logs).toContain('[coderunner: out of memory (limit 256 MB): the process was killed]');
    expect(logs).toContain(restarted);
    expect((await waitForStatus(hogClient, hog.id, ['RUNNING', 'FAILED'], 60_000)).status).toBe('RUNNING');
  });
});

// Last: it uses up this address's sign-in budget.
describe('behind no proxy', () => {
  it('a forged X-Forwarded-For is ignored: the per-IP limit counts the real peer', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${ctx.server.url}/trpc/auth.login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `203.0.113.${i + 1}` },
        body: JSON.stringify({ json: { email: `nobody${i}@example.com`, password: 'wrong password' } }),
      });
      codes.push(res.status);
    }
    // CODERUNNER_RATE_LIMIT_AUTH_PER_IP=5, registrations included: most of these are refused.
    expect(codes.filter((c) => c === 429).length).toBeGreaterThanOrEqual(4);
  });
});
