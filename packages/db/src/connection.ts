import pg from 'pg';
import { Sequelize } from 'sequelize';
import { type EmbeddedPostgres, startEmbeddedPostgres } from './embedded';
import { initModels } from './models';
import { defaultDataDir } from './paths';

export const DEFAULT_EMBEDDED_PORT = 54329;
const CONTROL_PLANE_DB = 'coderunner';

export interface DatabaseTarget {
  /** Connection URL of the control plane's database. */
  url: string;
  /** Present when the database is the embedded one: stop it after the app has drained. */
  embedded?: EmbeddedPostgres;
}

export interface ResolveOptions {
  databaseUrl?: string | undefined;
  dataDir?: string | undefined;
  embeddedPort?: number | undefined;
  onLog?: (line: string) => void;
}

/**
 * `DATABASE_URL` when given; otherwise the embedded PostgreSQL in the data folder (started here)
 * with its `coderunner` database created on first use.
 */
export async function resolveDatabase(options: ResolveOptions = {}): Promise<DatabaseTarget> {
  if (options.databaseUrl) return { url: options.databaseUrl };
  const embedded = await startEmbeddedPostgres({
    dataDir: options.dataDir ?? defaultDataDir(),
    port: options.embeddedPort ?? DEFAULT_EMBEDDED_PORT,
    onLog: options.onLog,
  });
  try {
    await ensureDatabaseExists(embedded.url('postgres'), CONTROL_PLANE_DB);
  } catch (err) {
    await embedded.stop();
    throw err;
  }
  return { url: embedded.url(CONTROL_PLANE_DB), embedded };
}

/** Reads DATABASE_URL / CODERUNNER_DATA_DIR / CODERUNNER_EMBEDDED_PG_PORT from the environment. */
export function resolveDatabaseFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<DatabaseTarget> {
  return resolveDatabase({
    databaseUrl: env.DATABASE_URL,
    dataDir: defaultDataDir(env),
    embeddedPort: env.CODERUNNER_EMBEDDED_PG_PORT ? Number(env.CODERUNNER_EMBEDDED_PG_PORT) : undefined,
  });
}

export async function ensureDatabaseExists(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {}); // a dropped connection fails the query below instead
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) {
      await client
        .query(`CREATE DATABASE ${client.escapeIdentifier(name)}`)
        .catch((err: { code?: string }) => {
          if (err.code !== '42P04') throw err; // created meanwhile by another process
        });
    }
  } finally {
    await client.end();
  }
}

export interface ConnectOptions {
  poolMax?: number;
  /** Milliseconds a query may wait for a pooled connection before failing. */
  acquireTimeoutMs?: number;
  /** Milliseconds after which PostgreSQL cancels a statement. */
  statementTimeoutMs?: number;
  logging?: false | ((sql: string) => void);
}

/** A Sequelize instance on `url` with the models initialised on it. */
export function connect(url: string, options: ConnectOptions = {}): Sequelize {
  const sequelize = new Sequelize(url, {
    dialect: 'postgres',
    dialectModule: pg,
    logging: options.logging ?? false,
    pool: {
      max: options.poolMax ?? 10,
      min: 0,
      acquire: options.acquireTimeoutMs ?? 5_000,
      idle: 10_000,
      evict: 1_000,
    },
    dialectOptions: {
      connectionTimeoutMillis: 5_000,
      statement_timeout: options.statementTimeoutMs ?? 10_000,
      // A stalled server cannot enforce statement_timeout: give up on our side too (a little later).
      query_timeout: (options.statementTimeoutMs ?? 10_000) + 1_000,
      keepAlive: true,
    },
    retry: { max: 0 },
  });
  initModels(sequelize);
  return sequelize;
}
