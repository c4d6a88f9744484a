import { Project, QueryTypes, User } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLAN_QUOTAS } from '../src/quotas';
import { codeOf, setupApi, type TestApi } from './helpers';

let api: TestApi;
beforeAll(async () => {
  api = await setupApi();
});
afterAll(() => api.close());

describe('projects', () => {
  it('create, get, list, update, delete', async () => {
    const { as } = await api.register();
    const created = await as.projects.create({ name: '  my-app ', description: 'first' });
    expect(created).toEqual({
      id: expect.any(String),
      name: 'my-app',
      description: 'first',
      url: `http://my-app-${created.id.replace(/-/g, '').slice(0, 10)}.localhost:1/`,
      currentDeploymentId: null,
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
    // get adds the project's database (none yet).
    expect(await as.projects.get({ id: created.id })).toEqual({ ...created, database: null });
    expect((await as.projects.list()).items.map((p) => p.id)).toEqual([created.id]);

    await new Promise((r) => setTimeout(r, 5));
    const renamed = await as.projects.update({ id: created.id, name: 'renamed', description: null });
    expect(renamed.name).toBe('renamed');
    expect(renamed.description).toBeNull();
    // The key (the id's first 10 hex digits) names the project: the readable part follows the name.
    expect(renamed.url).toBe(created.url!.replace('my-app-', 'renamed-'));
    expect(renamed.updatedAt.getTime()).toBeGreaterThan(created.updatedAt.getTime()); // the trigger

    expect(await as.projects.delete({ id: created.id })).toEqual({ id: created.id, deleted: true });
    expect(await codeOf(as.projects.get({ id: created.id }))).toBe('NOT_FOUND');
    expect(await codeOf(as.projects.delete({ id: created.id }))).toBe('NOT_FOUND');
  });

  it('names are unique per user (CONFLICT), across create and rename; other users may reuse them', async () => {
    const a = await api.register();
    const b = await api.register();
    const first = await a.as.projects.create({ name: 'shop' });
    const err = await a.as.projects.create({ name: 'shop' }).catch((e) => e);
    expect([err.code, err.message]).toEqual(['CONFLICT', 'you already have a project named "shop"']);
    await expect(b.as.projects.create({ name: 'shop' })).resolves.toBeTruthy();
    const second = await a.as.projects.create({ name: 'blog' });
    expect(await codeOf(a.as.projects.update({ id: second.id, name: 'shop' }))).toBe('CONFLICT');
    // Renaming a project to its own name is fine.
    await expect(a.as.projects.update({ id: first.id, name: 'shop' })).resolves.toMatchObject({
      name: 'shop',
    });
  });

  it('parallel creates with one name: exactly one wins', async () => {
    const { as } = await api.register();
    await User.update({ planType: 'team' }, { where: { email: (await as.auth.me()).email } });
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => as.projects.create({ name: 'race' })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(
      results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code),
    ).toEqual(Array(7).fill('CONFLICT'));
  });

  it('the free plan allows 3 projects, even under parallel creates; the message names plan and limit', async () => {
    const { as, userId } = await api.register();
    expect(PLAN_QUOTAS.free.projects).toBe(3);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => as.projects.create({ name: `p${i}` })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    const refusal = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refusal.reason.code).toBe('FORBIDDEN');
    expect(refusal.reason.message).toBe('the free plan allows 3 projects; delete one or upgrade your plan');
    expect(await Project.count({ where: { userId } })).toBe(3);
    await User.update({ planType: 'personal' }, { where: { id: userId } });
    await expect(as.projects.create({ name: 'fourth' })).resolves.toBeTruthy();
  });

  it.each([
    [{ name: '' }, /name: must not be empty/],
    [{ name: '   ' }, /name: must not be empty/],
    [{ name: 'x'.repeat(256) }, /name: must be at most 255 characters/],
    [{ name: 'bad\u0000name' }, /name: must not contain control characters/],
    [{ name: 'ok', extra: 1 }, /Unrecognized key/],
    [{ name: 7 }, /name: Invalid input/],
  ])('create refuses %j with BAD_REQUEST', async (input, message) => {
    const { as } = await api.register();
    const err = await as.projects.create(input as never).catch((e) => e);
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(message);
  });

  it('non-UUID ids are BAD_REQUEST; unauthenticated calls are UNAUTHORIZED', async () => {
    const { as } = await api.register();
    const err = await as.projects.get({ id: 'abc' }).catch((e) => e);
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/^id: /);
    const anon = api.caller();
    for (const call of [
      anon.projects.list(),
      anon.projects.create({ name: 'x' }),
      anon.projects.get({ id: crypto.randomUUID() }),
      anon.projects.update({ id: crypto.randomUUID(), name: 'x' }),
      anon.projects.delete({ id: crypto.randomUUID() }),
    ]) {
      expect(await codeOf(call)).toBe('UNAUTHORIZED');
    }
  });

  it('lists 250 projects page by page: no duplicates, no gaps, stable order (ties on created_at included)', async () => {
    const { as, userId } = await api.register();
    // One INSERT: every row gets the same NOW(), so the order rests on the id tie-breaker.
    await api.db.sequelize.query(
      `INSERT INTO projects (user_id, name) SELECT :userId, 'bulk-' || g FROM generate_series(1, 150) g`,
      { replacements: { userId } },
    );
    for (let i = 0; i < 100; i++) await Project.create({ userId, name: `single-${i}` });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { items: { id: string }[]; nextCursor: string | null } = await as.projects.list({
        cursor,
        limit: 40,
      });
      seen.push(...page.items.map((p) => p.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(7);
    expect(new Set(seen).size).toBe(250);
    const expected = await api.db.sequelize.query<{ id: string }>(
      'SELECT id FROM projects WHERE user_id = :userId ORDER BY created_at DESC, id DESC',
      { type: QueryTypes.SELECT, replacements: { userId } },
    );
    expect(seen).toEqual(expected.map((r) => r.id));
  });

  it('refuses forged cursors and out-of-range limits', async () => {
    const { as } = await api.register();
    expect(await codeOf(as.projects.list({ cursor: 'garbage' }))).toBe('BAD_REQUEST');
    // Well-formed but no real instant: refused at the edge, not a 500 from PostgreSQL.
    const id = '00000000-0000-4000-8000-000000000000';
    for (const ts of ['9999-99-99T99:99:99Z', '0000-01-01T00:00:00Z', '2024-02-30T00:00:00Z']) {
      const cursor = Buffer.from(`${ts}|${id}`).toString('base64url');
      expect(await codeOf(as.projects.list({ cursor })), ts).toBe('BAD_REQUEST');
      expect(await codeOf(as.deployments.list({ cursor })), ts).toBe('BAD_REQUEST');
    }
    const fine = Buffer.from(`2024-02-29T12:00:00.123456Z|${id}`).toString('base64url');
    expect((await as.projects.list({ cursor: fine })).items).toEqual([]);
    expect(await codeOf(as.projects.list({ limit: 0 }))).toBe('BAD_REQUEST');
    expect(await codeOf(as.projects.list({ limit: 101 }))).toBe('BAD_REQUEST');
  });
});
