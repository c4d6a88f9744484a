/**
 * Keys rotated beside running servers: two replicas (one data folder with its key file, one
 * database) keep revealing variables, giving database credentials and deploying while `rotate-keys
 * --new-key` adds a key, makes it first and re-encrypts everything, with no restart; what they write
 * afterwards is sealed with the new key.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type CodeRunnerClient, createClient } from '@coderunner/api/client';
import { createMigratedTestDatabase, freePort, type MigratedTestDatabase } from '@coderunner/db/testing';
import { createLocalProvider, stopProjectClusters } from '@coderunner/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appFolder, deployFolder, logText, waitForStatus } from './fixtures/deploy-helpers';
import { type ServerProcess, startServerProcess } from './load/fixtures/server-process';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

let db: MigratedTestDatabase;
let dataDir: string;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  db = await createMigratedTestDatabase();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-keys-'));
  fs.chmodSync(dataDir, 0o711);
});

afterAll(async () => {
  for (const s of servers) await s.stop(5_000);
  // Apps outlive their servers by design: the ones this test left are killed here.
  const sandboxes = createLocalProvider({ rootDir: path.join(dataDir, 'sandboxes') });
  for (const s of await sandboxes.list().catch(() => [])) await sandboxes.kill(s.id).catch(() => false);
  await stopProjectClusters(dataDir);
  await db?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const keyFile = () => path.join(dataDir, 'encryption-keys');
/** Key ids in the key file, the active one first. */
const kidsInFile = () =>
  fs
    .readFileSync(keyFile(), 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.slice(0, l.indexOf(':')));
/** An app started with node itself (no npm: lighter on a busy machine), answering `version`. */
const app = (version: string) =>
  appFolder({
    'coderunner.json': JSON.stringify({ start: 'node server.js' }),
    'server.js': `require('http').createServer((req, res) => res.end(${JSON.stringify(version)}))
  .listen(process.env.PORT, '127.0.0.1');`,
  });
const kidOfJson = (file: string, inner?: 'env') => {
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  return (inner ? json[inner] : json).kid as string;
};

/**
 * `waitForStatus`, tolerating a dropped connection: the first database of a data folder runs initdb
 * synchronously in the server (seconds on a busy machine), and an idle keep-alive connection can be
 * reset meanwhile; that is not what this test is about.
 */
async function settled(client: CodeRunnerClient, id: string) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await waitForStatus(client, id, ['RUNNING', 'FAILED']);
    } catch (err) {
      if (attempt >= 3 || !/fetch failed/.test((err as Error).message)) throw err;
    }
  }
}

let a: ServerProcess;
let b: ServerProcess;
let viaA: CodeRunnerClient;
let viaB: CodeRunnerClient;
let projectId: string;
let withDb: string;
let credentials: Record<string, unknown>;
let env: Record<string, string>;

/** Two replicas, A with the workers and B without; a project with a variable and a deployment with a database. */
beforeAll(async () => {
  env = {
    DATABASE_URL: db.url,
    CODERUNNER_DATA_DIR: dataDir,
    // Keys from the data folder's file, as by default.
    CODERUNNER_ENCRYPTION_KEYS: '',
    CODERUNNER_AUTH_SECRET: 'keys-rotation-test-secret-keys-rotation',
    CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()),
    CODERUNNER_START_TIMEOUT_S: '90', // a busy machine
  };
  a = await startServerProcess({ port: await freePort(), env });
  servers.push(a);
  b = await startServerProcess({ port: await freePort(), env: { ...env, WORKER_ENABLED: 'false' } });
  servers.push(b);
  const { token } = await createClient({ url: a.trpc }).auth.register.mutate({
    email: 'keys@example.com',
    password: 'keys rotation password',
  });
  viaA = createClient({ url: a.trpc, token });
  viaB = createClient({ url: b.trpc, token });
  projectId = (await viaA.projects.create.mutate({ name: 'rotated' })).id;
  await viaA.env.set.mutate({ projectId, vars: { SECRET_ONE: 'value-one' } });
  withDb = (await deployFolder(viaA, projectId, app('v1'), { database: 'postgres' })).id;
  expect((await settled(viaA, withDb)).status, await logText(viaA, withDb)).toBe('RUNNING');
  credentials = await viaA.deployments.databaseCredentials.query({ id: withDb });
}, 240_000);

const rotateKeys = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', path.join(here, '../src/cli/rotate-keys.ts'), ...args], {
    env: { ...process.env, ...env },
  });

/** rotate-keys with `extra` in its environment, expected to fail: its exit code and output. */
const rotateKeysWith = (extra: Record<string, string>, ...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', path.join(here, '../src/cli/rotate-keys.ts'), ...args], {
    env: { ...process.env, ...env, ...extra },
  }).then(
    (r) => ({ code: 0, ...r }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );

/** Both replicas reveal the variables and give the credentials; a write through B is sealed with `kid` and read by A. */
async function bothServe(kid: string, name: string) {
  for (const client of [viaA, viaB]) {
    expect((await client.env.list.query({ projectId, reveal: true })).items).toContainEqual({
      name: 'SECRET_ONE',
      value: 'value-one',
    });
    expect(await client.deployments.databaseCredentials.query({ id: withDb })).toEqual(credentials);
  }
  await viaB.env.set.mutate({ projectId, vars: { [name]: `${name}-value` } });
  expect(kidOfJson(path.join(dataDir, 'env', `${projectId}.json`))).toBe(kid);
  expect((await viaA.env.list.query({ projectId, reveal: true })).items).toContainEqual({
    name,
    value: `${name}-value`,
  });
}

describe('keys rotated beside two running replicas', () => {
  it('a key put first in the key file by hand, then rotate-keys: both serve and write with it, no restart', async () => {
    const [oldKid, ...older] = kidsInFile();
    // The operator's way before --new-key: a new first line, the file replaced at once (mv).
    const newKid = `hand${randomBytes(3).toString('hex')}`;
    const tmp = `${keyFile()}.new`;
    fs.writeFileSync(
      tmp,
      [
        `${newKid}:${randomBytes(32).toString('base64')}`,
        ...fs.readFileSync(keyFile(), 'utf8').split('\n'),
      ].join('\n'),
      { mode: 0o600 },
    );
    fs.renameSync(tmp, keyFile());
    expect(kidsInFile()).toEqual([newKid, oldKid, ...older]);

    const rotate = await rotateKeys();
    expect(rotate.stdout).toContain(`1 rotated to key "${newKid}"`);
    expect(kidOfJson(path.join(dataDir, 'env', `${projectId}.json`))).toBe(newKid);
    await bothServe(newKid, 'AFTER_HAND_ROTATION');
    for (const s of [a, b]) expect(s.errorLines()).toEqual([]);
  });

  it('rotate-keys --new-key refuses keys from CODERUNNER_ENCRYPTION_KEYS, and explains its usage', async () => {
    const before = fs.readFileSync(keyFile(), 'utf8');
    const fromEnv = await rotateKeysWith(
      { CODERUNNER_ENCRYPTION_KEYS: `e1:${randomBytes(32).toString('base64')}` },
      '--new-key',
    );
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain(
      'the keys come from CODERUNNER_ENCRYPTION_KEYS, which running servers read only at start',
    );
    const unknown = await rotateKeysWith({}, '--new-kye');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('usage: rotate-keys [--new-key [--settle <seconds>]]');
    const settle = await rotateKeysWith({}, '--new-key', '--settle', 'soon');
    expect(settle.code).toBe(2);
    expect(settle.stderr).toContain('--settle takes a number of seconds from 0 to 3600');
    expect(fs.readFileSync(keyFile(), 'utf8')).toBe(before);
  }, 120_000); // three commands started with tsx: slow on a busy machine

  it('rotate-keys --new-key adds a key, makes it first and re-encrypts: both serve, deploy and write with it', async () => {
    const [oldKid] = kidsInFile();
    const rotate = await rotateKeys('--new-key', '--settle', '1');
    const [newKid, ...rest] = kidsInFile();
    expect(rest[0]).toBe(oldKid);
    expect(newKid).not.toBe(oldKid);
    expect(rotate.stderr).toContain(`added key "${newKid}" beside "${oldKid}"`);
    expect(rotate.stderr).toContain(`key "${newKid}" now encrypts`);
    expect(rotate.stdout).toContain(`1 rotated to key "${newKid}"`);
    expect(rotate.stdout).toContain('project variables: 1 rotated');
    expect(kidOfJson(path.join(dataDir, 'sources', `${withDb}.json`), 'env')).toBe(newKid);

    await bothServe(newKid!, 'AFTER_NEW_KEY');
    // A deploy through B (no workers) is snapshotted there and built by A.
    const next = await deployFolder(viaB, projectId, app('v2'));
    expect((await settled(viaB, next.id)).status, await logText(viaB, next.id)).toBe('RUNNING');
    expect(kidOfJson(path.join(dataDir, 'sources', `${next.id}.json`), 'env')).toBe(newKid);

    for (const s of [a, b]) {
      expect(s.errorLines()).toEqual([]);
      expect(s.output()).toContain(`encryption keys reloaded from ${keyFile()}: \\"${newKid}\\" encrypts`);
    }
  }, 180_000);
});
