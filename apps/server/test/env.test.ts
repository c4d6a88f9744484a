/**
 * Projects' environment variables end to end on the local provider: a deployment runs with the
 * snapshot taken when it was created (the manifest's variables under the project's, under the
 * deploy's overrides), later changes apply only to new deployments, the log names variables without
 * values, and rotate-keys re-encrypts the files (read raw here) with the active key.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createKeyring, open } from '@coderunner/api';
import type { CodeRunnerClient } from '@coderunner/api/client';
import type { TestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appFolder,
  curl,
  type DeployingServer,
  deployFolder,
  logText,
  startDeployingServer,
  waitForStatus,
} from './fixtures/deploy-helpers';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const KEY1 = randomBytes(32);
const KEY2 = randomBytes(32);
const K1 = `k1:${KEY1.toString('base64')}`;
const K2 = `k2:${KEY2.toString('base64')}`;

let ctx: DeployingServer;
let db: TestDatabase;
let dataDir: string;
let client: CodeRunnerClient;
let projectId: string;

beforeAll(async () => {
  ctx = await startDeployingServer(
    { CODERUNNER_ENCRYPTION_KEYS: K1, CODERUNNER_START_TIMEOUT_S: '15' },
    { email: 'env-owner@example.com', project: 'with-env' },
  );
  ({ db, dataDir, client, projectId } = ctx);
}, 120_000);

afterAll(() => ctx?.close());

/** No install step; serves the variables it was started with. */
const APP = {
  'coderunner.json': JSON.stringify({
    start: 'node app.js',
    env: { GREETING: 'from-the-manifest', FROM_MANIFEST: 'manifest-only', SHARED: 'manifest-shared' },
  }),
  'app.js': `const pick = ['GREETING', 'FROM_MANIFEST', 'SHARED', 'ONLY_D1', 'PORT'];
require('http').createServer((req, res) => {
  res.end(JSON.stringify(Object.fromEntries(pick.map((k) => [k, process.env[k] ?? null]))));
}).listen(process.env.PORT, '127.0.0.1');`,
};

async function served(id: string): Promise<Record<string, string | null>> {
  const d = await waitForStatus(client, id, ['RUNNING', 'FAILED']);
  expect(d.status, await logText(client, id)).toBe('RUNNING');
  return JSON.parse((await curl(d.publicUrl!)).body);
}

const rotateKeys = () =>
  run(process.execPath, ['--import', 'tsx', path.join(here, '../src/cli/rotate-keys.ts')], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      CODERUNNER_DATA_DIR: dataDir,
      CODERUNNER_ENCRYPTION_KEYS: `${K2},${K1}`,
    },
  });

describe('environment variables of deployments', () => {
  let d1: string;
  let d2: string;

  it('a deployment runs with the snapshot taken at its creation: manifest < project < --env overrides', async () => {
    await client.env.set.mutate({
      projectId,
      vars: { GREETING: 'project-value-one', SHARED: 'project-shared' },
    });
    d1 = (
      await deployFolder(client, projectId, appFolder(APP), {
        env: JSON.stringify({ ONLY_D1: 'override-d1' }),
      })
    ).id;
    // Changed right after: d1 keeps what it was created with, the next deployment gets the new value.
    await client.env.set.mutate({ projectId, vars: { GREETING: 'project-value-two' } });
    d2 = (await deployFolder(client, projectId, appFolder(APP))).id;

    const [one, two] = [await served(d1), await served(d2)];
    expect(one).toMatchObject({
      GREETING: 'project-value-one',
      FROM_MANIFEST: 'manifest-only',
      SHARED: 'project-shared',
      ONLY_D1: 'override-d1',
    });
    expect(Number(one.PORT)).toBeGreaterThan(0); // the platform's own
    expect(two).toMatchObject({
      GREETING: 'project-value-two',
      FROM_MANIFEST: 'manifest-only',
      SHARED: 'project-shared',
      ONLY_D1: null,
    });

    // The log names the variables, never their values.
    const log = await logText(client, d1);
    expect(log).toContain('environment variables: GREETING, ONLY_D1, SHARED (values not shown)');
    for (const value of ['project-value-one', 'project-shared', 'override-d1'])
      expect(log).not.toContain(value);

    // Stop and start again: still the snapshot, not the project's current variables. (d2, newer,
    // is stopped first: a project serves one version, so an older one starts only when no newer runs.)
    await client.deployments.stop.mutate({ id: d2 });
    await client.deployments.stop.mutate({ id: d1 });
    await client.deployments.start.mutate({ id: d1 });
    expect(await served(d1)).toMatchObject({ GREETING: 'project-value-one', ONLY_D1: 'override-d1' });
  });

  it('rotate-keys re-encrypts project variables and deployment snapshots with the active key, then skips them', async () => {
    const projectFile = path.join(dataDir, 'env', `${projectId}.json`);
    const snapshotFile = (id: string) => path.join(dataDir, 'sources', `${id}.json`);
    const kidOf = (file: string, inner?: 'env') => {
      const json = JSON.parse(fs.readFileSync(file, 'utf8'));
      return (inner ? json[inner] : json).kid as string;
    };
    expect([kidOf(projectFile), kidOf(snapshotFile(d1), 'env'), kidOf(snapshotFile(d2), 'env')]).toEqual([
      'k1',
      'k1',
      'k1',
    ]);
    const before = fs.readFileSync(projectFile, 'utf8');

    const first = await rotateKeys();
    expect(first.stdout).toContain('project variables: 1 rotated, 0 already current');
    expect(first.stdout).toContain('deployment variables: 2 rotated, 0 already current');
    expect([kidOf(projectFile), kidOf(snapshotFile(d1), 'env'), kidOf(snapshotFile(d2), 'env')]).toEqual([
      'k2',
      'k2',
      'k2',
    ]);
    expect(fs.statSync(projectFile).mode & 0o777).toBe(0o600);
    expect(fs.statSync(snapshotFile(d1)).mode & 0o777).toBe(0o600);
    // The raw files open with the new key alone, to the same values; no plaintext in them.
    const onlyK2 = createKeyring([{ kid: 'k2', key: KEY2 }]);
    const raw = fs.readFileSync(projectFile, 'utf8');
    expect(raw).not.toBe(before);
    expect(raw).not.toContain('project-value-two');
    expect(open(onlyK2, JSON.parse(raw), projectId)).toEqual({
      GREETING: 'project-value-two',
      SHARED: 'project-shared',
    });
    const stored = JSON.parse(fs.readFileSync(snapshotFile(d1), 'utf8'));
    expect(open(onlyK2, stored.env, d1)).toEqual({
      GREETING: 'project-value-one',
      SHARED: 'project-shared',
      ONLY_D1: 'override-d1',
    });
    expect(Object.keys(stored)).toEqual(['env']); // nothing else in it changed
    expect(fs.readdirSync(path.join(dataDir, 'env')).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    // Again: nothing left to do, nothing rewritten.
    const again = await rotateKeys();
    expect(again.stdout).toContain('project variables: 0 rotated, 1 already current');
    expect(again.stdout).toContain('deployment variables: 0 rotated, 2 already current');
    expect(fs.readFileSync(projectFile, 'utf8')).toBe(raw);

    // This server only knows k1: it says so, without any value.
    const stale = await client.env.list.query({ projectId, reveal: true }).catch((e) => e);
    expect(stale.data.code).toBe('PRECONDITION_FAILED');
    expect(stale.message).toMatch(/k2/);
    expect(stale.message).not.toContain('project-value');
  });
});
