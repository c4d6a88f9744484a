import { QueryTypes, User } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenService } from '../src/auth/tokens';
import { createInnerContext } from '../src/context';
import { appRouter } from '../src/root';
import { createCallerFactory } from '../src/trpc';
import { codeOf, PASSWORD, setupApi, TEST_SECRET, type TestApi } from './helpers';

let api: TestApi;
beforeAll(async () => {
  api = await setupApi();
});
afterAll(() => api.close());

describe('auth.register', () => {
  it('creates the user, returns a DTO without the hash, and a working token', async () => {
    const { user, token } = await api
      .caller()
      .auth.register({ email: '  New.Person@Example.COM ', password: PASSWORD });
    expect(Object.keys(user).sort()).toEqual(['createdAt', 'email', 'id', 'planType', 'updatedAt']);
    expect(user.email).toBe('new.person@example.com');
    expect(user.planType).toBe('free');
    expect(user.createdAt).toBeInstanceOf(Date);
    expect((await api.caller(token).auth.me()).id).toBe(user.id);
  });

  it('stores an argon2id hash at OWASP parameters, never the password', async () => {
    const { email } = await api.register();
    const [row] = await api.db.sequelize.query<{ password_hash: string }>(
      'SELECT password_hash FROM users WHERE email = :email',
      { type: QueryTypes.SELECT, replacements: { email } },
    );
    expect(row!.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const [{ n }] = (await api.db.sequelize.query(
      `SELECT count(*)::int AS n FROM users WHERE password_hash LIKE :p OR email LIKE :p`,
      { type: QueryTypes.SELECT, replacements: { p: `%${PASSWORD}%` } },
    )) as [{ n: number }];
    expect(n).toBe(0);
  });

  it('treats emails case- and space-insensitively: a taken email is CONFLICT', async () => {
    const { email } = await api.register();
    const err = await api
      .caller()
      .auth.register({ email: ` ${email.toUpperCase()} `, password: PASSWORD })
      .catch((e) => e);
    expect(err.code).toBe('CONFLICT');
    expect(err.message).toBe('email is already registered');
  });

  it.each([
    [{ email: 'not-an-email', password: PASSWORD }, /email: must be an email address/],
    [{ email: 'a@example.com', password: 'short' }, /password: must be at least 8 characters/],
    [{ email: 'a@example.com', password: 'é'.repeat(513) }, /password: must be at most 1024 bytes/],
    [
      { email: `${'a'.repeat(250)}@example.com`, password: PASSWORD },
      /email: must be at most 255 characters/,
    ],
    [{ email: 'a@example.com', password: PASSWORD, admin: true }, /Unrecognized key/],
    [{ email: 42, password: PASSWORD }, /email: Invalid input: expected string/],
  ])('refuses %j with BAD_REQUEST naming the field', async (input, message) => {
    const err = await api
      .caller()
      .auth.register(input as never)
      .catch((e) => e);
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(message);
  });

  it('accepts a password of exactly 1024 bytes and verifies it whole (no truncation)', async () => {
    const long = 'p'.repeat(1024);
    const email = `long-${Date.now()}@example.com`;
    await api.caller().auth.register({ email, password: long });
    await expect(api.caller().auth.login({ email, password: long })).resolves.toBeTruthy();
    expect(await codeOf(api.caller().auth.login({ email, password: `${'p'.repeat(1023)}q` }))).toBe(
      'UNAUTHORIZED',
    );
  });
});

describe('auth.login', () => {
  it('logs in with any casing of the email', async () => {
    const { email, userId } = await api.register();
    const { user, token } = await api.caller().auth.login({ email: email.toUpperCase(), password: PASSWORD });
    expect(user.id).toBe(userId);
    expect((await api.caller(token).auth.me()).email).toBe(email);
  });

  it('answers the same for an unknown email and a wrong password', async () => {
    const { email } = await api.register();
    const wrong = await api
      .caller()
      .auth.login({ email, password: 'wrong password' })
      .catch((e) => e);
    const unknown = await api
      .caller()
      .auth.login({ email: 'nobody@example.com', password: 'wrong password' })
      .catch((e) => e);
    expect([wrong.code, wrong.message]).toEqual(['UNAUTHORIZED', 'invalid email or password']);
    expect([unknown.code, unknown.message]).toEqual(['UNAUTHORIZED', 'invalid email or password']);
  });

  it('takes about the same time for an unknown email as for a wrong password', async () => {
    const { email } = await api.register();
    const time = async (address: string) => {
      const start = process.hrtime.bigint();
      await api
        .caller()
        .auth.login({ email: address, password: 'wrong password' })
        .catch(() => {});
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    await time('warm-up@example.com');
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 8; i++) {
      known.push(await time(email));
      unknown.push(await time(`ghost${i}@example.com`));
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const ratio = median(unknown) / median(known);
    // Without the dummy hash an unknown email answers ~20x faster; a loaded machine adds noise.
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
  });
});

describe('tokens', () => {
  it('a protected procedure without a token or with garbage is UNAUTHORIZED', async () => {
    expect(await codeOf(api.caller().auth.me())).toBe('UNAUTHORIZED');
    expect(await codeOf(api.caller('not-a-jwt').auth.me())).toBe('UNAUTHORIZED');
    expect(await codeOf(api.caller('x'.repeat(100_000)).auth.me())).toBe('UNAUTHORIZED');
  });

  it('a tampered token is UNAUTHORIZED', async () => {
    const { token } = await api.register();
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const other = await api.register();
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, sub: other.userId })).toString('base64url');
    expect(await codeOf(api.caller(`${header}.${forgedPayload}.${signature}`).auth.me())).toBe(
      'UNAUTHORIZED',
    );
    const flipped = signature.slice(0, -2) + (signature.endsWith('AA') ? 'BB' : 'AA');
    expect(await codeOf(api.caller(`${header}.${payload}.${flipped}`).auth.me())).toBe('UNAUTHORIZED');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
    expect(await codeOf(api.caller(none).auth.me())).toBe('UNAUTHORIZED');
  });

  it('a token signed with another secret is UNAUTHORIZED', async () => {
    const { userId } = await api.register();
    const user = (await User.findByPk(userId))!;
    const foreign = createTokenService(
      new TextEncoder().encode('another-secret-another-secret-another!!'),
      3600,
    );
    expect(await codeOf(api.caller(await foreign.issue(user)).auth.me())).toBe('UNAUTHORIZED');
    const ours = createTokenService(TEST_SECRET, 3600);
    expect((await api.caller(await ours.issue(user)).auth.me()).id).toBe(userId);
  });

  it('an expired token is UNAUTHORIZED', async () => {
    const { userId } = await api.register();
    const user = (await User.findByPk(userId))!;
    const shortLived = await createTokenService(TEST_SECRET, 1).issue(user);
    expect((await api.caller(shortLived).auth.me()).id).toBe(userId);
    await new Promise((r) => setTimeout(r, 2100));
    expect(await codeOf(api.caller(shortLived).auth.me())).toBe('UNAUTHORIZED');
  });

  it('changing the password returns a fresh token and ends every older session', async () => {
    const { token, email } = await api.register();
    const second = (await api.caller().auth.login({ email, password: PASSWORD })).token;
    const { token: fresh } = await api.caller(token).auth.changePassword({
      currentPassword: PASSWORD,
      newPassword: 'a brand new passphrase',
    });
    expect(await codeOf(api.caller(token).auth.me())).toBe('UNAUTHORIZED');
    expect(await codeOf(api.caller(second).auth.me())).toBe('UNAUTHORIZED');
    expect((await api.caller(fresh).auth.me()).email).toBe(email);
    expect(await codeOf(api.caller().auth.login({ email, password: PASSWORD }))).toBe('UNAUTHORIZED');
    await expect(
      api.caller().auth.login({ email, password: 'a brand new passphrase' }),
    ).resolves.toBeTruthy();
  });

  it('changePassword refuses a wrong current password and a weak new one', async () => {
    const { as } = await api.register();
    const wrong = await as.auth
      .changePassword({ currentPassword: 'nope nope', newPassword: 'whatever123' })
      .catch((e) => e);
    expect([wrong.code, wrong.message]).toEqual(['UNAUTHORIZED', 'current password is wrong']);
    expect(await codeOf(as.auth.changePassword({ currentPassword: PASSWORD, newPassword: 'short' }))).toBe(
      'BAD_REQUEST',
    );
    expect(
      await codeOf(
        api.caller().auth.changePassword({ currentPassword: PASSWORD, newPassword: 'x'.repeat(9) }),
      ),
    ).toBe('UNAUTHORIZED');
  });
});

describe('auth.usage', () => {
  it("the caller's plan, its limits and what the caller holds (other users' projects not counted)", async () => {
    const { token } = await api.register();
    const other = await api.register();
    await api.caller(token).projects.create({ name: 'one' });
    await api.caller(token).projects.create({ name: 'two' });
    await api.caller(other.token).projects.create({ name: 'elsewhere' });
    expect(await api.caller(token).auth.usage()).toEqual({
      plan: 'free',
      limits: { projects: 3, activeDeployments: 1 },
      used: { projects: 2, activeDeployments: 0 },
    });
  });

  it('with a cookie session, login puts the token in the cookie only', async () => {
    const { email } = await api.register();
    const set: string[] = [];
    const cookieSession = { wanted: true, set: (t: string) => set.push(t), clear: () => {} };
    const caller = createCallerFactory(appRouter)(createInnerContext({ deps: api.deps, cookieSession }));
    const { token } = await caller.auth.login({ email, password: PASSWORD });
    expect(token).toBe('');
    expect(set).toHaveLength(1);
    expect((await api.caller(set[0]!).auth.me()).email).toBe(email);
  });
});

describe('rate limits', () => {
  it('locks an email after N failed logins (even with the right password), with a retry hint', async () => {
    const limited = await setupApi({
      rateLimits: { windowMs: 60_000, authPerIp: 1000, failuresPerEmail: 3 },
    });
    try {
      const { email, as } = await limited.register();
      for (let i = 0; i < 3; i++) {
        expect(await codeOf(limited.caller().auth.login({ email, password: 'wrong password' }))).toBe(
          'UNAUTHORIZED',
        );
      }
      const err = await limited
        .caller()
        .auth.login({ email, password: PASSWORD })
        .catch((e) => e);
      expect(err.code).toBe('TOO_MANY_REQUESTS');
      expect(err.message).toMatch(/too many failed attempts for this email; try again in \d+ s/);
      // The owner, signed in, can still change the password: that has a budget of its own (anyone can
      // spend an email's with failed logins); wrong current passwords spend it.
      await expect(
        as.auth.changePassword({ currentPassword: PASSWORD, newPassword: 'a brand new password' }),
      ).resolves.toBeTruthy();
      const fresh = await limited.register();
      for (let i = 0; i < 3; i++) {
        expect(
          await codeOf(
            fresh.as.auth.changePassword({ currentPassword: 'wrong password', newPassword: 'x'.repeat(12) }),
          ),
        ).toBe('UNAUTHORIZED');
      }
      expect(
        await codeOf(
          fresh.as.auth.changePassword({ currentPassword: PASSWORD, newPassword: 'x'.repeat(12) }),
        ),
      ).toBe('TOO_MANY_REQUESTS');
      // Other accounts are unaffected.
      const other = await limited.register();
      await expect(
        limited.caller().auth.login({ email: other.email, password: PASSWORD }),
      ).resolves.toBeTruthy();
    } finally {
      await limited.close();
    }
  });

  it('limits auth calls per client address', async () => {
    const limited = await setupApi({
      rateLimits: { windowMs: 60_000, authPerIp: 3, failuresPerEmail: 1000 },
    });
    try {
      const { email } = await limited.register(); // 1 (ip 127.0.0.1)
      await limited.caller(null, '127.0.0.1').auth.login({ email, password: PASSWORD }); // 2
      await limited.caller(null, '127.0.0.1').auth.login({ email, password: PASSWORD }); // 3
      expect(await codeOf(limited.caller(null, '127.0.0.1').auth.login({ email, password: PASSWORD }))).toBe(
        'TOO_MANY_REQUESTS',
      );
      await expect(
        limited.caller(null, '10.0.0.9').auth.login({ email, password: PASSWORD }),
      ).resolves.toBeTruthy();
    } finally {
      await limited.close();
    }
  });
});
