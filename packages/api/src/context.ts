import type { EventEmitter } from 'node:events';
import type { Sequelize } from '@coderunner/db';
import { createPasswordHasher, type PasswordHasher } from './auth/password';
import { createTokenService, type TokenService } from './auth/tokens';
import type { ApiConfig } from './config';
import type { DeploymentEngine } from './deployments/engine';
import type { LogStore } from './deployments/log-store';
import type { SourceStore } from './deployments/source-store';
import { createMemoryRateLimitStore, type RateLimitStore, type RateLimits } from './rate-limit';
import type { Keyring } from './secrets';
import type { AuthedUser } from './trpc';

/** What every procedure may use; built once by the server (or a test), shared by all requests. */
export interface ApiDeps {
  sequelize: Sequelize;
  passwords: PasswordHasher;
  tokens: TokenService;
  rateLimits: RateLimits;
  rateLimitStore: RateLimitStore;
  /** Logs an unexpected error with the request id the client was told. */
  logError?: (err: unknown, meta: { requestId: string; path?: string }) => void;
  /** Present on servers that run deployments. */
  deployments?: DeploymentServices;
  /** What `system.info` reports. */
  system?: SystemInfo;
}

export interface SystemInfo {
  /** Tenant isolation of deployed apps: `sandbox` (each in its own sandbox) or `none`. */
  isolation: 'sandbox' | 'none';
}

export interface DeploymentServices {
  engine: DeploymentEngine;
  sources: SourceStore;
  logs: LogStore;
  /** Emits `<deploymentId>` when its status changes (fed by LISTEN on the status channel). */
  events: EventEmitter;
  /** Decrypts db_connection_info for deployments.databaseCredentials (absent: no databases here). */
  keyring?: Keyring;
  maxUploadBytes: number;
  maxFiles: number;
  /** Called after a deployment was queued (wakes this process's workers without waiting for NOTIFY). */
  onQueued?: () => void;
}

export function createApiDeps(opts: {
  sequelize: Sequelize;
  config: ApiConfig & { authSecret: Uint8Array };
  rateLimitStore?: RateLimitStore;
  logError?: ApiDeps['logError'];
  deployments?: DeploymentServices;
  system?: SystemInfo;
}): ApiDeps {
  return {
    sequelize: opts.sequelize,
    passwords: createPasswordHasher(opts.config.passwordHashing),
    tokens: createTokenService(opts.config.authSecret, opts.config.tokenTtlSeconds),
    rateLimits: opts.config.rateLimits,
    rateLimitStore: opts.rateLimitStore ?? createMemoryRateLimitStore(),
    logError: opts.logError,
    deployments: opts.deployments,
    system: opts.system,
  };
}

/** The part of the context that needs no HTTP request: tests build it directly for `createCaller`. */
export interface InnerContextOptions {
  deps: ApiDeps;
  /** The bearer token, if the caller sent one. */
  token?: string | null;
  requestId?: string;
  /** Client address, for rate limits. */
  ip?: string;
}

export function createInnerContext(opts: InnerContextOptions) {
  return {
    deps: opts.deps,
    token: opts.token ?? null,
    requestId: opts.requestId ?? crypto.randomUUID(),
    ip: opts.ip ?? 'local',
    /** The authenticated caller, resolved once per request (shared by the calls of a batch). */
    auth: {} as { user?: Promise<AuthedUser | null> },
  };
}

/** The outer context: what the HTTP request says (the Authorization header, the client address). */
export function createRequestContext(
  deps: ApiDeps,
  req: { headers: Record<string, string | string[] | undefined>; ip?: string | undefined },
  requestId?: string,
) {
  const header = req.headers.authorization;
  const value = Array.isArray(header) ? header[0] : header;
  const token = value?.startsWith('Bearer ') ? value.slice(7).trim() : null;
  return createInnerContext({ deps, token, requestId, ip: req.ip ?? 'unknown' });
}

export type Context = ReturnType<typeof createInnerContext>;
