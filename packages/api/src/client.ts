/**
 * The typed client for frontends, the CLI and other apps. Imports only types from the server side,
 * so bundling it pulls in no server code.
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
} from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import { MAX_BATCH_SIZE } from './limits';
import type { AppRouter } from './root';

export interface ClientOptions {
  /** Base URL of the tRPC endpoint, e.g. http://localhost:8080/trpc */
  url: string;
  token?: string | undefined;
  fetch?: typeof fetch;
}

export function createClient(opts: ClientOptions) {
  const headers = (): Record<string, string> => (opts.token ? { authorization: `Bearer ${opts.token}` } : {});
  const fetchImpl = opts.fetch ?? globalThis.fetch;
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url: opts.url,
          transformer: superjson,
          // Node has no global EventSource; this one lets us send the token as a header (never in the URL).
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

// The schema's enumerations (no server code: the module imports nothing).
export {
  DEPLOYMENT_STATUSES,
  type DeploymentStatus,
  PLAN_TYPES,
  type PlanType,
  RUNTIME_TYPES,
  type RuntimeType,
} from '@coderunner/db/enums';
export type { AppRouter };
