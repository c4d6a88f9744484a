import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Deployment,
  EmailTakenError,
  InvalidValueError,
  Project,
  QueryTypes,
  ReferenceMissingError,
  UniqueViolationError,
  User,
  withDomainErrors,
} from '../src/index';
import { createMigratedTestDatabase, type MigratedTestDatabase } from '../src/testing';

let db: MigratedTestDatabase;
beforeAll(async () => {
  db = await createMigratedTestDatabase();
});
afterAll(() => db.close());

let n = 0;
const newUser = () => User.create({ email: `u${++n}@example.com`, passwordHash: 'x' });

describe('models on the real schema', () => {
  it('the database fills id, created_at, updated_at and plan_type', async () => {
    const [{ now }] = (await db.sequelize.query<{ now: Date }>('SELECT now() AS now', {
      type: QueryTypes.SELECT,
    })) as [{ now: Date }];
    const user = await newUser();
    expect(user.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(user.planType).toBe('free');
    expect(user.createdAt).toBeInstanceOf(Date);
    expect(Math.abs(user.createdAt.getTime() - now.getTime())).toBeLessThan(5_000);
    const deployment = await Deployment.create({
      projectId: (await Project.create({ userId: user.id, name: 'p' })).id,
    });
    expect(deployment.status).toBe('PENDING');
  });

  it('the trigger bumps updated_at on update', async () => {
    const user = await newUser();
    await new Promise((r) => setTimeout(r, 20));
    const [, rows] = await User.update({ planType: 'team' }, { where: { id: user.id }, returning: true });
    const updated = rows[0]!;
    expect(updated.updatedAt.getTime()).toBeGreaterThan(user.updatedAt.getTime());
    expect(updated.createdAt.getTime()).toBe(user.createdAt.getTime());
  });

  it('deleting a user cascades to projects and deployments', async () => {
    const user = await newUser();
    const project = await Project.create({ userId: user.id, name: 'app' });
    await Deployment.create({ projectId: project.id });
    await user.destroy();
    expect(await Project.count({ where: { userId: user.id } })).toBe(0);
    expect(await Deployment.count({ where: { projectId: project.id } })).toBe(0);
  });

  it('an invalid status is rejected as an invalid value', async () => {
    const user = await newUser();
    const project = await Project.create({ userId: user.id, name: 'p' });
    await expect(
      withDomainErrors(
        db.sequelize.query(`INSERT INTO deployments (project_id, status) VALUES ($1, 'EXPLODED')`, {
          bind: [project.id],
        }),
      ),
    ).rejects.toBeInstanceOf(InvalidValueError);
  });

  it('a duplicate email is EmailTakenError', async () => {
    const user = await newUser();
    const err = await withDomainErrors(User.create({ email: user.email, passwordHash: 'y' })).catch((e) => e);
    expect(err).toBeInstanceOf(EmailTakenError);
    expect(err.message).toBe('email is already registered');
  });

  it('a duplicate app_sandbox_id or public_url is a UniqueViolationError naming the column', async () => {
    const user = await newUser();
    const project = await Project.create({ userId: user.id, name: 'p' });
    await Deployment.create({
      projectId: project.id,
      appSandboxId: 'sbx-1',
      publicUrl: 'http://a.localhost/',
    });
    for (const [field, values] of [
      ['app_sandbox_id', { appSandboxId: 'sbx-1' }],
      ['public_url', { publicUrl: 'http://a.localhost/' }],
    ] as const) {
      const err = await withDomainErrors(Deployment.create({ projectId: project.id, ...values })).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(UniqueViolationError);
      expect(err.field).toBe(field);
      expect(err.table).toBe('deployments');
    }
  });

  it('a missing parent is ReferenceMissingError', async () => {
    const err = await withDomainErrors(
      Project.create({ userId: '00000000-0000-4000-8000-000000000000', name: 'orphan' }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(ReferenceMissingError);
  });
});
