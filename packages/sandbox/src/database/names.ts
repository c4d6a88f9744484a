import { SandboxError } from '../types';

/** Prefix of the `db_sandbox_id` of a database provisioned on a local cluster. */
export const LOCAL_DATABASE_SANDBOX_PREFIX = 'localdb-';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Role and database name of a deployment: `app_` + the 32 hex digits of its UUID. Ids that are not
 * UUIDs must already be lower-case letters and digits: folding them (case, dashes) could give two
 * deployments the same database.
 */
export function localDatabaseName(deploymentId: string): string {
  if (UUID.test(deploymentId)) return `app_${deploymentId.replaceAll('-', '').toLowerCase()}`;
  if (/^[a-z0-9]{1,59}$/.test(deploymentId)) return `app_${deploymentId}`;
  throw new SandboxError(
    `cannot derive a database name from deployment id "${deploymentId.slice(0, 80)}": expected a UUID`,
  );
}

export function localDatabaseSandboxId(deploymentId: string): string {
  return LOCAL_DATABASE_SANDBOX_PREFIX + localDatabaseName(deploymentId);
}

export function isLocalDatabaseSandboxId(sandboxId: string): boolean {
  return sandboxId.startsWith(LOCAL_DATABASE_SANDBOX_PREFIX);
}
