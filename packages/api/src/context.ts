import type { Sequelize } from '@coderunner/db';
import { createPasswordHasher, type PasswordHasher } from './auth/password';
import { createTokenService, type TokenService } from './auth/tokens';
import type { ApiConfig } from './config';
import type { DatabaseBackups } from './deployments/database-backups';
import type { DeploymentService } from './deployments/service';
import { createMemoryRateLimitStore, type RateLimitStore, type RateLimits } from './rate-limit';
import { SESSION_COOKIE, SESSION_HEADER } from './session';
import type { SignupPolicy } from './signup';
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
  deployments?: DeploymentService;
  /** Present on servers whose projects' databases run in clusters of their own. */
  databaseBackups?: DatabaseBackups;
  /** What `system.info` reports. */
  system?: SystemInfo;
}

export interface SystemInfo {
  /** Tenant isolation of deployed apps: `sandbox` (each in its own sandbox) or `none`. */
  isolation: 'sandbox' | 'none';
  /** Who may sign up (see signup.ts); absent: open. */
  signup?: SignupPolicy;
}

export function createApiDeps(opts: {
  sequelize: Sequelize;
  config: ApiConfig & { authSecret: Uint8Array };
  rateLimitStore?: RateLimitStore;
  logError?: ApiDeps['logError'];
  deployments?: DeploymentService;
  databaseBackups?: DatabaseBackups;
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
    databaseBackups: opts.databaseBackups,
    system: opts.system,
  };
}

/** The browser-session side of a request (see session.ts; absent for callers that are not HTTP requests). */
export interface CookieSession {
  /** The caller sent SESSION_HEADER: log-ins put the token in the cookie rather than the body. */
  wanted: boolean;
  set(token: string, maxAgeSeconds: number): void;
  clear(): void;
}

/** The part of the context that needs no HTTP request: tests build it directly for `createCaller`. */
export interface InnerContextOptions {
  deps: ApiDeps;
  /** The bearer token (or the session cookie's), if the caller sent one. */
  token?: string | null;
  cookieSession?: CookieSession;
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
    cookieSession: opts.cookieSession ?? null,
    /** The authenticated caller, resolved once per request (shared by the calls of a batch). */
    auth: {} as { user?: Promise<AuthedUser | null> },
  };
}

/** The value of cookie `name` in a Cookie header, or null. */
export function readCookie(header: string | undefined, name: string): string | null {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return null;
}

type Headers = Record<string, string | string[] | undefined>;
const first = (h: string | string[] | undefined) => (Array.isArray(h) ? h[0] : h);

/** Sets and clears the session cookie on a Node response (`Secure` when the request came over https). */
function cookieSession(
  req: { headers: Headers; secure?: boolean },
  res: { appendHeader(name: string, value: string): unknown },
): CookieSession {
  const attributes = `Path=/; HttpOnly; SameSite=Strict${req.secure ? '; Secure' : ''}`;
  return {
    wanted: first(req.headers[SESSION_HEADER]) !== undefined,
    set: (token, maxAge) =>
      res.appendHeader(
        'set-cookie',
        `${SESSION_COOKIE}=${encodeURIComponent(token)}; Max-Age=${maxAge}; ${attributes}`,
      ),
    clear: () => res.appendHeader('set-cookie', `${SESSION_COOKIE}=; Max-Age=0; ${attributes}`),
  };
}

/**
 * The outer context: what the HTTP request says (the Authorization header or, on requests carrying
 * SESSION_HEADER, the session cookie; the client address).
 */
export function createRequestContext(
  deps: ApiDeps,
  req: { headers: Headers; ip?: string | undefined; secure?: boolean },
  requestId?: string,
  res?: { appendHeader(name: string, value: string): unknown },
) {
  const value = first(req.headers.authorization);
  const session = res ? cookieSession(req, res) : undefined;
  let token = value?.startsWith('Bearer ') ? value.slice(7).trim() : null;
  // Without the header a cookie is ignored: a cross-site form post is then simply not logged in.
  if (!token && session?.wanted) token = readCookie(first(req.headers.cookie), SESSION_COOKIE);
  return createInnerContext({ deps, token, requestId, ip: req.ip ?? 'unknown', cookieSession: session });
}

export type Context = ReturnType<typeof createInnerContext>;
