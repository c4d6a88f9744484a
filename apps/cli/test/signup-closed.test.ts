/**
 * `coderunner register` against a server that runs apps unisolated: the first account signs up, the
 * next is refused with the server's message and exit code 1. (A file of its own: its server runs in
 * this test process, and a process holds one server's models.)
 */
import { SIGNUP_CLOSED_MESSAGE } from '@coderunner/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freshConfigDir,
  PASSWORD,
  removeTempDirs,
  runCli,
  startTestServer,
  type TestServer,
  uniqueEmail,
} from './helpers';

let server: TestServer;
beforeAll(async () => {
  // Unisolated, and without the test servers' usual opt-in to open sign-up.
  server = await startTestServer({ CODERUNNER_ISOLATION: 'none', CODERUNNER_UNISOLATED_OPEN_SIGNUP: '' });
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

describe('register on a server without isolation', () => {
  it('signs up the first account, then refuses the next with what the operator can do (exit 1)', async () => {
    const register = (email: string) =>
      runCli(['register', '--email', email, '--password-stdin'], {
        configDir: freshConfigDir(),
        apiUrl: server.url,
        input: `${PASSWORD}\n`,
      });
    const first = await register(uniqueEmail('first'));
    expect(first.code, first.stderr).toBe(0);

    const second = await register(uniqueEmail('second'));
    expect(second.code).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toContain(SIGNUP_CLOSED_MESSAGE);
    expect(second.stderr).not.toMatch(/\bat .*\.ts:\d+/); // no stack trace
  });
});
