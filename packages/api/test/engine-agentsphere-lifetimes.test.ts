/**
 * Cloud sandboxes live as long as CodeRunner needs them: the engine on the AgentSphere provider with a
 * 1.5 s sandbox timeout, against the local fake (which ends a sandbox whose timeout passed, and one
 * past its maximum lifetime).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Deployment, Project, User } from '@coderunner/db';
import { createAgentSphereProvider, findFreePort } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAgentSphere, installFetchRouter } from '../../sandbox/test/fake-agentsphere';
import { DeploymentEngine, type EngineOptions } from '../src/deployments/engine';
import { LogStore } from '../src/deployments/log-store';
import { SourceStore } from '../src/deployments/source-store';
import { packFolder } from '../src/pack';
import { setupApi, type TestApi } from './helpers';

const API_KEY = 'as_test_lifetimes';
const TIMEOUT_MS = 1_500;
let fake: FakeAgentSphere;
/** A second service whose plan allows sandboxes 30 s of life at most (builds here take up to ~10 s). */
let limitedFake: FakeAgentSphere;
const restores: (() => void)[] = [];
let api: TestApi;
let dir: string;
let logs: LogStore;
let sources: SourceStore;
let projectId: string;
const engines: DeploymentEngine[] = [];
const warnings: { fields: Record<string, unknown>; msg: string }[] = [];

function provider(domain: string) {
  return createAgentSphereProvider({
    apiKey: API_KEY,
    domain,
    templates: { default: 'base' },
    requestTimeoutMs: 5_000,
    retry: { attempts: 2, baseDelayMs: 10 },
    sandboxTimeoutMs: TIMEOUT_MS,
  });
}

function engineOn(domain: string) {
  const opts: EngineOptions = {
    sequelize: api.db.sequelize,
    provider: provider(domain),
    logs,
    sources,
    workDir: path.join(dir, 'work'),
    // As in production: CodeRunner's URL, served by its proxy from whichever sandbox runs the app now.
    publicUrlFor: (id) => `http://${id}.localhost/`,
    projectUrlFor: (slug) => `http://${slug}.localhost/`,
    redeployDrainMs: 1_000,
    appPort: () => findFreePort(),
    concurrency: 1,
    installTimeoutMs: 60_000,
    buildTimeoutMs: 60_000,
    startTimeoutMs: 15_000,
    stuckAfterMs: 60_000,
    maxRetries: 1,
    reconcileIntervalMs: 3_600_000, // the test calls reconcile() itself
    orphanGraceMs: 0,
    logger: {
      debug() {},
      info() {},
      warn(fields: Record<string, unknown>, msg: string) {
        warnings.push({ fields, msg });
      },
      error() {},
    } as EngineOptions['logger'],
  };
  const engine = new DeploymentEngine(opts);
  engines.push(engine);
  return { engine, provider: opts.provider };
}

beforeAll(async () => {
  fake = await FakeAgentSphere.start({ apiKey: API_KEY, domain: 'lifetimes.test' });
  limitedFake = await FakeAgentSphere.start({
    apiKey: API_KEY,
    domain: 'limited.test',
    maxLifetimeMs: 30_000,
  });
  restores.push(installFetchRouter(fake), installFetchRouter(limitedFake));
  api = await setupApi();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-engine-life-'));
  logs = new LogStore(path.join(dir, 'logs'));
  sources = new SourceStore(path.join(dir, 'sources'));
  fs.mkdirSync(path.join(dir, 'work'));
  const user = await User.create({ email: 'lifetimes@example.com', passwordHash: 'x', planType: 'team' });
  projectId = (await Project.create({ userId: user.id, name: 'lifetimes' })).id;
});

afterAll(async () => {
  for (const engine of engines) await engine.stop();
  for (const restore of restores.reverse()) restore();
  await fake?.stop();
  await limitedFake?.stop();
  await api?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function queue(scripts: Record<string, string> = {}): Promise<string> {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-life-app-'));
  fs.writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ scripts: { start: 'node server.js', ...scripts } }),
  );
  fs.writeFileSync(
    path.join(app, 'server.js'),
    "require('http').createServer((q, s) => s.end('alive')).listen(process.env.PORT, '127.0.0.1', () => console.log('up'));",
  );
  const d = await Deployment.create({ projectId });
  sources.save(d.id, (await packFolder(app)).archive, {});
  fs.rmSync(app, { recursive: true, force: true });
  return d.id;
}

async function settle(engine: DeploymentEngine, id: string) {
  const row = await engine.claim();
  expect(row?.id).toBe(id);
  await engine.process(row!);
  return (await Deployment.findByPk(id))!;
}

const logText = async (id: string) => (await logs.read(id, null)).map((l) => l.text).join('\n');

describe('cloud sandboxes live as long as they are needed (1.5 s timeout)', () => {
  it('a build of 4 s finishes in its sandbox, and the running app outlives several timeouts', async () => {
    const { engine } = engineOn('lifetimes.test');
    const id = await queue({ build: 'sleep 4 && echo built' });
    const d = await settle(engine, id);
    expect(d.status, await logText(id)).toBe('RUNNING');
    expect(await logText(id)).toContain('built');
    const keepAlives = () => fake.callsTo('POST', new RegExp(`/sandboxes/${d.appSandboxId}/timeout$`)).length;
    const before = keepAlives();
    await sleep(5 * TIMEOUT_MS);
    expect(fake.sandboxes.has(d.appSandboxId!)).toBe(true);
    expect(await (await fetch((await engine.resolveApp(id))!)).text()).toBe('alive');
    expect((await Deployment.findByPk(id))!.status).toBe('RUNNING');
    expect(keepAlives() - before).toBeGreaterThanOrEqual(3);
    await engine.destroyDeployment(d.get({ plain: true }) as never);
  });

  it('a failed keep-alive is logged and tried again; the sandbox lives on', async () => {
    const { engine } = engineOn('lifetimes.test');
    const id = await queue();
    const d = await settle(engine, id);
    expect(d.status).toBe('RUNNING');
    const sandboxPath = new RegExp(`^/sandboxes/${d.appSandboxId}/timeout$`);
    fake.failNext({ method: 'POST', path: sandboxPath, status: 500, count: 2 }); // one tick's attempts
    await eventually(() =>
      warnings.some(
        (w) => w.msg === 'cannot keep the sandbox alive; trying again' && w.fields.deploymentId === id,
      ),
    );
    await sleep(2 * TIMEOUT_MS);
    expect(fake.sandboxes.has(d.appSandboxId!)).toBe(true);
    expect((await Deployment.findByPk(id))!.status).toBe('RUNNING');
    await engine.destroyDeployment(d.get({ plain: true }) as never);
  });

  it('a database sandbox a deployment holds is kept alive (its deployment STOPPED); one nobody holds is swept', async () => {
    const { engine, provider: cloud } = engineOn('lifetimes.test');
    const holder = await Deployment.create({ projectId });
    const database = await cloud.create({ metadata: { deploymentId: holder.id, projectId, role: 'db' } });
    await holder.update({ status: 'STOPPED', dbSandboxId: database.id });
    const orphan = await cloud.create({
      metadata: { deploymentId: crypto.randomUUID(), projectId, role: 'db' },
    });
    await engine.reconcile();
    expect(fake.sandboxes.has(orphan.id)).toBe(false);
    await sleep(4 * TIMEOUT_MS);
    expect(fake.sandboxes.has(database.id)).toBe(true);
    await holder.update({ dbSandboxId: null });
    await cloud.kill(database.id);
    await engine.reconcile(); // lets go of it
  });

  it('an app whose sandbox reaches the maximum lifetime is built again in a new sandbox', async () => {
    const { engine } = engineOn('limited.test');
    const id = await queue();
    const d = await settle(engine, id);
    expect(d.status, await logText(id)).toBe('RUNNING');
    const first = d.appSandboxId!;
    await eventually(async () => (await Deployment.findByPk(id))!.status === 'PENDING', 40_000);
    expect(await logText(id)).toContain('reached the longest life the sandbox service allows');
    expect(warnings.some((w) => w.msg === 'the sandbox reached its maximum lifetime')).toBe(true);
    const again = await settle(engine, id);
    expect(again.status, await logText(id)).toBe('RUNNING');
    expect(again.appSandboxId).not.toBe(first);
    expect(again.publicUrl).toBe(d.publicUrl);
    const target = await engine.resolveApp(id);
    expect(target).toContain(again.appSandboxId!);
    expect(await (await fetch(target!)).text()).toBe('alive');
    await engine.destroyDeployment(again.get({ plain: true }) as never);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(100);
  }
}
