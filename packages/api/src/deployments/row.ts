import type { DeploymentStatus } from '@coderunner/db';

/** A `deployments` row as the router and the engine read it (camel-cased; the JSONB still sealed). */
export interface DeploymentRow {
  id: string;
  projectId: string;
  status: DeploymentStatus;
  appSandboxId: string | null;
  publicUrl: string | null;
  dbSandboxId: string | null;
  dbConnectionInfo: Record<string, unknown> | null;
  runtimeType: string | null;
  /** Only where the query asks (see isCurrentSql): whether the project URL serves it now. */
  current?: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** The select list for a DeploymentRow, columns qualified by `alias` (e.g. 'd') when given. */
export function deploymentColumns(alias?: string): string {
  const t = alias ? `${alias}.` : '';
  return `${t}id, ${t}project_id AS "projectId", ${t}status, ${t}app_sandbox_id AS "appSandboxId",
  ${t}public_url AS "publicUrl", ${t}db_sandbox_id AS "dbSandboxId", ${t}db_connection_info AS "dbConnectionInfo",
  ${t}runtime_type AS "runtimeType", ${t}created_at AS "createdAt", ${t}updated_at AS "updatedAt"`;
}
