import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter } from './root';

export { createPasswordHasher, OWASP_MIN, type PasswordHasher } from './auth/password';
export { readOrCreateSecretFile } from './auth/secret-file';
export { createTokenService, type TokenService } from './auth/tokens';
export { BACKUP_DOWNLOAD_PREFIX, backupDownloadPath } from './backup-download-path';
export { API_CONFIG_VARIABLES, type ApiConfig, apiConfigFromEnv, authSecretFromDataDir } from './config';
export {
  type ApiDeps,
  type Context,
  createApiDeps,
  createInnerContext,
  createRequestContext,
  type InnerContextOptions,
} from './context';
export { createBackupDownloadHandler } from './database-backup-http';
export {
  BACKUP_REASONS,
  type BackupReason,
  type BackupTarget,
  backupsKeptFromEnv,
  type ClusterOf,
  type DatabaseBackup,
  DatabaseBackupError,
  DatabaseBackups,
  DEFAULT_BACKUPS_KEPT,
} from './deployments/database-backups';
export {
  type ConnectionInfo,
  createDatabaseHooks,
  type DatabaseBackend,
  databaseEnv,
  openConnectionInfo,
} from './deployments/database-hooks';
export { type DatabaseHooks, DeploymentEngine, type EngineOptions } from './deployments/engine';
export {
  ACTIVE_STATUSES,
  canTransition,
  PENDING_CHANNEL,
  parseStatusNotification,
  STATUS_CHANNEL,
  TRANSITIONS,
  transition,
} from './deployments/lifecycle';
export {
  type LogBatch,
  type LogEvent,
  type LogLine,
  LogStore,
  type LogStoreOptions,
} from './deployments/log-store';
export { DEFAULT_RESTARTS, type RestartDefaults, restartState } from './deployments/restart-policy';
export {
  createDeploymentRuntime,
  DELETED_PROJECT_BACKUPS_DAYS,
  type DeploymentRuntime,
  publicUrlFor,
  type RuntimeConfig,
  sweepDeletedProjects,
} from './deployments/runtime';
export { DeploymentService } from './deployments/service';
export {
  readFilesForUpload,
  type SnapshotRotation,
  SourceStore,
  writeAtomically,
} from './deployments/source-store';
export { staticDirOf } from './deployments/static-sites';
export { DEFAULT_MAX_FILES, DEFAULT_MAX_UPLOAD_MB, uploadTooLargeMessage } from './deployments/upload';
export {
  USAGE_INTERVAL_MS,
  USAGE_POINTS,
  type UsageNow,
  type UsagePoint,
  UsageSampler,
  type UsageSamplerOptions,
} from './deployments/usage';
export type {
  DeploymentDetailDto,
  DeploymentDto,
  DeploymentUsageDto,
  ProjectDatabaseDto,
  ProjectDetailDto,
  ProjectDto,
  UsageFiguresDto,
  UserDto,
} from './dto';
export { type EnvVars, ProjectEnvStore } from './env-store';
export * from './env-vars';
export { type CodeRunnerErrorCode, type CodeRunnerErrorData, UNAVAILABLE_RETRY_SECONDS } from './errors';
export { MAX_BATCH_SIZE } from './limits';
export { createLogFollowHandler } from './log-follow-http';
export { projectKey, projectKeyOfHost, projectSlug } from './project-url';
export { PLAN_QUOTAS, quotaFor } from './quotas';
export { createMemoryRateLimitStore, RateLimitedError, type RateLimitStore } from './rate-limit';
export { type AppRouter, appRouter } from './root';
export * from './secrets';
export { SESSION_COOKIE, SESSION_HEADER } from './session';
export {
  SIGNUP_CLOSED_MESSAGE,
  type SignupPolicy,
  signupPolicy,
  UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
  UNISOLATED_OPEN_SIGNUP_VARIABLE,
} from './signup';
export { createCallerFactory } from './trpc';

export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
