import type { DeploymentStatus } from '@coderunner/db';

/**
 * A `deployments` row as the router and the engine read it (camel-cased; the JSONB still sealed). Its
 * select list and every query: tables/deployments.ts.
 */
export interface DeploymentRow {
  id: string;
  projectId: string;
  status: DeploymentStatus;
  appSandboxId: string | null;
  publicUrl: string | null;
  dbSandboxId: string | null;
  dbConnectionInfo: Record<string, unknown> | null;
  runtimeType: string | null;
  /** Only where the query asks (isCurrentSql, tables/deployments.ts): whether the project URL serves it now. */
  current?: boolean;
  createdAt: Date;
  updatedAt: Date;
}
