/**
 * The CLI's JSON shapes. They are part of its interface (scripts parse them), so they are built field
 * by field here instead of passing on whatever the server returned: a field added to the API does not
 * appear in, or reorder, the CLI's output by accident. Dates are ISO 8601 strings.
 */
import type { RouterOutputs } from '@coderunner/api';
import type { LogEvent } from '@coderunner/api/client';

export type User = RouterOutputs['auth']['me'];
export type Project = RouterOutputs['projects']['list']['items'][number];
/** `projects.get`: a project with its database. */
export type ProjectDetail = RouterOutputs['projects']['get'];
export type ProjectDatabase = NonNullable<ProjectDetail['database']>;

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;

/** `own PostgreSQL, 12.3 MB of 1024 MB (256 MB memory, 0.5 CPU) · last backup … (release), 3 kept` */
export function databaseText(db: ProjectDatabase): string {
  const where =
    db.kind === 'own'
      ? 'its own PostgreSQL'
      : db.kind === 'shared'
        ? 'PostgreSQL on the shared cluster (no backups)'
        : 'PostgreSQL in a cloud sandbox';
  const size =
    db.sizeBytes === null ? '' : `, ${mb(db.sizeBytes)}${db.limits ? ` of ${db.limits.diskMb} MB` : ''}`;
  const limits = db.limits ? ` (${db.limits.memoryMb} MB memory, ${db.limits.cpus} CPU)` : '';
  const backup =
    db.kind !== 'own'
      ? ''
      : db.lastBackup
        ? ` · last backup ${db.lastBackup.createdAt.toISOString().replace(/\.\d+Z$/, 'Z')} (${db.lastBackup.reason}, ${mb(db.lastBackup.sizeBytes)}), ${db.backups} kept`
        : ' · no backup yet';
  return `${where}${size}${limits}${backup}`;
}

export interface UserJson {
  id: string;
  email: string;
  planType: string;
  createdAt: string;
  updatedAt: string;
}

export interface ProjectJson {
  id: string;
  name: string;
  description: string | null;
  /** The project's stable URL: it serves the current deployment. */
  url: string | null;
  currentDeploymentId: string | null;
  createdAt: string;
  updatedAt: string;
}

export const userJson = (u: User): UserJson => ({
  id: u.id,
  email: u.email,
  planType: u.planType,
  createdAt: u.createdAt.toISOString(),
  updatedAt: u.updatedAt.toISOString(),
});

export const projectJson = (p: Project): ProjectJson => ({
  id: p.id,
  name: p.name,
  description: p.description,
  url: p.url,
  currentDeploymentId: p.currentDeploymentId,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
});

export type Deployment = RouterOutputs['deployments']['list']['items'][number];
/** `deployments.get`: a deployment with what its app uses while RUNNING. */
export type DeploymentDetail = RouterOutputs['deployments']['get'];
export type Usage = NonNullable<DeploymentDetail['usage']>;
export type DatabaseCredentials = RouterOutputs['deployments']['databaseCredentials'];
/** One log line, as deployments.logs sends it inside a batch. */
export interface LogLine {
  id: number;
  time: Date;
  source: string;
  stream: string;
  text: string;
  /** What a system line means, for code: read this, never the wording (see the API's log-events.ts). */
  event?: LogEvent | undefined;
}
/**
 * What deployments.logs yields (a tracked event's data, the event id being the last line's id):
 * consecutive lines, and how many lines before them the server could not send; a follow's last
 * event says why it ends (the deployment stopped, failed, was destroyed, or was replaced).
 */
export interface LogBatch {
  lines: LogLine[];
  missed?: number | undefined;
  end?: LogEnd | undefined;
}
export interface LogEnd {
  status: 'STOPPED' | 'FAILED' | 'DESTROYED';
  replacedBy?: string | undefined;
}

export interface DeploymentJson {
  id: string;
  projectId: string;
  status: string;
  runtimeType: string | null;
  publicUrl: string | null;
  hasDatabase: boolean;
  /** Whether its project's URL serves it now. */
  current: boolean;
  /** Why a FAILED deployment failed (a line, then the output lines that explain it); else null. */
  failureReason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface LogLineJson {
  id: number;
  time: string;
  source: string;
  stream: string;
  text: string;
  event?: LogEvent;
}

export const deploymentJson = (d: Deployment): DeploymentJson => ({
  id: d.id,
  projectId: d.projectId,
  status: d.status,
  runtimeType: d.runtimeType,
  publicUrl: d.publicUrl,
  hasDatabase: d.hasDatabase,
  current: d.current,
  failureReason: d.failureReason,
  createdAt: d.createdAt.toISOString(),
  updatedAt: d.updatedAt.toISOString(),
});

export const logLineJson = (l: LogLine): LogLineJson => ({
  id: l.id,
  time: new Date(l.time).toISOString(),
  source: l.source,
  stream: l.stream,
  text: l.text,
  ...(l.event ? { event: l.event } : {}),
});

export const databaseCredentialsJson = (c: DatabaseCredentials) => ({
  host: c.host,
  port: c.port,
  user: c.user,
  password: c.password,
  database: c.database,
  url: c.url,
});

/** What a RUNNING deployment's app uses now (`deployments show --json`: `usage`, null when not running). */
export interface UsageJson {
  at: string;
  memoryBytes: number;
  /** The most memory in use at once since the app started; null when unknown (unisolated). */
  memoryPeakBytes: number | null;
  memoryLimitBytes: number | null;
  /** CPUs used over the last 10 s (0.03 = 3% of one CPU); null until the server has two samples. */
  cpu: number | null;
  cpuSeconds: number | null;
  /** The CPU limit, in CPUs. */
  cpus: number | null;
}

export const usageJson = (u: Usage): UsageJson => ({
  at: u.at.toISOString(),
  memoryBytes: u.memoryBytes,
  memoryPeakBytes: u.memoryPeakBytes,
  memoryLimitBytes: u.memoryLimitBytes,
  cpu: u.cpu,
  cpuSeconds: u.cpuSeconds,
  cpus: u.cpus,
});
