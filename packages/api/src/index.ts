import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter } from './root';

export { createPasswordHasher, OWASP_MIN, type PasswordHasher } from './auth/password';
export { readOrCreateSecretFile } from './auth/secret-file';
export { createTokenService, type TokenService } from './auth/tokens';
export { API_CONFIG_VARIABLES, type ApiConfig, apiConfigFromEnv, authSecretFromDataDir } from './config';
export {
  type ApiDeps,
  type Context,
  createApiDeps,
  createInnerContext,
  createRequestContext,
  type DeploymentServices,
  type InnerContextOptions,
} from './context';
export {
  type ConnectionInfo,
  createDatabaseHooks,
  type DatabaseBackend,
  databaseEnv,
  openConnectionInfo,
} from './deployments/database-hooks';
export {
  type DatabaseHooks,
  DeploymentEngine,
  type EngineOptions,
  PENDING_CHANNEL,
} from './deployments/engine';
export {
  ACTIVE_STATUSES,
  canTransition,
  STATUS_CHANNEL,
  TRANSITIONS,
  transition,
} from './deployments/lifecycle';
export { type LogBatch, type LogLine, LogStore, type LogStoreOptions } from './deployments/log-store';
export { readFilesForUpload, SourceStore } from './deployments/source-store';
export type { DeploymentDto, ProjectDto, UserDto } from './dto';
export { PLAN_QUOTAS, quotaFor } from './quotas';
export { createMemoryRateLimitStore, RateLimitedError, type RateLimitStore } from './rate-limit';
export { type AppRouter, appRouter } from './root';
export * from './secrets';
export { createCallerFactory } from './trpc';

export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
