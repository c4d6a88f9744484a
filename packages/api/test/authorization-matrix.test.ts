/**
 * Every procedure that takes an object id, called by user B on user A's objects, must answer NOT_FOUND
 * (exactly like a missing id) and change nothing. The matrix is data: a procedure added to the
 * router without a row here (or an explicit exemption) fails the completeness test.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Deployment } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packFolder } from '../src/pack';
import { appRouter } from '../src/root';
import { setupApi, type TestApi } from './helpers';

type Caller = ReturnType<TestApi['caller']>;
interface Fixture {
  projectId: string;
  deploymentId: string;
}

/** Runs a subscription far enough for its authorization to happen. */
async function firstOf(iterable: Promise<AsyncIterable<unknown>>): Promise<unknown> {
  for await (const item of await iterable) return item;
  return undefined;
}

async function tinyUpload(projectId: string): Promise<FormData> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-matrix-'));
  fs.writeFileSync(path.join(dir, 'package.json'), '{"scripts":{"start":"node server.js"}}');
  fs.writeFileSync(path.join(dir, 'server.js'), '');
  const form = new FormData();
  form.set('projectId', projectId);
  form.set('source', new Blob([(await packFolder(dir)).archive]), 'source.tar.gz');
  fs.rmSync(dir, { recursive: true });
  return form;
}

/** path → how B attacks A's object. */
const MATRIX: Record<string, (b: Caller, a: Fixture) => Promise<unknown>> = {
  'projects.get': (b, a) => b.projects.get({ id: a.projectId }),
  'projects.update': (b, a) => b.projects.update({ id: a.projectId, name: 'stolen', description: 'pwned' }),
  'projects.delete': (b, a) => b.projects.delete({ id: a.projectId }),
  'projects.resetDatabase': (b, a) => b.projects.resetDatabase({ id: a.projectId }),
  'projects.databaseBackups': (b, a) => b.projects.databaseBackups({ id: a.projectId }),
  'projects.backupDatabase': (b, a) => b.projects.backupDatabase({ id: a.projectId }),
  'projects.restoreDatabase': (b, a) =>
    b.projects.restoreDatabase({ id: a.projectId, backupId: '20990101T000000Z-manual' }),
  'deployments.create': async (b, a) => b.deployments.create(await tinyUpload(a.projectId)),
  'deployments.get': (b, a) => b.deployments.get({ id: a.deploymentId }),
  'deployments.stop': (b, a) => b.deployments.stop({ id: a.deploymentId }),
  'deployments.start': (b, a) => b.deployments.start({ id: a.deploymentId }),
  'deployments.destroy': (b, a) => b.deployments.destroy({ id: a.deploymentId }),
  'deployments.rollback': (b, a) => b.deployments.rollback({ id: a.deploymentId }),
  'deployments.redeploy': (b, a) => b.deployments.redeploy({ id: a.deploymentId }),
  'deployments.databaseCredentials': (b, a) => b.deployments.databaseCredentials({ id: a.deploymentId }),
  'deployments.usage': (b, a) => b.deployments.usage({ id: a.deploymentId }),
  'deployments.watch': (b, a) => firstOf(b.deployments.watch({ id: a.deploymentId })),
  'deployments.logs': (b, a) => firstOf(b.deployments.logs({ id: a.deploymentId })),
  'env.list': (b, a) => b.env.list({ projectId: a.projectId, reveal: true }),
  'env.set': (b, a) => b.env.set({ projectId: a.projectId, vars: { A_SECRET: 'overwritten' } }),
  'env.unset': (b, a) => b.env.unset({ projectId: a.projectId, names: ['A_SECRET'] }),
  'deployments.list': async (b, a) => {
    // Filtering by another user's project shows nothing (a list answers empty, not NOT_FOUND).
    const page = await b.deployments.list({ projectId: a.projectId });
    if (page.items.length) throw new Error('leaked');
    throw Object.assign(new Error('project not found'), { code: 'NOT_FOUND' });
  },
};

/** Procedures that take no object id: they only ever act on the caller's own data. */
const NO_OBJECT_ID = new Set([
  'health',
  'system.info',
  'auth.register',
  'auth.login',
  'auth.me',
  'auth.changePassword',
  'auth.logout',
  'auth.usage',
  'projects.create',
  'projects.list',
]);

let api: TestApi;
let a: Fixture & { caller: Caller };
let b: Caller;
let snapshot: () => Promise<string>;

beforeAll(async () => {
  api = await setupApi();
  const userA = await api.register();
  const project = await userA.as.projects.create({ name: 'a-secret', description: 'only for A' });
  // A STOPPED deployment: every deployments procedure has something to act on.
  const deployment = await Deployment.create({ projectId: project.id, status: 'STOPPED' });
  await userA.as.env.set({ projectId: project.id, vars: { A_SECRET: 'only for A' } });
  a = { projectId: project.id, deploymentId: deployment.id, caller: userA.as };
  b = (await api.register()).as;
  await b.projects.create({ name: 'b-own' });
  snapshot = async () => {
    const [rows] = await api.db.sequelize.query(
      'SELECT id, user_id, name, description, updated_at FROM projects ORDER BY id',
    );
    const [deployments] = await api.db.sequelize.query(
      'SELECT id, status, updated_at FROM deployments ORDER BY id',
    );
    // A's variables (kept in the data folder, not the database) must not change either.
    const env = await a.caller.env.list({ projectId: a.projectId, reveal: true });
    return JSON.stringify([rows, deployments, env]);
  };
});
afterAll(() => api.close());

describe('authorization matrix', () => {
  it('covers every procedure of the router', () => {
    const all = Object.keys(appRouter._def.procedures);
    const missing = all.filter((p) => !(p in MATRIX) && !NO_OBJECT_ID.has(p));
    expect(missing, 'add a MATRIX row (or a NO_OBJECT_ID entry) for these procedures').toEqual([]);
  });

  for (const [path, attack] of Object.entries(MATRIX)) {
    it(`${path}: B on A's object answers NOT_FOUND like a missing id, and changes nothing`, async () => {
      const before = await snapshot();
      const onForeign = (await attack(b, a).catch((e: { code: string; message: string }) => e)) as {
        code: string;
        message: string;
      };
      const onMissing = (await attack(b, {
        projectId: crypto.randomUUID(),
        deploymentId: crypto.randomUUID(),
      }).catch((e: { code: string; message: string }) => e)) as { code: string; message: string };
      expect(onForeign.code).toBe('NOT_FOUND');
      expect([onForeign.code, onForeign.message]).toEqual([onMissing.code, onMissing.message]);
      expect(await snapshot()).toBe(before);
      // A still sees its project untouched.
      expect(await a.caller.projects.get({ id: a.projectId })).toMatchObject({
        name: 'a-secret',
        description: 'only for A',
      });
    });
  }

  it("B's list never contains A's projects", async () => {
    const items = (await b.projects.list()).items;
    expect(items.map((p) => p.name)).toEqual(['b-own']);
  });
});
