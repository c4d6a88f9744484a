/**
 * A server whose apps run unisolated (`auto` on a machine without bubblewrap and passt, as a fresh
 * machine is after the README's two commands): it says so first, with the command that fixes it,
 * and closes sign-up after the first account unless the operator accepted the risk. The machine is
 * made to lack the tools for real: the server runs in a mount namespace where bwrap and pasta are
 * not executable (root only).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SIGNUP_CLOSED_MESSAGE, UNISOLATED_OPEN_SIGNUP_ACCEPTANCE } from '@coderunner/api';
import { createClient, isCodeRunnerError } from '@coderunner/api/client';
import { createTestDatabase, freePort, type TestDatabase } from '@coderunner/db/testing';
import { detectIsolation, INSTALL_HINT } from '@coderunner/sandbox';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config';

const MAIN = path.resolve(import.meta.dirname, '../src/main.ts');
const canHideTools = process.getuid?.() === 0 && fs.existsSync('/usr/bin/unshare');
const isolatedHere = detectIsolation('auto').mode === 'sandbox';

interface Started {
  url: string;
  stderr(): string;
  stop(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** main.ts as `pnpm start` runs it, on a fresh database; with `hideTools`, on a machine without bwrap and pasta. */
async function startMain(env: Record<string, string>, hideTools: boolean): Promise<Started> {
  const db: TestDatabase = await createTestDatabase('cr_unisolated');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-unisolated-'));
  const port = await freePort();
  cleanups.push(async () => {
    await db.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const node = [process.execPath, '--import', 'tsx', MAIN];
  let command = node;
  if (hideTools) {
    // A file without execute permission over each tool, seen only by this process and its children.
    const blank = path.join(dataDir, 'not-installed');
    fs.writeFileSync(blank, '', { mode: 0o644 });
    const hide =
      'for t in /usr/bin/bwrap /usr/bin/pasta; do mount --bind "$0" "$t" || exit 99; done; exec "$@"';
    command = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', hide, blank, ...node];
  }
  const child: ChildProcess = spawn(command[0]!, command.slice(1), {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_AUTH_SECRET: 'unisolated-test-secret-unisolated-test',
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
      WORKER_ENABLED: 'false',
      CODERUNNER_ISOLATION: 'auto',
      CODERUNNER_UNISOLATED_OPEN_SIGNUP: '',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  cleanups.push(stop);
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (stdout.includes('CodeRunner is listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}:\n${stderr}\n${stdout}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stderr: () => stderr, stop };
}

async function signUp(url: string, email: string) {
  return createClient({ url: `${url}/trpc` }).auth.register.mutate({ email, password: 'a long passphrase' });
}

async function refusal(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (err) {
    if (isCodeRunnerError(err)) return { code: err.data.code, message: err.message };
    throw err;
  }
  throw new Error('expected the call to be refused');
}

describe.skipIf(!canHideTools)('a machine without bubblewrap and passt (CODERUNNER_ISOLATION=auto)', () => {
  it('says first, in plain words, how to install isolation, and closes sign-up after the first account', async () => {
    const server = await startMain({}, true);
    const lines = server.stderr().split('\n');
    expect(lines.slice(0, 6)).toEqual([
      "TENANT ISOLATION IS OFF: deployed apps can read each other's files, environment and databases, and reach every service on this machine.",
      '  Missing: bwrap (Debian package bubblewrap); pasta (Debian package passt).',
      `  To isolate apps (Debian): apt-get update && ${INSTALL_HINT}`,
      '  then start CodeRunner again as root. (README: "Tenant isolation".)',
      `  Until then sign-up closes after the first account (CODERUNNER_UNISOLATED_OPEN_SIGNUP=${UNISOLATED_OPEN_SIGNUP_ACCEPTANCE} keeps it open).`,
      '',
    ]);
    expect(INSTALL_HINT).toMatch(/^apt-get install -y .*\bbubblewrap\b.*\bpasst\b/);

    const info = await createClient({ url: `${server.url}/trpc` }).system.info.query();
    expect(info).toEqual({ isolation: 'none', signup: 'first-account-only' });
    expect((await signUp(server.url, 'first@example.com')).user.email).toBe('first@example.com');
    expect(await refusal(signUp(server.url, 'second@example.com'))).toEqual({
      code: 'FORBIDDEN',
      message: SIGNUP_CLOSED_MESSAGE,
    });
  });

  it('keeps sign-up open when the operator accepts the risk in so many words', async () => {
    const server = await startMain(
      { CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE },
      true,
    );
    expect(server.stderr()).toContain(
      "  Sign-up stays open to anyone (CODERUNNER_UNISOLATED_OPEN_SIGNUP): every account can read the others' apps and secrets.",
    );
    const info = await createClient({ url: `${server.url}/trpc` }).system.info.query();
    expect(info).toEqual({ isolation: 'none', signup: 'open' });
    await signUp(server.url, 'one@example.com');
    await signUp(server.url, 'two@example.com');
  });
});

describe('CODERUNNER_ISOLATION=none', () => {
  it('closes sign-up after the first account too, and says how to turn isolation back on', async () => {
    const server = await startMain({ CODERUNNER_ISOLATION: 'none' }, false);
    expect(server.stderr().split('\n').slice(0, 2)).toEqual([
      "TENANT ISOLATION IS OFF: deployed apps can read each other's files, environment and databases, and reach every service on this machine.",
      `  CODERUNNER_ISOLATION=none turns it off. Unset it to isolate apps (needs root and, on Debian: apt-get update && ${INSTALL_HINT}).`,
    ]);
    await signUp(server.url, 'first@example.com');
    expect((await refusal(signUp(server.url, 'second@example.com'))).code).toBe('FORBIDDEN');
  });
});

describe.skipIf(!isolatedHere)('a machine that isolates apps', () => {
  it('says nothing about isolation and lets anyone sign up', async () => {
    const server = await startMain({}, false);
    expect(server.stderr()).not.toContain('ISOLATION');
    const info = await createClient({ url: `${server.url}/trpc` }).system.info.query();
    expect(info).toEqual({ isolation: 'sandbox', signup: 'open' });
    await signUp(server.url, 'one@example.com');
    await signUp(server.url, 'two@example.com');
  });
});

describe('the opt-in variable', () => {
  it('takes only the value that names the risk', () => {
    for (const value of ['true', '1', 'yes']) {
      const err = (() => {
        try {
          loadConfig({ CODERUNNER_UNISOLATED_OPEN_SIGNUP: value });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(
        `CODERUNNER_UNISOLATED_OPEN_SIGNUP takes only the value ${UNISOLATED_OPEN_SIGNUP_ACCEPTANCE}`,
      );
    }
    expect(
      loadConfig({ CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE }),
    ).toMatchObject({
      CODERUNNER_UNISOLATED_OPEN_SIGNUP: UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
    });
  });
});
