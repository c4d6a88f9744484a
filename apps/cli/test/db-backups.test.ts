/**
 * `coderunner db backup | backups | restore | download` against the real server, with a plain
 * embedded cluster standing in for the project's own database (the server is handed `clusterOf`).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { BackupTarget } from '@coderunner/api';
import { type EmbeddedPostgres, findFreePort, startEmbeddedPostgres } from '@coderunner/embedded-postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CliOptions,
  freshConfigDir,
  readConfig,
  registerViaCli,
  removeTempDirs,
  runCli,
  startTestServer,
  type TestServer,
  tempDir,
} from './helpers';

const env = { port: 'PORT', dataDir: 'DIR', url: 'URL' };
let server: TestServer;
let cluster: EmbeddedPostgres;
let dataDir: string;
let port: number;
/** The project whose database `cluster` is; every other project has none. */
let projectWithDatabase = '';
/** Set once the file is done: a restore still in flight (a timed-out test) starts no cluster. */
let finished = false;

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
    cluster = await startEmbeddedPostgres({ dataDir, port, env });
    if (finished) await cluster.stop();
  },
};

beforeAll(async () => {
  dataDir = tempDir('coderunner-cli-backups-pg-');
  port = await findFreePort();
  cluster = await startEmbeddedPostgres({ dataDir, port, env });
  server = await startTestServer(
    { CODERUNNER_DB_BACKUPS_KEEP_FREE: '3' },
    { clusterOf: async (projectId) => (projectId === projectWithDatabase ? target : undefined) },
  );
});
afterAll(async () => {
  finished = true;
  await server?.close();
  await cluster?.stop();
  removeTempDirs();
});

async function query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: cluster.url() });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const notes = async () =>
  (await query<{ body: string }>('SELECT body FROM notes ORDER BY id')).map((r) => r.body);

async function account() {
  const configDir = freshConfigDir();
  await registerViaCli(server, configDir);
  const cli = (args: string[], extra: Partial<CliOptions> = {}) =>
    runCli(args, { configDir, apiUrl: server.url, ...extra });
  return Object.assign(cli, { token: readConfig(configDir).token! });
}

describe('db backup / backups / restore / download', () => {
  it('backs up, lists, restores the old rows (after a safety backup), downloads; keeps 3 on the free plan', async () => {
    const cli = await account();
    const created = (await cli(['projects', 'create', 'notes', '--json'])).json() as { id: string };
    projectWithDatabase = created.id;
    await query(`CREATE TABLE notes (id serial PRIMARY KEY, body text);
                 INSERT INTO notes (body) VALUES ('one'), ('two'), ('three'), ('four'), ('five')`);

    const empty = await cli(['db', 'backups', 'notes']);
    expect([empty.code, empty.stderr]).toEqual([0, expect.stringMatching(/has no database backups yet/)]);

    const taken = await cli(['db', 'backup', 'notes']);
    expect(taken.stderr).toBe('');
    expect(taken.code).toBe(0);
    const id = /: (\S+-manual) \(/.exec(taken.stdout)?.[1];
    expect(id).toBeDefined();

    await query("UPDATE notes SET body = 'changed'; INSERT INTO notes (body) VALUES ('six')");
    const listed = (await cli(['db', 'backups', 'notes', '--json'])).json() as {
      items: { id: string; reason: string; sizeBytes: number; postgresVersion: string }[];
    };
    expect(listed.items.map((b) => [b.id, b.reason])).toEqual([[id, 'manual']]);
    expect(listed.items[0]!.postgresVersion).toMatch(/^17\./);

    // Without a terminal and without --yes: refused, nothing changed.
    const unconfirmed = await cli(['db', 'restore', 'notes', id!]);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toMatch(
      /not restoring the database of project "notes" without confirmation.*--yes/,
    );
    expect(await notes()).toEqual(['changed', 'changed', 'changed', 'changed', 'changed', 'six']);

    const restored = await cli(['db', 'restore', 'notes', id!, '--yes']);
    expect(restored.code).toBe(0);
    expect(restored.stdout).toMatch(new RegExp(`^Restored the database of project notes to backup ${id}`));
    const safety = /backup (\S+-before-restore)/.exec(restored.stderr)?.[1];
    expect(safety).toBeDefined();
    expect(await notes()).toEqual(['one', 'two', 'three', 'four', 'five']);
    await query("INSERT INTO notes (body) VALUES ('after restore')"); // writable, the sequence goes on

    // The restore itself can be undone: the safety backup holds the changed rows.
    expect((await cli(['db', 'restore', 'notes', safety!, '--yes'])).code).toBe(0);
    expect(await notes()).toEqual(['changed', 'changed', 'changed', 'changed', 'changed', 'six']);

    // Download: the same bytes as the server's archive, 0600, and a data folder PostgreSQL starts.
    const out = path.join(tempDir(), 'notes.tar.gz');
    const downloaded = await cli(['db', 'download', 'notes', id!, '-o', out, '--json']);
    expect(downloaded.code).toBe(0);
    const saved = downloaded.json() as { file: string; sizeBytes: number; sha256: string };
    expect(saved.file).toBe(out);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    const sha = createHash('sha256').update(fs.readFileSync(out)).digest('hex');
    expect(saved.sha256).toBe(sha);
    const listedAgain = (await cli(['db', 'backups', 'notes', '--json'])).json() as {
      items: { id: string; sha256: string }[];
    };
    expect(listedAgain.items.find((b) => b.id === id)?.sha256).toBe(sha);
    expect(execFileSync('tar', ['-tzf', out], { encoding: 'utf8' })).toMatch(/^pgdata\/PG_VERSION$/m);

    // Retention: the free plan keeps 3 (two before-restore backups and the manual one so far).
    expect(listedAgain.items.length).toBe(3);
    expect((await cli(['db', 'backup', 'notes'])).code).toBe(0);
    const kept = (await cli(['db', 'backups', 'notes', '--json'])).json() as { items: { id: string }[] };
    expect(kept.items.length).toBe(3);
    expect(kept.items.map((b) => b.id)).not.toContain(id); // the oldest went
  }, 400_000);

  it('clear errors: unknown backup, a project without database, another user’s project, no token', async () => {
    const cli = await account();
    const created = (await cli(['projects', 'create', 'plain', '--json'])).json() as { id: string };

    const noDb = await cli(['db', 'backup', 'plain']);
    expect(noDb.code).toBe(1);
    expect(noDb.stderr).toMatch(
      /this project has no database to back up: deploy it with `--database postgres` first/,
    );

    const withDb = await account();
    const mine = (await withDb(['projects', 'create', 'mine', '--json'])).json() as { id: string };
    projectWithDatabase = mine.id;
    const unknown = await withDb(['db', 'restore', 'mine', '20990101T000000Z-manual', '--yes']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /this project has no backup "20990101T000000Z-manual"; list its backups with/,
    );
    const badId = await withDb(['db', 'download', 'mine', '../../etc/passwd']);
    expect(badId.code).not.toBe(0);
    expect(badId.stderr).toMatch(/backup id|no backup/);

    // The download route: another user's project answers like a missing one; a bad token: 401.
    const route = `${server.url}/downloads/database-backups/${mine.id}/20990101T000000Z-manual`;
    const asOther = await fetch(route, { headers: { authorization: `Bearer ${cli.token}` } });
    expect(asOther.status).toBe(404);
    expect(await asOther.json()).toEqual({ error: { code: 'NOT_FOUND', message: 'project not found' } });
    const badToken = await fetch(route, { headers: { authorization: 'Bearer not-a-token' } });
    expect(badToken.status).toBe(401);
    const asOwner = await fetch(route, { headers: { authorization: `Bearer ${withDb.token}` } });
    expect(asOwner.status).toBe(404);
    expect(((await asOwner.json()) as { error: { message: string } }).error.message).toMatch(/no backup/);
    expect(created.id).not.toBe(mine.id);
  }, 200_000);
});
