import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createMigratedTestDatabase, type MigratedTestDatabase } from '@coderunner/db/testing';
import { OWASP_MIN } from '../src/auth/password';
import { createClient } from '../src/client';
import type { ApiConfig } from '../src/config';
import { type ApiDeps, createApiDeps, createInnerContext } from '../src/context';
import type { LogBatch, LogLine } from '../src/deployments/log-store';
import { createDeploymentRuntime } from '../src/deployments/runtime';
import { appRouter } from '../src/root';
import { createCallerFactory } from '../src/trpc';

export const PASSWORD = 'correct horse battery staple';
export const TEST_SECRET = new TextEncoder().encode('test-secret-that-is-long-enough-for-hs256!!');

export function testConfig(overrides: Partial<ApiConfig> = {}): ApiConfig & { authSecret: Uint8Array } {
  return {
    authSecret: TEST_SECRET,
    tokenTtlSeconds: 3600,
    passwordHashing: { ...OWASP_MIN, maxConcurrent: 2 },
    rateLimits: { windowMs: 60_000, authPerIp: 100_000, failuresPerEmail: 100_000 },
    ...overrides,
  } as ApiConfig & { authSecret: Uint8Array };
}

const createCaller = createCallerFactory(appRouter);

export interface TestApi {
  db: MigratedTestDatabase;
  deps: ApiDeps;
  caller(token?: string | null, ip?: string): ReturnType<typeof createCaller>;
  /** Registers a fresh user; returns its token and a caller acting as it. */
  register(): Promise<{ token: string; email: string; userId: string; as: ReturnType<typeof createCaller> }>;
  close(): Promise<void>;
}

/** Which sandbox provider a test's runtime uses, and its environment (default: local). */
export interface TestRuntimeOptions {
  provider: 'local' | 'agentsphere';
  env: Record<string, string>;
}

/** The deployment runtime on a temp data folder with the local provider (workers not started). */
export function testDeploymentRuntime(
  sequelize: MigratedTestDatabase['sequelize'],
  databaseUrl: string,
  options: TestRuntimeOptions = { provider: 'local', env: {} },
) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-api-deploy-'));
  fs.chmodSync(dataDir, 0o711);
  const runtime = createDeploymentRuntime({
    config: {
      dataDir,
      env: options.env,
      provider: options.provider,
      appsBaseUrl: 'http://localhost:1',
      // Shared by the tests (see apps/server/test/fixtures/deploy-helpers.ts).
      nodeVersions: { cacheDir: path.join(os.tmpdir(), 'coderunner-test-node-cache') },
      maxUploadMb: 5,
      maxFiles: 1000,
      engine: {
        installTimeoutMs: 120_000,
        buildTimeoutMs: 120_000,
        startTimeoutMs: 15_000,
        reconcileIntervalMs: 60_000,
      },
    },
    sequelize,
    databaseUrl,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  });
  return {
    runtime,
    async close() {
      await runtime.close();
      for (const s of await runtime.provider.list()) await runtime.provider.kill(s.id);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function setupApi(
  overrides: Partial<ApiConfig> = {},
  runtime?: TestRuntimeOptions,
): Promise<TestApi> {
  const db = await createMigratedTestDatabase();
  const deployments = testDeploymentRuntime(db.sequelize, db.url, runtime);
  const deps = createApiDeps({
    sequelize: db.sequelize,
    config: testConfig(overrides),
    deployments: deployments.runtime.service,
  });
  const caller = (token?: string | null, ip?: string) =>
    createCaller(createInnerContext({ deps, token: token ?? null, ip: ip ?? '127.0.0.1' }));
  const run = randomBytes(3).toString('hex');
  let n = 0;
  return {
    db,
    deps,
    caller,
    async register() {
      const email = `user${++n}-${run}@example.com`;
      const { user, token } = await caller().auth.register({ email, password: PASSWORD });
      return { token, email, userId: user.id, as: caller(token) };
    },
    async close() {
      await deployments.close();
      await db.close();
    },
  };
}

/** The tRPC error code of a rejected call (fails the test when the call succeeded). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code ?? 'NOT_A_TRPC_ERROR';
  }
  throw new Error('expected the call to fail');
}

export interface LogFollower {
  events: { id: string; data: LogBatch }[];
  lines: LogLine[];
  done: Promise<void>;
  stop(): void;
}

/**
 * Follows a deployment's log through the typed client at `url` (as the CLI does) until the line
 * `lastText` arrives, or stop().
 */
export function followLogs(
  url: string,
  token: string,
  id: string,
  lastText: string,
  extra: { lastEventId?: string } = {},
): LogFollower {
  const client = createClient({ url, token });
  const events: LogFollower['events'] = [];
  const lines: LogLine[] = [];
  let stop = () => {};
  const done = new Promise<void>((resolve, reject) => {
    const sub = client.deployments.logs.subscribe(
      { id, follow: true, ...extra },
      {
        onData: (event) => {
          events.push(event);
          lines.push(...event.data.lines);
          if (event.data.lines.at(-1)?.text === lastText) {
            sub.unsubscribe();
            resolve();
          }
        },
        onError: reject,
      },
    );
    stop = () => {
      sub.unsubscribe();
      resolve();
    };
  });
  return { events, lines, done, stop: () => stop() };
}
