/**
 * db-backup: how long do an online backup and a restore of a project's database take? An embedded
 * cluster with 100 MB of table data (random text, so that gzip has real work), backed up with
 * `backupCluster` while idle, then restored with `restoreCluster` (cluster stopped) and started again
 * (crash recovery from the backup's WAL) until it answers, rows counted.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  backupCluster,
  findFreePort,
  restoreCluster,
  startEmbeddedPostgres,
} from '@coderunner/embedded-postgres';
import type { BenchContext, BenchOutput } from '../lib/context';
import { adminQuery, tempDir } from '../lib/services';
import { fmt, seconds } from '../lib/stats';

const TABLE_BYTES = 100 * 1024 * 1024;
const ROUNDS = 2;
const env = { port: 'port', dataDir: 'dataDir', url: 'DATABASE_URL' };
const mb = (bytes: number) => bytes / (1024 * 1024);

export async function dbBackup({ scope, log }: BenchContext): Promise<BenchOutput> {
  const dataDir = tempDir(scope, 'dbbackup');
  const clusterDir = path.join(dataDir, 'pg');
  const backups = tempDir(scope, 'dbbackup-archives');
  const port = await findFreePort();
  let cluster = await startEmbeddedPostgres({ dataDir, port, env });
  scope.defer('stop the embedded PostgreSQL', () => cluster.stop());
  const url = cluster.url();

  log('filling a table with 100 MB');
  await adminQuery(url, 'CREATE TABLE filler (id bigserial PRIMARY KEY, payload text NOT NULL)');
  let tableBytes = 0;
  while (tableBytes < TABLE_BYTES) {
    await adminQuery(
      url,
      `INSERT INTO filler (payload)
       SELECT md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)
       FROM generate_series(1, 100000)`,
    );
    tableBytes = Number((await adminQuery(url, "SELECT pg_total_relation_size('filler') AS n")).rows[0]!.n);
  }
  await adminQuery(url, 'CHECKPOINT');
  const rows = Number((await adminQuery(url, 'SELECT count(*) AS n FROM filler')).rows[0]!.n);
  log(`${fmt(rows)} rows, ${fmt(mb(tableBytes))} MB with indexes`);

  const results: {
    backupMs: number;
    dataBytes: number;
    archiveBytes: number;
    restoreMs: number;
    startMs: number;
  }[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const t0 = performance.now();
    const backup = await backupCluster({
      superuserUrl: url,
      clusterDir,
      destFile: path.join(backups, `round-${round}.tar.gz`),
      label: `bench ${round}`,
    });
    const backupMs = performance.now() - t0;
    log(
      `backup ${round}: ${seconds(backupMs)}, ${fmt(mb(backup.dataBytes))} MB → ${fmt(mb(backup.sizeBytes))} MB`,
    );

    await cluster.stop();
    const t1 = performance.now();
    const restored = await restoreCluster({ clusterDir, archive: backup.archive });
    const restoreMs = performance.now() - t1;
    const t2 = performance.now();
    cluster = await startEmbeddedPostgres({ dataDir, port, env });
    const startMs = performance.now() - t2;
    await restored.commit();
    const back = Number((await adminQuery(url, 'SELECT count(*) AS n FROM filler')).rows[0]!.n);
    if (back !== rows) throw new Error(`restored ${back} rows, expected ${rows}`);
    log(`restore ${round}: extract ${seconds(restoreMs)}, start ${seconds(startMs)}, ${fmt(back)} rows back`);
    results.push({
      backupMs,
      dataBytes: backup.dataBytes,
      archiveBytes: backup.sizeBytes,
      restoreMs,
      startMs,
    });
    fs.rmSync(backup.archive, { force: true });
  }

  const best = <K extends keyof (typeof results)[number]>(k: K) => Math.min(...results.map((r) => r[k]));
  const dataMb = mb(results[0]!.dataBytes);
  const backupMs = best('backupMs');
  const restoreMs = best('restoreMs');
  const startMs = best('startMs');
  const archiveMb = mb(results[0]!.archiveBytes);
  const line =
    `db-backup: ${fmt(mb(tableBytes))} MB table (${fmt(dataMb)} MB data folder + WAL): backup ${seconds(backupMs)} ` +
    `(${fmt(dataMb / (backupMs / 1000), 1)} MB/s) → ${fmt(archiveMb)} MB archive; restore ${seconds(restoreMs)} ` +
    `(${fmt(dataMb / (restoreMs / 1000), 1)} MB/s) + start ${seconds(startMs)} — ratio ${fmt((restoreMs + startMs) / backupMs, 2)}`;
  const details = [
    `- ${fmt(rows)} rows of 128 random hex characters; best of ${ROUNDS} rounds; ratio = (restore + start) ÷ backup.`,
    '',
    '| round | backup | data + WAL | archive | restore (extract) | start (recovery) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r, i) =>
        `| ${i + 1} | ${seconds(r.backupMs)} | ${fmt(mb(r.dataBytes))} MB | ${fmt(mb(r.archiveBytes))} MB | ${seconds(r.restoreMs)} | ${seconds(r.startMs)} |`,
    ),
  ];
  return { line, details, database: 'embedded PostgreSQL 17 (its own cluster)' };
}
