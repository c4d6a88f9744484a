/**
 * Per-deployment PostgreSQL databases on a cluster of this machine: the one named by
 * `CODERUNNER_APPS_DATABASE_URL` (a superuser URL), or else an embedded PostgreSQL that the server
 * runs for apps only, in `<dataDir>/apps-pg`, apart from the control plane's data.
 *
 * Each deployment gets a role and a database of the same name (`app_<32 hex>`), the role owning the
 * database (PostgreSQL 15 gives PUBLIC no CREATE on `public`: an owner can still create tables).
 * Isolation rests on two things: password authentication, and CONNECT privileges. Every app database
 * revokes CONNECT from PUBLIC; on a cluster we own (the embedded one, or `exclusiveCluster`) so do all
 * the other databases, while on a shared cluster we only report the databases app roles could reach.
 * A cluster that trusts local connections defeats the first: we detect it and warn.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '@coderunner/embedded-postgres';
import pg from 'pg';
import { type DatabaseConnectionInfo, SandboxError } from '../types';
import { LOCAL_DATABASE_SANDBOX_PREFIX, localDatabaseName, localDatabaseSandboxId } from './names';
import { scramSha256Verifier } from './scram';

/** Port of the apps' embedded PostgreSQL (the control plane's uses 54329). Stored URLs contain it. */
export const DEFAULT_APPS_EMBEDDED_PORT = 54330;
/** Connections one app role may hold at once (CODERUNNER_APPS_DB_CONNECTION_LIMIT): no app can take the cluster's all. */
export const DEFAULT_APP_CONNECTION_LIMIT = 20;
/**
 * Settings of the embedded apps cluster: a client that opens a connection and never authenticates
 * (a half-open startup packet) holds a slot for at most 10 s, not PostgreSQL's default minute.
 */
export const APPS_CLUSTER_SETTINGS = { authentication_timeout: '10s' };
const APPS_SETTING_NAMES = {
  port: 'CODERUNNER_APPS_EMBEDDED_PG_PORT',
  dataDir: 'CODERUNNER_DATA_DIR',
  url: 'CODERUNNER_APPS_DATABASE_URL',
};
/** Comment put on every role and database we create: `destroy` drops nothing without it. */
const MARKER_PREFIX = 'coderunner:app-database:';
const MIN_SERVER_VERSION = 130000; // DROP DATABASE … WITH (FORCE)

export const TRUST_WARNING =
  'CODERUNNER_APPS_DATABASE_URL points at a cluster that trusts local connections: app databases are not isolated from each other';

export type LocalDatabaseConnectionInfo = DatabaseConnectionInfo;

export interface DatabaseInfo {
  /** `localdb-<name>`: unique per deployment, stored in `deployments.db_sandbox_id`. */
  sandboxId: string;
  connectionInfo: LocalDatabaseConnectionInfo;
}

/** Points where `testHooks.afterStep` is called during provisioning (a throw there simulates a failure). */
export type ProvisionStep = 'role-created' | 'database-created' | 'privileges-set' | 'verified';

export interface LocalDatabaseProvisionerOptions {
  /** Superuser URL of the cluster to use (CODERUNNER_APPS_DATABASE_URL); unset: embedded PostgreSQL. */
  adminUrl?: string | undefined;
  /** The server's data folder; the embedded cluster lives in `<dataDir>/apps-pg`. */
  dataDir: string;
  /** Port of the embedded cluster (default 54330). Keep it stable: stored URLs contain it. */
  embeddedPort?: number | undefined;
  /** Connections each app role may hold (default 20). */
  connectionLimit?: number | undefined;
  /**
   * The cluster of `adminUrl` serves app databases only: revoke CONNECT from PUBLIC on all its other
   * databases too. Always true for the embedded cluster. Default false: on a shared cluster we only
   * touch the databases we created and warn about the others.
   */
  exclusiveCluster?: boolean | undefined;
  /** Host written into the apps' URLs (default: 127.0.0.1 for a local cluster, else the admin URL's host). */
  appHost?: string | undefined;
  log?: ((msg: string) => void) | undefined;
  /** The cluster's state as it changes (opened, its postmaster gone, back, failing to come back): for the operator's log. */
  onState?: ((state: AppsClusterState) => void) | undefined;
  testHooks?: { afterStep?: (step: ProvisionStep, deploymentId: string) => void | Promise<void> };
}

/** The apps cluster's state: `up` once opened and each time it is back, `down` when its postmaster died. */
export interface AppsClusterState {
  state: 'up' | 'down' | 'failed';
  /** How this process holds it: started, adopted (its starter died), attached (another process runs it), external (CODERUNNER_APPS_DATABASE_URL). */
  mode?: 'started' | 'adopted' | 'attached' | 'external';
  host: string;
  port: number;
  /** Why it could not be started again (`failed`; tried again every second). */
  error?: string;
}

export interface LocalDatabaseProvisioner {
  /** Connects (starting the embedded cluster when needed); idempotent. Warnings are also logged. */
  start(): Promise<{ warnings: string[] }>;
  /** Creates the deployment's role and database; on any failure leaves neither behind. */
  provision(deploymentId: string): Promise<DatabaseInfo>;
  /** Drops the database (closing its connections) and the role; fine when they are already gone. */
  destroy(deploymentId: string): Promise<void>;
  /** `destroy` by the database's sandbox id (`localdb-<name>`), whichever deployment created it. */
  destroyDatabase(sandboxId: string): Promise<void>;
  /**
   * Drops the database (closing its connections) and creates it again, empty, with the same name,
   * owner and password: the connection info stored for it stays valid.
   */
  reset(sandboxId: string): Promise<void>;
  exists(deploymentId: string): Promise<boolean>;
  /** Closes the admin connections and stops the embedded cluster, if we started one. */
  stop(): Promise<void>;
}

interface Cluster {
  pool: pg.Pool;
  embedded?: EmbeddedPostgres;
  /** Host and port apps connect to. */
  host: string;
  port: number;
  /** We may revoke CONNECT from PUBLIC on every database that is not an app's. */
  owned: boolean;
  warnings: string[];
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)
      ? `${err.message} (SQLSTATE ${code})`
      : err.message;
  }
  return String(err);
}

/** Whether `comment` is the marker we put on the role or database `name` (for the deployment that created it). */
function isMarkerOf(comment: string | null | undefined, name: string): boolean {
  if (!comment?.startsWith(MARKER_PREFIX)) return false;
  try {
    return localDatabaseName(comment.slice(MARKER_PREFIX.length)) === name;
  } catch {
    return false;
  }
}

/** The role and database name of a local database from its sandbox id (`localdb-<name>`). */
function nameOfSandbox(sandboxId: string): string {
  const name = sandboxId.startsWith(LOCAL_DATABASE_SANDBOX_PREFIX)
    ? sandboxId.slice(LOCAL_DATABASE_SANDBOX_PREFIX.length)
    : '';
  if (!/^app_[a-z0-9]{1,59}$/.test(name)) {
    throw new SandboxError(`"${sandboxId.slice(0, 80)}" is not the id of a database on the apps cluster`);
  }
  return name;
}

function isLoopback(host: string): boolean {
  return (
    host === '' ||
    host.startsWith('/') || // a Unix socket folder
    host === 'localhost' ||
    host === '::1' ||
    /^127\.\d+\.\d+\.\d+$/.test(host)
  );
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host; // IPv6
}

function parseAdminUrl(adminUrl: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(adminUrl);
  } catch {
    throw new SandboxError(
      'CODERUNNER_APPS_DATABASE_URL is not a valid URL (postgres://user:password@host:port/db)',
    );
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new SandboxError('CODERUNNER_APPS_DATABASE_URL must start with postgres:// or postgresql://');
  }
  const host = decodeURIComponent(url.hostname || url.searchParams.get('host') || '').replace(
    /^\[(.*)\]$/,
    '$1',
  );
  const port = Number(url.port || url.searchParams.get('port') || 5432);
  return { host, port };
}

/**
 * The apps' cluster settings from the environment (`CODERUNNER_APPS_DATABASE_URL`,
 * `CODERUNNER_APPS_EMBEDDED_PG_PORT`, `CODERUNNER_APPS_DB_CONNECTION_LIMIT`).
 */
export function localDatabaseOptionsFromEnv(
  env: NodeJS.ProcessEnv,
  dataDir: string,
): Pick<LocalDatabaseProvisionerOptions, 'adminUrl' | 'dataDir' | 'embeddedPort' | 'connectionLimit'> {
  const port = env.CODERUNNER_APPS_EMBEDDED_PG_PORT;
  if (port !== undefined && port !== '' && !/^\d{1,5}$/.test(port)) {
    throw new SandboxError('CODERUNNER_APPS_EMBEDDED_PG_PORT must be a port number');
  }
  const limit = env.CODERUNNER_APPS_DB_CONNECTION_LIMIT;
  if (limit !== undefined && limit !== '' && !(/^\d{1,4}$/.test(limit) && Number(limit) >= 1)) {
    throw new SandboxError('CODERUNNER_APPS_DB_CONNECTION_LIMIT must be a whole number from 1 to 9999');
  }
  return {
    adminUrl: env.CODERUNNER_APPS_DATABASE_URL || undefined,
    dataDir,
    embeddedPort: port ? Number(port) : undefined,
    connectionLimit: limit ? Number(limit) : undefined,
  };
}

export function createLocalDatabaseProvisioner(
  options: LocalDatabaseProvisionerOptions,
): LocalDatabaseProvisioner {
  const log = options.log ?? (() => {});
  const connectionLimit = options.connectionLimit ?? DEFAULT_APP_CONNECTION_LIMIT;
  if (!Number.isInteger(connectionLimit) || connectionLimit < 1) {
    throw new SandboxError(
      `the connection limit of app roles must be a whole number of 1 or more (got ${connectionLimit})`,
    );
  }
  let starting: Promise<Cluster> | undefined;

  async function openCluster(): Promise<Cluster> {
    let embedded: EmbeddedPostgres | undefined;
    let adminUrl: string;
    let host: string;
    let port: number;
    if (options.adminUrl) {
      adminUrl = options.adminUrl;
      const parsed = parseAdminUrl(adminUrl);
      host = options.appHost ?? (isLoopback(parsed.host) ? '127.0.0.1' : parsed.host);
      port = parsed.port;
    } else {
      embedded = await startAppsCluster(
        options.dataDir,
        options.embeddedPort ?? DEFAULT_APPS_EMBEDDED_PORT,
        log,
      );
      adminUrl = embedded.url('postgres');
      host = options.appHost ?? '127.0.0.1';
      port = embedded.port;
    }
    const pool = new pg.Pool({ connectionString: adminUrl, max: 4, idleTimeoutMillis: 10_000 });
    pool.on('error', (err) => log(`apps database: idle admin connection failed: ${describe(err)}`));
    const cluster: Cluster = {
      pool,
      host,
      port,
      owned: embedded !== undefined || options.exclusiveCluster === true,
      warnings: [],
      ...(embedded ? { embedded } : {}),
    };
    try {
      await checkAdmin(pool, embedded === undefined);
      if (cluster.owned) await revokePublicConnect(pool, log);
      cluster.warnings.push(...(await detectTrust(cluster)));
      if (!cluster.owned) {
        const reachable = await databasesOpenToPublic(pool);
        if (reachable.length) {
          const shown = reachable.slice(0, 10).map((d) => `"${d}"`);
          if (reachable.length > shown.length) shown.push(`${reachable.length - shown.length} more`);
          const list = shown.join(', ');
          cluster.warnings.push(
            `app database roles can connect to ${list} on the cluster of CODERUNNER_APPS_DATABASE_URL ` +
              '(CONNECT is granted to PUBLIC there); revoke it (REVOKE CONNECT ON DATABASE … FROM PUBLIC) ' +
              'or give apps a cluster of their own',
          );
        }
      }
    } catch (err) {
      await pool.end().catch(() => {});
      await embedded?.stop().catch(() => {});
      throw err;
    }
    for (const w of cluster.warnings) log(`apps database: warning: ${w}`);
    // Apps connect to it directly: while the provisioner is open, a postmaster that dies comes back,
    // whichever process started it (this one, or an earlier server whose cluster this one adopted).
    if (embedded) {
      const cluster = embedded;
      cluster.supervise({
        onEvent: (e) => {
          log(
            e.kind === 'down'
              ? 'apps database: the embedded PostgreSQL stopped; starting it again'
              : e.kind === 'up'
                ? `apps database: the embedded PostgreSQL is back (${e.mode})`
                : `apps database: could not start the embedded PostgreSQL again: ${describe(e.error)}`,
          );
          options.onState?.({
            state: e.kind === 'error' ? 'failed' : e.kind,
            ...(e.kind === 'up' ? { mode: e.mode ?? cluster.mode } : {}),
            host,
            port: cluster.port,
            ...(e.kind === 'error' ? { error: describe(e.error) } : {}),
          });
        },
      });
    }
    options.onState?.({ state: 'up', mode: embedded ? embedded.mode : 'external', host, port });
    log(
      `apps database: using ${embedded ? 'the embedded PostgreSQL' : 'CODERUNNER_APPS_DATABASE_URL'} on ${host}:${port}`,
    );
    return cluster;
  }

  function cluster(): Promise<Cluster> {
    if (!starting) {
      starting = openCluster();
      starting.catch(() => {
        starting = undefined; // let a later call try again
      });
    }
    return starting;
  }

  /** Database `name`, owned by role `name`, reachable by that role only. */
  async function createDatabase(
    c: Cluster,
    name: string,
    marker: string,
    created?: () => Promise<void>,
  ): Promise<void> {
    // Created closed, so that no other role can connect before PUBLIC loses CONNECT; template0 so
    // that nothing an administrator put into template1 ends up in an app's database.
    await c.pool.query(
      `CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(name)} TEMPLATE template0 ALLOW_CONNECTIONS false`,
    );
    await created?.();
    await c.pool.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${quoteLiteral(marker)}`);
    await c.pool.query(`REVOKE ALL ON DATABASE ${quoteIdent(name)} FROM PUBLIC`);
    await c.pool.query(`ALTER DATABASE ${quoteIdent(name)} ALLOW_CONNECTIONS true`);
  }

  async function provision(deploymentId: string): Promise<DatabaseInfo> {
    const name = localDatabaseName(deploymentId);
    const c = await cluster();
    if (c.owned) await revokePublicConnect(c.pool, log); // databases created since start
    const password = randomBytes(32).toString('base64url');
    const marker = MARKER_PREFIX + deploymentId;
    const hook = async (step: ProvisionStep) => options.testHooks?.afterStep?.(step, deploymentId);
    let roleCreated = false;
    let databaseCreated = false;
    try {
      const client = await c.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(
          `CREATE ROLE ${quoteIdent(name)} LOGIN PASSWORD ${quoteLiteral(scramSha256Verifier(password))} ` +
            `NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${connectionLimit}`,
        );
        await client.query(`COMMENT ON ROLE ${quoteIdent(name)} IS ${quoteLiteral(marker)}`);
        await client.query('COMMIT');
        roleCreated = true;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
      await hook('role-created');

      await createDatabase(c, name, marker, async () => {
        databaseCreated = true;
        await hook('database-created');
      });
      await hook('privileges-set');

      const url = `postgres://${encodeURIComponent(name)}:${encodeURIComponent(password)}@${urlHost(c.host)}:${c.port}/${encodeURIComponent(name)}`;
      await verifyLogin(url, name);
      await hook('verified');
      log(`apps database: provisioned database ${name} (owner role ${name}) on ${c.host}:${c.port}`);
      return {
        sandboxId: localDatabaseSandboxId(deploymentId),
        connectionInfo: { host: c.host, port: c.port, user: name, password, database: name, url },
      };
    } catch (err) {
      const cleanup: string[] = [];
      if (databaseCreated) {
        await c.pool
          .query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)
          .catch((e) => cleanup.push(`database ${name}: ${describe(e)}`));
      }
      if (roleCreated) {
        await c.pool
          .query(`DROP ROLE IF EXISTS ${quoteIdent(name)}`)
          .catch((e) => cleanup.push(`role ${name}: ${describe(e)}`));
      }
      const reason =
        (err as { code?: string }).code === '42710' || (err as { code?: string }).code === '42P04'
          ? `a role or database named ${name} already exists (destroy it first)`
          : describe(err);
      const message = `could not provision the database of deployment ${deploymentId}: ${reason}`;
      log(`apps database: ${message}${cleanup.length ? `; cleanup failed for ${cleanup.join(', ')}` : ''}`);
      throw new SandboxError(
        cleanup.length ? `${message}; and could not remove ${cleanup.join('; ')}` : message,
        { cause: err },
      );
    }
  }

  /** The role and database `name` as the catalog has them; throws when either exists but is not ours. */
  async function ownedObjects(c: Cluster, name: string, verb: string, deploymentId?: string) {
    const { rows } = await c.pool.query<{
      kind: 'role' | 'database';
      comment: string | null;
      owner: string | null;
    }>(
      `SELECT 'role' AS kind, shobj_description(oid, 'pg_authid') AS comment, NULL AS owner
         FROM pg_roles WHERE rolname = $1
       UNION ALL
       SELECT 'database', shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba)
         FROM pg_database WHERE datname = $1`,
      [name],
    );
    const role = rows.find((r) => r.kind === 'role');
    const database = rows.find((r) => r.kind === 'database');
    const ownRole = isMarkerOf(role?.comment, name);
    // A database whose comment is not set yet (a provisioning that died half-way) is still ours
    // when our role owns it.
    const ownDatabase = isMarkerOf(database?.comment, name) || (ownRole && database?.owner === name);
    if ((role && !ownRole) || (database && !ownDatabase)) {
      throw new SandboxError(
        `will not ${verb} ${name}: a role or database of that name exists on the apps cluster but was not created by CodeRunner${deploymentId ? ` for deployment ${deploymentId}` : ''}`,
      );
    }
    return { role, database, marker: role?.comment ?? database?.comment ?? null };
  }

  async function destroyDatabase(sandboxId: string): Promise<void> {
    await dropByName(nameOfSandbox(sandboxId));
  }

  async function reset(sandboxId: string): Promise<void> {
    const name = nameOfSandbox(sandboxId);
    const c = await cluster();
    const { role, marker } = await ownedObjects(c, name, 'reset');
    if (!role || !marker) {
      throw new SandboxError(`the database ${name} no longer exists on the apps cluster`);
    }
    await c.pool.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await createDatabase(c, name, marker);
    log(`apps database: reset database ${name} (dropped and created again, empty)`);
  }

  async function destroy(deploymentId: string): Promise<void> {
    await dropByName(localDatabaseName(deploymentId), deploymentId);
  }

  async function dropByName(name: string, deploymentId?: string): Promise<void> {
    const c = await cluster();
    const { role, database } = await ownedObjects(c, name, 'drop', deploymentId);
    const of = deploymentId ? ` of deployment ${deploymentId}` : '';
    if (role) await c.pool.query(`ALTER ROLE ${quoteIdent(name)} NOLOGIN`);
    if (database) await c.pool.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    if (role) {
      // Sessions it may hold in other databases (only possible on a trusting cluster).
      await c.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [name]);
      try {
        await c.pool.query(`DROP ROLE IF EXISTS ${quoteIdent(name)}`);
      } catch (err) {
        throw new SandboxError(`could not drop role ${name}${of} (its database is gone): ${describe(err)}`, {
          cause: err,
        });
      }
    }
    if (role || database) log(`apps database: destroyed database ${name} and its role`);
  }

  async function exists(deploymentId: string): Promise<boolean> {
    const name = localDatabaseName(deploymentId);
    const c = await cluster();
    const { rowCount } = await c.pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return (rowCount ?? 0) > 0;
  }

  return {
    async start() {
      const c = await cluster();
      return { warnings: [...c.warnings] };
    },
    provision,
    destroy,
    destroyDatabase,
    reset,
    exists,
    async stop() {
      const pending = starting;
      starting = undefined;
      if (!pending) return;
      let c: Cluster;
      try {
        c = await pending;
      } catch {
        return;
      }
      await c.pool.end();
      await c.embedded?.stop();
    },
  };
}

async function startAppsCluster(
  dataDir: string,
  port: number,
  log: (msg: string) => void,
): Promise<EmbeddedPostgres> {
  const root = path.resolve(dataDir);
  try {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    // As root, Postgres runs as the OS user `coderunner-pg`, which must be able to pass through our folder
    // to reach `apps-pg` (search only: it cannot list it or read our other files).
    if (typeof process.getuid === 'function' && process.getuid() === 0) {
      const mode = fs.statSync(root).mode & 0o7777;
      if ((mode & 0o011) !== 0o011) fs.chmodSync(root, mode | 0o711);
    }
  } catch (err) {
    throw new SandboxError(`cannot use the data folder ${root} for the apps' database: ${describe(err)}`);
  }
  try {
    return await startEmbeddedPostgres({
      dataDir: path.join(root, 'apps-pg'),
      port,
      env: APPS_SETTING_NAMES,
      settings: APPS_CLUSTER_SETTINGS,
    });
  } catch (err) {
    log(`apps database: embedded PostgreSQL did not start: ${describe(err)}`);
    throw new SandboxError(
      `the embedded PostgreSQL for app databases (${path.join(root, 'apps-pg')}) did not start: ${describe(err)}`,
      { cause: err },
    );
  }
}

async function checkAdmin(pool: pg.Pool, external: boolean): Promise<void> {
  let row: { superuser: boolean; version: number } | undefined;
  try {
    const res = await pool.query<{ superuser: boolean; version: number }>(
      `SELECT rolsuper AS superuser, current_setting('server_version_num')::int AS version
         FROM pg_roles WHERE rolname = current_user`,
    );
    row = res.rows[0];
  } catch (err) {
    const what = external
      ? 'the cluster of CODERUNNER_APPS_DATABASE_URL'
      : 'the embedded PostgreSQL for apps';
    throw new SandboxError(`cannot connect to ${what}: ${describe(err)}`, { cause: err });
  }
  if (!row?.superuser) {
    throw new SandboxError(
      'CODERUNNER_APPS_DATABASE_URL must name a superuser: it creates and drops roles and databases for apps',
    );
  }
  if (row.version < MIN_SERVER_VERSION) {
    throw new SandboxError(
      `app databases need PostgreSQL 13 or later (the apps cluster runs ${row.version})`,
    );
  }
}

const OPEN_TO_PUBLIC = `
  SELECT datname FROM pg_database
   WHERE datallowconn AND has_database_privilege('public', oid, 'CONNECT')
     AND coalesce(shobj_description(oid, 'pg_database'), '') NOT LIKE '${MARKER_PREFIX}%'
   ORDER BY datname`;

async function databasesOpenToPublic(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ datname: string }>(OPEN_TO_PUBLIC);
  return rows.map((r) => r.datname);
}

/** On a cluster that serves apps only, no database but an app's own may be reachable by app roles. */
async function revokePublicConnect(pool: pg.Pool, log: (msg: string) => void): Promise<void> {
  for (const db of await databasesOpenToPublic(pool)) {
    await pool.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(db)} FROM PUBLIC`);
    log(`apps database: revoked CONNECT on database ${db} from PUBLIC`);
  }
}

/**
 * Does the cluster let a role in without its password, on the path apps use (TCP to host:port)?
 * A throw-away role with a random password tries to log in with another one: success (or a refusal
 * that comes after authentication, such as a missing CONNECT privilege) means trust.
 */
async function detectTrust(c: Cluster): Promise<string[]> {
  const probe = `coderunner_probe_${randomBytes(6).toString('hex')}`;
  await c.pool.query(
    `CREATE ROLE ${quoteIdent(probe)} LOGIN PASSWORD ${quoteLiteral(scramSha256Verifier(randomBytes(24).toString('hex')))} CONNECTION LIMIT 1`,
  );
  try {
    const client = new pg.Client({
      host: c.host,
      port: c.port,
      user: probe,
      password: `wrong-${randomBytes(12).toString('hex')}`,
      database: 'postgres',
      connectionTimeoutMillis: 5000,
    });
    client.on('error', () => {});
    let outcome: 'trust' | 'password' | 'unknown';
    try {
      await client.connect();
      outcome = 'trust';
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code === '42501' || code === '3D000') outcome = 'trust';
      else if (code.startsWith('28')) outcome = 'password';
      else outcome = 'unknown';
    } finally {
      await client.end().catch(() => {});
    }
    const warnings: string[] = [];
    if (outcome === 'trust') warnings.push(TRUST_WARNING);
    else if (outcome === 'unknown') {
      warnings.push(
        `could not check whether the apps cluster on ${c.host}:${c.port} requires passwords: app databases may not be isolated from each other`,
      );
    }
    warnings.push(...(await socketTrust(c.pool, outcome === 'trust')));
    return warnings;
  } finally {
    await c.pool
      .query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [probe])
      .catch(() => {});
    await c.pool.query(`DROP ROLE IF EXISTS ${quoteIdent(probe)}`);
  }
}

/** Unix-socket connections bypass the TCP probe: a `local … trust` line lets any process on the machine in. */
async function socketTrust(pool: pg.Pool, alreadyWarned: boolean): Promise<string[]> {
  if (alreadyWarned) return [];
  try {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_hba_file_rules WHERE type = 'local' AND auth_method = 'trust'
         AND 'all' = ANY(user_name) AND error IS NULL`,
    );
    if ((rows[0]?.n ?? 0) > 0) {
      return [
        'the apps cluster lets local Unix-socket connections in without a password (a pg_hba.conf "local" line with trust): ' +
          'processes on its machine are not isolated from the app databases',
      ];
    }
  } catch {
    // pg_hba_file_rules is unreadable (managed services): nothing more to learn
  }
  return [];
}

async function verifyLogin(url: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new SandboxError(`the new role ${name} cannot log in to its database: ${describe(err)}`, {
      cause: err,
    });
  } finally {
    await client.end().catch(() => {});
  }
}
