/**
 * The frameworks' starters (test/fixtures/starters, as their generators made them) deployed as they
 * are, each RUNNING and answering its starter page; the static ones with no app process. Minutes of
 * npm installs and builds on 2 cores: `pnpm test:frameworks` (vitest.frameworks.config.ts), not the
 * fast tier. On the team plan until builds get limits of their own (free-plan installs of Next.js and
 * NestJS are killed at 256 MB today).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DeployingServer,
  deployFolder,
  getViaProxy,
  logText,
  startDeployingServer,
  waitForStatus,
} from '../fixtures/deploy-helpers';

const STARTERS = path.join(__dirname, '../fixtures/starters');
let ctx: DeployingServer;

beforeAll(async () => {
  ctx = await startDeployingServer(
    { CODERUNNER_START_TIMEOUT_S: '120', CODERUNNER_REDEPLOY_DRAIN_S: '0', WORKER_CONCURRENCY: '1' },
    { email: 'starters@example.com', project: 'starters' },
  );
});

afterAll(() => ctx?.close());

describe.each([
  ['express-app', 'nodejs', 'Express', '<title>Express</title>'],
  ['nest-app', 'nodejs', 'NestJS', 'Hello World!'],
  ['next-app', 'nodejs', 'Next.js', '<title>Create Next App</title>'],
  ['vue-app', 'static', 'Vue (Vite)', '<div id="app"></div>'],
  ['sveltekit-node', 'nodejs', 'SvelteKit (adapter-node)', 'Welcome to SvelteKit'],
])('the %s starter', (name, runtime, framework, page) => {
  it(`is RUNNING as generated (${framework}) and answers its starter page`, async () => {
    const project = (await ctx.client.projects.create.mutate({ name })).id;
    const created = await deployFolder(ctx.client, project, path.join(STARTERS, name));
    const d = await waitForStatus(ctx.client, created.id, ['RUNNING', 'FAILED'], 15 * 60_000);
    const log = await logText(ctx.client, created.id);
    expect(d.status, log).toBe('RUNNING');
    expect(d.runtimeType).toBe(runtime);
    expect(log).toContain(`(${framework})`);
    expect(log).toMatch(/using Node \d+\.\d+\.\d+/);
    const answer = await getViaProxy(d.publicUrl!);
    expect(answer.status, answer.body.slice(0, 500)).toBe(200);
    expect(answer.body).toContain(page);
    await ctx.client.deployments.destroy.mutate({ id: d.id });
  });
});
