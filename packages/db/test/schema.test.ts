import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, LEDGER_TABLE, migrateDown, migrateUp, migrationStatus } from '../src/index';
import { createTestDatabase, type TestDatabase } from '../src/testing';
import { diffSnapshots, snapshotSchema } from './catalog';

const here = path.dirname(fileURLToPath(import.meta.url));
// The schema document lives in the repository (docs/), the seed's text unchanged, so that a clone
// passes its own tests with nothing beside it. Where the steering folder is beside the project root
// (sessions, CI), the copy is also checked against the seed it came from.
const schemaDoc = path.resolve(here, '../../../docs/coderunner-db-schema-v1.0.md');
const seedDoc = path.resolve(here, '../../../../shared/seed/coderunner-db-schema-v1.0.md');

function ddlFromSeedDoc(markdown: string): string {
  const match = /```sql\n([\s\S]*?)```/.exec(markdown);
  if (!match?.[1]) throw new Error('no ```sql block in the schema document');
  return match[1];
}

const seedSql = ddlFromSeedDoc(fs.readFileSync(schemaDoc, 'utf8'));

async function runSql(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

const dbs: TestDatabase[] = [];
async function freshDb() {
  const db = await createTestDatabase();
  dbs.push(db);
  return db;
}
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

describe.skipIf(!fs.existsSync(seedDoc))('the schema document in docs/', () => {
  it('is the seed, byte for byte', () => {
    expect(fs.readFileSync(schemaDoc, 'utf8')).toBe(fs.readFileSync(seedDoc, 'utf8'));
  });
});

describe('schema conformance with the seed (v1.0)', () => {
  let seeded: TestDatabase;
  let migrated: TestDatabase;
  let seededSnapshot: string[];

  beforeAll(async () => {
    [seeded, migrated] = await Promise.all([freshDb(), freshDb()]);
    await runSql(seeded.url, seedSql);
    const sequelize = connect(migrated.url, { poolMax: 2 });
    try {
      expect(await migrateUp(sequelize)).toEqual(['0001_initial_schema']);
    } finally {
      await sequelize.close();
    }
    seededSnapshot = await snapshotSchema(seeded.url);
  });

  it('the migrated catalog equals the seed catalog, object for object', async () => {
    const migratedSnapshot = await snapshotSchema(migrated.url, {
      excludeTables: [LEDGER_TABLE, `${LEDGER_TABLE}_pkey`],
    });
    expect(seededSnapshot.length).toBeGreaterThan(40);
    expect(diffSnapshots(seededSnapshot, migratedSnapshot, ['seed DDL', 'migrations'])).toBe('');
  });

  it('the ledger is the only extra object: one table, no sequence', async () => {
    const full = await snapshotSchema(migrated.url);
    const extra = full.filter((l) => !seededSnapshot.includes(l));
    expect(extra).toEqual([
      `relation ${LEDGER_TABLE} kind=r`,
      `relation ${LEDGER_TABLE}_pkey kind=i`,
      `column ${LEDGER_TABLE}#1 name character varying(255) NOT NULL`,
      `constraint ${LEDGER_TABLE}.${LEDGER_TABLE}_pkey p PRIMARY KEY (name)`,
      `index ${LEDGER_TABLE}_pkey: CREATE UNIQUE INDEX "${LEDGER_TABLE}_pkey" ON public."${LEDGER_TABLE}" USING btree (name)`,
    ]);
  });

  it('pg_dump --schema-only of both databases is identical apart from the ledger', async (ctx) => {
    const server = await runSql(seeded.url, 'SHOW server_version_num');
    const serverMajor = Math.floor(Number(server.rows[0].server_version_num) / 10000);
    let dumpMajor = 0;
    try {
      dumpMajor = Number(/(\d+)\./.exec(execFileSync('pg_dump', ['--version'], { encoding: 'utf8' }))?.[1]);
    } catch {
      ctx.skip(); // no pg_dump on this machine: the catalog comparison above still runs
    }
    if (dumpMajor < serverMajor) ctx.skip(); // pg_dump refuses newer servers (e.g. embedded 17)
    const dump = (url: string) =>
      execFileSync(
        'pg_dump',
        ['--schema-only', '--no-owner', '--no-privileges', '-T', `"${LEDGER_TABLE}"`, url],
        {
          encoding: 'utf8',
        },
      )
        .split('\n')
        .filter((l) => !/^\\(un)?restrict /.test(l)) // per-dump random keys (pg_dump >= 15.14)
        .join('\n');
    expect(dump(migrated.url)).toBe(dump(seeded.url));
  });

  it('catches drift: a changed default, a missing index or a reordered enum shows in the diff', async () => {
    const drifted = await freshDb();
    const driftedSql = seedSql
      .replace("DEFAULT 'free'", "DEFAULT 'pro'")
      .replace('CREATE INDEX idx_deployments_status ON deployments(status);', '')
      .replace("'STOPPED',      -- 用户手动停止\n    'FAILED',", "'FAILED',\n    'STOPPED',");
    expect(driftedSql).not.toBe(seedSql);
    await runSql(drifted.url, driftedSql);
    const diff = diffSnapshots(seededSnapshot, await snapshotSchema(drifted.url), ['seed', 'drifted']);
    expect(diff).toContain("plan_type character varying(50) NOT NULL DEFAULT 'pro'");
    expect(diff).toContain('- index idx_deployments_status');
    expect(diff).toContain(
      'enum deployment_status: PENDING,PROVISIONING,BUILDING,RUNNING,FAILED,STOPPED,DESTROYED',
    );
  });
});

describe('migration commands', () => {
  it('up twice changes nothing the second time; down then up gives the same catalog', async () => {
    const db = await freshDb();
    const sequelize = connect(db.url, { poolMax: 2 });
    try {
      expect(await migrateUp(sequelize)).toEqual(['0001_initial_schema']);
      const first = await snapshotSchema(db.url);
      expect(await migrateUp(sequelize)).toEqual([]);
      expect(await snapshotSchema(db.url)).toEqual(first);
      expect(await migrationStatus(sequelize)).toEqual({ executed: ['0001_initial_schema'], pending: [] });

      expect(await migrateDown(sequelize)).toBe('0001_initial_schema');
      const afterDown = await snapshotSchema(db.url, {
        excludeTables: [LEDGER_TABLE, `${LEDGER_TABLE}_pkey`],
      });
      expect(afterDown).toEqual([]);
      expect(await migrationStatus(sequelize)).toEqual({ executed: [], pending: ['0001_initial_schema'] });

      expect(await migrateUp(sequelize)).toEqual(['0001_initial_schema']);
      expect(await snapshotSchema(db.url)).toEqual(first);
    } finally {
      await sequelize.close();
    }
  });

  it('several processes migrating at once apply the migration exactly once (advisory lock)', async () => {
    const db = await freshDb();
    const instances = [1, 2, 3, 4].map(() => connect(db.url, { poolMax: 2 }));
    try {
      const results = await Promise.all(instances.map((s) => migrateUp(s)));
      expect(results.flat()).toEqual(['0001_initial_schema']);
    } finally {
      await Promise.all(instances.map((s) => s.close()));
    }
  });

  it('the migrate CLI applies, reports and reverts against DATABASE_URL', async () => {
    const db = await freshDb();
    const run = (cmd: string) =>
      execFileSync(process.execPath, ['--import', 'tsx', path.join(here, '../src/cli/migrate.ts'), cmd], {
        env: { ...process.env, DATABASE_URL: db.url },
        encoding: 'utf8',
      });
    expect(run('up')).toContain('applied: 0001_initial_schema');
    expect(run('up')).toContain('nothing to migrate');
    expect(run('status')).toContain('applied  0001_initial_schema');
    expect(run('down')).toContain('reverted: 0001_initial_schema');
    expect(run('status')).toContain('pending  0001_initial_schema');
  });
});
