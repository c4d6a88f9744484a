import { DEPLOYMENT_STATUSES, Deployment, GuardedClient, Project, QueryTypes, User } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canTransition,
  insertPending,
  PENDING_CHANNEL,
  parseStatusNotification,
  STATUS_CHANNEL,
  TRANSITIONS,
  transition,
} from '../src/deployments/lifecycle';
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
      RUNNING: ['STOPPED', 'PENDING', 'BUILDING', 'FAILED', 'DESTROYED'],
      STOPPED: ['PENDING', 'DESTROYED'],
      FAILED: ['PENDING', 'DESTROYED'],
      DESTROYED: [],
    });
  });

  for (const from of DEPLOYMENT_STATUSES) {
    for (const to of DEPLOYMENT_STATUSES) {
      const allowed = canTransition(from, to);
      it(`${from} → ${to} is ${allowed ? 'allowed' : 'refused'} by one conditional UPDATE`, async () => {
        const d = await Deployment.create({ projectId, status: from });
        const moved = await transition(api.db.sequelize, d.id, [from], to);
        expect(moved?.status ?? null).toBe(allowed ? to : null);
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
    ).toBeNull();
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

describe('what a status change announces', () => {
  /** Collects the notifications of both channels while `fn` runs. */
  async function heard(fn: () => Promise<unknown>): Promise<{ channel: string; payload: string }[]> {
    const client = new GuardedClient({ connectionString: api.db.url });
    const got: { channel: string; payload: string }[] = [];
    client.on('notification', (m) => got.push({ channel: m.channel, payload: m.payload ?? '' }));
    await client.connect();
    try {
      await client.query(`LISTEN ${STATUS_CHANNEL}; LISTEN ${PENDING_CHANNEL}`);
      await fn();
      for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 50));
      return got;
    } finally {
      await client.end();
    }
  }

  it('a transition: its status on the status channel, decoded by parseStatusNotification', async () => {
    const d = await Deployment.create({ projectId, status: 'BUILDING' });
    const got = await heard(() => transition(api.db.sequelize, d.id, ['BUILDING'], 'RUNNING'));
    expect(got).toHaveLength(1);
    expect(got[0]!.channel).toBe(STATUS_CHANNEL);
    expect(parseStatusNotification(got[0]!.payload)).toEqual({ id: d.id, status: 'RUNNING', projectId });
  });

  it('to PENDING, and a new deployment: the workers are woken too; a lost race says nothing', async () => {
    const d = await Deployment.create({ projectId, status: 'STOPPED' });
    const requeued = await heard(() => transition(api.db.sequelize, d.id, ['STOPPED'], 'PENDING'));
    expect(requeued.map((n) => n.channel).sort()).toEqual([PENDING_CHANNEL, STATUS_CHANNEL].sort());
    const created = await heard(() => insertPending(api.db.sequelize, { projectId, runtimeType: 'nodejs' }));
    expect(created.map((n) => n.channel).sort()).toEqual([PENDING_CHANNEL, STATUS_CHANNEL].sort());
    const row = await Deployment.findOne({
      where: { projectId, status: 'PENDING' },
      order: [['createdAt', 'DESC']],
    });
    expect(parseStatusNotification(created.find((n) => n.channel === STATUS_CHANNEL)!.payload)).toEqual({
      id: row!.id,
      status: 'PENDING',
      projectId,
    });
    const lost = await heard(() => transition(api.db.sequelize, d.id, ['STOPPED'], 'PENDING'));
    expect(lost).toEqual([]);
  });

  it('a claim moves the oldest PENDING row, then the next, then finds none', async () => {
    await api.db.sequelize.query(`UPDATE deployments SET status = 'FAILED' WHERE status = 'PENDING'`);
    const first = await insertPending(api.db.sequelize, { projectId, runtimeType: null });
    const second = await insertPending(api.db.sequelize, { projectId, runtimeType: null });
    const claim = () => transition(api.db.sequelize, { oldest: true }, ['PENDING'], 'PROVISIONING');
    expect(await claim()).toMatchObject({ id: first.id, status: 'PROVISIONING' });
    expect(await claim()).toMatchObject({ id: second.id, status: 'PROVISIONING' });
    expect(await claim()).toBeNull();
  });
});
