/**
 * projects.databaseBackups / backupDatabase / restoreDatabase through the real router, with a plain
 * embedded cluster standing in for the project's own database.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type EmbeddedPostgres, findFreePort, startEmbeddedPostgres } from '@coderunner/embedded-postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BackupTarget, DatabaseBackups } from '../src/deployments/database-backups';
import { codeOf, setupApi, type TestApi } from './helpers';

const env = { port: 'PORT', dataDir: 'DIR', url: 'URL' };
let api: TestApi;
let cluster: EmbeddedPostgres;
let root: string;
let dataDir: string;
let port: number;
let finished = false;
/** The port the next start uses once (a busy one makes that start fail for real). */
let nextStartPort: number | undefined;
let projectWithDatabase = '';

const target: BackupTarget = {
  get dataDir() {
    return path.join(dataDir, 'pg');
  },
  get superuserUrl() {
    return cluster.url();
  },
  stop: () => cluster.stop(),
  async start() {
    if (finished) throw new Error('the test file has ended');
    const p = nextStartPort ?? port;
    nextStartPort = undefined;
    cluster = await startEmbeddedPostgres({ dataDir, port: p, env });
    if (finished) await cluster.stop();
  },
};

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-api-backups-'));
  fs.chmodSync(root, 0o711); // as root, the cluster runs as another user, who must pass through
  dataDir = path.join(root, 'db');
  port = await findFreePort();
  cluster = await startEmbeddedPostgres({ dataDir, port, env });
  api = await setupApi();
  api.deps.databaseBackups = new DatabaseBackups({
    dataDir: path.join(root, 'server'),
    clusterOf: async (id) => (id === projectWithDatabase ? target : undefined),
    sequelize: api.deps.sequelize,
  });
});
afterAll(async () => {
  finished = true;
  await api?.close();
  await cluster?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

async function rows(): Promise<string[]> {
  const client = new pg.Client({ connectionString: cluster.url() });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<{ v: string }>('SELECT v FROM t ORDER BY id')).rows.map((r) => r.v);
  } finally {
    await client.end();
  }
}

async function sql(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.url() });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

describe('database backups through the projects router', () => {
  it('a restore whose data does not start puts the previous data back; errors have their codes', async () => {
    const owner = await api.register();
    const stranger = await api.register();
    const withDb = await owner.as.projects.create({ name: 'with-db' });
    const plain = await owner.as.projects.create({ name: 'plain' });
    projectWithDatabase = withDb.id;
    await sql("CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) VALUES ('a'), ('b')");

    const noDb = await owner.as.projects.backupDatabase({ id: plain.id }).catch((e) => e);
    expect([noDb.code, noDb.message]).toEqual([
      'PRECONDITION_FAILED',
      'this project has no database to back up: deploy it with `--database postgres` first',
    ]);
    expect(await codeOf(stranger.as.projects.backupDatabase({ id: withDb.id }))).toBe('NOT_FOUND');
    expect(await codeOf(stranger.as.projects.databaseBackups({ id: withDb.id }))).toBe('NOT_FOUND');

    const backup = await owner.as.projects.backupDatabase({ id: withDb.id });
    expect(backup).toMatchObject({ reason: 'manual', databases: ['postgres'] });
    expect((await owner.as.projects.databaseBackups({ id: withDb.id })).items.map((b) => b.id)).toEqual([
      backup.id,
    ]);
    expect(
      await codeOf(owner.as.projects.restoreDatabase({ id: withDb.id, backupId: '20990101T000000Z-manual' })),
    ).toBe('NOT_FOUND');
    expect(await codeOf(owner.as.projects.restoreDatabase({ id: withDb.id, backupId: '../x' }))).toBe(
      'BAD_REQUEST',
    );

    await sql("UPDATE t SET v = 'changed'");
    // The restored data's start fails (its port is taken): the data as it was comes back, running.
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    nextStartPort = (blocker.address() as net.AddressInfo).port;
    try {
      const failed = await owner.as.projects
        .restoreDatabase({ id: withDb.id, backupId: backup.id })
        .catch((e) => e);
      expect(failed.code).toBe('INTERNAL_SERVER_ERROR');
      expect(failed.message).toMatch(
        new RegExp(
          `backup ${backup.id} did not start \\(.*already in use.*\\); the database was put back as it was before the restore`,
        ),
      );
    } finally {
      await new Promise((r) => blocker.close(r));
    }
    expect(await rows()).toEqual(['changed', 'changed']);
    expect(fs.readdirSync(dataDir).filter((n) => n.startsWith('pg.'))).toEqual([]);

    // Then a restore that starts: the rows of the backup; the safety backup holds the changed ones.
    const done = await owner.as.projects.restoreDatabase({ id: withDb.id, backupId: backup.id });
    expect(done.restored.id).toBe(backup.id);
    expect(done.safetyBackup.reason).toBe('before-restore');
    expect(await rows()).toEqual(['a', 'b']);
    // Free plan: 3 kept (the manual one, and a before-restore backup from each restore).
    const listed = await owner.as.projects.databaseBackups({ id: withDb.id });
    expect(listed.items.map((b) => b.reason).sort()).toEqual(['before-restore', 'before-restore', 'manual']);
  }, 300_000);
});
