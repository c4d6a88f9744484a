/**
 * Logins cannot queue without bound behind argon2: a password check that waits longer than
 * maxWaitMs for a hashing slot is refused as busy (SERVICE_UNAVAILABLE, not counted as a failed
 * attempt), and the slots keep working for everyone else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPasswordHasher, OWASP_MIN, PasswordCheckBusyError } from '../src/auth/password';
import { PASSWORD, setupApi, type TestApi } from './helpers';

describe('the hashing queue', () => {
  it('refuses checks that waited past maxWaitMs, serves the rest, and recovers', async () => {
    const hasher = createPasswordHasher({ ...OWASP_MIN, maxConcurrent: 1, maxWaitMs: 150 });
    const hash = await hasher.hash(PASSWORD);
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, () =>
        hasher.verify(hash, PASSWORD).then(
          (ok) => ({ ok, ms: Date.now() - started }),
          (err: unknown) => ({ err, ms: Date.now() - started }),
        ),
      ),
    );
    const served = outcomes.filter((o) => 'ok' in o);
    const refused = outcomes.filter((o) => 'err' in o);
    expect(served.length).toBeGreaterThan(0);
    expect(refused.length, 'one slot cannot verify 30 hashes within 150 ms').toBeGreaterThan(0);
    for (const o of served) expect(o).toMatchObject({ ok: true });
    for (const o of refused) {
      expect((o as { err: unknown }).err).toBeInstanceOf(PasswordCheckBusyError);
      expect(o.ms).toBeLessThan(2_000); // refused after ~150 ms, not after the whole queue
    }
    // Nothing left stuck: the next checks get the slot at once.
    expect(await hasher.verify(hash, PASSWORD)).toBe(true);
    expect(await hasher.verifyDummy(PASSWORD)).toBe(false);
  });
});

describe('auth.login when hashing is saturated', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await setupApi({
      passwordHashing: { ...OWASP_MIN, maxConcurrent: 1, maxWaitMs: 100 },
      rateLimits: { windowMs: 60_000, authPerIp: 100_000, failuresPerEmail: 100 },
    });
  });
  afterAll(() => api.close());

  it('answers SERVICE_UNAVAILABLE with a message to act on; busy refusals are not counted as failures', async () => {
    const { email } = await api.register();
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        api
          .caller()
          .auth.login({ email, password: PASSWORD })
          .catch((e) => e),
      ),
    );
    const busy = results.filter((r) => r?.code === 'SERVICE_UNAVAILABLE');
    expect(busy.length).toBeGreaterThan(0);
    expect(busy[0].message).toMatch(/too many password checks .* try again in a few seconds/);
    expect(results.filter((r) => r?.token).length).toBeGreaterThan(0);
    expect(results.every((r) => r?.token || r?.code === 'SERVICE_UNAVAILABLE')).toBe(true);
    // Neither the busy refusals nor the successes stay counted as failed attempts for the email.
    expect((await api.deps.rateLimitStore.hit(`auth:email:${email}`, 60_000)).count).toBe(1);
  });
});
