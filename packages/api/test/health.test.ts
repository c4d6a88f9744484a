import { createMigratedTestDatabase, type MigratedTestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appRouter, createCallerFactory, createInnerContext } from '../src/index';

let db: MigratedTestDatabase;
beforeAll(async () => {
  db = await createMigratedTestDatabase();
});
afterAll(() => db.close());

const createCaller = createCallerFactory(appRouter);

describe('health', () => {
  it('answers through createCaller with the inner context (no HTTP)', async () => {
    const caller = createCaller(createInnerContext({ deps: { sequelize: db.sequelize } }));
    const health = await caller.health();
    expect(health).toMatchObject({ status: 'ok', database: true });
    expect(health.time).toBeInstanceOf(Date);
  });
});
