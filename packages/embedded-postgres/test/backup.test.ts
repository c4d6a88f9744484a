import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  BackupError,
  backupCluster,
  DEFAULT_OS_USER,
  type EmbeddedPostgres,
  embeddedBinaries,
  findFreePort,
  listBackups,
  pruneBackups,
  restoreCluster,
  startEmbeddedPostgres,
} from '../src/index';
import { runAsIdentity } from '../src/os-user';

const env = { port: 'MY_PG_PORT', dataDir: 'MY_DATA_DIR', url: 'MY_DATABASE_URL' };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-backup-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Running {
  pg: EmbeddedPostgres;
  dataDir: string;
  clusterDir: string;
  port: number;
}

/** A cluster in a temp folder, stopped after the test (whichever start of it is current). */
async function startCluster(dataDir = tempDir(), port?: number): Promise<Running> {
  const p = port ?? (await findFreePort());
  const pgdb = await startEmbeddedPostgres({ dataDir, port: p, env });
  cleanups.push(() => pgdb.stop());
  return { pg: pgdb, dataDir, clusterDir: path.join(dataDir, 'pg'), port: p };
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

type Row = { id: number; payload: string };
const rowsOf = (url: string) =>
  withClient(url, async (c) => (await c.query<Row>('SELECT id, payload FROM items ORDER BY id')).rows);
const digest = (rows: Row[]) =>
  createHash('sha256')
    .update(rows.map((r) => `${r.id}:${r.payload}`).join('\n'))
    .digest('hex');

/** A database `appdb` owned by a role `app` (password `app-secret`), with 1,000 rows in `items`. */
async function seed(cluster: Running): Promise<string> {
  await withClient(cluster.pg.url(), async (c) => {
    await c.query("CREATE ROLE app LOGIN PASSWORD 'app-secret'");
    await c.query('CREATE DATABASE appdb OWNER app');
  });
  const appUrl = `postgres://app:app-secret@127.0.0.1:${cluster.port}/appdb`;
  await withClient(appUrl, (c) =>
    c.query(`CREATE TABLE items (id serial PRIMARY KEY, payload text NOT NULL);
             INSERT INTO items (payload) SELECT md5(g::text) FROM generate_series(1, 1000) g`),
  );
  return appUrl;
}

/** Inserts one row at a time until stopped; `committed` counts the rows whose commit returned. */
function startInserter(url: string) {
  const state = { committed: 0, stop: false, error: undefined as Error | undefined };
  const done = withClient(url, async (c) => {
    while (!state.stop) {
      await c.query("INSERT INTO items (payload) VALUES ('live-' || md5(random()::text))");
      state.committed++;
    }
  }).catch((err: Error) => {
    state.error = err;
  });
  cleanups.push(async () => {
    state.stop = true;
    await done;
  });
  return {
    state,
    async stop() {
      state.stop = true;
      await done;
      if (state.error) throw state.error;
    },
  };
}

describe('backupCluster / restoreCluster', () => {
  it('restores exactly the rows of the moment the backup ended, taken while another connection inserts', async () => {
    const cluster = await startCluster();
    const appUrl = await seed(cluster);
    const backups = path.join(tempDir(), 'backups');

    const inserter = startInserter(appUrl);
    while (inserter.state.committed < 50) await new Promise((r) => setTimeout(r, 20));
    const rowsBefore = 1000 + inserter.state.committed;
    const backup = await backupCluster({
      superuserUrl: cluster.pg.url(),
      clusterDir: cluster.clusterDir,
      destFile: path.join(backups, 'b1.tar.gz'),
      label: 'test',
      extra: { reason: 'manual' },
    });
    const rowsAfter = 1000 + inserter.state.committed;
    await inserter.stop();
    const atBackup = await rowsOf(appUrl);

    // The archive, its metadata and its modes.
    expect(fs.statSync(backup.archive).mode & 0o777).toBe(0o600);
    expect(fs.statSync(backups).mode & 0o777).toBe(0o700);
    expect(backup.sizeBytes).toBe(fs.statSync(backup.archive).size);
    expect(backup.sha256).toBe(createHash('sha256').update(fs.readFileSync(backup.archive)).digest('hex'));
    expect(backup.postgresVersion).toMatch(/^17\./);
    expect(backup.databases).toEqual(['appdb', 'postgres']);
    expect(backup.walFiles.length).toBeGreaterThan(0);
    expect(listBackups(backups).map((b) => [b.id, b.label, b.extra])).toEqual([
      ['b1', 'test', { reason: 'manual' }],
    ]);
    expect(fs.readdirSync(backups).sort()).toEqual(['b1.json', 'b1.tar.gz']);

    // Changed after the backup: updates, deletes, inserts.
    await withClient(appUrl, (c) =>
      c.query(`UPDATE items SET payload = 'changed' WHERE id % 3 = 0;
               DELETE FROM items WHERE id % 7 = 0;
               INSERT INTO items (payload) SELECT 'after' FROM generate_series(1, 500)`),
    );

    await cluster.pg.stop();
    const restored = await restoreCluster({ clusterDir: cluster.clusterDir, archive: backup.archive });
    expect(restored.asideDir && fs.existsSync(restored.asideDir)).toBe(true);
    const again = await startCluster(cluster.dataDir, cluster.port);
    await restored.commit();
    expect(fs.existsSync(restored.asideDir!)).toBe(false);
    expect(fs.statSync(cluster.clusterDir).mode & 0o777).toBe(0o700);

    const rows = await rowsOf(appUrl);
    // Everything committed before the backup began and while it ran, nothing after it ended, and
    // exactly as it was (no row of the later changes).
    expect(rows.length).toBeGreaterThan(rowsBefore);
    expect(rows.length).toBeLessThanOrEqual(rowsAfter);
    expect(digest(rows)).toBe(digest(atBackup.slice(0, rows.length)));

    // Accepts writes; the sequence goes on past every restored id.
    const maxId = rows.at(-1)!.id;
    const newIds = await withClient(appUrl, async (c) =>
      (
        await c.query<{ id: number }>(
          "INSERT INTO items (payload) SELECT 'new' FROM generate_series(1, 20) RETURNING id",
        )
      ).rows.map((r) => r.id),
    );
    expect(Math.min(...newIds)).toBeGreaterThan(maxId);
    expect(
      await withClient(again.pg.url('appdb'), (c) => c.query('SELECT count(*)::int AS n FROM items')),
    ).toMatchObject({
      rows: [{ n: rows.length + 20 }],
    });
  });

  it('a corrupt, truncated or foreign archive fails clearly and leaves the current cluster as it was', async () => {
    const cluster = await startCluster();
    const appUrl = await seed(cluster);
    const dir = path.join(tempDir(), 'backups');
    const backup = await backupCluster({
      superuserUrl: cluster.pg.url(),
      clusterDir: cluster.clusterDir,
      destFile: path.join(dir, 'good.tar.gz'),
      label: 'good',
    });
    await withClient(appUrl, (c) => c.query("INSERT INTO items (payload) VALUES ('current')"));
    const current = await rowsOf(appUrl);

    // Running: refused.
    await expect(restoreCluster({ clusterDir: cluster.clusterDir, archive: backup.archive })).rejects.toThrow(
      /database is running \(pid \d+\): stop it before restoring/,
    );
    await cluster.pg.stop();

    const half = fs.readFileSync(backup.archive).subarray(0, Math.floor(backup.sizeBytes / 2));
    // Truncated, with its metadata beside it: the checksum says so before anything is extracted.
    fs.writeFileSync(path.join(dir, 'cut.tar.gz'), half);
    fs.copyFileSync(path.join(dir, 'good.json'), path.join(dir, 'cut.json'));
    // Truncated, downloaded without metadata: gzip's own check fails.
    const bare = path.join(tempDir(), 'bare.tar.gz');
    fs.writeFileSync(bare, half);
    // Not an archive at all, and an archive of something else.
    const junk = path.join(tempDir(), 'junk.tar.gz');
    fs.writeFileSync(junk, 'not a backup');
    const foreignDir = tempDir();
    fs.mkdirSync(path.join(foreignDir, 'pgdata'));
    fs.writeFileSync(path.join(foreignDir, 'pgdata', 'hello.txt'), 'hi');
    const foreign = path.join(tempDir(), 'foreign.tar.gz');
    execFileSync('tar', ['-czf', foreign, '-C', foreignDir, 'pgdata']);

    const listing = () => fs.readdirSync(path.dirname(cluster.clusterDir)).sort();
    const before = listing();
    for (const [archive, message] of [
      [path.join(dir, 'cut.tar.gz'), /backup cut is damaged .*choose another backup/],
      [bare, /cannot be read .*nothing was changed/],
      [junk, /cannot be read .*nothing was changed/],
      [foreign, /not a CodeRunner database backup: PG_VERSION is missing/],
    ] as const) {
      const err = await restoreCluster({ clusterDir: cluster.clusterDir, archive }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackupError);
      expect((err as Error).message).toMatch(message);
      expect(listing()).toEqual(before); // no half-extracted folder left behind
    }
    await startCluster(cluster.dataDir, cluster.port);
    expect(digest(await rowsOf(appUrl))).toBe(digest(current));
  });

  it('rollback puts the replaced data folder back when the restored cluster is not wanted', async () => {
    const cluster = await startCluster();
    const appUrl = await seed(cluster);
    const backup = await backupCluster({
      superuserUrl: cluster.pg.url(),
      clusterDir: cluster.clusterDir,
      destFile: path.join(tempDir(), 'b.tar.gz'),
      label: 'b',
    });
    await withClient(appUrl, (c) => c.query('DELETE FROM items WHERE id > 10'));
    await cluster.pg.stop();
    const restored = await restoreCluster({ clusterDir: cluster.clusterDir, archive: backup.archive });
    await restored.rollback();
    expect(fs.readdirSync(path.dirname(cluster.clusterDir)).filter((n) => n.startsWith('pg.'))).toEqual([]);
    await startCluster(cluster.dataDir, cluster.port);
    expect((await rowsOf(appUrl)).length).toBe(10);
    await expect(restored.commit()).rejects.toThrow(/already committed or rolled back/);
  });

  it('a backup of a cluster that is not running fails clearly and leaves no file', async () => {
    const cluster = await startCluster();
    const url = cluster.pg.url();
    await cluster.pg.stop();
    const dir = path.join(tempDir(), 'backups');
    await expect(
      backupCluster({
        superuserUrl: url,
        clusterDir: cluster.clusterDir,
        destFile: path.join(dir, 'x.tar.gz'),
        label: 'x',
      }),
    ).rejects.toThrow(/database is not running: start it before taking a backup/);
    expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
  });

  it('refuses a URL that serves another data folder', async () => {
    const running = await startCluster();
    const other = tempDir();
    fs.writeFileSync(path.join(other, 'PG_VERSION'), '17\n');
    await expect(
      backupCluster({
        superuserUrl: running.pg.url(),
        clusterDir: other,
        destFile: path.join(tempDir(), 'x.tar.gz'),
        label: 'x',
      }),
    ).rejects.toThrow(/serves .* not .*refusing to mix them/);
  });

  it('the archive is a data folder PostgreSQL starts as it is (the downloaded backup)', async () => {
    const cluster = await startCluster();
    const appUrl = await seed(cluster);
    const backup = await backupCluster({
      superuserUrl: cluster.pg.url(),
      clusterDir: cluster.clusterDir,
      destFile: path.join(tempDir(), 'download.tar.gz'),
      label: 'download',
    });
    const expected = digest(await rowsOf(appUrl));

    // As a user would: tar -xzf, chmod 700, start it on a port of their own.
    const target = tempDir();
    execFileSync('tar', ['-xzf', backup.archive, '-C', target]);
    const pgdata = path.join(target, 'pgdata');
    expect(fs.readFileSync(path.join(pgdata, 'PG_VERSION'), 'utf8').trim()).toBe('17');
    fs.chmodSync(pgdata, 0o700);
    const ids = runAsIdentity(DEFAULT_OS_USER, (m) => new Error(m));
    if (ids.uid !== undefined) {
      fs.chmodSync(target, 0o711);
      execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, pgdata]);
    }
    const port = await findFreePort();
    const bins = await embeddedBinaries();
    const logFile = path.join(target, 'postgres.log');
    const log = fs.openSync(logFile, 'w');
    const child: ChildProcess = spawn(
      bins.postgres,
      [
        '-D',
        pgdata,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
      ],
      {
        uid: ids.uid,
        gid: ids.gid,
        stdio: ['ignore', log, log],
        env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
      },
    );
    fs.closeSync(log);
    cleanups.push(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT'); // fast shutdown
      await new Promise((r) => child.once('exit', r));
    });
    const downloadedUrl = `postgres://app:app-secret@127.0.0.1:${port}/appdb`;
    const deadline = Date.now() + 60_000;
    let rows: Row[] | undefined;
    while (!rows) {
      if (child.exitCode !== null) throw new Error(`postgres exited: ${fs.readFileSync(logFile, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`not ready: ${fs.readFileSync(logFile, 'utf8')}`);
      rows = await rowsOf(downloadedUrl).catch(() => undefined);
      if (!rows) await new Promise((r) => setTimeout(r, 200));
    }
    expect(digest(rows)).toBe(expected);
    expect(fs.readFileSync(logFile, 'utf8')).toMatch(
      /redo done[\s\S]*database system is ready to accept connections/,
    );
  });

  it('pruneBackups keeps the newest N and removes stale leftovers of unfinished backups', async () => {
    const dir = tempDir();
    for (let i = 1; i <= 5; i++) {
      const id = `b${i}`;
      fs.writeFileSync(path.join(dir, `${id}.tar.gz`), 'x');
      const createdAt = new Date(Date.UTC(2026, 0, i)).toISOString();
      fs.writeFileSync(path.join(dir, `${id}.json`), JSON.stringify({ id, label: id, createdAt }));
    }
    const old = new Date(Date.now() - 2 * 3600_000);
    for (const name of ['b9.tar.gz.tmp-1-ab', 'orphan.tar.gz']) {
      fs.writeFileSync(path.join(dir, name), 'x');
      fs.utimesSync(path.join(dir, name), old, old);
    }
    fs.writeFileSync(path.join(dir, 'b10.tar.gz.tmp-2-cd'), 'in progress');

    expect(listBackups(dir).map((b) => b.id)).toEqual(['b5', 'b4', 'b3', 'b2', 'b1']);
    expect(pruneBackups(dir, 3).map((b) => b.id)).toEqual(['b2', 'b1']);
    expect(fs.readdirSync(dir).sort()).toEqual([
      'b10.tar.gz.tmp-2-cd',
      'b3.json',
      'b3.tar.gz',
      'b4.json',
      'b4.tar.gz',
      'b5.json',
      'b5.tar.gz',
    ]);
    expect(listBackups(path.join(dir, 'missing'))).toEqual([]);
  });
});
