/**
 * The deployment engine on the AgentSphere provider, through the unmodified SDK, against the local
 * fake of AgentSphere's REST and envd APIs (packages/sandbox/test/fake-agentsphere).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Deployment, Project, User } from '@coderunner/db';
import { createAgentSphereProvider, findFreePort } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAgentSphere, installFetchRouter } from '../../sandbox/test/fake-agentsphere';
import { DeploymentEngine } from '../src/deployments/engine';
import { LogStore } from '../src/deployments/log-store';
import { SourceStore } from '../src/deployments/source-store';
import { packFolder } from '../src/pack';
import { setupApi, type TestApi } from './helpers';

const DOMAIN = 'agentsphere.test';
const API_KEY = 'as_test_engine';
let fake: FakeAgentSphere;
let restoreFetch: () => void;
let api: TestApi;
let dir: string;
let engine: DeploymentEngine;
let logs: LogStore;
let sources: SourceStore;
let projectId: string;
const provider = createAgentSphereProvider({
  apiKey: API_KEY,
  domain: DOMAIN,
  templates: { default: 'base' },
  requestTimeoutMs: 5_000,
  retry: { attempts: 3, baseDelayMs: 10 },
});

beforeAll(async () => {
  fake = await FakeAgentSphere.start({ apiKey: API_KEY, domain: DOMAIN });
  restoreFetch = installFetchRouter(fake);
  api = await setupApi();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-engine-as-'));
  logs = new LogStore(path.join(dir, 'logs'));
  sources = new SourceStore(path.join(dir, 'sources'));
  fs.mkdirSync(path.join(dir, 'work'));
  engine = new DeploymentEngine(engineOptions());
  const user = await User.create({ email: 'cloud@example.com', passwordHash: 'x', planType: 'team' });
  projectId = (await Project.create({ userId: user.id, name: 'cloud' })).id;
});

function engineOptions(): ConstructorParameters<typeof DeploymentEngine>[0] {
  return {
    sequelize: api.db.sequelize,
    provider,
    logs,
    sources,
    workDir: path.join(dir, 'work'),
    publicUrlFor: (_id, sandbox, port) => `https://${sandbox.getHost(port)}/`,
    projectUrlFor: (slug) => `http://${slug}.localhost/`,
    redeployDrainMs: 1_000,
    appPort: () => findFreePort(), // the fake runs apps on this machine: avoid port clashes
    concurrency: 1,
    installTimeoutMs: 60_000,
    buildTimeoutMs: 60_000,
    startTimeoutMs: 15_000,
    stuckAfterMs: 60_000,
    maxRetries: 1,
    reconcileIntervalMs: 3_600_000, // the test calls reconcile() itself
    orphanGraceMs: 0,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  };
}

afterAll(async () => {
  await engine.stop();
  for (const s of await provider.list().catch(() => [])) await provider.kill(s.id).catch(() => false);
  restoreFetch();
  await fake.stop();
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const HELLO =
  "require('http').createServer((q, s) => s.end('hello from the cloud')).listen(process.env.PORT, '127.0.0.1', () => console.log('up'));";

async function queue(server = HELLO, manifest?: Record<string, unknown>): Promise<string> {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-cloud-app-'));
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ scripts: { start: 'node server.js' } }));
  if (manifest) fs.writeFileSync(path.join(app, 'coderunner.json'), JSON.stringify(manifest));
  fs.writeFileSync(path.join(app, 'server.js'), server);
  const d = await Deployment.create({ projectId });
  sources.save(d.id, (await packFolder(app)).archive, {});
  fs.rmSync(app, { recursive: true, force: true });
  return d.id;
}

async function settle(id: string) {
  const row = await engine.claim();
  expect(row?.id).toBe(id);
  await engine.process(row!);
  return (await Deployment.findByPk(id))!;
}

describe('the engine on AgentSphere (fake)', () => {
  it('deploys to RUNNING with https://<port>-<sandbox>.<domain> and streams the build and app output', async () => {
    const id = await queue();
    const d = await settle(id);
    const text = (await logs.read(id, null)).map((l) => l.text).join('\n');
    expect(d.status, text).toBe('RUNNING');
    expect(d.publicUrl).toMatch(
      new RegExp(`^https://\\d+-${d.appSandboxId}\\.${DOMAIN.replace('.', '\\.')}/$`),
    );
    expect(await (await fetch(d.publicUrl!)).text()).toBe('hello from the cloud');
    expect(text).toContain('starting: npm start');
    expect(text).toContain('up'); // the app's own output, streamed from the sandbox
    expect(fake.callsTo('POST', /^\/sandboxes$/).at(-1)?.body).toMatchObject({
      metadata: { deploymentId: id, projectId, role: 'app' },
    });
  });

  it('keeps RUNNING sandboxes alive, and marks a vanished one FAILED with the reason', async () => {
    const id = await queue();
    const d = await settle(id);
    expect(d.status).toBe('RUNNING');
    // This process keeps its own apps alive (see engine-agentsphere-lifetimes.test.ts); another
    // replica's reconciler keeps alive the RUNNING sandboxes it does not.
    const before = fake.callsTo('POST', /\/timeout$/).length;
    const replica = new DeploymentEngine(engineOptions());
    await replica.reconcile();
    await replica.stop();
    expect(fake.callsTo('POST', /\/timeout$/).length).toBeGreaterThan(before);

    await fake.expire(d.appSandboxId!);
    await engine.reconcile();
    // The reconciler, or the app's own exit handler a moment later.
    await waitFor(async () => (await Deployment.findByPk(id))!.status === 'FAILED', 15_000);
    const after = (await Deployment.findByPk(id))!;
    expect(after.status).toBe('FAILED');
    expect(after.appSandboxId).toBeNull();
    // Whichever notices first: the app's process ending, or the reconciler finding the sandbox gone.
    expect((await logs.read(id, null)).map((l) => l.text).join('\n')).toMatch(
      /FAILED: the (sandbox running the app no longer exists|app (was killed by SIG\w+|exited with code \d+|exited),? and the sandbox running it no longer exists)/,
    );
  });

  it('destroy kills the sandbox (idempotent), and the sweeper kills orphans', async () => {
    const id = await queue();
    const d = await settle(id);
    const kills = () => fake.callsTo('DELETE', new RegExp(`/sandboxes/${d.appSandboxId}`)).length;
    await engine.destroyDeployment(d.get({ plain: true }) as never);
    expect(kills()).toBeGreaterThan(0);
    expect((await Deployment.findByPk(id))!.status).toBe('DESTROYED');
    await expect(engine.destroyDeployment(d.get({ plain: true }) as never)).resolves.toBeUndefined();

    const orphan = await provider.create({
      metadata: { deploymentId: crypto.randomUUID(), projectId, role: 'app' },
    });
    await engine.reconcile();
    expect(fake.callsTo('DELETE', new RegExp(`/sandboxes/${orphan.id}`)).length).toBeGreaterThan(0);
  });

  it("destroying the deployment that created the project's database leaves its database sandbox running", async () => {
    const id = await queue();
    const d = await settle(id);
    // A database sandbox carries the id of the deployment that created it, but is the project's.
    const database = await provider.create({ metadata: { deploymentId: id, projectId, role: 'db' } });
    await engine.destroyDeployment(d.get({ plain: true }) as never);
    expect(fake.callsTo('DELETE', new RegExp(`/sandboxes/${d.appSandboxId}`)).length).toBeGreaterThan(0);
    expect(fake.callsTo('DELETE', new RegExp(`/sandboxes/${database.id}`))).toHaveLength(0);
    expect((await provider.list({ metadata: { deploymentId: id } })).map((s) => s.id)).toContain(database.id);
    await provider.kill(database.id);
  });

  it('a broken output stream leaves the app RUNNING (re-attached); an app that exits 4 still FAILs', async () => {
    const id = await queue(
      "require('http').createServer((q, s) => s.end('hi')).listen(process.env.PORT, '127.0.0.1', () => console.log('up')); setInterval(() => console.log('tick'), 300);",
    );
    const d = await settle(id);
    expect(d.status).toBe('RUNNING');
    const ticks = async () => (await logs.read(id, null)).filter((l) => l.text === 'tick').length;
    expect(fake.breakStreams(d.appSandboxId!)).toBe(1);
    const seen = await ticks();
    await waitFor(async () => (await ticks()) > seen + 3, 15_000); // output goes on reaching the log
    await engine.reconcile();
    expect((await Deployment.findByPk(id))!.status).toBe('RUNNING');
    expect(await (await fetch(d.publicUrl!)).text()).toBe('hi');

    const failing = await queue(
      "require('http').createServer((q, s) => s.end('hi')).listen(process.env.PORT, '127.0.0.1', () => { console.log('up'); setTimeout(() => process.exit(4), 2000); });",
      // Its first exit is final (no restart): the exit itself is what this checks.
      { start: 'node server.js', restart: 'never' },
    );
    const f = await settle(failing);
    expect(f.status).toBe('RUNNING');
    fake.breakStreams(f.appSandboxId!);
    await waitFor(async () => (await Deployment.findByPk(failing))!.status === 'FAILED', 15_000);
    expect((await logs.read(failing, null)).map((l) => l.text).join('\n')).toMatch(/exited with code 4/);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
