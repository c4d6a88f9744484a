/**
 * The typed client for frontends, the CLI and other apps. Imports only types from the server side,
 * so bundling it pulls in no server code (apps/web's bundle check verifies it).
 *
 * Links: subscriptions (deployments.watch, deployments.logs) go over SSE; FormData inputs (the
 * deployments.create upload) over a plain httpLink, since batching needs JSON; everything else is
 * batched.
 */
import {
  createTRPCClient,
  httpBatchLink,
  httpLink,
  httpSubscriptionLink,
  isNonJsonSerializable,
  splitLink,
  TRPCClientError,
} from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import type { CodeRunnerErrorData } from './errors';
import { MAX_BATCH_SIZE } from './limits';
import type { AppRouter } from './root';
import { SESSION_HEADER } from './session';

export interface ClientOptions {
  /** Base URL of the tRPC endpoint, e.g. http://localhost:8080/trpc (a path such as '/trpc' in a page). */
  url: string;
  /**
   * The bearer token, or a function read before every call (so a token obtained by logging in, or
   * renewed by a password change, applies to the same client).
   */
  token?: string | null | (() => string | null | undefined);
  /**
   * 'cookie': a browser session. Logging in sets an HttpOnly cookie instead of returning the token,
   * and every call sends the header the server requires before it accepts that cookie.
   */
  session?: 'token' | 'cookie';
  fetch?: typeof fetch;
}

export function createClient(opts: ClientOptions) {
  const headers = (): Record<string, string> => {
    const token = typeof opts.token === 'function' ? opts.token() : opts.token;
    const h: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (opts.session === 'cookie') h[SESSION_HEADER] = '1';
    return h;
  };
  // Resolved at call time, so a page's fetch is always called on window (browsers require it).
  const fetchImpl: typeof fetch = (input, init) => (opts.fetch ?? globalThis.fetch)(input, init);
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url: opts.url,
          transformer: superjson,
          // This EventSource (Node has none; a browser's cannot) sends the token as a header, never in the URL.
          EventSource,
          eventSourceOptions: () => ({
            fetch: (input, init) =>
              fetchImpl(input, {
                ...init,
                headers: { ...(init?.headers as Record<string, string>), ...headers() },
              }),
          }),
        }),
        false: splitLink({
          condition: (op) => isNonJsonSerializable(op.input),
          true: httpLink({ url: opts.url, transformer: superjson, headers, fetch: fetchImpl }),
          false: httpBatchLink({
            url: opts.url,
            transformer: superjson,
            headers,
            fetch: fetchImpl,
            maxItems: MAX_BATCH_SIZE,
          }),
        }),
      }),
    ],
  });
}

export type CodeRunnerClient = ReturnType<typeof createClient>;
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
export type CodeRunnerError = TRPCClientError<AppRouter> & { data: CodeRunnerErrorData };

/** True for an error the CodeRunner API answered with: `err.data` then says its code and details. */
export function isCodeRunnerError(err: unknown): err is CodeRunnerError {
  return (
    err instanceof TRPCClientError && typeof (err.data as { code?: unknown } | undefined)?.code === 'string'
  );
}

// The schema's enumerations (no server code: the module imports nothing).
export {
  DEPLOYMENT_STATUSES,
  type DeploymentStatus,
  PLAN_TYPES,
  type PlanType,
  RUNTIME_TYPES,
  type RuntimeType,
} from '@coderunner/db/enums';
export { BACKUP_DOWNLOAD_PREFIX, backupDownloadPath } from './backup-download-path';
export type { LogEvent } from './deployments/log-events';
export {
  ENV_LIMITS,
  ENV_MASK,
  ENV_NAME_PATTERN,
  envNameProblem,
  envSetProblem,
  envValueProblem,
  envVarProblem,
  maskEnvValue,
  RESERVED_ENV_NAMES,
  RESERVED_ENV_PREFIX,
  splitEnvAssignment,
} from './env-vars';
export type { CodeRunnerErrorCode, CodeRunnerErrorData, ValidationIssue } from './errors';
export { PLAN_QUOTAS, quotaFor } from './quotas';
export { ALWAYS_IGNORED, DEFAULT_IGNORE_RULES, IGNORE_FILES, rebaseRules, uploadRules } from './upload-rules';
export type { AppRouter };
export { SESSION_HEADER };
