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
  type InnerContextOptions,
} from './context';
export type { ProjectDto, UserDto } from './dto';
export { PLAN_QUOTAS, quotaFor } from './quotas';
export { createMemoryRateLimitStore, RateLimitedError, type RateLimitStore } from './rate-limit';
export { type AppRouter, appRouter } from './root';
export { createCallerFactory } from './trpc';

export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
