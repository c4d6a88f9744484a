/**
 * Who may sign up: without tenant isolation, only the first account (every account could read the
 * others' apps), unless the operator accepted that risk; with isolation, anyone.
 */
import { createMigratedTestDatabase, type MigratedTestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApiDeps, createInnerContext, type SystemInfo } from '../src/context';
import { appRouter } from '../src/root';
import { SIGNUP_CLOSED_MESSAGE, signupPolicy } from '../src/signup';
import * as users from '../src/tables/users';
import { createCallerFactory } from '../src/trpc';
import { PASSWORD, testConfig } from './helpers';

const createCaller = createCallerFactory(appRouter);
let db: MigratedTestDatabase;

beforeAll(async () => {
  db = await createMigratedTestDatabase();
});
afterAll(() => db?.close());
// Each test starts with no account (one database per file: a process holds one set of models).
beforeEach(async () => {
  await db.sequelize.query('TRUNCATE users CASCADE');
});

function callerOn(system: SystemInfo) {
  const deps = createApiDeps({ sequelize: db.sequelize, config: testConfig(), system });
  return createCaller(createInnerContext({ deps, ip: '127.0.0.1' }));
}

const signUp = (api: ReturnType<typeof callerOn>, email: string) =>
  api.auth.register({ email, password: PASSWORD });

/** The error a rejected call threw (fails the test when the call succeeded). */
async function failure(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected the call to fail');
}

describe('sign-up without isolation', () => {
  const unisolated = { isolation: 'none', signup: signupPolicy('none', false) } as const;

  it('is open for the first account only; the refusal is FORBIDDEN with what the operator can do', async () => {
    const api = callerOn(unisolated);
    expect(await api.system.info()).toEqual({ isolation: 'none', signup: 'first-account-only' });
    const first = await signUp(api, 'owner@example.com');
    expect(first.user.email).toBe('owner@example.com');

    const refused = await failure(signUp(api, 'second@example.com'));
    expect(refused.code).toBe('FORBIDDEN');
    expect(refused.message).toBe(SIGNUP_CLOSED_MESSAGE);
    expect(refused.message).toMatch(/^sign-up is closed: this server runs apps without tenant isolation/);
    expect(refused.message).toContain(
      'CODERUNNER_UNISOLATED_OPEN_SIGNUP=i-accept-that-users-can-read-each-other',
    );
    // The same answer for a taken email: a closed sign-up tells nobody which emails exist.
    expect(await failure(signUp(api, 'owner@example.com'))).toMatchObject({
      code: 'FORBIDDEN',
      message: SIGNUP_CLOSED_MESSAGE,
    });
    const [rows] = await db.sequelize.query('SELECT email FROM users');
    expect(rows).toEqual([{ email: 'owner@example.com' }]);
    // The first account still logs in.
    expect((await api.auth.login({ email: 'owner@example.com', password: PASSWORD })).user.id).toBe(
      first.user.id,
    );
  });

  it('lets exactly one of many simultaneous first sign-ups through', async () => {
    const api = callerOn(unisolated);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => signUp(api, `racer${i}@example.com`)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r) => r.status === 'rejected'))
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'FORBIDDEN' });
    const [rows] = await db.sequelize.query('SELECT email FROM users');
    expect(rows).toHaveLength(1);
  });

  it('creates the first account once, however many inserts race for it', async () => {
    // Below the API (whose hashing queue spaces the calls out): the inserts themselves at once, on
    // connections opened beforehand.
    await Promise.all(Array.from({ length: 5 }, () => db.sequelize.query('SELECT pg_sleep(0.05)')));
    const created = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        users.createIfNone({ email: `r${i}@example.com`, passwordHash: 'x' }),
      ),
    );
    expect(created.filter(Boolean)).toHaveLength(1);
    const [rows] = await db.sequelize.query('SELECT email FROM users');
    expect(rows).toHaveLength(1);
  });

  it('stays open when the operator accepted the risk', async () => {
    const api = callerOn({ isolation: 'none', signup: signupPolicy('none', true) });
    expect(await api.system.info()).toEqual({ isolation: 'none', signup: 'open' });
    await signUp(api, 'one@example.com');
    await signUp(api, 'two@example.com');
    await signUp(api, 'three@example.com');
    const [rows] = await db.sequelize.query('SELECT email FROM users');
    expect(rows).toHaveLength(3);
  });
});

describe('sign-up with isolation', () => {
  it('is open to anyone, with or without the opt-in', async () => {
    for (const accepted of [false, true]) {
      const api = callerOn({ isolation: 'sandbox', signup: signupPolicy('sandbox', accepted) });
      expect(await api.system.info()).toEqual({ isolation: 'sandbox', signup: 'open' });
      await signUp(api, `a-${accepted}@example.com`);
      await signUp(api, `b-${accepted}@example.com`);
    }
    const [rows] = await db.sequelize.query('SELECT email FROM users');
    expect(rows).toHaveLength(4);
  });
});
