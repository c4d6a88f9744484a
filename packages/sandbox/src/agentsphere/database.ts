/**
 * A PostgreSQL database for one deployment, in a sandbox of its own.
 *
 * What the db template must provide:
 * - PostgreSQL started by the template's start command, listening on 0.0.0.0:5432, with
 *   `listen_addresses = '*'` and a pg_hba.conf that requires a password (scram-sha-256) for TCP
 *   connections;
 * - `pg_isready` and `psql` on the PATH of the sandbox's login shell;
 * - `psql -d postgres` (no host: the local Unix socket) run as the sandbox's default user connecting as
 *   a role allowed to CREATE ROLE and CREATE DATABASE, without a password (e.g. a superuser role named
 *   `user` with peer auth on `local` lines, or PGUSER set in the template's environment);
 * - PostgreSQL 10 or later: the role's password is sent as a SCRAM-SHA-256 verifier, so the password
 *   itself never enters the sandbox.
 *
 * What `connectionInfo` holds (store it encrypted; it is the only copy of the password):
 * - `host`: the sandbox's public host for port 5432 (`5432-<sandboxId>.<domain>`, from getHost);
 * - `port`: 5432;
 * - `user`, `database`: `app_` + the deployment id's letters and digits (lower case, at most 63 chars);
 * - `password`: 32 random bytes, base64url (43 characters, safe in a URL without escaping);
 * - `url`: `postgresql://user:password@host:port/database`.
 * AgentSphere's ingress is built for HTTP(S): check that the vendor forwards raw TCP on that host before
 * relying on it from outside the sandbox network.
 */
import { randomBytes } from 'node:crypto';
import { scramSha256Verifier } from '../database/scram';
import { type DatabaseConnectionInfo, SandboxError, type SandboxProvider } from '../types';
import { describeError } from './errors';

export const POSTGRES_PORT = 5432;
const DEFAULT_READY_TIMEOUT_MS = 60_000;

export type AgentSphereDatabaseConnectionInfo = DatabaseConnectionInfo;

export interface AgentSphereDatabase {
  sandboxId: string;
  connectionInfo: AgentSphereDatabaseConnectionInfo;
}

export interface AgentSphereDatabaseOptions {
  deploymentId: string;
  projectId: string;
  /** Template name or id (default `db`: the provider's AGENTSPHERE_DB_TEMPLATE). */
  template?: string;
  /** How long PostgreSQL may take to accept connections after the sandbox starts (default 60 s). */
  readyTimeoutMs?: number;
}

/** Creates the database sandbox, a role and a database; on any failure kills the sandbox again. */
export async function provisionAgentSphereDatabase(
  provider: SandboxProvider,
  opts: AgentSphereDatabaseOptions,
): Promise<AgentSphereDatabase> {
  const sandbox = await provider.create({
    template: opts.template ?? 'db',
    metadata: { deploymentId: opts.deploymentId, projectId: opts.projectId, role: 'db' },
  });
  const password = randomBytes(32).toString('base64url');
  try {
    const readySeconds = Math.max(1, Math.ceil((opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS) / 1000));
    const ready = await sandbox.run(waitForPostgresScript(readySeconds), {
      timeoutMs: (readySeconds + 30) * 1000,
    });
    if (ready.exitCode !== 0) {
      throw new SandboxError(
        `PostgreSQL did not accept connections within ${readySeconds} s in the database sandbox: ${ready.stderr.trim()}`,
      );
    }

    const name = databaseName(opts.deploymentId);
    // Only the verifier goes to the sandbox, in the environment (not in the command text).
    const verifier = scramSha256Verifier(password);
    const created = await sandbox.run(createDatabaseScript(name), {
      envs: { CODERUNNER_DB_PASSWORD_VERIFIER: verifier },
      timeoutMs: 60_000,
    });
    if (created.exitCode !== 0) {
      const reason = created.stderr.replaceAll(verifier, '***').trim();
      throw new SandboxError(`could not create the database in the database sandbox: ${reason}`);
    }

    const host = sandbox.getHost(POSTGRES_PORT);
    return {
      sandboxId: sandbox.id,
      connectionInfo: {
        host,
        port: POSTGRES_PORT,
        user: name,
        password,
        database: name,
        url: `postgresql://${name}:${password}@${host}:${POSTGRES_PORT}/${name}`,
      },
    };
  } catch (err) {
    try {
      await sandbox.kill();
    } catch (cleanup) {
      throw new SandboxError(
        `${describeError(err)}; and the database sandbox ${sandbox.id} could not be removed: ${describeError(cleanup)}`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * Drops the database in its sandbox and creates it again, empty, owned by the same role (whose
 * password is unchanged): the stored connection info stays valid.
 */
export async function resetAgentSphereDatabase(
  provider: SandboxProvider,
  sandboxId: string,
  name: string,
): Promise<void> {
  if (!/^app_[a-z0-9]{1,59}$/.test(name)) {
    throw new SandboxError(`"${name.slice(0, 80)}" is not the name of a CodeRunner database`);
  }
  const sandbox = await provider.connect(sandboxId);
  const reset = await sandbox.run(resetDatabaseScript(name), { timeoutMs: 120_000 });
  if (reset.exitCode !== 0) {
    throw new SandboxError(`could not reset the database in its sandbox: ${reset.stderr.trim()}`);
  }
}

/**
 * `app_` + the id's letters and digits: a valid, unquoted PostgreSQL identifier (for a UUID the same
 * name as localDatabaseName gives). Folding case and dashes cannot make two deployments share a
 * database here: each database has a cluster (a sandbox) of its own.
 */
export function databaseName(deploymentId: string): string {
  const safe = deploymentId.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (!safe) throw new SandboxError(`cannot derive a database name from deployment id "${deploymentId}"`);
  return `app_${safe}`.slice(0, 63);
}

function waitForPostgresScript(seconds: number): string {
  return [
    `deadline=$((SECONDS + ${seconds}))`,
    `until pg_isready -q -h 127.0.0.1 -p ${POSTGRES_PORT}; do`,
    `  if [ "$SECONDS" -ge "$deadline" ]; then echo "pg_isready still fails on port ${POSTGRES_PORT}" >&2; exit 1; fi`,
    '  sleep 0.5',
    'done',
  ].join('\n');
}

/**
 * psql's :"var" and :'var' quote identifiers and literals itself; ON_ERROR_STOP makes failures exit 3.
 * PostgreSQL stores a password given in SCRAM-SHA-256 verifier form as it is.
 */
function createDatabaseScript(name: string): string {
  return [
    `psql -X -q -v ON_ERROR_STOP=1 -d postgres -v db_name=${name} -v db_password="$CODERUNNER_DB_PASSWORD_VERIFIER" <<'SQL'`,
    `CREATE ROLE :"db_name" LOGIN PASSWORD :'db_password';`,
    `CREATE DATABASE :"db_name" OWNER :"db_name";`,
    `REVOKE ALL ON DATABASE :"db_name" FROM PUBLIC;`,
    'SQL',
  ].join('\n');
}

function resetDatabaseScript(name: string): string {
  return [
    `psql -X -q -v ON_ERROR_STOP=1 -d postgres -v db_name=${name} <<'SQL'`,
    `DROP DATABASE IF EXISTS :"db_name" WITH (FORCE);`,
    `CREATE DATABASE :"db_name" OWNER :"db_name";`,
    `REVOKE ALL ON DATABASE :"db_name" FROM PUBLIC;`,
    'SQL',
  ].join('\n');
}
