/**
 * On the AgentSphere provider, `--database` is refused at deploy time: the service's ingress carries only
 * HTTP(S), so a database sandbox there would come with a DATABASE_URL no app can connect to.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Deployment, User } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeAgentSphere, installFetchRouter } from '../../sandbox/test/fake-agentsphere';
import { packFolder } from '../src/pack';
import { setupApi, type TestApi } from './helpers';

const API_KEY = 'as_test_databases';
const DOMAIN = 'databases.test';
let fake: FakeAgentSphere;
let restore: () => void;
let api: TestApi;

beforeAll(async () => {
  fake = await FakeAgentSphere.start({ apiKey: API_KEY, domain: DOMAIN });
  restore = installFetchRouter(fake);
  api = await setupApi(
    {},
    {
      provider: 'agentsphere',
      env: { AGENTSPHERE_API_KEY: API_KEY, AGENTSPHERE_DOMAIN: DOMAIN, AGENTSPHERE_DB_TEMPLATE: 'postgres' },
    },
  );
});

afterAll(async () => {
  await api?.close();
  restore?.();
  await fake?.stop();
});

async function upload(
  projectId: string,
  opts: { database?: string; manifest?: string } = {},
): Promise<FormData> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-as-db-'));
  fs.writeFileSync(path.join(dir, 'package.json'), '{"scripts":{"start":"node server.js"}}');
  fs.writeFileSync(path.join(dir, 'server.js'), '');
  if (opts.manifest) fs.writeFileSync(path.join(dir, 'coderunner.json'), opts.manifest);
  const form = new FormData();
  form.set('projectId', projectId);
  if (opts.database) form.set('database', opts.database);
  form.set('source', new Blob([(await packFolder(dir)).archive]), 'source.tar.gz');
  fs.rmSync(dir, { recursive: true });
  return form;
}

describe('databases on AgentSphere', () => {
  it('refuses --database with PRECONDITION_FAILED naming the reason and the alternative; nothing is queued', async () => {
    const { as, userId } = await api.register();
    await User.update({ planType: 'team' }, { where: { id: userId } });
    const project = await as.projects.create({ name: 'with-db' });
    const before = await Deployment.count({ where: { projectId: project.id } });
    const error = await as.deployments
      .create(await upload(project.id, { database: 'postgres' }))
      .catch((e) => e);
    expect(error?.code).toBe('PRECONDITION_FAILED');
    expect(error.message).toMatch(
      /^databases are not available on this server's sandbox provider \(AgentSphere\)/,
    );
    expect(error.message).toContain('only HTTP(S)');
    expect(error.message).toContain('coderunner env set DATABASE_URL=');
    expect(await Deployment.count({ where: { projectId: project.id } })).toBe(before);
    expect(fake.callsTo('POST', /^\/sandboxes$/)).toHaveLength(0);
  });

  it('refuses a manifest that asks for one too; deploys without a database are queued', async () => {
    const { as, userId } = await api.register();
    await User.update({ planType: 'team' }, { where: { id: userId } });
    const project = await as.projects.create({ name: 'manifest-db' });
    const manifest = JSON.stringify({ start: 'node server.js', database: 'postgres' });
    const error = await as.deployments.create(await upload(project.id, { manifest })).catch((e) => e);
    expect(error?.code).toBe('PRECONDITION_FAILED');
    const queued = await as.deployments.create(await upload(project.id));
    expect(queued.status).toBe('PENDING');
  });
});
