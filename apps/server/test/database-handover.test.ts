/**
 * A project's database is the project's: handed from release to release (redeploy, rollback, start),
 * kept when older deployments are destroyed, emptied only by `db reset`, dropped with the project.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sweepDeletedProjects } from '@coderunner/api';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { freePort } from '@coderunner/db/testing';
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
import { NOTES_APP } from './fixtures/notes-app';

let ctx: DeployingServer;
let client: CodeRunnerClient;
let projectId: string;

beforeAll(async () => {
  ctx = await startDeployingServer(
    {
      CODERUNNER_APPS_EMBEDDED_PG_PORT: String(await freePort()),
      CODERUNNER_REDEPLOY_DRAIN_S: '2',
      // One CPU: a cgroup v1 parent limited below the team plan's 2 CPUs refuses the sandbox's quota.
      CODERUNNER_LIMITS_TEAM: '1024/512/1/4096',
    },
    { email: 'handover@example.com', project: 'notes' },
  );
  ({ client, projectId } = ctx);
}, 120_000);

afterAll(() => ctx?.close());

async function running(id: string) {
  // Builds run npm install: minutes on a loaded machine.
  const d = await waitForStatus(client, id, ['RUNNING', 'FAILED'], 400_000);
  expect(d.status, await logText(client, id)).toBe('RUNNING');
  return d;
}

/** The app's answer: `notes=<n> <texts>` read from its database. */
async function notes(url: string): Promise<string> {
  const res = await curl(url, 60);
  expect(res.status, res.body).toBe(200);
  return res.body;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe("a project's database across releases", () => {
  it('redeploy and rollback keep the rows, destroying the old deployment keeps them, db reset empties it', async () => {
    const v1 = await running(
      (await deployFolder(client, projectId, appFolder(NOTES_APP), { database: 'postgres' })).id,
    );
    expect((await curl(`${v1.publicUrl}seed`, 60)).body).toBe('seeded 5');
    const five = await notes(v1.publicUrl!);
    expect(five).toBe('notes=5 a,b,c,d,e');
    const creds = await client.deployments.databaseCredentials.query({ id: v1.id });

    const v2 = await running((await client.deployments.redeploy.mutate({ id: v1.id })).id);
    expect(await notes(v2.publicUrl!)).toBe(five);
    // The same database, its credentials sealed for the new row.
    expect(await client.deployments.databaseCredentials.query({ id: v2.id })).toEqual(creds);

    const back = await running((await client.deployments.rollback.mutate({ id: v1.id })).id);
    expect(await notes(back.publicUrl!)).toBe(five);

    // v1 and v2 are older: destroying them leaves the database the newest one holds.
    await client.deployments.destroy.mutate({ id: v1.id });
    await client.deployments.destroy.mutate({ id: v2.id });
    expect(await notes(back.publicUrl!)).toBe(five);

    // Each release that took the database over backed it up first, and said so in its log.
    const releases = (await client.projects.databaseBackups.query({ id: projectId })).items.filter(
      (b) => b.reason === 'release',
    );
    expect(releases.length).toBe(2);
    expect(await logText(client, back.id)).toMatch(/database backed up as \S+-release/);

    // A backup, then more rows, then the restore: the rows of the backup, with the same credentials.
    const manual = await client.projects.backupDatabase.mutate({ id: projectId });
    expect((await curl(`${back.publicUrl}seed`, 60)).body).toBe('seeded 5');
    expect(await notes(back.publicUrl!)).toBe('notes=10 a,b,c,d,e,a,b,c,d,e');
    const restored = await client.projects.restoreDatabase.mutate({ id: projectId, backupId: manual.id });
    expect(restored.safetyBackup.reason).toBe('before-restore');
    expect(await notes(back.publicUrl!)).toBe(five);

    // A reset backs up first: the rows come back from that backup.
    const reset = await client.projects.resetDatabase.mutate({ id: projectId });
    expect(reset.restartedDeploymentId).toBe(back.id);
    expect(reset.backupId).toMatch(/-before-reset$/);
    const again = await running(back.id);
    expect(await notes(again.publicUrl!)).toBe('notes=0 ');
    expect(await client.deployments.databaseCredentials.query({ id: back.id })).toEqual(creds);
    await client.projects.restoreDatabase.mutate({ id: projectId, backupId: reset.backupId! });
    expect(await notes(again.publicUrl!)).toBe(five);
  }, 1_500_000);

  it('destroying the last deployment keeps the database for the next one; deleting the project drops it', async () => {
    const project = (await client.projects.create.mutate({ name: 'kept' })).id;
    const first = await running(
      (await deployFolder(client, project, appFolder(NOTES_APP), { database: 'postgres' })).id,
    );
    expect((await curl(`${first.publicUrl}seed`, 60)).body).toBe('seeded 5');
    const creds = await client.deployments.databaseCredentials.query({ id: first.id });
    await client.deployments.destroy.mutate({ id: first.id });

    const next = await running(
      (await deployFolder(client, project, appFolder(NOTES_APP), { database: 'postgres' })).id,
    );
    expect(await notes(next.publicUrl!)).toBe('notes=5 a,b,c,d,e');

    const [rows] = (await ctx.server.deps.sequelize.query(
      'SELECT db_sandbox_id AS db FROM deployments WHERE project_id = :project AND db_sandbox_id IS NOT NULL',
      { replacements: { project } },
    )) as [{ db: string }[], unknown];
    const folder = path.join(ctx.dataDir, 'databases', rows[0]!.db);
    expect(fs.existsSync(folder)).toBe(true);
    expect(await listening(creds.port)).toBe(true);
    // projects.get says where the database is, how big, its limits (the team plan's) and backups.
    const shown = (await client.projects.get.query({ id: project })).database!;
    expect(shown).toMatchObject({
      kind: 'own',
      deploymentId: next.id,
      limits: { memoryMb: 1024, cpus: 1, diskMb: 4096 },
    });
    expect(shown.sizeBytes).toBeGreaterThan(1024 * 1024);
    expect(shown.lastBackup?.reason).toBe('release'); // the second deploy took it over
    // The project's own cluster goes with it: stopped, its folder removed; a last backup is kept.
    await client.projects.delete.mutate({ id: project });
    expect(fs.existsSync(folder)).toBe(false);
    expect(await listening(creds.port)).toBe(false);
    const backups = ctx.server.deps.databaseBackups!;
    expect(backups.list(project)[0]?.reason).toBe('before-delete');
    const log = { info() {}, warn() {}, debug() {}, error() {} };
    const { sequelize } = ctx.server.deps;
    // Kept for 7 days after the deletion (its newest backup), then swept; a live project's never.
    expect(await sweepDeletedProjects(backups, sequelize, log, Date.now() + 6 * 86_400_000)).toEqual([]);
    expect(await sweepDeletedProjects(backups, sequelize, log, Date.now() + 8 * 86_400_000)).toEqual([
      project,
    ]);
    expect(backups.list(project)).toEqual([]);
  }, 900_000);

  it('two deployments of one project built at once get one database', async () => {
    const project = (await client.projects.create.mutate({ name: 'twins' })).id;
    const [a, b] = await Promise.all(
      [1, 2].map(() => deployFolder(client, project, appFolder(NOTES_APP), { database: 'postgres' })),
    );
    for (const d of [a!, b!]) await running(d.id);
    // One holds it (db_sandbox_id is unique), both use it.
    const [rows] = (await ctx.server.deps.sequelize.query(
      'SELECT db_sandbox_id AS db FROM deployments WHERE project_id = :project AND db_sandbox_id IS NOT NULL',
      { replacements: { project } },
    )) as [{ db: string }[], unknown];
    expect(rows).toHaveLength(1);
    expect(rows[0]!.db).toMatch(/^localpg-[0-9a-f]{32}$/);
    const [ca, cb] = await Promise.all(
      [a!, b!].map((d) => client.deployments.databaseCredentials.query({ id: d.id })),
    );
    expect(ca).toEqual(cb);
  }, 900_000);

  it('db reset of a project without a database says so', async () => {
    const project = (await client.projects.create.mutate({ name: 'no-db' })).id;
    const err = await client.projects.resetDatabase.mutate({ id: project }).catch((e) => e);
    expect(err.data.code).toBe('PRECONDITION_FAILED');
    expect(err.message).toMatch(/no database/);
  });
});
