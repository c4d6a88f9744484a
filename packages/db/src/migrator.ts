import pg from 'pg';
import type { Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import * as m0001 from './migrations/0001_initial_schema';

/** A migration receives a function that runs SQL inside the migration's transaction. */
export type MigrationFn = (params: { context: (sql: string) => Promise<unknown> }) => Promise<void>;

/** Listed here, not globbed, so names are identical under tsx, compiled output and bundles. */
const MIGRATIONS: { name: string; up: MigrationFn; down: MigrationFn }[] = [
  { name: '0001_initial_schema', ...m0001 },
];

/** The migration ledger: one table (name VARCHAR PRIMARY KEY), no sequence. */
export const LEDGER_TABLE = 'SequelizeMeta';

/** Arbitrary constant key of the advisory lock that serialises migrations across processes. */
const MIGRATION_LOCK_KEY = 0x636f6465; // "code"

export function createMigrator(sequelize: Sequelize, log: (msg: string) => void = () => {}) {
  return new Umzug({
    migrations: MIGRATIONS.map(({ name, up, down }) => ({
      name,
      up: () =>
        sequelize.transaction((t) => up({ context: (sql) => sequelize.query(sql, { transaction: t }) })),
      down: () =>
        sequelize.transaction((t) => down({ context: (sql) => sequelize.query(sql, { transaction: t }) })),
    })),
    storage: new SequelizeStorage({ sequelize, tableName: LEDGER_TABLE }),
    logger: {
      info: (e) =>
        log(`${(e as { event?: string }).event ?? ''} ${(e as { name?: string }).name ?? ''}`.trim()),
      warn: (e) => log(String(JSON.stringify(e))),
      error: (e) => log(String(JSON.stringify(e))),
      debug: () => {},
    },
  });
}

/**
 * Run `work` while holding a session-level advisory lock on a connection of its own, so that several
 * servers starting at once migrate one after another (the later ones find nothing pending).
 */
async function withMigrationLock<T>(url: string, work: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      return await work();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    }
  } finally {
    await client.end().catch(() => {});
  }
}

function urlOf(sequelize: Sequelize): string {
  const c = sequelize.config;
  const auth = c.username ? `${encodeURIComponent(c.username)}:${encodeURIComponent(c.password ?? '')}@` : '';
  return `postgres://${auth}${c.host ?? '127.0.0.1'}:${c.port ?? 5432}/${encodeURIComponent(c.database)}`;
}

/** Apply every pending migration; returns the names applied (empty when up to date). */
export async function migrateUp(sequelize: Sequelize, log?: (msg: string) => void): Promise<string[]> {
  return withMigrationLock(urlOf(sequelize), async () => {
    const applied = await createMigrator(sequelize, log).up();
    return applied.map((m) => m.name);
  });
}

/** Undo the last applied migration; returns its name, or undefined when none is applied. */
export async function migrateDown(
  sequelize: Sequelize,
  log?: (msg: string) => void,
): Promise<string | undefined> {
  return withMigrationLock(urlOf(sequelize), async () => {
    const reverted = await createMigrator(sequelize, log).down();
    return reverted[0]?.name;
  });
}

export async function migrationStatus(
  sequelize: Sequelize,
): Promise<{ executed: string[]; pending: string[] }> {
  const migrator = createMigrator(sequelize);
  const [executed, pending] = await Promise.all([migrator.executed(), migrator.pending()]);
  return { executed: executed.map((m) => m.name), pending: pending.map((m) => m.name) };
}
