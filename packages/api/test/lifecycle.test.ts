import { DEPLOYMENT_STATUSES, Deployment, Project, QueryTypes, User } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canTransition, TRANSITIONS, transition } from '../src/deployments/lifecycle';
import { setupApi, type TestApi } from './helpers';

let api: TestApi;
let projectId: string;
beforeAll(async () => {
  api = await setupApi();
  const user = await User.create({ email: 'lifecycle@example.com', passwordHash: 'x' });
  projectId = (await Project.create({ userId: user.id, name: 'p' })).id;
});
afterAll(() => api.close());

const statusOf = async (id: string) =>
  (
    (await api.db.sequelize.query<{ status: string }>('SELECT status FROM deployments WHERE id = :id', {
      type: QueryTypes.SELECT,
      replacements: { id },
    })) as { status: string }[]
  )[0]!.status;

describe('the deployment state machine', () => {
  it('is the documented one', () => {
    expect(TRANSITIONS).toEqual({
      PENDING: ['PROVISIONING', 'FAILED', 'DESTROYED'],
      PROVISIONING: ['BUILDING', 'PENDING', 'FAILED', 'DESTROYED'],
      BUILDING: ['RUNNING', 'PENDING', 'FAILED', 'DESTROYED'],
      RUNNING: ['STOPPED', 'PENDING', 'FAILED', 'DESTROYED'],
      STOPPED: ['PENDING', 'DESTROYED'],
      FAILED: ['DESTROYED'],
      DESTROYED: [],
    });
  });

  for (const from of DEPLOYMENT_STATUSES) {
    for (const to of DEPLOYMENT_STATUSES) {
      const allowed = canTransition(from, to);
      it(`${from} → ${to} is ${allowed ? 'allowed' : 'refused'} by one conditional UPDATE`, async () => {
        const d = await Deployment.create({ projectId, status: from });
        expect(await transition(api.db.sequelize, d.id, [from], to)).toBe(allowed);
        expect(await statusOf(d.id)).toBe(allowed ? to : from);
      });
    }
  }

  it('a transition that lost a race changes nothing', async () => {
    const d = await Deployment.create({ projectId, status: 'BUILDING' });
    // Someone stopped/destroyed it meanwhile: a worker still believing BUILDING cannot force RUNNING.
    await transition(api.db.sequelize, d.id, ['BUILDING'], 'DESTROYED');
    expect(
      await transition(api.db.sequelize, d.id, ['BUILDING'], 'RUNNING', { publicUrl: 'http://x/' }),
    ).toBe(false);
    expect(await statusOf(d.id)).toBe('DESTROYED');
  });

  it('a public URL once recorded is never replaced', async () => {
    const d = await Deployment.create({ projectId, status: 'BUILDING' });
    await transition(api.db.sequelize, d.id, ['BUILDING'], 'RUNNING', {
      publicUrl: 'http://first.localhost/',
    });
    await transition(api.db.sequelize, d.id, ['RUNNING'], 'PENDING');
    await transition(api.db.sequelize, d.id, ['PENDING'], 'PROVISIONING');
    await transition(api.db.sequelize, d.id, ['PROVISIONING'], 'BUILDING');
    await transition(api.db.sequelize, d.id, ['BUILDING'], 'RUNNING', {
      publicUrl: 'http://second.localhost/',
    });
    expect((await Deployment.findByPk(d.id))!.publicUrl).toBe('http://first.localhost/');
  });
});
