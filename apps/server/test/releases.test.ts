/**
 * Releases on the local provider, end to end over HTTP: a project's stable URL serves its current
 * deployment; a redeploy switches it with no failed request and stops the old one after the drain;
 * a failing new version leaves the old one serving; rollback and redeploy; the free plan can do all
 * of it.
 */
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  type DeployingServer,
  deployFolder,
  getViaProxy,
  logText,
  startDeployingServer,
  versionedApp,
  waitForStatus,
} from './fixtures/deploy-helpers';

const DRAIN_S = 2;
let ctx: DeployingServer;
let client: CodeRunnerClient;
let projectId: string;

beforeAll(async () => {
  ctx = await startDeployingServer(
    { CODERUNNER_START_TIMEOUT_S: '5', CODERUNNER_REDEPLOY_DRAIN_S: String(DRAIN_S) },
    { email: 'releases@example.com', project: 'Shop Front' },
  );
  ({ client, projectId } = ctx);
});

afterAll(() => ctx?.close());

const app = versionedApp;

/** An app that exits at once: its deployment FAILS. */
const broken = () =>
  appFolder({
    'package.json': JSON.stringify({ name: 'broken', scripts: { start: 'node server.js' } }),
    'server.js': `console.error('no config, giving up'); process.exit(3);`,
  });

const get = (url: string) => getViaProxy(url);

async function deployAndRun(c: CodeRunnerClient, project: string, dir: string) {
  const created = await deployFolder(c, project, dir);
  const d = await waitForStatus(c, created.id, ['RUNNING', 'FAILED']);
  expect(d.status, await logText(c, created.id)).toBe('RUNNING');
  return d;
}

describe('a project URL across releases', () => {
  it('is stable and readable, and serves the current deployment', async () => {
    const project = await client.projects.get.query({ id: projectId });
    const key = projectId.replace(/-/g, '').slice(0, 10);
    expect(project.url).toBe(`http://shop-front-${key}.localhost:${ctx.server.port}/`);
    expect(project.currentDeploymentId).toBeNull();
    const nothing = await get(project.url!);
    expect(nothing).toEqual({ status: 503, body: 'no deployment of this project is running\n' });
    // Any readable part works with the right key (old links after a rename); an unknown key does not.
    const v1 = await deployAndRun(client, projectId, app('v1'));
    expect(await get(`http://old-name-${key}.localhost:${ctx.server.port}/`)).toEqual({
      status: 200,
      body: 'v1',
    });
    expect((await get(`http://shop-front-0000000000.localhost:${ctx.server.port}/`)).status).toBe(503);
    expect(await get(project.url!)).toEqual({ status: 200, body: 'v1' });
    expect((await client.projects.get.query({ id: projectId })).currentDeploymentId).toBe(v1.id);
    expect((await client.deployments.get.query({ id: v1.id })).current).toBe(true);
  });

  it('redeploy under load: only 200s, old version then new, never back; the old one STOPPED after the drain', async () => {
    const project = await client.projects.get.query({ id: projectId });
    const old = project.currentDeploymentId!;
    const seen: { at: number; status: number; body: string }[] = [];
    let polling = true;
    const poller = (async () => {
      const inFlight: Promise<void>[] = [];
      while (polling) {
        const at = Date.now();
        inFlight.push(get(project.url!).then((r) => void seen.push({ at, ...r })));
        await new Promise((r) => setTimeout(r, 50));
      }
      await Promise.all(inFlight);
    })();
    const v2 = await deployAndRun(client, projectId, app('v2'));
    const switchedAt = Date.now();
    expect((await client.projects.get.query({ id: projectId })).currentDeploymentId).toBe(v2.id);
    // The old one keeps running through the drain (requests in flight finish), then stops.
    expect((await client.deployments.get.query({ id: old })).status).toBe('RUNNING');
    expect((await client.deployments.get.query({ id: old })).current).toBe(false);
    const stopped = await waitForStatus(client, old, ['STOPPED'], 30_000);
    expect(Date.now() - switchedAt).toBeGreaterThanOrEqual(DRAIN_S * 1000 - 1_000);
    expect(await logText(client, old)).toContain(
      `replaced by deployment ${v2.id}: stopping after a ${DRAIN_S} s drain`,
    );
    await new Promise((r) => setTimeout(r, 500));
    polling = false;
    await poller;
    expect(stopped.status).toBe('STOPPED');

    seen.sort((a, b) => a.at - b.at);
    const failed = seen.filter((r) => r.status !== 200);
    expect(failed, JSON.stringify(failed.slice(0, 5))).toEqual([]);
    const bodies = seen.map((r) => r.body);
    const firstNew = bodies.indexOf('v2');
    expect(firstNew).toBeGreaterThan(0); // the old version served first
    expect(bodies.slice(0, firstNew).every((b) => b === 'v1')).toBe(true);
    expect(bodies.slice(firstNew).every((b) => b === 'v2')).toBe(true); // never back
    expect(seen.length).toBeGreaterThan(20);
  });

  it('a failing new version leaves the old one serving', async () => {
    const project = await client.projects.get.query({ id: projectId });
    const current = project.currentDeploymentId!;
    const bad = await deployFolder(client, projectId, broken());
    expect((await waitForStatus(client, bad.id, ['RUNNING', 'FAILED'])).status).toBe('FAILED');
    expect(await get(project.url!)).toEqual({ status: 200, body: 'v2' });
    expect((await client.projects.get.query({ id: projectId })).currentDeploymentId).toBe(current);
    await new Promise((r) => setTimeout(r, DRAIN_S * 1000 + 500));
    expect((await client.deployments.get.query({ id: current })).status).toBe('RUNNING');
  });

  it('rollback serves the earlier version as a new deployment; start of an older one says to roll back', async () => {
    const [v1] = (await client.deployments.list.query({ projectId, status: 'STOPPED' })).items.slice(-1);
    const current = (await client.projects.get.query({ id: projectId })).currentDeploymentId!;
    await expect(client.deployments.start.mutate({ id: v1!.id })).rejects.toThrow(
      `deployment ${current} is newer and running; to serve this version again, roll back to it (coderunner rollback ${v1!.id})`,
    );
    const rolled = await client.deployments.rollback.mutate({ id: v1!.id });
    expect(rolled.id).not.toBe(v1!.id);
    expect(rolled.status).toBe('PENDING');
    await waitForStatus(client, rolled.id, ['RUNNING']);
    const project = await client.projects.get.query({ id: projectId });
    expect(project.currentDeploymentId).toBe(rolled.id);
    expect(await get(project.url!)).toEqual({ status: 200, body: 'v1' });
    expect(await logText(client, rolled.id)).toContain(`rollback to deployment ${v1!.id}`);
    await waitForStatus(client, current, ['STOPPED'], 30_000);
    // The list marks exactly the current deployment.
    const list = (await client.deployments.list.query({ projectId })).items;
    expect(list.filter((d) => d.current).map((d) => d.id)).toEqual([rolled.id]);
  });

  it('redeploy builds the same source again; a destroyed deployment cannot be rolled back to', async () => {
    const current = (await client.projects.get.query({ id: projectId })).currentDeploymentId!;
    const again = await client.deployments.redeploy.mutate({ id: current });
    await waitForStatus(client, again.id, ['RUNNING']);
    const project = await client.projects.get.query({ id: projectId });
    expect(project.currentDeploymentId).toBe(again.id);
    expect(await get(project.url!)).toEqual({ status: 200, body: 'v1' });
    const gone = await deployFolder(client, projectId, broken());
    await waitForStatus(client, gone.id, ['FAILED']);
    await client.deployments.destroy.mutate({ id: gone.id });
    await expect(client.deployments.rollback.mutate({ id: gone.id })).rejects.toThrow(
      `the stored source of deployment ${gone.id} is gone (it was destroyed); deploy the folder again`,
    );
  });

  it('the free plan (1 running deployment) can redeploy and roll back, not run a second project', async () => {
    const anon = createClient({ url: `${ctx.server.url}/trpc` });
    const { token, user } = await anon.auth.register.mutate({
      email: 'free-releases@example.com',
      password: 'deploy password',
    });
    expect(user.planType).toBe('free');
    const free = createClient({ url: `${ctx.server.url}/trpc`, token });
    const a = (await free.projects.create.mutate({ name: 'a' })).id;
    const b = (await free.projects.create.mutate({ name: 'b' })).id;
    const first = await deployAndRun(free, a, app('a1'));
    const second = await deployAndRun(free, a, app('a2')); // replaces the first: allowed
    await expect(deployFolder(free, b, app('b1'))).rejects.toThrow(
      /the free plan allows 1 running deployment/,
    );
    await waitForStatus(free, first.id, ['STOPPED'], 30_000);
    const rolled = await free.deployments.rollback.mutate({ id: first.id });
    await waitForStatus(free, rolled.id, ['RUNNING']);
    const project = await free.projects.get.query({ id: a });
    expect(await get(project.url!)).toEqual({ status: 200, body: 'a1' });
    await waitForStatus(free, second.id, ['STOPPED'], 30_000);
  });

  it('rollback restores the environment a version ran with; redeploy takes the project variables now', async () => {
    const project = await client.projects.create.mutate({ name: 'env releases' });
    const greeting = appFolder({
      'package.json': JSON.stringify({ name: 'greeting', scripts: { start: 'node server.js' } }),
      'server.js': `require('http').createServer((req, res) => res.end(process.env.GREETING))
  .listen(process.env.PORT, '127.0.0.1');`,
    });
    await client.env.set.mutate({ projectId: project.id, vars: { GREETING: 'hello' } });
    const first = await deployAndRun(client, project.id, greeting);
    expect(await get(project.url!)).toEqual({ status: 200, body: 'hello' });

    await client.env.set.mutate({ projectId: project.id, vars: { GREETING: 'bye' } });
    const redeployed = await client.deployments.redeploy.mutate({ id: first.id });
    await waitForStatus(client, redeployed.id, ['RUNNING']);
    expect(await get(project.url!)).toEqual({ status: 200, body: 'bye' });

    const rolled = await client.deployments.rollback.mutate({ id: first.id });
    await waitForStatus(client, rolled.id, ['RUNNING']);
    expect(await get(project.url!)).toEqual({ status: 200, body: 'hello' });
  });
});
