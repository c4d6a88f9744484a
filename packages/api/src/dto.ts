import type { DeploymentStatus, PlanType } from '@coderunner/db';

/** The API's outputs: plain objects, never Sequelize instances; no password hash ever. */
export interface UserDto {
  id: string;
  email: string;
  planType: PlanType;
  createdAt: Date;
  updatedAt: Date;
}

export interface ProjectDto {
  id: string;
  name: string;
  description: string | null;
  /** The project's stable URL, serving its current deployment (null on a server that runs no deployments). */
  url: string | null;
  /** The deployment the project URL serves now: the newest RUNNING one (null: none is running). */
  currentDeploymentId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A project's database as `projects.get` shows it. */
export interface ProjectDatabaseDto {
  /** `own`: a PostgreSQL cluster of the project's own; `shared`: a database on the apps' shared cluster (older releases, or the operator's); `cloud`: a sandbox of the cloud provider. */
  kind: 'own' | 'shared' | 'cloud';
  /** The deployment holding it now (the newest that asked for one). */
  deploymentId: string;
  /** Bytes its data folder takes (own clusters only; else null). */
  sizeBytes: number | null;
  /** Its limits (the owner's plan's; own clusters only). */
  limits: { memoryMb: number; cpus: number; diskMb: number } | null;
  /** Its newest backup, and how many there are (own clusters only have backups). */
  lastBackup: { id: string; createdAt: Date; reason: string; sizeBytes: number } | null;
  backups: number;
}

export type ProjectDetailDto = ProjectDto & { database: ProjectDatabaseDto | null };

export function toUserDto(u: {
  id: string;
  email: string;
  planType: string;
  createdAt: Date;
  updatedAt: Date;
}): UserDto {
  return {
    id: u.id,
    email: u.email,
    planType: u.planType as PlanType,
    createdAt: u.createdAt,
    updatedAt: u.updatedAt,
  };
}

export function toProjectDto(
  p: {
    id: string;
    name: string;
    description: string | null;
    createdAt: Date;
    updatedAt: Date;
  },
  release: { url: string | null; currentDeploymentId: string | null },
): ProjectDto {
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    url: release.url,
    currentDeploymentId: release.currentDeploymentId,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  };
}

export interface DeploymentDto {
  id: string;
  projectId: string;
  status: DeploymentStatus;
  runtimeType: string | null;
  /** The app's public URL; set when it first ran, never changed or reused afterwards. */
  publicUrl: string | null;
  /** Whether the deployment uses the project's database (credentials only via deployments.databaseCredentials). */
  hasDatabase: boolean;
  /** Whether the project URL serves this deployment now (its project's newest RUNNING one). */
  current: boolean;
  /**
   * Why a FAILED deployment failed (its log's newest `failed` event: a line, then maybe a few lines
   * of the output that explain it); null for other statuses, or when the log no longer holds it.
   */
  failureReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export function toDeploymentDto(
  d: {
    id: string;
    projectId: string;
    status: DeploymentStatus;
    runtimeType: string | null;
    publicUrl: string | null;
    dbSandboxId: string | null;
    dbConnectionInfo: Record<string, unknown> | null;
    current?: boolean;
    createdAt: Date;
    updatedAt: Date;
  },
  failureReason: string | null = null,
): DeploymentDto {
  return {
    id: d.id,
    projectId: d.projectId,
    status: d.status,
    runtimeType: d.runtimeType,
    publicUrl: d.publicUrl,
    // The project's database's holder, or a deployment that was handed it on and keeps its credentials.
    hasDatabase: d.dbConnectionInfo !== null,
    current: d.current === true,
    failureReason: d.status === 'FAILED' ? failureReason : null,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
  };
}

/** What a RUNNING deployment's app uses now, and its limits (null: unknown here, e.g. no limit unisolated). */
export interface UsageFiguresDto {
  /** When the figures were read. */
  at: Date;
  memoryBytes: number;
  /** The most memory in use at once since the app started. */
  memoryPeakBytes: number | null;
  /** The memory limit in force (read from the sandbox, so a limit lowered after the build shows). */
  memoryLimitBytes: number | null;
  /** CPUs used over the last 10 s sampled (0.03 = 3% of one CPU); null until two samples exist. */
  cpu: number | null;
  /** CPU time used since the app's sandbox was made, seconds. */
  cpuSeconds: number | null;
  /** The CPU limit in force, in CPUs. */
  cpus: number | null;
}

/** `deployments.get`: the deployment, with what its app uses while it is RUNNING (else null). */
export interface DeploymentDetailDto extends DeploymentDto {
  usage: UsageFiguresDto | null;
}

/** `deployments.usage`: the last hour, one point per sample (every `intervalMs`), oldest first. */
export interface DeploymentUsageDto {
  intervalMs: number;
  now: UsageFiguresDto | null;
  points: { at: Date; memoryBytes: number; cpu: number | null }[];
}
